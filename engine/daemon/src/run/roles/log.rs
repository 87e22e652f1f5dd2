//! Role `log`: the durable input log (`docs/log.md`).
//!
//! Each intake copies every message it pushes to its builder shards and the merger onto its
//! ring to this role (`intake<i>_log`, [`fpn_log::LogMsg`]), and counts them: a record's
//! position is that count just after its messages. This role encodes the messages into a
//! batch ([`fpn_log::Encoder`]); whenever no append is in flight it seals the batch and
//! submits it to the segment file as one write linked to an `fdatasync` (group commit,
//! [`SegmentWriter`]), and keeps filling the other batch meanwhile. When the append
//! completes it publishes, per intake, the position now on disk (`Shared::log_durable`,
//! which releases receipts) and the newest window every intake's close of is on disk
//! (`Shared::log_durable_window`, which releases the merger's publish).
//!
//! A group is sealed when the previous one is on disk and either `log.group_wait_us` passed
//! since its first entry or it reached `log.group_bytes_max`.
//!
//! With `log.sync` resolved to `wait` (`auto` where this role shares its CPU with an intake)
//! the role waits for each append in `io_uring_enter` right after submitting it, instead of
//! polling for it: the io-wq worker doing the `fdatasync` then runs at once rather than when
//! the scheduler preempts the spinning executor (`docs/log.md`, "Waiting for the disk").
//!
//! A failing append (disk full, an I/O error) sets `Shared::log_failing`: intakes refuse new
//! records `storage_unavailable`, `/health/ready` answers degraded, and the role writes the
//! same batch again at the same offset after a back-off (1 ms doubling to 1 s) until it
//! succeeds; then everything resumes. Nothing accepted is acknowledged before it is on disk.
//!
//! Segments rotate at `log.segment_bytes_max`: the new segment starts with every intake's
//! state ([`LogState::write_start`]); its file is created, synced and its directory synced
//! on a short-lived thread ([`Rotation`]), while the role keeps filling the next batch. Retention (`log.retain_bytes_max`, `log.retain_age_s`)
//! deletes the oldest segments only when recovery no longer needs them (`docs/log.md`,
//! "Retention").
//!
//! No allocation per record: the batches, the encoder and the state are sized at start;
//! a rotation allocates (once per segment) outside the allocation probe.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use fpn_log::format::Entry;
use fpn_log::{BatchBuffer, Encoder, LogMsg, LogState, SegmentHeader};
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc};

use crate::config::{LogSettings, LogSync};
use crate::cores::Role;
use crate::run::RunError;
use crate::run::alloc_probe;
use crate::run::links::RxLink;
use crate::run::log_file::{Appended, SegmentWriter};
use crate::run::role::{BUDGET, LoopKit, RoleLoop};
use crate::run::shared::Shared;
use crate::run::topology::Wiring;

/// Directory of the input log's segments, under `engine.data_dir`.
pub const LOG_DIR: &str = "log";
/// First back-off after a failed append; doubles up to [`RETRY_MAX_NS`].
const RETRY_MIN_NS: u64 = 1_000_000;
const RETRY_MAX_NS: u64 = 1_000_000_000;

pub static LOG_BATCHES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_log_batches_total",
    "Group commits made durable (one write and fdatasync each).",
);
pub static LOG_ENTRIES_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_log_entries_total", "Log entries made durable.");
pub static LOG_BYTES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_log_written_bytes_total",
    "Bytes appended to the input log (batches and segment starts).",
);
pub static LOG_WRITE_ERRORS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_log_write_errors_total",
    "Failed appends (write or fdatasync); the batch is written again after a back-off.",
);
pub static LOG_FAILING: MetricDesc = MetricDesc::gauge(
    "fpn_log_failing",
    "1 while the input log's appends fail (new records are refused storage_unavailable).",
);
pub static LOG_COMMIT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_log_commit_latency_seconds",
    "Per group commit: from its submission until its write and fdatasync completed.",
);
pub static LOG_SYNC_WAIT: MetricDesc = MetricDesc::gauge(
    "fpn_log_sync_wait",
    "1 where the log role waits in io_uring_enter for each group commit (log.sync resolved to wait), 0 where it polls.",
);
pub static LOG_SEGMENTS: MetricDesc =
    MetricDesc::gauge("fpn_log_segments", "Input log segment files retained.");
