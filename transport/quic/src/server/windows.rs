//! Which published windows go to a session: those it had a record accepted in (and all of
//! them with `subscribe_all`). Written once for every transport of `fpn/1`.

use std::collections::VecDeque;

use fpn_wire::Receipt;

/// Windows with accepted records remembered per session, awaiting their results.
pub const SESSION_WINDOWS_MAX: usize = 64;

/// The windows a session had records accepted in, whose results are still to come, oldest
/// first; past [`SESSION_WINDOWS_MAX`] the oldest is forgotten.
#[derive(Debug, Default)]
pub struct SessionWindows(VecDeque<u64>);

impl SessionWindows {
    /// Notes the window of an accepted record's receipt.
    pub fn note(&mut self, receipt: &Receipt) {
        let w = &mut self.0;
        if receipt.status.is_ok() && receipt.window_id != 0 && w.back() != Some(&receipt.window_id) {
            if w.len() == SESSION_WINDOWS_MAX {
                w.pop_front();
            }
            w.push_back(receipt.window_id);
        }
    }

    /// Window `window_id` was published (windows are published in order): whether the
    /// session had a record in it. Older windows it remembers are forgotten.
    pub fn take(&mut self, window_id: u64) -> bool {
        let w = &mut self.0;
        while w.front().is_some_and(|&id| id < window_id) {
            w.pop_front();
        }
        let had_records = w.front() == Some(&window_id);
        if had_records {
            w.pop_front();
        }
        had_records
    }
}

#[cfg(test)]
mod tests {
    use fpn_wire::Reason;

    use super::*;

    fn receipt(window_id: u64, status: Result<(), Reason>) -> Receipt {
        Receipt { window_id, status, ..Receipt::frame_refused(Reason::Overloaded, 0) }
    }

    #[test]
    fn a_session_gets_the_windows_it_had_accepted_records_in() {
        let mut w = SessionWindows::default();
        for (id, status) in [(3, Ok(())), (3, Ok(())), (4, Err(Reason::ZeroAmount)), (5, Ok(())), (0, Ok(()))]
        {
            w.note(&receipt(id, status));
        }
        assert!(!w.take(2));
        assert!(w.take(3));
        assert!(!w.take(3), "once");
        assert!(!w.take(4), "refused records join no window");
        assert!(w.take(5));
        for id in 1..=SESSION_WINDOWS_MAX as u64 + 1 {
            w.note(&receipt(id, Ok(())));
        }
        assert!(!w.take(1), "forgotten past the bound");
        assert!(w.take(2));
    }
}
