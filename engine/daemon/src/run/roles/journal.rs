//! Role `journal`: appends each published window as one JSON line to
//! `<data_dir>/journal.jsonl`, keeps the newest lines for the admin endpoint, and feeds each
//! window's witness to the prover. Off the latency path: it formats JSON and writes a file,
//! so it allocates and may block briefly in `write`.
//!
//! The line is written straight into a reused `String`, keys in alphabetical order (the order
//! `serde_json`'s map gives, which the tests parse back and compare): building a
//! `serde_json::Value` tree first cost milliseconds per busy window on the journal's CPU,
//! which it shares with the intake on small machines. The file writes happen on a thread of
//! their own ([`JournalFile`]). `docs/daemon.md`, "Journal", has the format.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use fpn_engine::{CloseReason, Pace};
use fpn_runtime::metrics::MetricDesc;
use fpn_wire::{BlockRef, ClearingRef, RecordRef, decode_frame};

use super::merger::ResultMsg;
use super::prover::ProverFeed;
use crate::cores::Role;
use crate::run::RunError;
use crate::run::links::{RxLink, TxLink};
use crate::run::role::{LoopKit, RoleLoop, SlicePace};
use crate::run::shared::Shared;
use crate::run::topology::Wiring;

/// File name of the journal under `engine.data_dir`.
pub const JOURNAL_FILE: &str = "journal.jsonl";

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
}

impl JournalRole {
    /// Opens `<data_dir>/journal.jsonl` for appending and starts its writer thread.
    pub fn build(w: &mut Wiring<'_>) -> Result<JournalRole, RunError> {
        let path = w.settings.data_dir.join(JOURNAL_FILE);
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::Io { what, path, source }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
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
        })
    }

    async fn append(&mut self, msg: &ResultMsg, pace: &mut SlicePace) {
        let (block, clearing) = window_records(msg);
        if let Some(feed) = &mut self.prover {
            let input = crate::prover::pool::WindowInput {
                window_id: msg.window.window_id,
                closed_ns: msg.window.closed_ns,
                witness: crate::prover::witness::frame_witness(block, clearing, feed.reserve),
            };
            let _ = feed.tx.tx.try_push(input);
        }
        let mut line = self.file.buffer(self.line_reserve);
        write_line(msg, block, clearing, &mut line, pace).await;
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
        line.push('\n');
        self.file.send(msg.window.window_id, line);
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

pub fn reason_str(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Deadline => "deadline",
        CloseReason::Full => "full",
        CloseReason::Drain => "drain",
    }
}

fn builder_str(code: u8) -> &'static str {
    match code {
        0 => "fifo",
        1 => "greedy",
        2 => "improved",
        _ => "unknown",
    }
}