pub static LOG_RETAINED_BYTES: MetricDesc =
    MetricDesc::gauge("fpn_log_retained_bytes", "Bytes of the input log's retained segments.");
pub static LOG_SEGMENTS_DELETED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_log_segments_deleted_total", "Segments deleted by retention.");
pub static LOG_RECOVERY_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_log_recovery_total",
    "What recovery did at start, by event: torn_tail (a torn tail truncated), corruption_truncated (log.on_corruption = truncate), windows_rebuilt (windows published as recovered).",
);

pub static METRICS: [&MetricDesc; 11] = [
    &LOG_BATCHES_TOTAL,
    &LOG_ENTRIES_TOTAL,
    &LOG_BYTES_TOTAL,
    &LOG_WRITE_ERRORS_TOTAL,
    &LOG_FAILING,
    &LOG_COMMIT_SECONDS,
    &LOG_SYNC_WAIT,
    &LOG_SEGMENTS,
    &LOG_RETAINED_BYTES,
    &LOG_SEGMENTS_DELETED_TOTAL,
    &LOG_RECOVERY_TOTAL,
];

/// What retention knows of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    pub index: u64,
    pub bytes: u64,
    /// When it was created (ns since the Unix epoch).
    pub created_ns: u64,
    /// The newest window of any entry in it (0: none).
    pub window_max: u64,
    /// The newest receive time of a bid in it (0: none).
    pub bid_rx_max: u64,
    /// The first window some intake still had open when it started.
    pub start_open: u64,
}

/// What recovery hands the log role.
#[derive(Debug)]
pub struct LogStart {
    pub dir: PathBuf,
    /// The retained segments, oldest first; the role starts segment `next_index` after them.
    pub segments: Vec<SegmentMeta>,
    pub next_index: u64,
    /// Every intake's state after recovery (horizon 1, see [`LogState`]).
    pub state: LogState,
    /// Recovery's events for `fpn_log_recovery_total`: torn tails, corruption truncated,
    /// windows rebuilt.
    pub recovery: [u64; 3],
}

/// Positions and closes covered by a batch, per intake.
#[derive(Debug, Clone, Default)]
struct Covered {
    popped: Vec<u64>,
    closed: Vec<u64>,
}

pub struct LogRole {
    intakes: Vec<RxLink<LogMsg>>,
    encoder: Encoder,
    filling: BatchBuffer,
    /// What `filling` covers once sealed (cumulative per intake).
    fill: Covered,
    /// When `filling` got its first entry (0: empty).
    fill_started_ns: u64,
    flying: BatchBuffer,
    fly: Covered,
    /// Bytes of `flying` already written (a short write resumes here).
    fly_written: usize,
    fly_submitted_ns: u64,
    writer: SegmentWriter,
    state: LogState,
    segments: VecDeque<SegmentMeta>,
    settings: LogSettings,
    shards_n: u16,
    shared: Arc<Shared>,
    kit: LoopKit,
    /// Back-off after a failed append: retry at `retry_at_ns`.
    retry_at_ns: u64,
    retry_ns: u64,
    start_buf: Vec<u8>,
    batches_total: u64,
    entries_total: u64,
    bytes_total: u64,
    write_errors_total: u64,
    deleted_total: u64,
    recovery: [u64; 3],
    recovery_labels: Vec<Labels>,
    commit: Histogram,
    horizon: u64,
    /// The next segment being created on a thread of its own (`rotate`).
    rotating: Option<Rotation>,
    /// `log.sync` resolved to `wait`: each append is waited for where it is submitted.
    wait: bool,
}

