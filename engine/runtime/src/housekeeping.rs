//! When a run loop does its housekeeping (metrics publish, heartbeat).
//!
//! Reading the clock costs tens of nanoseconds, so [`HousekeepingTimer::due`] looks at it
//! only every `check_every_iters` loop iterations; [`HousekeepingTimer::due_at`] takes `now`
//! from the caller (sans-IO, used by tests and by loops that read the clock anyway).

use std::time::{Duration, Instant};

/// Default housekeeping period: metrics and heartbeats ten times a second.
pub const PERIOD_DEFAULT: Duration = Duration::from_millis(100);

/// Default number of loop iterations between two clock reads.
pub const CHECK_EVERY_ITERS_DEFAULT: u32 = 1024;

/// A periodic deadline for housekeeping.
#[derive(Clone, Debug)]
pub struct HousekeepingTimer {
    period: Duration,
    next: Instant,
    check_every_iters: u32,
    countdown: u32,
}

impl HousekeepingTimer {
    /// First due one `period` after `now`.
    ///
    /// # Panics
    /// If `period` is zero or `check_every_iters` is zero.
    pub fn new(period: Duration, check_every_iters: u32, now: Instant) -> Self {
        assert!(!period.is_zero(), "housekeeping period must be positive");
        assert!(check_every_iters > 0, "check_every_iters must be at least 1");
        Self { period, next: now + period, check_every_iters, countdown: check_every_iters }
    }

    /// True when housekeeping is due; reads the clock every `check_every_iters` calls.
    /// A loop that parks runs few iterations: use a small `check_every_iters` for it.
    #[inline]
    pub fn due(&mut self) -> bool {
        self.countdown -= 1;
        if self.countdown > 0 {
            return false;
        }
        self.countdown = self.check_every_iters;
        self.due_at(Instant::now())
    }

    /// True when `now` reached the deadline; the next deadline is one period later
    /// (skipping missed periods rather than bursting to catch up).
    pub fn due_at(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.period;
        if self.next <= now {
            self.next = now + self.period;
        }
        true
    }

    pub fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period_and_skips_missed_periods() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timer = HousekeepingTimer::new(ms(100), 1, t0);
        assert!(!timer.due_at(t0 + ms(99)));
        assert!(timer.due_at(t0 + ms(100)));
        assert!(!timer.due_at(t0 + ms(150)));
        assert!(timer.due_at(t0 + ms(201)));
        // A long stall: one housekeeping, then the period restarts from now.
        assert!(timer.due_at(t0 + ms(1000)));
        assert!(!timer.due_at(t0 + ms(1099)));
        assert!(timer.due_at(t0 + ms(1100)));
    }

    #[test]
    fn due_reads_the_clock_only_every_n_calls() {
        // Already past the deadline (zero-length wait is impossible, so start in the past).
        let past = Instant::now() - Duration::from_secs(10);
        let mut timer = HousekeepingTimer::new(Duration::from_secs(1), 4, past);
        let calls: Vec<bool> = (0..8).map(|_| timer.due()).collect();
        assert_eq!(calls, [false, false, false, true, false, false, false, false]);
    }
}
