//! When the open window closes across `N` intakes: the policy, sans-IO.
//!
//! One intake (the leader, intake 0) owns the [`WindowClock`] and decides every close; the
//! others (followers) apply the leader's closes in window order. The driver carries the
//! closes from the leader to the followers (the daemon: a board in shared memory) and tells
//! each side what it sees; these types decide and keep count. `docs/daemon.md`, "The window
//! clock across intakes", describes the daemon's side.
//!
//! The rules:
//! - The leader closes when the window is due ([`WindowClock`]: its deadline passed), full
//!   (some intake reports `wants_close`), or drained (the driver has stopped taking input
//!   and every intake has handled what it took), but only while none of its own close
//!   markers is still waiting for ring room and no follower is [`CLOSE_LAG_MAX`] or more
//!   closes behind. So no intake ever holds more than [`CLOSE_LAG_MAX`] closes it has not
//!   applied, and a board of that many slots (or more) is never overrun.
//! - The drain's close is the last: the leader closes nothing after it.
//! - A follower applies the next close only once its previous close markers are out.

use crate::clock::{WindowClock, WindowClose};

/// The leader does not close while a follower has this many of its closes to apply.
pub const CLOSE_LAG_MAX: u64 = 8;

/// What the leader sees when it polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    pub now_ns: u64,
    /// Some intake's window is full (its own `wants_close`, or another intake's request).
    pub full: bool,
    /// The drain asked for the last close and every intake's input is done.
    pub drain: bool,
    /// The leader's own close markers still wait for ring room.
    pub markers_pending: bool,
    /// The most closes any follower has still to apply ([`lag_of`]).
    pub lag: u64,
}

/// Intake 0's side: the window clock and when it may close.
///
/// Call order: [`CloseLeader::new`]; then [`CloseLeader::poll`] once per loop iteration;
/// each close it returns is applied to the leader's own intake and published to the
/// followers.
#[derive(Debug, Clone)]
pub struct CloseLeader {
    clock: WindowClock,
    final_window_id: Option<u64>,
}

impl CloseLeader {
    pub fn new(window_ns: u64, first_window_id: u64, now_ns: u64) -> CloseLeader {
        CloseLeader { clock: WindowClock::new(window_ns, first_window_id, now_ns), final_window_id: None }
    }

    /// The open window's id.
    pub fn window_id(&self) -> u64 {
        self.clock.window_id()
    }

    /// When the open window is due.
    pub fn deadline_ns(&self) -> u64 {
        self.clock.deadline_ns()
    }

    /// The drain's close, once made: no window closes after it.
    pub fn final_window_id(&self) -> Option<u64> {
        self.final_window_id
    }

    /// The close to make now, if any (see the module doc for the rules). Reason `Full` when
    /// `view.full`, else `Deadline` when due, else `Drain`.
    pub fn poll(&mut self, view: &LeaderView) -> Option<WindowClose> {
        if self.final_window_id.is_some() {
            return None;
        }
        let due = view.full || view.drain || view.now_ns >= self.clock.deadline_ns();
        if !due || view.markers_pending || view.lag >= CLOSE_LAG_MAX {
            return None;
        }
        let close = self.clock.close_now(view.now_ns, view.full);
        if view.drain {
            self.final_window_id = Some(close.window_id);
        }
        Some(close)
    }
}

/// The most closes any follower still has to apply: `latest` is the newest close the leader
/// published, `applied` each follower's newest applied close.
pub fn lag_of(latest: u64, applied: impl IntoIterator<Item = u64>) -> u64 {
    applied.into_iter().map(|a| latest.saturating_sub(a)).max().unwrap_or(0)
}

/// A follower's side: which of the leader's closes to apply next.
///
/// Call order: [`CloseFollower::new`]; then, each loop iteration, while
/// [`CloseFollower::next`] names a window, fetch that close, apply it to the intake and
/// call [`CloseFollower::applied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFollower {
    applied: u64,
}

impl CloseFollower {
    /// A follower whose open window is `first_window_id` (nothing applied yet).
    pub fn new(first_window_id: u64) -> CloseFollower {
        CloseFollower { applied: first_window_id - 1 }
    }

    /// The newest close applied (`first_window_id - 1` before the first).
    pub fn applied_window_id(&self) -> u64 {
        self.applied
    }

    /// The window whose close to apply now, given the newest published close and whether
    /// this intake's previous close markers still wait for ring room.
    pub fn next(&self, latest: u64, markers_pending: bool) -> Option<u64> {
        (self.applied < latest && !markers_pending).then_some(self.applied + 1)
    }