/// A segment file being created, synced and its directory synced, off the executor: two
/// syncs on a disk (each hundreds of µs to milliseconds on the dev VM) that, inline, would
/// stop every role on the log's CPU, the intake's reads included.
struct Rotation {
    index: u64,
    first_len: u64,
    open_window: u64,
    thread: std::thread::JoinHandle<std::io::Result<std::fs::File>>,
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A segment's first bytes: header and the intakes' state.
fn segment_start(
    index: u64,
    intakes_n: u16,
    shards_n: u16,
    state: &LogState,
    batch_bytes: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    let header = SegmentHeader { index, created_ns: wall_ns(), intakes_n, shards_n };
    out.extend_from_slice(&header.encode());
    state.write_start(batch_bytes, out);
}

impl LogRole {
    pub fn build(w: &mut Wiring<'_>, start: LogStart) -> Result<LogRole, RunError> {
        let c = w.shard_config.clone();
        let settings = w.settings.log;
        let (n, s) = (c.intakes_n as u16, c.shards_n as u16);
        let mut start_buf = Vec::new();
        segment_start(start.next_index, n, s, &start.state, settings.group_bytes_max, &mut start_buf);
        let writer = SegmentWriter::create(&start.dir, start.next_index, &start_buf).map_err(|source| {
            RunError::Io {
                what: "creating log segment",
                path: start.dir.join(fpn_log::segment_file_name(start.next_index)),
                source,
            }
        })?;
        let mut segments: VecDeque<SegmentMeta> = start.segments.into_iter().collect();
        segments.push_back(SegmentMeta {
            index: start.next_index,
            bytes: start_buf.len() as u64,
            created_ns: wall_ns(),
            window_max: 0,
            bid_rx_max: 0,
            start_open: start.state.open_window(),
        });
        let covered = || Covered { popped: vec![0; c.intakes_n], closed: vec![0; c.intakes_n] };
        let mut fill = covered();
        fill.closed.iter_mut().for_each(|x| *x = w.first_window_id - 1);
        let fly = fill.clone();
        Ok(LogRole {
            intakes: (0..c.intakes_n).map(|i| w.links.plain_rx(&format!("intake{i}_log"))).collect(),
            encoder: Encoder::new(c.intakes_n),
            filling: BatchBuffer::with_capacity(settings.group_bytes_max),
            fill,
            fill_started_ns: 0,
            flying: BatchBuffer::with_capacity(settings.group_bytes_max),
            fly,
            fly_written: 0,
            fly_submitted_ns: 0,
            writer,
            state: start.state,
            segments,
            settings,
            shards_n: s,
            shared: w.shared.clone(),
            kit: w.kit(Role::Log, "log"),
            retry_at_ns: 0,
            retry_ns: RETRY_MIN_NS,
            start_buf,
            batches_total: 0,
            entries_total: 0,
            bytes_total: 0,
            write_errors_total: 0,
            deleted_total: 0,
            recovery: start.recovery,
            recovery_labels: ["torn_tail", "corruption_truncated", "windows_rebuilt"]
                .iter()
                .map(|e| Labels::new(&[("event", e)]))
                .collect(),
            commit: Histogram::new(),
            horizon: u64::from(c.engine.window.dedup_horizon_windows),
            rotating: None,
            wait: w.settings.log_sync() == LogSync::Wait,
        })
    }

    /// Messages from the intakes into `filling`, while it has room.
    fn fill(&mut self, now: u64) -> bool {
        let mut did_work = false;
        for (i, link) in self.intakes.iter_mut().enumerate() {
            for _ in 0..BUDGET {
                if self.filling.payload_len() >= self.settings.group_bytes_max
                    || !Encoder::has_room(&self.filling)
                {
                    return did_work;
                }
                let Some(msg) = link.rx.pop() else { break };
                if self.filling.is_empty() {
                    self.fill_started_ns = now;
                }
                self.encoder.push(i, &msg, &mut self.filling);
                self.fill.popped[i] += 1;
                if let LogMsg::Merger(fpn_engine::shard::ToMerger::Close(close)) = msg {
                    self.fill.closed[i] = close.window_id;
                }
                did_work = true;
            }
        }
        did_work
    }

