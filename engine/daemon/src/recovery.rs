//! Recovery at start (`docs/log.md`, "Recovery"): read the input log back, repair a torn
//! tail, refuse (or truncate at) corruption, rebuild the windows whose inputs were logged but
//! whose results the journal does not have, and hand the topology the state to resume from.
//!
//! The same reading serves `fpn replay` ([`read_log`] without repairs).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use fpn_engine::ShardConfig;
use fpn_engine::auction::Bid;
use fpn_log::format::Entry;
use fpn_log::replay::{RecoveredIntake, Replayer};
use fpn_log::{BatchBuffer, End, FormatError, LogState, SegmentHeader, scan_segment, segment_index_of};

use crate::config::{OnCorruption, Settings};
use crate::journal_files;
use crate::run::RunError;
use crate::run::roles::log::{LOG_DIR, LogStart, SegmentMeta};

/// What the topology resumes from.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The first window the daemon opens.
    pub next_window_id: u64,
    /// Per intake (empty: a fresh start).
    pub intakes: Vec<RecoveredIntake>,
    pub book: Vec<Bid>,
}

/// What recovery hands `run`.
#[derive(Debug)]
pub struct Recovery {
    pub resume: Resume,
    pub log: LogStart,
}

/// The log's segment files, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some(i) = entry.file_name().to_str().and_then(segment_index_of) {
                    out.push((i, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// How reading treats a damaged log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Read only (`fpn replay`): a torn tail is skipped, corruption is an error.
    None,
    /// Recovery: truncate a torn tail; corruption per `log.on_corruption`.
    Recover(OnCorruption),
}

/// What reading the log found.
#[derive(Debug, Default)]
pub struct LogRead {
    pub segments: Vec<SegmentMeta>,
    pub torn_tails: u64,
    pub corruption_truncated: u64,
}

fn log_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// Reads every segment of `dir` in order, each entry of its valid batches to `f`, checking
/// that the log was written by `config`'s shape.
pub fn read_log(
    dir: &Path,
    config: &ShardConfig,
    repair: Repair,
    mut f: impl FnMut(Entry<'_>),
) -> Result<LogRead, RunError> {
    let files = segments(dir).map_err(log_err("listing", dir))?;
    let mut read = LogRead::default();
    for (k, (index, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(log_err("reading log segment", path))?;
        let last = k + 1 == files.len();
        let corrupt =
            |offset: usize, error: String| RunError::LogCorrupt { path: path.clone(), offset, error };
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            // A segment cut short before its header was synced: only the newest can be.
            Err(FormatError::Truncated) if last => {
                if let Repair::Recover(_) = repair {
                    eprintln!("flashpointd: recovery: {} has no complete header; removed", path.display());
                    std::fs::remove_file(path).map_err(log_err("removing", path))?;
                    read.torn_tails += 1;
                }
                break;
            }
            Err(e) => return Err(corrupt(0, e.to_string())),
        };
        if header.intakes_n as usize != config.intakes_n || header.shards_n as usize != config.shards_n {
            return Err(RunError::Config(format!(
                "the input log {} was written with {} intake(s) and {} builder shard(s), the configuration has {} and {}: \
                 start with the same shape (or move {} away to start empty)",
                path.display(),
                header.intakes_n,
                header.shards_n,
                config.intakes_n,
                config.shards_n,
                dir.display()
            )));
        }
        // First pass: where the valid bytes end. Second: the entries of those bytes only.
        let scanned = scan_segment(&bytes, last, |_, _| {}).map_err(|e| corrupt(0, e.to_string()))?;
        let mut cut_rest = false;
        match (scanned.end, repair) {
            (End::Clean, _) => {}
            (End::TornTail { offset }, Repair::None) => {
                eprintln!("fpn replay: {}: torn tail at byte {offset} ignored", path.display());
            }
            (End::TornTail { offset }, Repair::Recover(_)) => {
                eprintln!(
                    "flashpointd: recovery: {} has a torn tail at byte {offset} ({} bytes): truncated",
                    path.display(),
                    bytes.len() - offset
                );
                truncate(path, offset as u64)?;
                read.torn_tails += 1;
            }
            (End::Corrupt { offset, error }, Repair::Recover(OnCorruption::Truncate)) => {
                eprintln!(
                    "flashpointd: recovery: {} is corrupt at byte {offset} ({error}): truncated there (log.on_corruption = \"truncate\"); later segments removed",
                    path.display()
                );
                truncate(path, offset as u64)?;
                read.corruption_truncated += 1;
                cut_rest = true;
            }
            (End::Corrupt { offset, error }, _) => return Err(corrupt(offset, error.to_string())),
        }
        let mut meta = SegmentMeta {
            index: *index,
            bytes: scanned.valid_len as u64,
            created_ns: header.created_ns,
            window_max: 0,
            bid_rx_max: 0,
            start_open: 0,
        };
        let mut start_closed: Option<u64> = None;
        let mut started = false;
        scan_segment(&bytes[..scanned.valid_len], false, |_, e| {
            match e {
                Entry::IntakeState { window_closed, .. } if !started => {
                    start_closed = Some(start_closed.map_or(window_closed, |c| c.min(window_closed)));
                }
                Entry::HighWater { .. } | Entry::IntakeState { .. } => {}
                Entry::Intent { window_id, .. }
                | Entry::Cancel { window_id, .. }
                | Entry::BookCancel { window_id, .. }
                | Entry::Close { window_id, .. } => {
                    started = true;
                    meta.window_max = meta.window_max.max(window_id);
                }
                Entry::Bid { window_id, rx_ns, .. } => {
                    started = true;
                    meta.window_max = meta.window_max.max(window_id);
                    meta.bid_rx_max = meta.bid_rx_max.max(rx_ns);
                }
            }
            f(e);
        })
        .map_err(|e| corrupt(0, e.to_string()))?;
        meta.start_open = start_closed.unwrap_or(0) + 1;
        read.segments.push(meta);
        if cut_rest {
            for (_, later) in &files[k + 1..] {
                std::fs::remove_file(later).map_err(log_err("removing", later))?;
            }
            break;
        }
    }
    Ok(read)
}

fn truncate(path: &Path, len: u64) -> Result<(), RunError> {
    let file = OpenOptions::new().write(true).open(path).map_err(log_err("opening", path))?;
    file.set_len(len).map_err(log_err("truncating", path))?;
    file.sync_all().map_err(log_err("syncing", path))
}

/// Appends `closes` (recovery's closes of the windows the crash left open) to segment
/// `path` as one batch, synced.
fn append_closes(path: &Path, closes: &[(usize, fpn_engine::WindowClose)]) -> Result<(), RunError> {
    use std::io::Write;
    let mut batch = BatchBuffer::with_capacity(64 * closes.len().max(1));
    for (intake, close) in closes {
        batch.push(|w| w.close(*intake as u8, close));
    }
    let mut file = OpenOptions::new().append(true).open(path).map_err(log_err("opening", path))?;
    file.write_all(batch.seal()).map_err(log_err("appending to", path))?;
    file.sync_data().map_err(log_err("syncing", path))
}

/// Recovery (see the module doc). `now_ns` closes the window the crash left open.
pub fn recover(settings: &Settings, now_ns: u64) -> Result<Recovery, RunError> {
    let dir = settings.data_dir.join(LOG_DIR);
    std::fs::create_dir_all(&dir).map_err(log_err("creating", &dir))?;
    let cut = journal_files::repair_tail(&settings.data_dir)
        .map_err(log_err("repairing journal", &settings.data_dir))?;
    if cut > 0 {
        eprintln!("flashpointd: recovery: cut a partial last line ({cut} bytes) off the journal");
    }
    let journaled = journal_files::last_window(&settings.data_dir)
        .map_err(log_err("reading journal", &settings.data_dir))?;
    let config = settings.shard_config();
    let mut replayer = Replayer::new(config.clone(), journaled + 1);
    let read = read_log(&dir, &config, Repair::Recover(settings.log.on_corruption), |e| replayer.entry(e))?;
    let recovered = replayer.finish(now_ns);
    if let Some(last) = read.segments.last()
        && !recovered.closes.is_empty()
    {
        append_closes(&dir.join(fpn_log::segment_file_name(last.index)), &recovered.closes)?;
    }
    let rebuilt = publish_recovered(settings, journaled, &recovered.results)?;
    if rebuilt > 0 || read.torn_tails > 0 || read.corruption_truncated > 0 {
        eprintln!(
            "flashpointd: recovery: {} segment(s) read, {rebuilt} window(s) rebuilt and journaled as recovered, resuming at window {}",
            read.segments.len(),
            recovered.next_window_id
        );
    }
    let n = config.intakes_n;
    let horizon_one = 1;
    let mut state =
        LogState::with_capacity(n, horizon_one, config.records_cap(), config.engine.window.clients_max);
    // Never below the journal's: a log truncated at corruption may know fewer windows.
    let next = recovered.next_window_id.max(journaled + 1);
    state.restore(&recovered.intakes, next - 1);
    let next_index = read.segments.last().map_or(1, |m| m.index + 1);
    Ok(Recovery {
        resume: Resume { next_window_id: next, intakes: recovered.intakes, book: recovered.book },
        log: LogStart {
            dir,
            segments: read.segments,
            next_index,
            state,
            recovery: [read.torn_tails, read.corruption_truncated, rebuilt],
        },
    })
}

/// Appends the journal lines of the rebuilt windows the journal does not have, marked
/// `recovered`, synced. How many.
fn publish_recovered(
    settings: &Settings,
    journaled: u64,
    results: &[fpn_engine::WindowResult],
) -> Result<u64, RunError> {
    let mut out = String::new();
    let mut frame = Vec::new();
    let mut n = 0;
    for r in results.iter().filter(|r| r.window.window_id > journaled) {
        frame.clear();
        r.encode(&mut frame);
        let line = fpn_log::journal::Line {
            window: &r.window,
            published_ns: r.window.closed_ns,
            frame: &frame,
            recovered: true,
        };
        fpn_engine::run_unpaced(fpn_log::journal::write_line(&line, &mut out, &mut fpn_engine::Unpaced));
        out.push('\n');
        n += 1;
    }
    if n > 0 {
        let mut w = journal_files::JournalWriter::open(&settings.data_dir, settings.journal)
            .map_err(log_err("opening journal", &settings.data_dir))?;
        w.append_group(std::iter::once(out.as_bytes()))
            .map_err(log_err("appending to journal", &settings.data_dir))?;
    }
    Ok(n)
}