    /// The close of `window_id` was applied.
    ///
    /// # Panics
    /// If it is not the next close in order.
    pub fn applied(&mut self, window_id: u64) {
        assert_eq!(window_id, self.applied + 1, "closes apply in window order");
        self.applied = window_id;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::window::CloseReason;

    const WINDOW_NS: u64 = 1_000;

    /// One simulated step: time passes, a follower applies what it can, a marker gets room.
    #[derive(Debug, Clone)]
    enum Step {
        Tick(u64),
        Full,
        Follow(usize),
        LeaderMarkers(bool),
        FollowerMarkers(usize, bool),
        Drain,
    }

    fn step(followers: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3 * WINDOW_NS).prop_map(Step::Tick),
            1 => Just(Step::Full),
            4 => (0..followers).prop_map(Step::Follow),
            1 => any::<bool>().prop_map(Step::LeaderMarkers),
            1 => ((0..followers), any::<bool>()).prop_map(|(f, b)| Step::FollowerMarkers(f, b)),
            1 => Just(Step::Drain),
        ]
    }

    proptest! {
        /// Under any schedule: closes are consecutive, each follower applies every close once
        /// and in order, no follower lags by more than `CLOSE_LAG_MAX`, a deadline close is
        /// never early, a full close only comes when asked for, and nothing closes after the
        /// drain's close.
        #[test]
        fn closes_stay_in_order_and_within_the_lag(
            followers_n in 1usize..5,
            steps in proptest::collection::vec(step(4), 1..400),
        ) {
            let first = 7;
            let mut leader = CloseLeader::new(WINDOW_NS, first, 0);
            let mut followers = vec![CloseFollower::new(first); followers_n];
            let mut board: Vec<WindowClose> = Vec::new();
            let mut applied: Vec<Vec<u64>> = vec![Vec::new(); followers_n];
            let (mut now, mut full, mut drain) = (0u64, false, false);
            let mut leader_pending = false;
            let mut follower_pending = vec![false; followers_n];
            for s in steps {
                match s {
                    Step::Tick(dt) => now += dt,
                    Step::Full => full = true,
                    Step::Drain => drain = true,
                    Step::LeaderMarkers(p) => leader_pending = p,
                    Step::FollowerMarkers(f, p) => follower_pending[f % followers_n] = p,
                    Step::Follow(f) => {
                        let f = f % followers_n;
                        let latest = board.last().map_or(first - 1, |c| c.window_id);
                        while let Some(id) = followers[f].next(latest, follower_pending[f]) {
                            let close = board[(id - first) as usize];
                            prop_assert_eq!(close.window_id, id);
                            applied[f].push(id);
                            followers[f].applied(id);
                        }
                    }
                }
                let latest = board.last().map_or(first - 1, |c| c.window_id);
                let lag = lag_of(latest, followers.iter().map(CloseFollower::applied_window_id));
                prop_assert!(lag <= CLOSE_LAG_MAX, "a follower is {} closes behind", lag);
                let deadline = leader.deadline_ns();
                let view = LeaderView { now_ns: now, full, drain, markers_pending: leader_pending, lag };
                let final_before = leader.final_window_id();
                if let Some(close) = leader.poll(&view) {
                    prop_assert!(final_before.is_none(), "a close after the drain's");
                    prop_assert!(!leader_pending && lag < CLOSE_LAG_MAX);
                    prop_assert_eq!(close.window_id, latest + 1);
                    match close.reason {
                        CloseReason::Full => prop_assert!(full),
                        CloseReason::Deadline => prop_assert!(now >= deadline),
                        CloseReason::Drain => prop_assert!(drain && now < deadline),
                    }
                    if drain {
                        prop_assert_eq!(leader.final_window_id(), Some(close.window_id));
                    }
                    full = false;
                    board.push(close);
                } else if !leader_pending && lag < CLOSE_LAG_MAX && final_before.is_none() {
                    prop_assert!(!(full || drain || now >= deadline), "a due window stayed open");
                }
            }
            for (f, ids) in applied.iter().enumerate() {
                let want: Vec<u64> = (first..first + ids.len() as u64).collect();
                prop_assert_eq!(ids, &want, "follower {} applied out of order", f);
            }
        }
    }

    #[test]
    fn a_lagging_follower_holds_the_leader_back() {
        let mut leader = CloseLeader::new(WINDOW_NS, 1, 0);
        let mut follower = CloseFollower::new(1);
        let mut latest = 0;
        for k in 1..=CLOSE_LAG_MAX {
            let view = LeaderView {
                now_ns: k * WINDOW_NS,
                full: false,
                drain: false,
                markers_pending: false,
                lag: lag_of(latest, [follower.applied_window_id()]),
            };
            latest = leader.poll(&view).expect("due and within the lag").window_id;
        }
        let view = |lag| LeaderView {
            now_ns: 100 * WINDOW_NS,
            full: true,
            drain: false,
            markers_pending: false,
            lag,
        };
        assert_eq!(leader.poll(&view(lag_of(latest, [follower.applied_window_id()]))), None);
        follower.applied(1);
        let close = leader.poll(&view(lag_of(latest, [follower.applied_window_id()]))).unwrap();
        assert_eq!((close.window_id, close.reason), (CLOSE_LAG_MAX + 1, CloseReason::Full));
    }
}
