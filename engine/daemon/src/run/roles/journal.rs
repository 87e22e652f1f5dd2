//! Role `journal`: appends each published window as one JSON line to
//! `<data_dir>/journal.jsonl` (the line format is `fpn_log::journal`'s, shared with recovery
//! and `fpn replay`; the files' rotation is `journal_files`), keeps the newest lines for the
//! admin endpoint, and feeds each window's witness to the prover. Off the latency path: it
//! formats JSON and writes a file, so it allocates and may block briefly in `write`; the
//! file writes and their `fdatasync`s happen on a thread of their own ([`JournalFile`]).
//! `docs/daemon.md`, "Journal", has the format.
//!
//! Idle windows (nothing in them, `fpn_log::journal::is_idle`) are not written one line
//! each: a run of them becomes one `{"idle_from":F,"idle_to":L}` line, written before the
//! next window that is not idle, after [`IDLE_RUN_MAX_NS`] of idleness, or with the drain's
//! last window. `/windows/latest` still shows each of them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use fpn_engine::{CloseReason, Pace};
use fpn_log::journal::{Line, is_idle, window_records, write_idle_line, write_line};
use fpn_runtime::metrics::MetricDesc;

use super::merger::ResultMsg;
use super::prover::ProverFeed;
use crate::cores::Role;
use crate::run::RunError;
use crate::run::links::{RxLink, TxLink};
use crate::run::role::{LoopKit, RoleLoop, SlicePace};
use crate::run::shared::Shared;
use crate::run::topology::Wiring;

pub use crate::journal_files::JOURNAL_FILE;
use crate::journal_files::JournalWriter;

/// A run of idle windows is written once it is this old (ns), even if more follow.
pub const IDLE_RUN_MAX_NS: u64 = 1_000_000_000;

pub static JOURNAL_WINDOWS_WRITTEN_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_windows_written_total", "Window lines appended to the journal.");
pub static JOURNAL_WRITTEN_BYTES_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_written_bytes_total", "Bytes appended to the journal.");
pub static JOURNAL_WRITE_ERRORS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_journal_write_errors_total", "Journal appends that failed.");

pub static METRICS: [&MetricDesc; 3] =
    [&JOURNAL_WINDOWS_WRITTEN_TOTAL, &JOURNAL_WRITTEN_BYTES_TOTAL, &JOURNAL_WRITE_ERRORS_TOTAL];

pub struct JournalRole {
    results: RxLink<ResultMsg>,
    back: TxLink<ResultMsg>,
    file: JournalFile,
    shared: Arc<Shared>,
    kit: LoopKit,
    /// Capacity of the next line's buffer: the longest line so far (admin keeps the lines).
    line_reserve: usize,
    /// The journal → prover ring, when the prover is enabled: each window's witness, or why
    /// there is none. A full ring drops the window (the pool counts it as `ring_full`).
    prover: Option<ProverFeed>,
    /// The run of idle windows not written yet: first, last, when its first was published.
    idle_run: Option<(u64, u64, u64)>,
}

