//! Shard liveness: one counter per shard, bumped in housekeeping, checked by the watchdog
//! and `/health/ready`.
//!
//! Each shard owns a [`Heartbeat`] and calls [`Heartbeat::beat`] from its housekeeping (not
//! the hot path; each counter sits on its own cache line). A [`HeartbeatChecker`] remembers
//! what it saw last time and reports whether every shard advanced since. Each consumer (the
//! sd_notify watchdog, the readiness endpoint) keeps its own checker, so checking from one
//! does not reset the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(align(128))]
#[derive(Debug, Default)]
struct PaddedCounter(AtomicU64);

#[derive(Debug)]
struct Board {
    names: Vec<String>,
    counters: Vec<PaddedCounter>,
}

/// The set of shard heartbeats, fixed at start-up.
#[derive(Clone, Debug)]
pub struct Heartbeats {
    board: Arc<Board>,
}

/// One shard's heartbeat.
#[derive(Debug)]
pub struct Heartbeat {
    board: Arc<Board>,
    index: usize,
    beats: u64,
}

impl Heartbeats {
    /// One heartbeat per name; returns the shared set and the per-shard handles, in order.
    ///
    /// # Panics
    /// On duplicate names.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> (Self, Vec<Heartbeat>) {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "heartbeat {name:?} named twice");
        }
        let counters = names.iter().map(|_| PaddedCounter::default()).collect();
        let board = Arc::new(Board { names, counters });
        let beats =
            (0..board.names.len()).map(|index| Heartbeat { board: board.clone(), index, beats: 0 }).collect();
        (Self { board }, beats)
    }

    /// Shard names, in order.
    pub fn names(&self) -> &[String] {
        &self.board.names
    }

    /// Current counter values, in order.
    pub fn values(&self) -> Vec<u64> {
        self.board.counters.iter().map(|c| c.0.load(Ordering::Relaxed)).collect()
    }

    /// A checker whose first [`HeartbeatChecker::check`] compares against the values now.
    pub fn checker(&self) -> HeartbeatChecker {
        HeartbeatChecker { heartbeats: self.clone(), last: self.values() }
    }
}

impl Heartbeat {
    /// Records that the shard's loop is alive. Called from housekeeping.
    #[inline]
    pub fn beat(&mut self) {
        self.beats += 1;
        // Only this handle writes the counter: a plain store, no read-modify-write.
        self.board.counters[self.index].0.store(self.beats, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.board.names[self.index]
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReport {
    /// Names of the shards whose counter did not move since the previous check.
    pub stalled: Vec<String>,
}

impl HeartbeatReport {
    /// True when every shard advanced.
    pub fn all_advanced(&self) -> bool {
        self.stalled.is_empty()
    }
}

/// Compares heartbeat counters against those seen at the previous check.
#[derive(Clone, Debug)]
pub struct HeartbeatChecker {
    heartbeats: Heartbeats,
    last: Vec<u64>,
}

impl HeartbeatChecker {
    /// Reports which shards did not advance since the last check, and remembers the values.
    /// Call it less often than the slowest housekeeping period.
    pub fn check(&mut self) -> HeartbeatReport {
        let now = self.heartbeats.values();
        let stalled = now
            .iter()
            .zip(&self.last)
            .zip(self.heartbeats.names())
            .filter(|((now, last), _)| now == last)
            .map(|(_, name)| name.clone())
            .collect();
        self.last = now;
        HeartbeatReport { stalled }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_reports_stalled_shards_and_checkers_are_independent() {
        let (heartbeats, mut beats) = Heartbeats::new(["intake-0", "builder-0"]);
        let mut watchdog = heartbeats.checker();
        let mut ready = heartbeats.checker();
        assert_eq!(watchdog.check().stalled, ["intake-0", "builder-0"]);

        beats[0].beat();
        let report = watchdog.check();
        assert!(!report.all_advanced());
        assert_eq!(report.stalled, ["builder-0"]);

        beats[1].beat();
        assert_eq!(watchdog.check().stalled, ["intake-0"]);
        // The other checker still compares against its own start point.
        assert!(ready.check().all_advanced());

        beats[0].beat();
        beats[1].beat();
        assert!(watchdog.check().all_advanced());
        assert_eq!(heartbeats.values(), [2, 2]);
        assert_eq!(beats[1].name(), "builder-0");
    }

    #[test]
    fn beats_from_other_threads_are_seen() {
        let (heartbeats, beats) = Heartbeats::new(["a", "b"]);
        let mut checker = heartbeats.checker();
        let threads: Vec<_> = beats
            .into_iter()
            .map(|mut beat| std::thread::spawn(move || (0..1000).for_each(|_| beat.beat())))
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(checker.check().all_advanced());
        assert_eq!(heartbeats.values(), [1000, 1000]);
    }

    #[test]
    #[should_panic(expected = "named twice")]
    fn duplicate_names_are_refused() {
        let _ = Heartbeats::new(["a", "a"]);
    }
}
