//! What a run loop does when an iteration found no work.
//!
//! [`IdleStrategy`] is the configured policy; [`Idler`] is the per-loop state machine the
//! run loop calls once per iteration with `did_work`. It answers with an [`IdleAction`]; the
//! driver carries it out ([`IdleAction::perform`] on a glommio executor, with the
//! [`ParkMode`] its role context gives,
//! [`IdleAction::perform_blocking`] on a plain thread). The idler itself does no I/O and
//! reads the clock only for a time-based spin budget ([`Idler::step`] takes `now` for tests).
//!
//! Config text forms (round-trip through `FromStr`/`Display`):
//! - `spin`: never sleep. Lowest latency, one core at 100 %.
//! - `spin-then-park:<budget>:<park>`: spin while idle for `<budget>` (a plain integer is a
//!   count of idle iterations, e.g. `20000`; a duration is a time budget, e.g. `50us`), then
//!   park for `<park>` per idle iteration until work shows up again.
//! - `park:<park>`: park on every idle iteration.
//!
//! Durations are an integer with a unit `ns`, `us`, `ms` or `s` (`100us`, `1ms`). A park is
//! between 1 ns and 1 s: longer parks would delay heartbeats and shutdown.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Longest accepted park: a parked loop still has to beat its heartbeat and see the stop flag.
pub const PARK_NS_MAX: u64 = 1_000_000_000;

/// Default number of loop iterations between two yields to the executor.
///
/// A yield on glommio is a task-level `yield_now` (about a hundred nanoseconds when nothing
/// else is runnable), so one every 64 iterations costs little and bounds how long a
/// spinning role keeps a role sharing its CPU waiting.
pub const YIELD_EVERY_ITERS_DEFAULT: u32 = 64;

/// How long a run loop keeps spinning before it parks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinBudget {
    /// Park after this many consecutive idle iterations.
    Iters(u64),
    /// Park once the loop has been idle for this many nanoseconds.
    Nanos(u64),
}

/// The configured idle policy of one run loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Busy-poll forever (with periodic yields to the executor).
    Spin,
    /// Busy-poll for `spin_budget`, then park `park_ns` per idle iteration.
    SpinThenPark { spin_budget: SpinBudget, park_ns: u64 },
    /// Park `park_ns` on every idle iteration.
    Park { park_ns: u64 },
}

/// What the run loop should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleAction {
    /// Work was done: loop again at once.
    Continue,
    /// No work: issue a spin hint and loop again.
    Spin,
    /// Let other tasks on this executor run, then loop again.
    Yield,
    /// Sleep this long, then loop again.
    Park(Duration),
}

/// Idle statistics, counted locally and read by the shard in housekeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleCounters {
    /// Idle iterations answered with a spin hint.
    pub spins_total: u64,
    /// Yields to the executor (busy or idle).
    pub yields_total: u64,
    /// Parks.
    pub parks_total: u64,
}

/// Per-run-loop idle state machine. Call [`Idler::idle`] once per loop iteration.
#[derive(Clone, Debug)]
pub struct Idler {
    strategy: IdleStrategy,
    yield_every_iters: u32,
    iters_since_yield: u32,
    idle_iters: u64,
    idle_since: Option<Instant>,
    counters: IdleCounters,
}

impl Idler {
    /// A fresh idler; yields every [`YIELD_EVERY_ITERS_DEFAULT`] iterations.
    pub fn new(strategy: IdleStrategy) -> Self {
        Self {
            strategy,
            yield_every_iters: YIELD_EVERY_ITERS_DEFAULT,
            iters_since_yield: 0,
            idle_iters: 0,
            idle_since: None,
            counters: IdleCounters::default(),
        }
    }

    /// Yield to the executor every `iters` iterations (busy or idle) instead of the default.
    ///
    /// # Panics
    /// If `iters` is zero.
    pub fn with_yield_every(mut self, iters: u32) -> Self {
        assert!(iters > 0, "yield_every_iters must be at least 1");
        self.yield_every_iters = iters;
        self
    }

    /// The configured strategy.
    pub fn strategy(&self) -> IdleStrategy {
        self.strategy
    }

    /// The local counters.
    pub fn counters(&self) -> IdleCounters {
        self.counters
    }