impl JournalRole {
    /// Opens `<data_dir>/journal.jsonl` for appending and starts its writer thread.
    pub fn build(w: &mut Wiring<'_>) -> Result<JournalRole, RunError> {
        let path = w.settings.data_dir.join(JOURNAL_FILE);
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::Io { what, path, source }
        };
        let file = JournalWriter::open(&w.settings.data_dir, w.settings.journal)
            .map_err(io_err("opening journal", &path))?;
        let cpu = w.settings.core_map.cpu_of(Role::Journal, 0);
        let file = JournalFile::start(file, w.shared.clone(), cpu)
            .map_err(io_err("starting the journal writer thread", &path))?;
        Ok(JournalRole {
            results: w.links.plain_rx("merger_journal"),
            back: w.links.plain_tx("journal_merger"),
            file,
            shared: w.shared.clone(),
            kit: w.kit(Role::Journal, "journal"),
            line_reserve: 1024,
            prover: w
                .links
                .try_plain_tx("journal_prover")
                .map(|tx| ProverFeed { tx, reserve: w.settings.auction.reserve }),
            idle_run: None,
        })
    }

    async fn append(&mut self, msg: &ResultMsg, pace: &mut SlicePace) {
        let (block, clearing) = window_records(&msg.bytes);
        if let Some(feed) = &mut self.prover {
            let input = crate::prover::pool::WindowInput {
                window_id: msg.window.window_id,
                closed_ns: msg.window.closed_ns,
                witness: crate::prover::witness::frame_witness(block, clearing, feed.reserve),
            };
            let _ = feed.tx.tx.try_push(input);
        }
        let mut line = self.file.buffer(self.line_reserve);
        let l =
            Line { window: &msg.window, published_ns: msg.published_ns, frame: &msg.bytes, recovered: false };
        write_line(&l, &mut line, pace).await;
        self.line_reserve = self.line_reserve.max(line.len() + 1);
        // The admin routes keep the newest lines; the file gets this buffer.
        {
            let mut latest = self.shared.latest.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest kept line's buffer takes the copy (no allocation once 64 are kept).
            let mut kept = if latest.len() == self.shared.latest_max {
                latest.pop_front().map(|(_, s)| s).unwrap_or_default()
            } else {
                String::new()
            };
            kept.clear();
            kept.push_str(&line);
            latest.push_back((msg.window.window_id, kept));
        }
        let id = msg.window.window_id;
        // During the drain nothing waits: the last window may close by its deadline.
        let last =
            msg.window.reason == CloseReason::Drain || self.shared.drain_requested.load(Ordering::Acquire);
        if is_idle(&msg.window, &msg.bytes) {
            let run = self.idle_run.get_or_insert((id, id, msg.published_ns));
            run.1 = id;
            if last || msg.published_ns.saturating_sub(run.2) >= IDLE_RUN_MAX_NS {
                // Written now: the run is old enough, or nothing follows.
                line.clear();
                write_idle_line(run.0, run.1, &mut line);
                line.push('\n');
                self.idle_run = None;
                self.file.send(id, line);
            }
            return;
        }
        // The idle run before this window, then this window: one send.
        line.push('\n');
        if let Some((first, prev, _)) = self.idle_run.take() {
            let mut both = String::with_capacity(line.len() + 64);
            write_idle_line(first, prev, &mut both);
            both.push('\n');
            both.push_str(&line);
            line = both;
        }
        self.file.send(id, line);
    }
}

impl RoleLoop for JournalRole {
    /// The journal formats JSON and writes a file: it allocates by design, off the hot cores.
    const HOT: bool = false;

    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    /// Everything happens in `slow`: a busy window's line is long enough to need slices.
    fn step(&mut self, _now: u64) -> bool {
        false
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        let mut did_work = false;
        while self.file.ready() {
            let Some(msg) = self.results.rx.pop() else { break };
            self.append(&msg, pace).await;
            // The merger takes a buffer only while this pool ring has it to give back.
            let back = self.back.tx.try_push(msg);
            debug_assert!(back.is_ok(), "the pool ring holds every buffer");
            did_work = true;
            pace.point().await;
        }
        did_work
    }

    fn housekeep(&mut self) {
        let idle = self.kit.idler.counters();
        let Self { results, back, kit, prover, .. } = self;
        let (w, b, e) = self.file.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            results.publish(s);
            back.publish(s);
            s.idle(none, idle);
            s.counter(&JOURNAL_WINDOWS_WRITTEN_TOTAL, none, w);
            s.counter(&JOURNAL_WRITTEN_BYTES_TOTAL, none, b);
            s.counter(&JOURNAL_WRITE_ERRORS_TOTAL, none, e);
            if let Some(feed) = prover {
                feed.tx.publish(s);
            }
        });
        kit.heartbeat.beat();
    }

    fn finish(&mut self) {
        self.file.close();
    }
}

