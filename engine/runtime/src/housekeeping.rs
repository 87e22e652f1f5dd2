//! When a run loop does its housekeeping (metrics publish, heartbeat).
//!
//! Sans-IO: [`HousekeepingTimer::due_at`] takes `now_ns` from the caller, which reads the
//! clock once per loop iteration anyway ([`crate::clock::now_ns`]); the timer adds no clock
//! read of its own.

use std::time::Duration;

/// Default housekeeping period: metrics and heartbeats ten times a second.
pub const PERIOD_DEFAULT: Duration = Duration::from_millis(100);

/// A periodic deadline for housekeeping.
#[derive(Clone, Debug)]
pub struct HousekeepingTimer {
    period_ns: u64,
    next_ns: u64,
}

impl HousekeepingTimer {
    /// First due one `period` after `now_ns`.
    ///
    /// # Panics
    /// If `period` is zero.
    pub fn new(period: Duration, now_ns: u64) -> Self {
        assert!(!period.is_zero(), "housekeeping period must be positive");
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Self { period_ns, next_ns: now_ns.saturating_add(period_ns) }
    }

    /// True when `now_ns` reached the deadline; the next deadline is one period later
    /// (skipping missed periods rather than bursting to catch up).
    #[inline]
    pub fn due_at(&mut self, now_ns: u64) -> bool {
        if now_ns < self.next_ns {
            return false;
        }
        self.next_ns = self.next_ns.saturating_add(self.period_ns);
        if self.next_ns <= now_ns {
            self.next_ns = now_ns.saturating_add(self.period_ns);
        }
        true
    }

    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period_and_skips_missed_periods() {
        let ms = |m: u64| m * 1_000_000;
        let t0 = 5_000;
        let mut timer = HousekeepingTimer::new(Duration::from_millis(100), t0);
        assert!(!timer.due_at(t0 + ms(99)));
        assert!(timer.due_at(t0 + ms(100)));
        assert!(!timer.due_at(t0 + ms(150)));
        assert!(timer.due_at(t0 + ms(201)));
        // A long stall: one housekeeping, then the period restarts from now.
        assert!(timer.due_at(t0 + ms(1000)));
        assert!(!timer.due_at(t0 + ms(1099)));
        assert!(timer.due_at(t0 + ms(1100)));
    }
}