    /// Decides what to do after an iteration; reads the clock only for a time spin budget.
    #[inline]
    pub fn idle(&mut self, did_work: bool) -> IdleAction {
        self.decide(did_work, Instant::now)
    }

    /// Like [`Idler::idle`] with the time given by the caller.
    #[inline]
    pub fn step(&mut self, did_work: bool, now: Instant) -> IdleAction {
        self.decide(did_work, || now)
    }

    #[inline]
    fn decide(&mut self, did_work: bool, now: impl FnOnce() -> Instant) -> IdleAction {
        self.iters_since_yield += 1;
        if did_work {
            self.idle_iters = 0;
            self.idle_since = None;
            if self.iters_since_yield >= self.yield_every_iters {
                return self.yield_now();
            }
            return IdleAction::Continue;
        }
        let park_ns = match self.strategy {
            IdleStrategy::Spin => return self.spin_or_yield(),
            IdleStrategy::Park { park_ns } => park_ns,
            IdleStrategy::SpinThenPark { spin_budget, park_ns } => {
                let exhausted = match spin_budget {
                    SpinBudget::Iters(iters_max) => {
                        self.idle_iters = self.idle_iters.saturating_add(1);
                        self.idle_iters > iters_max
                    }
                    SpinBudget::Nanos(ns_max) => {
                        let now = now();
                        let since = *self.idle_since.get_or_insert(now);
                        now.saturating_duration_since(since) >= Duration::from_nanos(ns_max)
                    }
                };
                if !exhausted {
                    return self.spin_or_yield();
                }
                park_ns
            }
        };
        // Sleeping gives the executor to everyone else, so it counts as a yield.
        self.iters_since_yield = 0;
        self.counters.parks_total += 1;
        IdleAction::Park(Duration::from_nanos(park_ns))
    }

    #[inline]
    fn spin_or_yield(&mut self) -> IdleAction {
        if self.iters_since_yield >= self.yield_every_iters {
            return self.yield_now();
        }
        self.counters.spins_total += 1;
        IdleAction::Spin
    }

    #[inline]
    fn yield_now(&mut self) -> IdleAction {
        self.iters_since_yield = 0;
        self.counters.yields_total += 1;
        IdleAction::Yield
    }
}

/// How a park is carried out on a glommio executor.
///
/// glommio 0.9 can lose the wake-up of a timer sleep: the executor thread stays blocked in
/// `io_uring_enter` with the timer expired (glommio issues #326 and #547; reproduced on our
/// VM within seconds with a 1-3 ms preempt timer, see `examples/glommio_timer_stall.rs` and
/// `docs/runtime.md`; seen once in the daemon with intake and builder sharing a CPU). So no
/// role of one task queue parks on a glommio timer: a role alone on its executor sleeps the
/// thread, and roles sharing an executor's queue sleep the thread together, only once every
/// one of them wants to park. Only roles in task queues of their own use the glommio timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkMode {
    /// `glommio::timer::sleep`: the other tasks of the executor keep running.
    ExecutorTimer,
    /// `nanosleep` of the executor thread: stops every task of the executor for the park.
    ThreadSleep,
    /// Role `slot` of `roles` (at most [`TOGETHER_ROLES_MAX`]) sharing the executor's task
    /// queue: a park yields to the others until all of them park, and then the thread sleeps
    /// for the shortest of their parks ([`ParkTogether`]).
    Together { slot: u8, roles: u8 },
}

/// Most roles that can park together on one executor.
pub const TOGETHER_ROLES_MAX: usize = 32;

/// The "park together" state of one executor's roles: which of them want to park, and for
/// how long. Sans-IO; [`IdleAction::perform`] keeps one per executor thread.
#[derive(Clone, Copy, Debug)]
pub struct ParkTogether {
    wanting: u32,
    park_ns: [u64; TOGETHER_ROLES_MAX],
}

impl Default for ParkTogether {
    fn default() -> Self {
        ParkTogether { wanting: 0, park_ns: [0; TOGETHER_ROLES_MAX] }
    }
}

impl ParkTogether {
    /// Role `slot` did work or is still spinning: it does not want to park.
    #[inline]
    pub fn busy(&mut self, slot: u8) {
        self.wanting &= !(1u32 << slot);
    }

