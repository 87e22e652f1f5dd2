//! The one run loop every role runs (`docs/runtime.md`): read the clock once, drain input
//! rings, call the sans-IO core, publish; long work in slices; housekeeping (metrics publish,
//! heartbeat) when the loop's timer says so; then idle with the role's strategy.
//!
//! A role is a type that implements [`RoleLoop`] (its context is its fields, its step is
//! [`RoleLoop::step`], its metrics are published in [`RoleLoop::housekeep`]); [`spec`] turns
//! it into the executor's task.

use std::time::Duration;

use fpn_engine::Pace;
use fpn_runtime::clock::now_ns;
use fpn_runtime::exec::{RoleContext, RoleSpec};
use fpn_runtime::heartbeat::Heartbeat;
use fpn_runtime::housekeeping::HousekeepingTimer;
use fpn_runtime::idle::{IdleStrategy, Idler};
use fpn_runtime::metrics::{Labels, MetricDesc, ShardPublisher};

use super::alloc_probe;

/// Messages a core handles from one input ring per loop iteration, at most.
pub const BUDGET: usize = 256;
/// Housekeeping period: metrics publish and heartbeat.
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(100);
/// How long a hot role's long work runs before it yields to the executor, so the roles
/// sharing its CPU (above all the intake, reading its socket) get a turn (`docs/runtime.md`,
/// "Slices").
pub const SLICE: Duration = Duration::from_micros(50);

pub static RING_TRANSIT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_ring_transit_latency_seconds",
    "From push into a ring (stamp) until the consumer popped it, by ring.",
);

/// What every loop has besides its core: idle strategy, housekeeping, metrics, heartbeat.
pub struct LoopKit {
    pub idler: Idler,
    pub housekeeping: HousekeepingTimer,
    pub publisher: ShardPublisher,
    pub heartbeat: Heartbeat,
    pub none: Labels,
}

impl LoopKit {
    pub fn new(idle: IdleStrategy, publisher: ShardPublisher, heartbeat: Heartbeat) -> LoopKit {
        LoopKit {
            idler: Idler::new(idle),
            housekeeping: HousekeepingTimer::new(HOUSEKEEPING_PERIOD, now_ns()),
            publisher,
            heartbeat,
            none: Labels::none(),
        }
    }
}

/// One role's part of the loop; [`run_role`] is the loop.
// The futures of a role run on its own executor thread; nothing needs them to be `Send`.
#[allow(async_fn_in_trait)]
pub trait RoleLoop {
    /// Whether the loop body is inside the no-allocation probe (the hot roles).
    const HOT: bool = true;

    fn kit(&mut self) -> &mut LoopKit;

    /// One iteration's work at `now` (ns, [`now_ns`]); whether anything was done.
    fn step(&mut self, now: u64) -> bool;

    /// Publish metrics and beat the heartbeat.
    fn housekeep(&mut self);

    /// After the stop flag, before the task ends.
    fn finish(&mut self) {}

    /// Long work `step` left behind (a staged window to build, a window to finalize), run
    /// in slices: `pace` yields to the executor between them. Whether there was any.
    async fn slow(&mut self, _pace: &mut SlicePace) -> bool {
        false
    }
}

/// The daemon's [`Pace`]: at a pace point, once [`SLICE`] has passed since the slice began,
/// yields to the executor. The allocation probe is off while other tasks run. A slice
/// begins at the first pace point after [`SlicePace::start`], so an iteration without long
/// work reads no clock for it.
pub struct SlicePace {
    slice_ns: u64,
    started_ns: u64,
    hot: bool,
}

impl SlicePace {
    const UNSTARTED: u64 = u64::MAX;

    pub fn new(slice: Duration, hot: bool) -> SlicePace {
        SlicePace { slice_ns: slice.as_nanos() as u64, started_ns: Self::UNSTARTED, hot }
    }

    /// The next pace point begins a new slice.
    pub fn start(&mut self) {
        self.started_ns = Self::UNSTARTED;
    }
}

impl Pace for SlicePace {
    async fn point(&mut self) {
        let now = now_ns();
        if self.started_ns == Self::UNSTARTED {
            self.started_ns = now;
            return;
        }
        if now.saturating_sub(self.started_ns) < self.slice_ns {
            return;
        }
        if self.hot {
            alloc_probe::leave();
        }
        fpn_runtime::idle::yield_to_executor().await;
        if self.hot {
            alloc_probe::enter();
        }
        self.started_ns = now_ns();
    }
}

/// The loop: until the stop flag, one clock read, `step`, `slow`, housekeeping when due,
/// idle.
pub async fn run_role<R: RoleLoop>(mut role: R, ctx: RoleContext) {
    role.housekeep();
    let mut pace = SlicePace::new(SLICE, R::HOT);
    while !ctx.stop.is_stopped() {
        if R::HOT {
            alloc_probe::enter();
        }
        let now = now_ns();
        let mut did_work = role.step(now);
        pace.start();
        did_work |= role.slow(&mut pace).await;
        if role.kit().housekeeping.due_at(now) {
            role.housekeep();
        }
        let action = role.kit().idler.idle(did_work);
        if R::HOT {
            alloc_probe::leave();
        }
        action.perform(ctx.park_mode).await;
    }
    role.finish();
}

/// The executor task of `role`, named `name`.
pub fn spec<R: RoleLoop + Send + 'static>(name: &str, role: R) -> RoleSpec {
    RoleSpec::new(name.to_string(), move |ctx| run_role(role, ctx))
}
