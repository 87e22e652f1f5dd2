//! The daemon's one clock: [`now_ns`].
//!
//! Every stamp the daemon compares across cores (a ring's send stamp, a record's receive
//! time, a window's close) comes from here, so they share one origin. A run loop reads it
//! once per iteration and hands the value to everything in that iteration.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<(Instant, u64)> = OnceLock::new();

/// Nanoseconds since the Unix epoch (as `rx_ns` on the wire), advancing with the monotonic
/// clock: the wall clock is read once, at the first call, and only the monotonic time since
/// then is added. Every thread reads the same clock, so stamps compare across cores, and a
/// wall-clock step never makes a latency negative.
#[inline]
pub fn now_ns() -> u64 {
    let (start, wall_ns) = *EPOCH.get_or_init(|| {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (Instant::now(), u64::try_from(wall.as_nanos()).unwrap_or(0))
    });
    wall_ns.saturating_add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_and_starts_near_the_wall_clock() {
        let a = now_ns();
        let wall =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let b = now_ns();
        assert!(b >= a);
        assert!(wall.abs_diff(a) < 60_000_000_000, "now_ns {a} is far from the wall clock {wall}");
    }
}