    /// Role `slot` of `roles` wants to park for `park`. Returns the sleep once every role
    /// wants to (the shortest of their parks, so none oversleeps) and starts a new round:
    /// after the sleep each role looks for work once before the thread sleeps again.
    pub fn park(&mut self, slot: u8, roles: u8, park: Duration) -> Option<Duration> {
        debug_assert!(slot < roles && roles as usize <= TOGETHER_ROLES_MAX);
        self.wanting |= 1u32 << slot;
        self.park_ns[slot as usize] = park.as_nanos() as u64;
        let all = if roles as usize == TOGETHER_ROLES_MAX { u32::MAX } else { (1u32 << roles) - 1 };
        if self.wanting & all != all {
            return None;
        }
        self.wanting = 0;
        let shortest = self.park_ns[..roles as usize].iter().copied().min().unwrap_or(0);
        Some(Duration::from_nanos(shortest))
    }
}

thread_local! {
    /// One executor per thread, so this is the executor's [`ParkTogether`].
    static TOGETHER: std::cell::Cell<ParkTogether> = std::cell::Cell::new(ParkTogether::default());
}

fn together<R>(f: impl FnOnce(&mut ParkTogether) -> R) -> R {
    TOGETHER.with(|cell| {
        let mut state = cell.get();
        let r = f(&mut state);
        cell.set(state);
        r
    })
}

impl IdleAction {
    /// Carries the action out on a glommio executor: `Spin` is a spin hint, `Yield` a
    /// task-level yield (other tasks of the queue run; if the executor's preempt timer has
    /// fired, other task queues, timers and I/O run too), `Park` sleeps as `park_mode` says
    /// (take it from [`crate::exec::RoleContext::park_mode`]).
    ///
    /// # Panics
    /// `Park` with [`ParkMode::ExecutorTimer`] panics outside a glommio executor.
    #[inline]
    pub async fn perform(self, park_mode: ParkMode) {
        if let ParkMode::Together { slot, .. } = park_mode
            && matches!(self, IdleAction::Continue | IdleAction::Spin)
        {
            together(|t| t.busy(slot));
        }
        match self {
            IdleAction::Continue => {}
            IdleAction::Spin => std::hint::spin_loop(),
            IdleAction::Yield => glommio::executor().yield_now().await,
            IdleAction::Park(duration) => match park_mode {
                ParkMode::ExecutorTimer => glommio::timer::sleep(duration).await,
                ParkMode::ThreadSleep => std::thread::sleep(duration),
                ParkMode::Together { slot, roles } => {
                    if let Some(sleep) = together(|t| t.park(slot, roles, duration)) {
                        std::thread::sleep(sleep);
                    }
                    glommio::executor().yield_now().await;
                }
            },
        }
    }

    /// Carries the action out on a plain thread: `Yield` is `sched_yield`, `Park` a sleep.
    #[inline]
    pub fn perform_blocking(self) {
        match self {
            IdleAction::Continue => {}
            IdleAction::Spin => std::hint::spin_loop(),
            IdleAction::Yield => std::thread::yield_now(),
            IdleAction::Park(duration) => std::thread::sleep(duration),
        }
    }
}

/// A refused idle strategy text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdleParseError {
    #[error(
        "unknown idle strategy {0:?}: expected `spin`, `spin-then-park:<budget>:<park>` or `park:<park>`"
    )]
    UnknownForm(String),
    #[error("bad duration {0:?}: expected an integer with a unit ns, us, ms or s (e.g. `100us`)")]
    BadDuration(String),
    #[error("bad spin budget {0:?}: expected an iteration count (`20000`) or a duration (`50us`)")]
    BadBudget(String),
    #[error("park of {0} ns is out of range 1 ns ..= 1 s")]
    ParkOutOfRange(u64),
    #[error("spin budget must be at least 1 iteration or 1 ns")]
    ZeroBudget,
}

impl FromStr for IdleStrategy {
    type Err = IdleParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().split(':');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match (head, rest.as_slice()) {
            ("spin", []) => Ok(IdleStrategy::Spin),
            ("park", [park]) => Ok(IdleStrategy::Park { park_ns: parse_park(park)? }),
            ("spin-then-park", [budget, park]) => {
                let spin_budget = if !budget.is_empty() && budget.bytes().all(|b| b.is_ascii_digit()) {
                    SpinBudget::Iters(
                        budget.parse().map_err(|_| IdleParseError::BadBudget(budget.to_string()))?,
                    )
                } else {
                    SpinBudget::Nanos(
                        parse_duration_ns(budget)
                            .map_err(|_| IdleParseError::BadBudget(budget.to_string()))?,
                    )
                };
                if matches!(spin_budget, SpinBudget::Iters(0) | SpinBudget::Nanos(0)) {
                    return Err(IdleParseError::ZeroBudget);
                }
                Ok(IdleStrategy::SpinThenPark { spin_budget, park_ns: parse_park(park)? })
            }
            _ => Err(IdleParseError::UnknownForm(text.to_string())),
        }
    }
}