    /// Seals `filling` and submits it when the previous group is on disk and this one is
    /// due.
    fn commit(&mut self, now: u64) -> Result<bool, RunError> {
        if self.writer.in_flight() || !self.flying.is_empty() || self.filling.is_empty() {
            return Ok(false);
        }
        if self.rotating.is_some() {
            // The batch waits for the new segment (and keeps filling meanwhile).
            return self.finish_rotation(false);
        }
        let due = self.filling.payload_len() >= self.settings.group_bytes_max
            || now.saturating_sub(self.fill_started_ns) >= self.settings.group_wait_ns;
        if !due {
            return Ok(false);
        }
        let len = (fpn_log::format::BATCH_HEADER_LEN + self.filling.payload_len()) as u64;
        if self.writer.bytes() + len > self.settings.segment_bytes_max {
            self.rotate()?;
            return Ok(true);
        }
        self.filling.seal();
        // The segment's state as of its batches: feed this batch's entries.
        let meta = self.segments.back_mut().expect("a current segment");
        for entry in fpn_log::format::entries(&self.filling.bytes()[fpn_log::format::BATCH_HEADER_LEN..]) {
            let entry = entry.expect("a batch this role encoded decodes");
            self.state.entry(&entry);
            match entry {
                Entry::Intent { window_id, .. }
                | Entry::Cancel { window_id, .. }
                | Entry::BookCancel { window_id, .. }
                | Entry::Close { window_id, .. } => meta.window_max = meta.window_max.max(window_id),
                Entry::Bid { window_id, rx_ns, .. } => {
                    meta.window_max = meta.window_max.max(window_id);
                    meta.bid_rx_max = meta.bid_rx_max.max(rx_ns);
                }
                Entry::HighWater { .. } | Entry::IntakeState { .. } => {}
            }
        }
        std::mem::swap(&mut self.filling, &mut self.flying);
        self.fly.popped.copy_from_slice(&self.fill.popped);
        self.fly.closed.copy_from_slice(&self.fill.closed);
        self.fly_written = 0;
        self.fill_started_ns = 0;
        self.fly_submitted_ns = now;
        self.submit();
        Ok(true)
    }

    /// Submits what is left of `flying`; a failure to submit counts as a failed append.
    fn submit(&mut self) {
        let bytes = &self.flying.bytes()[self.fly_written..];
        // SAFETY: `flying` is neither changed nor moved until the append completed: `commit`
        // does nothing while it is in flight or not yet cleared, and `SegmentWriter`'s drop
        // (before this role's fields) waits for it.
        if let Err(e) = unsafe { self.writer.submit(bytes) } {
            self.failed(now_ns(), &e);
            return;
        }
        // `log.sync = wait`: this executor thread sleeps in `io_uring_enter` until the
        // append is done, so the io-wq worker doing it does not queue for the CPU behind the
        // roles sharing it (`docs/log.md`, "Waiting for the disk").
        if self.wait
            && let Some(outcome) = self.writer.wait()
        {
            self.completed(now_ns(), outcome);
        }
    }

    fn failed(&mut self, now: u64, e: &std::io::Error) {
        self.write_errors_total += 1;
        if !self.shared.log_failing.swap(true, Ordering::AcqRel) {
            eprintln!(
                "flashpointd: input log append to segment {} failed ({e}); refusing new records until it succeeds",
                self.writer.index()
            );
        }
        self.retry_at_ns = now + self.retry_ns;
        self.retry_ns = (self.retry_ns * 2).min(RETRY_MAX_NS);
    }

    /// The in-flight append's completion, or the retry of a failed one.
    fn complete(&mut self, now: u64) -> bool {
        if !self.writer.in_flight() {
            if !self.flying.is_empty() && now >= self.retry_at_ns {
                self.submit();
                return true;
            }
            return false;
        }
        let Some(outcome) = self.writer.poll() else { return false };
        self.completed(now, outcome);
        true
    }

