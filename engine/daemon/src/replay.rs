//! `fpn replay` (`docs/log.md`, "Replay"): rebuild windows from the input log and compare
//! each with the results journal, byte for byte; or, with other builder settings, a what-if
//! backtest on the recorded traffic.
//!
//! The log is read as recovery reads it, without repairing anything ([`Repair::None`]). A
//! rebuilt window's journal line is written with the journal's own writer
//! (`fpn_log::journal::write_line`), taking `published_ns` and `recovered` from the
//! journaled line (the only fields that are not a function of the inputs), and compared
//! with that line as text. A journaled run of idle windows matches a rebuilt window that is
//! idle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use fpn_engine::{Unpaced, WindowResult, run_unpaced};
use fpn_log::journal::{Line, is_idle, write_line};
use fpn_log::replay::Replayer;
use serde_json::Value;

use crate::config::Settings;
use crate::journal_files;
use crate::recovery::{Repair, read_log};
use crate::run::RunError;
use crate::run::roles::log::LOG_DIR;

/// What the journal holds for a window.
#[derive(Debug, Clone)]
enum Journaled {
    Line { text: String, published_ns: u64, recovered: bool },
    Idle,
}

/// The first difference between a rebuilt window and its journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub window_id: u64,
    pub journal: String,
    pub replayed: String,
}

/// One window of a what-if backtest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIf {
    pub window_id: u64,
    /// The journaled block's total profit and upper bound (`None`: not journaled, or idle).
    pub published: Option<(u64, u64)>,
    /// The rebuilt block's total profit and upper bound.
    pub total: u64,
    pub upper_bound: u64,
    /// Time to rebuild the window (the builders and the merger, ns).
    pub build_ns: u64,
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Windows rebuilt in the range.
    pub rebuilt: u64,
    /// Rebuilt windows equal to their journal line (or idle, matching an idle run).
    pub matched: u64,
    pub mismatches: u64,
    pub first_mismatch: Option<Mismatch>,
    /// Rebuilt windows the journal does not have (retention deleted them, or the daemon
    /// stopped before publishing them).
    pub not_journaled: Vec<u64>,
    /// Journaled windows in the range the log does not rebuild (retention deleted their
    /// segments).
    pub not_in_log: Vec<u64>,
    pub what_if: Vec<WhatIf>,
}

/// Replays `settings.data_dir`'s log for windows `from..=to` (`to` 0: every window).
/// `compare`: byte-for-byte against the journal; otherwise a what-if report per window.
pub fn replay(settings: &Settings, from: u64, to: u64, compare: bool) -> Result<Report, RunError> {
    let data = &settings.data_dir;
    let to = if to == 0 { u64::MAX } else { to };
    let journal = read_journal(data, from, to)?;
    let config = settings.shard_config();
    let mut replayer = Replayer::new(config.clone(), from.max(1));
    let mut report = Report::default();
    let mut seen = BTreeSet::new();
    let mut line = String::new();
    let mut frame = Vec::new();
    let mut started = Instant::now();
    let mut each = |results: Vec<WindowResult>, report: &mut Report, started: &mut Instant| {
        let build_ns = started.elapsed().as_nanos() as u64;
        for r in results {
            let id = r.window.window_id;
            if id < from || id > to {
                continue;
            }
            seen.insert(id);
            report.rebuilt += 1;
            frame.clear();
            r.encode(&mut frame);
            let journaled = journal.get(&id);
            if !compare {
                let published = match journaled {
                    Some(Journaled::Line { text, .. }) => block_value(text),
                    _ => None,
                };
                report.what_if.push(WhatIf {
                    window_id: id,
                    published,
                    total: r.block.total,
                    upper_bound: r.block.upper_bound,
                    build_ns,
                });
                continue;
            }
            match journaled {
                None => report.not_journaled.push(id),
                Some(Journaled::Idle) => {
                    if is_idle(&r.window, &frame) {
                        report.matched += 1;
                    } else {
                        line.clear();
                        let l = Line { window: &r.window, published_ns: 0, frame: &frame, recovered: false };
                        run_unpaced(write_line(&l, &mut line, &mut Unpaced));
                        report.mismatch(id, "(journaled as idle)".into(), line.clone());
                    }
                }
                Some(Journaled::Line { text, published_ns, recovered }) => {
                    line.clear();
                    let l = Line {
                        window: &r.window,
                        published_ns: *published_ns,
                        frame: &frame,
                        recovered: *recovered,
                    };
                    run_unpaced(write_line(&l, &mut line, &mut Unpaced));
                    if &line == text {
                        report.matched += 1;
                    } else {
                        report.mismatch(id, text.clone(), line.clone());
                    }
                }
            }
        }
        *started = Instant::now();
    };
    read_log(&data.join(LOG_DIR), &config, Repair::None, |e| {
        replayer.entry(e);
        let results = replayer.take_results();
        if !results.is_empty() {
            each(results, &mut report, &mut started);
        }
    })?;
    if compare {
        report.not_in_log = journal.keys().copied().filter(|w| !seen.contains(w)).collect();
    }
    Ok(report)
}

impl Report {
    fn mismatch(&mut self, window_id: u64, journal: String, replayed: String) {
        self.mismatches += 1;
        if self.first_mismatch.is_none() {
            self.first_mismatch = Some(Mismatch { window_id, journal, replayed });
        }
    }
}

/// The journaled block's `(total, upper_bound)`.
fn block_value(text: &str) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_str(text).ok()?;
    Some((v["block"]["total"].as_u64()?, v["block"]["upper_bound"].as_u64()?))
}

/// The journal's windows in `from..=to`.
fn read_journal(data: &Path, from: u64, to: u64) -> Result<BTreeMap<u64, Journaled>, RunError> {
    let mut out = BTreeMap::new();
    let io = |source| RunError::Io { what: "reading journal", path: data.to_path_buf(), source };
    journal_files::for_each_line(data, |text| {
        let bad = || {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a journal line: {text:.80}"))
        };
        let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
        if let (Some(first), Some(last)) = (v["idle_from"].as_u64(), v["idle_to"].as_u64()) {
            for w in first.max(from)..=last.min(to) {
                out.insert(w, Journaled::Idle);
            }
            return Ok(());
        }
        let id = v["window_id"].as_u64().ok_or_else(bad)?;
        if (from..=to).contains(&id) {
            let published_ns = v["published_ns"].as_u64().ok_or_else(bad)?;
            let recovered = v["recovered"].as_bool().unwrap_or(false);
            out.insert(id, Journaled::Line { text: text.to_string(), published_ns, recovered });
        }
        Ok(())
    })
    .map_err(io)?;
    Ok(out)
}