impl fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IdleStrategy::Spin => f.write_str("spin"),
            IdleStrategy::Park { park_ns } => write!(f, "park:{}", DurationText(park_ns)),
            IdleStrategy::SpinThenPark { spin_budget, park_ns } => {
                f.write_str("spin-then-park:")?;
                match spin_budget {
                    SpinBudget::Iters(iters) => write!(f, "{iters}")?,
                    SpinBudget::Nanos(ns) => write!(f, "{}", DurationText(ns))?,
                }
                write!(f, ":{}", DurationText(park_ns))
            }
        }
    }
}

fn parse_park(text: &str) -> Result<u64, IdleParseError> {
    let park_ns = parse_duration_ns(text)?;
    if park_ns == 0 || park_ns > PARK_NS_MAX {
        return Err(IdleParseError::ParkOutOfRange(park_ns));
    }
    Ok(park_ns)
}

/// Parses `<integer><unit>` with unit `ns`, `us`, `ms` or `s` into nanoseconds.
pub fn parse_duration_ns(text: &str) -> Result<u64, IdleParseError> {
    let bad = || IdleParseError::BadDuration(text.to_string());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let value: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(bad()),
    };
    value.checked_mul(scale).ok_or_else(bad)
}

/// Formats nanoseconds with the largest unit that divides them exactly.
struct DurationText(u64);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        for (scale, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
            if ns != 0 && ns.is_multiple_of(scale) {
                return write!(f, "{}{unit}", ns / scale);
            }
        }
        write!(f, "{ns}ns")
    }
}