    fn completed(&mut self, now: u64, outcome: std::io::Result<Appended>) {
        match outcome {
            Ok(Appended::Short(n)) => {
                self.fly_written += n;
                self.submit();
            }
            Ok(Appended::Durable) => {
                let len = self.flying.bytes().len() as u64;
                self.bytes_total += len;
                self.batches_total += 1;
                self.entries_total += u64::from(self.flying.entries());
                self.commit.record_ns(now.saturating_sub(self.fly_submitted_ns).max(1));
                if let Some(meta) = self.segments.back_mut() {
                    meta.bytes = self.writer.bytes();
                }
                self.flying.clear();
                for (i, d) in self.shared.log_durable.iter().enumerate() {
                    d.0.store(self.fly.popped[i], Ordering::Release);
                }
                let window = self.fly.closed.iter().copied().min().unwrap_or(0);
                self.shared.log_durable_window.0.store(window, Ordering::Release);
                if self.shared.log_failing.swap(false, Ordering::AcqRel) {
                    eprintln!("flashpointd: input log appends succeed again; accepting records");
                }
                self.retry_ns = RETRY_MIN_NS;
            }
            Err(e) => {
                // Written again whole at the same offset, then synced again: after a failed
                // fdatasync the page cache says nothing reliable about the disk.
                self.fly_written = 0;
                self.failed(now, &e);
            }
        }
    }

    /// Starts the next segment with every intake's state (allocates: once per segment).
    fn rotate(&mut self) -> Result<(), RunError> {
        alloc_probe::leave();
        let index = self.writer.index() + 1;
        let n = self.intakes.len() as u16;
        segment_start(
            index,
            n,
            self.shards_n,
            &self.state,
            self.settings.group_bytes_max,
            &mut self.start_buf,
        );
        let path = self.writer.dir().join(fpn_log::segment_file_name(index));
        let first = self.start_buf.clone();
        let spawned = std::thread::Builder::new()
            .name("fpn-log-segment".into())
            .spawn(move || crate::run::log_file::create(&path, &first));
        alloc_probe::enter();
        let thread = spawned.map_err(|source| RunError::Io {
            what: "starting the log segment thread",
            path: self.writer.dir().to_path_buf(),
            source,
        })?;
        let (first_len, open_window) = (self.start_buf.len() as u64, self.state.open_window());
        self.rotating = Some(Rotation { index, first_len, open_window, thread });
        Ok(())
    }

    /// Continues in the segment [`LogRole::rotate`] started once its file is on disk
    /// (`block`: waits for it). Whether it did.
    fn finish_rotation(&mut self, block: bool) -> Result<bool, RunError> {
        let Some(r) = self.rotating.take_if(|r| block || r.thread.is_finished()) else { return Ok(false) };
        let path = self.writer.dir().join(fpn_log::segment_file_name(r.index));
        let created =
            r.thread.join().unwrap_or_else(|_| Err(std::io::Error::other("the segment thread panicked")));
        let file = created.map_err(|source| RunError::Io { what: "creating log segment", path, source })?;
        self.writer.install(r.index, file, r.first_len);
        self.bytes_total += r.first_len;
        self.segments.push_back(SegmentMeta {
            index: r.index,
            bytes: r.first_len,
            created_ns: wall_ns(),
            window_max: 0,
            bid_rx_max: 0,
            start_open: r.open_window,
        });
        self.shared.book_oldest_asked.store(true, Ordering::Release);
        Ok(true)
    }