/// The block and the clearing of a window, decoded from the encoded frame the merger sent (so
/// the journal shows exactly the bytes a client would get).
pub fn window_records(msg: &ResultMsg) -> (Option<BlockRef<'_>>, Option<ClearingRef<'_>>) {
    let (mut block, mut clearing) = (None, None);
    for record in decode_frame(&msg.bytes).expect("the merger encodes valid frames") {
        match record {
            RecordRef::Block(b) => block = Some(b),
            RecordRef::Clearing(c) => clearing = Some(c),
            _ => {}
        }
    }
    (block, clearing)
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

/// Nice 19 for the calling thread: a write into the page cache can take milliseconds of CPU
/// (seen on the dev VM), and at nice 0 the thread would take them from the executor it
/// shares a CPU with; at nice 19 the scheduler gives it short turns (the executor's roles
/// idle often enough for it to keep up: 1.5 % of the CPU is ~15 ms/s, the journal needs a
/// few ms/s at 100 k intents/s).
fn lower_priority() {
    if !crate::run::sys::set_thread_nice(19) {
        eprintln!("flashpointd: journal: setpriority(19) failed: {}", std::io::Error::last_os_error());
    }
}

/// Lines in flight between the role and the writer thread.
const LINES_IN_FLIGHT: usize = 16;

impl JournalFile {
    /// Starts the writer thread (`fpn-journal-io`, pinned to `cpu` when given).
    pub fn start(mut file: File, shared: Arc<Shared>, cpu: Option<usize>) -> std::io::Result<JournalFile> {
        let (lines_tx, lines_rx) = sync_channel::<(u64, String)>(LINES_IN_FLIGHT);
        let (spare_tx, spare_rx) = sync_channel::<String>(LINES_IN_FLIGHT);
        let counters = Arc::new(JournalCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new().name("fpn-journal-io".into()).spawn(move || {
            if let Some(cpu) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            lower_priority();
            for (window_id, mut line) in lines_rx {
                match file.write_all(line.as_bytes()) {
                    Ok(()) => {
                        c.bytes_written_total.fetch_add(line.len() as u64, Ordering::Relaxed);
                        c.windows_written_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        c.write_errors_total.fetch_add(1, Ordering::Relaxed);
                        eprintln!("flashpointd: journal: append of window {window_id} failed: {e}");
                    }
                }
                // Only once the line is in the file: the drain waits for this.
                shared.journal_window_id.store(window_id, Ordering::Release);
                line.clear();
                let _ = spare_tx.try_send(line);
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

/// A JSON object written field by field; the caller gives keys in order.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    fn u64(&mut self, key: &str, v: u64) {
        let mut buf = itoa::Buffer::new();
        self.key(key).push_str(buf.format(v));
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key).push_str(if v { "true" } else { "false" });
    }

    /// `v` must not need escaping (the journal's strings are fixed words).
    fn str(&mut self, key: &str, v: &str) {
        let out = self.key(key);
        out.push('"');
        out.push_str(v);
        out.push('"');
    }

    fn null(&mut self, key: &str) {
        self.key(key).push_str("null");
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// Entries or winners written between two pace points.
const ITEMS_PER_POINT: usize = 512;

/// Appends the journal line of one window result to `out` (no newline): the summary counts,
/// the block and the clearing (`null` when the frame has none). Pauses at `pace`'s points
/// every [`ITEMS_PER_POINT`] entries (`docs/runtime.md`, "Slices").
pub async fn write_line(
    msg: &ResultMsg,
    block: Option<BlockRef<'_>>,
    clearing: Option<ClearingRef<'_>>,
    out: &mut String,
    pace: &mut impl Pace,
) {
    let w = &msg.window;
    let mut o = Obj::open(out);
    o.u64("bids_count", w.bids_count as u64);
    match block {
        Some(b) => {
            let f = b.fixed;
            let mut o = Obj::open(o.key("block"));
            o.str("builder", builder_str(f.builder));
            let out = o.key("entries");
            out.push('[');
            for (k, e) in b.entries.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                    if k % ITEMS_PER_POINT == 0 {
                        pace.point().await;
                    }
                }
                let mut o = Obj::open(out);
                o.u64("client_id", e.client_id.get());
                o.u64("payout", e.payout.get());
                o.u64("profit", e.profit.get());
                o.u64("rx_ns", e.rx_ns.get());
                o.u64("seq", e.seq.get());
                o.close();
            }
            out.push(']');
            o.bool("exact", f.exact != 0);
            o.u64("fee", f.fee.get());
            o.u64("fee_ppm", f.fee_ppm.get() as u64);
            o.u64("fifo_total", f.fifo_total.get());
            o.u64("surplus", f.surplus.get());
            o.u64("total", f.total.get());
            o.u64("upper_bound", f.upper_bound.get());
            o.u64("window_id", f.window_id.get());
            o.close();
        }
        None => o.null("block"),
    }
    o.u64("cancelled_count", w.cancelled_count as u64);
    match clearing {
        Some(c) => {
            let f = c.fixed;
            let mut o = Obj::open(o.key("clearing"));
            o.str("order", if f.order == 0 { "priority-first" } else { "amount-desc" });
            o.str("pricing", if f.pricing == 0 { "first-price" } else { "uniform" });
            o.u64("revenue", f.revenue.get());
            o.u64("uniform_price", f.uniform_price.get());
            o.u64("window_id", f.window_id.get());
            let out = o.key("winners");
            out.push('[');
            for (k, x) in c.winners.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                    if k % ITEMS_PER_POINT == 0 {
                        pace.point().await;
                    }
                }
                let mut o = Obj::open(out);
                o.u64("amount", x.amount.get());
                o.u64("client_id", x.client_id.get());
                o.u64("price", x.price.get());
                o.u64("seq", x.seq.get());
                o.close();
            }
            out.push(']');
            o.close();
        }
        None => o.null("clearing"),
    }
    o.u64("closed_ns", w.closed_ns);
    o.u64("intents_count", w.intents_count as u64);
    o.u64("opened_ns", w.opened_ns);
    o.u64("published_ns", msg.published_ns);
    o.str("reason", reason_str(w.reason));
    o.u64("window_id", w.window_id);
    o.close();
}

#[cfg(test)]
mod tests {
    use fpn_engine::WindowSummary;
    use fpn_wire::{BlockEntryWire, BlockSummary, ClearingSummary, FrameWriter, WinnerWire};
    use serde_json::{Value, json};

    use super::*;
    use crate::prover::witness::{frame_witness, journal_witness};

    fn msg(entries: &[(u64, u64, u64, u64)], pricing: u8) -> ResultMsg {
        let mut bytes = Vec::new();
        let mut w = FrameWriter::new(&mut bytes, u32::MAX as usize);
        let block = BlockSummary {
            window_id: 7,
            total: entries.iter().map(|e| e.2).sum(),
            fifo_total: 1000,
            surplus: 3200,
            fee: 320,
            upper_bound: 5000,
            fee_ppm: 100_000,
            builder: 2,
            exact: false,
        };
        // Each entry's receive time: 1,000 ns per seq past the window's open, for the tests.
        let block_entries =
            entries.iter().map(|&(s, c, p, y)| BlockEntryWire::new(s, c, p, y, 100 + 1_000 * s));
        w.push_block_iter(&block, block_entries.collect::<Vec<_>>().into_iter()).unwrap();
        let clearing = ClearingSummary { window_id: 7, uniform_price: 0, revenue: 800, pricing, order: 0 };
        w.push_clearing(&clearing, &[WinnerWire::new(9, 3, 800, 800)]).unwrap();
        w.finish();
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
        let (block, clearing) = window_records(m);
        let mut out = String::new();
        let mut pace = fpn_engine::EveryPoint::default();
        fpn_engine::run_to_completion(write_line(m, block, clearing, &mut out, &mut pace));
        // One point per 512 entries past the first.
        assert_eq!(
            pace.points as usize,
            block.map_or(0, |b| b.entries.len().saturating_sub(1) / ITEMS_PER_POINT)
        );
        out
    }

    #[test]
    fn the_line_is_the_documented_object_with_sorted_keys() {
        let m = msg(&[(3, 1, 1000, 900), (5, 2, 2500, 2300), (11, 1, 700, 680)], 0);
        let text = line(&m);
        let expected = json!({
            "window_id": 7, "opened_ns": 100, "closed_ns": 123, "published_ns": 130, "reason": "deadline",
            "intents_count": 4, "bids_count": 1, "cancelled_count": 1,
            "block": {"window_id": 7, "builder": "improved", "exact": false, "total": 4200,
                      "fifo_total": 1000, "surplus": 3200, "fee": 320, "fee_ppm": 100000, "upper_bound": 5000,
                      "entries": [{"seq": 3, "client_id": 1, "profit": 1000, "payout": 900, "rx_ns": 3100},
                                  {"seq": 5, "client_id": 2, "profit": 2500, "payout": 2300, "rx_ns": 5100},
                                  {"seq": 11, "client_id": 1, "profit": 700, "payout": 680, "rx_ns": 11100}]},
            "clearing": {"window_id": 7, "pricing": "first-price", "order": "priority-first",
                         "uniform_price": 0, "revenue": 800,
                         "winners": [{"seq": 9, "client_id": 3, "amount": 800, "price": 800}]}
        });
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, expected);
        // Byte for byte what serde_json writes for the same object (keys sorted).
        assert_eq!(text, expected.to_string());
    }

    #[test]
    fn empty_blocks_and_missing_records_are_written() {
        let m = msg(&[], 1);
        let parsed: Value = serde_json::from_str(&line(&m)).unwrap();
        assert_eq!(parsed["block"]["entries"], json!([]));
        assert_eq!(parsed["clearing"]["pricing"], json!("uniform"));
        let (block, _) = window_records(&m);
        let mut text = String::new();
        fpn_engine::run_unpaced(write_line(&m, block, None, &mut text, &mut fpn_engine::Unpaced));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["clearing"], Value::Null);
    }

    #[test]
    fn long_blocks_are_written_across_pace_points() {
        let entries: Vec<(u64, u64, u64, u64)> = (0..1_500).map(|i| (i, i % 7, 100 + i, 90 + i)).collect();
        let m = msg(&entries, 0);
        let parsed: Value = serde_json::from_str(&line(&m)).unwrap();
        let got = parsed["block"]["entries"].as_array().unwrap();
        assert_eq!(got.len(), 1_500);
        for (i, e) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                e,
                &json!({"seq": i, "client_id": i % 7, "profit": 100 + i, "payout": 90 + i, "rx_ns": 100 + 1_000 * i})
            );
        }
    }

    #[test]
    fn the_frame_witness_equals_the_witness_read_back_from_the_line() {
        for pricing in [0, 1] {
            let m = msg(&[(3, 1, 1000, 900), (5, 2, 2500, 2300), (11, 1, 700, 680)], pricing);
            let (block, clearing) = window_records(&m);
            let from_frame = frame_witness(block, clearing, 50);
            let from_line = journal_witness(&serde_json::from_str(&line(&m)).unwrap(), 50);
            assert_eq!(from_frame, from_line);
            assert_eq!(from_frame.unwrap().auction.uniform_price, if pricing == 1 { 50 } else { 0 });
        }
        let m = msg(&[], 0);
        let (block, _) = window_records(&m);
        assert_eq!(frame_witness(block, None, 0), Err(crate::prover::pool::SkipReason::Unprovable));
    }
}