/// Lets the other tasks of this glommio executor run, then resumes (a task-level yield:
/// about a hundred nanoseconds when nothing else is runnable). For long work paced in
/// slices (`fpn_engine::pace`).
pub async fn yield_to_executor() {
    glommio::executor().yield_now().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for (text, strategy) in [
            ("spin", IdleStrategy::Spin),
            ("park:1ms", IdleStrategy::Park { park_ns: 1_000_000 }),
            (
                "spin-then-park:20000:100us",
                IdleStrategy::SpinThenPark { spin_budget: SpinBudget::Iters(20_000), park_ns: 100_000 },
            ),
            (
                "spin-then-park:50us:1500ns",
                IdleStrategy::SpinThenPark { spin_budget: SpinBudget::Nanos(50_000), park_ns: 1_500 },
            ),
            ("park:1s", IdleStrategy::Park { park_ns: 1_000_000_000 }),
        ] {
            assert_eq!(text.parse::<IdleStrategy>(), Ok(strategy), "{text}");
            assert_eq!(strategy.to_string(), text);
        }
        // Non-canonical input parses; display is canonical.
        assert_eq!("park:1000us".parse::<IdleStrategy>().unwrap().to_string(), "park:1ms");
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        use IdleParseError::*;
        let cases: [(&str, IdleParseError); 10] = [
            ("", UnknownForm(String::new())),
            ("spinning", UnknownForm("spinning".into())),
            ("spin:1", UnknownForm("spin:1".into())),
            ("park", UnknownForm("park".into())),
            ("park:1", BadDuration("1".into())),
            ("park:ms", BadDuration("ms".into())),
            ("park:0ns", ParkOutOfRange(0)),
            ("park:2s", ParkOutOfRange(2_000_000_000)),
            ("spin-then-park:abc:1ms", BadBudget("abc".into())),
            ("spin-then-park:0:1ms", ZeroBudget),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<IdleStrategy>(), Err(error), "{text:?}");
        }
        assert!(matches!("park:99999999999999999999s".parse::<IdleStrategy>(), Err(BadDuration(_))));
        assert!(matches!("park:18446744073709551615s".parse::<IdleStrategy>(), Err(BadDuration(_))));
    }

    #[test]
    fn spin_yields_periodically_even_when_busy() {
        let mut idler = Idler::new(IdleStrategy::Spin).with_yield_every(4);
        let t = Instant::now();
        let actions: Vec<_> = (0..8).map(|i| idler.step(i % 2 == 0, t)).collect();
        use IdleAction::*;
        assert_eq!(actions, [Continue, Spin, Continue, Yield, Continue, Spin, Continue, Yield]);
        assert_eq!(idler.counters(), IdleCounters { spins_total: 2, yields_total: 2, parks_total: 0 });
    }

    #[test]
    fn spin_then_park_by_iterations_parks_after_budget_and_resets_on_work() {
        let strategy = IdleStrategy::SpinThenPark { spin_budget: SpinBudget::Iters(3), park_ns: 100_000 };
        let mut idler = Idler::new(strategy).with_yield_every(1000);
        let t = Instant::now();
        let park = IdleAction::Park(Duration::from_micros(100));
        let seq: Vec<_> = (0..5).map(|_| idler.step(false, t)).collect();
        assert_eq!(seq, [IdleAction::Spin, IdleAction::Spin, IdleAction::Spin, park, park]);
        assert_eq!(idler.step(true, t), IdleAction::Continue);
        assert_eq!(idler.step(false, t), IdleAction::Spin);
    }

    #[test]
    fn spin_then_park_by_time_uses_the_given_clock() {
        let strategy = IdleStrategy::SpinThenPark { spin_budget: SpinBudget::Nanos(1_000), park_ns: 5_000 };
        let mut idler = Idler::new(strategy).with_yield_every(1000);
        let t0 = Instant::now();
        assert_eq!(idler.step(false, t0), IdleAction::Spin);
        assert_eq!(idler.step(false, t0 + Duration::from_nanos(999)), IdleAction::Spin);
        assert_eq!(
            idler.step(false, t0 + Duration::from_nanos(1_000)),
            IdleAction::Park(Duration::from_micros(5))
        );
        // Work resets the idle streak: the budget starts again from the next idle iteration.
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(idler.step(true, t1), IdleAction::Continue);
        assert_eq!(idler.step(false, t1), IdleAction::Spin);
        assert_eq!(idler.step(false, t1 + Duration::from_nanos(500)), IdleAction::Spin);
    }

    #[test]
    fn park_parks_every_idle_iteration_and_counts() {
        let mut idler = Idler::new(IdleStrategy::Park { park_ns: 1_000_000 }).with_yield_every(2);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(idler.step(false, t), IdleAction::Park(Duration::from_millis(1)));
        }
        assert_eq!(idler.step(true, t), IdleAction::Continue);
        assert_eq!(idler.step(true, t), IdleAction::Yield);
        assert_eq!(idler.counters(), IdleCounters { spins_total: 0, yields_total: 1, parks_total: 3 });
    }

    #[test]
    fn roles_park_together_only_when_all_want_to_and_for_the_shortest_park() {
        let ms = Duration::from_millis;
        let mut t = ParkTogether::default();
        assert_eq!(t.park(0, 3, ms(10)), None);
        assert_eq!(t.park(2, 3, ms(1)), None);
        // Role 0 finds work again: role 1's park does not complete the set.
        t.busy(0);
        assert_eq!(t.park(1, 3, ms(5)), None);
        assert_eq!(t.park(0, 3, ms(10)), Some(ms(1)), "all three: the shortest park");
        // A new round: every role asks again after the sleep.
        assert_eq!(t.park(1, 3, ms(5)), None);
        assert_eq!(t.park(2, 3, ms(2)), None);
        assert_eq!(t.park(0, 3, ms(10)), Some(ms(2)));
        // A slot parking twice is still one role.
        let mut t = ParkTogether::default();
        assert_eq!(t.park(1, 2, ms(3)), None);
        assert_eq!(t.park(1, 2, ms(3)), None);
        assert_eq!(t.park(0, 2, ms(4)), Some(ms(3)));
        // The widest executor.
        let mut t = ParkTogether::default();
        let n = TOGETHER_ROLES_MAX as u8;
        for slot in 0..n - 1 {
            assert_eq!(t.park(slot, n, ms(1)), None);
        }
        assert_eq!(t.park(n - 1, n, ms(1)), Some(ms(1)));
    }
}
