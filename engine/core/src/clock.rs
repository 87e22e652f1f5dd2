//! When windows close: the drift rule, in one place. `Window` runs one clock; the sharded
//! runtime runs one for all intakes.

use crate::window::CloseReason;

/// One closed window's timing, sent with every intake's close marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowClose {
    pub window_id: u64,
    pub opened_ns: u64,
    pub closed_ns: u64,
    pub reason: CloseReason,
}

impl WindowClose {
    /// The window that opens as this one closes.
    pub fn next_window_id(&self) -> u64 {
        self.window_id + 1
    }
}

/// The sans-IO window clock. Drift rule: a deadline
/// close less than one window late keeps the grid (`next = deadline + window_ns`); a close
/// late by a window or more, or an early (`Full`, `Drain`) close, restarts from now.
///
/// Call order: `new`; then `poll(now_ns, full)` whenever time passed or an intake reports
/// `wants_close` (`full` = some intake is full); `close_now` to close regardless (drain).
/// Each close returns the [`WindowClose`] every intake must get via `handle_window`.
#[derive(Debug, Clone)]
pub struct WindowClock {
    window_ns: u64,
    window_id: u64,
    opened_ns: u64,
    deadline_ns: u64,
}

impl WindowClock {
    pub fn new(window_ns: u64, first_window_id: u64, now_ns: u64) -> WindowClock {
        assert!(window_ns > 0, "window_ns must be positive");
        WindowClock {
            window_ns,
            window_id: first_window_id,
            opened_ns: now_ns,
            deadline_ns: now_ns.saturating_add(window_ns),
        }
    }

    /// The open window's id.
    pub fn window_id(&self) -> u64 {
        self.window_id
    }

    pub fn opened_ns(&self) -> u64 {
        self.opened_ns
    }

    /// When the open window is due.
    pub fn deadline_ns(&self) -> u64 {
        self.deadline_ns
    }

    /// Closes the open window if it is due (`full`, or `now_ns` at the deadline).
    pub fn poll(&mut self, now_ns: u64, full: bool) -> Option<WindowClose> {
        (full || now_ns >= self.deadline_ns).then(|| self.close_now(now_ns, full))
    }

    /// Closes the open window now. Reason as `Window::close`: `Full` if `full`, else
    /// `Deadline` if due, else `Drain`.
    pub fn close_now(&mut self, now_ns: u64, full: bool) -> WindowClose {
        debug_assert!(now_ns >= self.opened_ns, "time went backwards");
        let reason = if full {
            CloseReason::Full
        } else if now_ns >= self.deadline_ns {
            CloseReason::Deadline
        } else {
            CloseReason::Drain
        };
        let close =
            WindowClose { window_id: self.window_id, opened_ns: self.opened_ns, closed_ns: now_ns, reason };
        let on_grid =
            reason == CloseReason::Deadline && now_ns < self.deadline_ns.saturating_add(self.window_ns);
        self.deadline_ns =
            if on_grid { self.deadline_ns + self.window_ns } else { now_ns.saturating_add(self.window_ns) };
        self.window_id += 1;
        self.opened_ns = now_ns;
        close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{ClosedWindow, Window, WindowConfig};

    /// Same closes, same deadlines as the single-threaded `Window` under any schedule.
    #[test]
    fn matches_the_window_drift_rule() {
        let cfg = WindowConfig { window_ns: 1_000_000, ..WindowConfig::with_records_max(8) };
        let mut window = Window::new(cfg, 1, 0);
        let mut closed = ClosedWindow::new(&cfg);
        let mut clock = WindowClock::new(1_000_000, 1, 0);
        let mut rng = crate::sim::SplitMix64::new(7);
        let mut now = 0;
        for _ in 0..2_000 {
            now += rng.below(1_500_000);
            if rng.below(10) == 0 {
                window.close(now, &mut closed);
                let c = clock.close_now(now, false);
                assert_eq!(
                    (c.window_id, c.opened_ns, c.closed_ns, c.reason),
                    (closed.window_id, closed.opened_ns, closed.closed_ns, closed.reason)
                );
            } else {
                let a = window.poll_close(now, &mut closed);
                let c = clock.poll(now, false);
                assert_eq!(a, c.is_some());
                if let Some(c) = c {
                    assert_eq!(
                        (c.window_id, c.opened_ns, c.closed_ns, c.reason),
                        (closed.window_id, closed.opened_ns, closed.closed_ns, closed.reason)
                    );
                }
            }
            assert_eq!(window.deadline_ns(), clock.deadline_ns());
            assert_eq!(window.window_id(), clock.window_id());
        }
    }
}