    /// Deletes the oldest segments while the retention limits are exceeded and recovery
    /// does not need them (`docs/log.md`, "Retention").
    fn retain(&mut self) {
        let horizon = self.horizon;
        loop {
            let bytes: u64 = self.segments.iter().map(|m| m.bytes).sum();
            let (Some(&oldest), Some(&next)) = (self.segments.front(), self.segments.get(1)) else { return };
            let old = self.settings.retain_age_ns > 0
                && wall_ns().saturating_sub(oldest.created_ns) > self.settings.retain_age_ns;
            if bytes <= self.settings.retain_bytes_max && !old {
                return;
            }
            if !retention_allows(&oldest, &next, horizon, &self.shared) {
                // Asked again: the merger answers at its next housekeeping.
                self.shared.book_oldest_asked.store(true, Ordering::Release);
                return;
            }
            let path = self.writer.dir().join(fpn_log::segment_file_name(oldest.index));
            alloc_probe::leave();
            let removed = std::fs::remove_file(&path);
            alloc_probe::enter();
            if let Err(e) = removed {
                eprintln!("flashpointd: retention: removing {}: {e}", path.display());
                return;
            }
            self.segments.pop_front();
            self.deleted_total += 1;
        }
    }
}

/// Whether recovery no longer needs segment `oldest` (followed by `next`): every window in
/// it is journaled, its pairs left the de-duplication horizon before `next` began (so
/// `next`'s start holds their marks), and none of its bids is still in the auction book (as
/// the merger last said, at a window after all of them).
pub fn retention_allows(oldest: &SegmentMeta, next: &SegmentMeta, horizon: u64, shared: &Shared) -> bool {
    let journaled = shared.journal_window_id.load(Ordering::Acquire);
    let (book_window, book_rx) = *shared.book_oldest.lock().unwrap_or_else(|p| p.into_inner());
    oldest.window_max <= journaled
        && oldest.window_max + horizon <= next.start_open
        && (oldest.bid_rx_max == 0 || (book_window >= oldest.window_max && book_rx > oldest.bid_rx_max))
}

impl RoleLoop for LogRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        let mut did_work = self.complete(now);
        did_work |= self.fill(now);
        match self.commit(now) {
            Ok(committed) => did_work |= committed,
            Err(e) => {
                // A segment could not be created: the same as a failed append (the batch
                // stays sealed and is retried with the rotation).
                let e = match e {
                    RunError::Io { source, .. } => source,
                    other => std::io::Error::other(other.to_string()),
                };
                self.failed(now, &e);
            }
        }
        did_work
    }

    fn housekeep(&mut self) {
        self.retain();
        let idle = self.kit.idler.counters();
        let Self { intakes, kit, segments, commit, .. } = self;
        let none = &kit.none;
        let retained: u64 = segments.iter().map(|m| m.bytes).sum();
        let failing = self.shared.log_failing.load(Ordering::Relaxed);
        let wait = self.wait;
        let counters = [
            (&LOG_BATCHES_TOTAL, self.batches_total),
            (&LOG_ENTRIES_TOTAL, self.entries_total),
            (&LOG_BYTES_TOTAL, self.bytes_total),
            (&LOG_WRITE_ERRORS_TOTAL, self.write_errors_total),
            (&LOG_SEGMENTS_DELETED_TOTAL, self.deleted_total),
        ];
        let recovery = self.recovery;
        let labels = &self.recovery_labels;
        kit.publisher.publish(|s| {
            intakes.iter().for_each(|l| l.publish(s));
            s.idle(none, idle);
            for (desc, v) in counters {
                s.counter(desc, none, v);
            }
            s.gauge(&LOG_FAILING, none, i64::from(failing));
            s.gauge(&LOG_SYNC_WAIT, none, i64::from(wait));
            s.gauge(&LOG_SEGMENTS, none, segments.len() as i64);
            s.gauge(&LOG_RETAINED_BYTES, none, retained as i64);
            s.histogram(&LOG_COMMIT_SECONDS, none, commit);
            for (l, v) in labels.iter().zip(recovery) {
                s.counter(&LOG_RECOVERY_TOTAL, l, v);
            }
        });
        kit.heartbeat.beat();
    }

    /// Whatever is still to write, written and synced (the drain waits for the last window,
    /// whose inputs are written before it is published; this catches the rest).
    fn finish(&mut self) {
        if let Err(e) = self.finish_rotation(true) {
            eprintln!("flashpointd: log: {e}");
        }
        // A few rounds: the batch in flight, then what is left in the rings (a failing disk
        // gives up here; recovery handles what did not reach it).
        for _ in 0..4 {
            if let Some(outcome) = self.writer.wait() {
                self.completed(now_ns(), outcome);
                continue;
            }
            if !self.flying.is_empty() {
                self.submit();
                continue;
            }
            self.fill(now_ns());
            if self.filling.is_empty() {
                break;
            }
            self.fill_started_ns = 0;
            let _ = self.commit(now_ns().saturating_add(self.settings.group_wait_ns));
        }
    }
}