/// The journal file's own thread. A `write` into the page cache can stall for milliseconds
/// (dirty-page throttling: 9 ms writes were seen on the dev VM at 7 MB/s of journal), and
/// the journal role shares its executor with other roles, so the role only formats lines
/// and hands them over a bounded channel; the thread writes each one, records the window as
/// journaled (`Shared::journal_window_id`, which the drain waits for) and sends the emptied
/// buffer back. A full channel makes the role wait (it keeps the line and reads no more
/// results), never drops a line.
pub struct JournalFile {
    lines: Option<SyncSender<(u64, String)>>,
    spare: Receiver<String>,
    /// A line the full channel refused: sent before anything else.
    pending: Option<(u64, String)>,
    counters: Arc<JournalCounters>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer thread did, read at housekeeping.
#[derive(Debug, Default)]
pub struct JournalCounters {
    pub windows_written_total: AtomicU64,
    pub bytes_written_total: AtomicU64,
    pub write_errors_total: AtomicU64,
}

/// Ten nice levels below the process's (at most 19) for the calling thread: a write into the
/// page cache can take milliseconds of CPU (seen on the dev VM), and at the executor's own
/// priority the thread would take them from the executor it shares a CPU with; ten levels
/// below, the scheduler gives it about a tenth of a CPU the executor keeps busy (weights
/// 1,024 against 110 at nice 0 and 10, 88,761 against 9,548 at -20 and -10). Relative, not
/// absolute, and not further down: the merger waits for the journal's buffers
/// (`docs/daemon.md`, "Rings and capacities"). At nice 19 the writer got 1.5 % of a busy
/// CPU under a daemon at nice 0 and 0.02 % under one at nice -20 (the bench harness's
/// `--nice -20`): it fell behind the windows, the merger waited up to a second per window,
/// the builders waited for the merger, and the intake refused up to 70 % of 100 k records/s
/// `overloaded` (BENCHMARKS.md, "Daemon topology").
fn lower_priority() {
    let nice = (crate::run::sys::thread_nice() + 10).min(19);
    if !crate::run::sys::set_thread_nice(nice) {
        eprintln!("flashpointd: journal: setpriority({nice}) failed: {}", std::io::Error::last_os_error());
    }
}

/// Lines in flight between the role and the writer thread.
const LINES_IN_FLIGHT: usize = 16;
/// Attempts at a failing journal append before its lines are given up.
const JOURNAL_RETRIES: u32 = 60;

impl JournalFile {
    /// Starts the writer thread (`fpn-journal-io`, pinned to `cpu` when given). It appends
    /// every line waiting, syncs them with one `fdatasync`, and only then counts their
    /// windows as journaled.
    pub fn start(
        mut file: JournalWriter,
        shared: Arc<Shared>,
        cpu: Option<usize>,
    ) -> std::io::Result<JournalFile> {
        let (lines_tx, lines_rx) = sync_channel::<(u64, String)>(LINES_IN_FLIGHT);
        let (spare_tx, spare_rx) = sync_channel::<String>(LINES_IN_FLIGHT);
        let counters = Arc::new(JournalCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new().name("fpn-journal-io".into()).spawn(move || {
            if let Some(cpu) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            lower_priority();
            let mut group = Vec::with_capacity(LINES_IN_FLIGHT);
            while let Ok(first) = lines_rx.recv() {
                group.push(first);
                while let Ok(more) = lines_rx.try_recv() {
                    group.push(more);
                }
                let newest = group.last().map_or(0, |g| g.0);
                let bytes: u64 = group.iter().map(|(_, l)| l.len() as u64).sum();
                // A failed append is cut back and written again after a back-off (the
                // channel fills meanwhile and the merger waits: nothing is dropped); after
                // `JOURNAL_RETRIES` the lines are given up (`fpn replay` rebuilds them from
                // the input log), so a dead disk cannot hang the drain.
                let mut backoff = Duration::from_millis(10);
                for attempt in 1..=JOURNAL_RETRIES {
                    match file.append_group(group.iter().map(|(_, l)| l.as_bytes())) {
                        Ok(()) => {
                            c.bytes_written_total.fetch_add(bytes, Ordering::Relaxed);
                            c.windows_written_total.fetch_add(group.len() as u64, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            c.write_errors_total.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "flashpointd: journal: append of windows up to {newest} failed ({e}), attempt {attempt}"
                            );
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                    }
                }
                // Only once the lines are on disk: the drain and the log's retention wait
                // for this.
                shared.journal_window_id.store(newest, Ordering::Release);
                for (_, mut line) in group.drain(..) {
                    line.clear();
                    let _ = spare_tx.try_send(line);
                }
            }
        })?;
        Ok(JournalFile {
            lines: Some(lines_tx),
            spare: spare_rx,
            pending: None,
            counters,
            thread: Some(thread),
        })
    }

    /// An empty line buffer: one the thread gave back, or a new one of `reserve` bytes.
    pub fn buffer(&mut self, reserve: usize) -> String {
        self.spare.try_recv().unwrap_or_else(|_| String::with_capacity(reserve))
    }

    /// Sends the line the full channel refused, if it can now; whether a new line may be
    /// sent (nothing is pending).
    pub fn ready(&mut self) -> bool {
        if let Some(p) = self.pending.take() {
            self.send(p.0, p.1);
        }
        self.pending.is_none()
    }

    /// Hands the line of `window_id` (newline included) to the thread; kept as pending if
    /// the channel is full.
    pub fn send(&mut self, window_id: u64, line: String) {
        debug_assert!(self.pending.is_none());
        let Some(tx) = &self.lines else { return };
        match tx.try_send((window_id, line)) {
            Ok(()) => {}
            Err(TrySendError::Full(v)) => self.pending = Some(v),
            Err(TrySendError::Disconnected(_)) => {
                self.counters.write_errors_total.fetch_add(1, Ordering::Relaxed);
                eprintln!("flashpointd: journal: the writer thread is gone; window {window_id} not written");
            }
        }
    }

    pub fn counters(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (
            c.windows_written_total.load(Ordering::Relaxed),
            c.bytes_written_total.load(Ordering::Relaxed),
            c.write_errors_total.load(Ordering::Relaxed),
        )
    }

    /// Sends what is pending (waiting for room), lets the thread write everything and joins it.
    pub fn close(&mut self) {
        if let (Some(tx), Some(p)) = (&self.lines, self.pending.take()) {
            let _ = tx.send(p);
        }
        self.lines = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for JournalFile {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use fpn_engine::{CloseReason, WindowSummary};

    use super::*;
    use crate::prover::witness::{frame_witness, journal_witness};

    fn msg(entries: &[(u64, u64, u64, u64)], pricing: u8) -> ResultMsg {
        let bytes = fpn_testkit::window_result_frame(entries, Some(pricing));
        let window = WindowSummary {
            window_id: 7,
            opened_ns: 100,
            closed_ns: 123,
            reason: CloseReason::Deadline,
            intents_count: 4,
            bids_count: 1,
            cancelled_count: 1,
        };
        ResultMsg { window, published_ns: 130, bytes }
    }

    fn line(m: &ResultMsg) -> String {
        let l = Line { window: &m.window, published_ns: m.published_ns, frame: &m.bytes, recovered: false };
        let mut out = String::new();
        fpn_engine::run_unpaced(write_line(&l, &mut out, &mut fpn_engine::Unpaced));
        out
    }

    #[test]
    fn the_frame_witness_equals_the_witness_read_back_from_the_line() {
        for pricing in [0, 1] {
            let m = msg(&[(3, 1, 1000, 900), (5, 2, 2500, 2300), (11, 1, 700, 680)], pricing);
            let (block, clearing) = window_records(&m.bytes);
            let from_frame = frame_witness(block, clearing, 50);
            let from_line = journal_witness(&serde_json::from_str(&line(&m)).unwrap(), 50);
            assert_eq!(from_frame, from_line);
            assert_eq!(from_frame.unwrap().auction.uniform_price, if pricing == 1 { 50 } else { 0 });
        }
        let m = msg(&[], 0);
        let (block, _) = window_records(&m.bytes);
        assert_eq!(frame_witness(block, None, 0), Err(crate::prover::pool::SkipReason::Unprovable));
    }
}
