//! Role `build_worker<i>`: builds whole windows its builder shard hands it
//! (`fpn_engine::BuildWorker`), in slices like the shard's own builds, and hands them back.
//! Worker `i` serves shard `i / builder.workers`.

use fpn_engine::BuildWorker;
use fpn_engine::shard::ShardWindow;
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::MetricDesc;

use crate::cores::Role;
use crate::run::links::{RxQ, TxQ};
use crate::run::role::{LoopKit, RoleLoop, SlicePace};
use crate::run::topology::Wiring;

pub static BUILD_WINDOWS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_build_windows_total",
    "Windows a build worker built for its shard (the shard builds the rest itself).",
);

pub static METRICS: [&MetricDesc; 1] = [&BUILD_WINDOWS_TOTAL];

pub struct BuildWorkerRole {
    core: BuildWorker,
    input: RxQ<Box<ShardWindow>>,
    out: TxQ<Box<ShardWindow>>,
    kit: LoopKit,
}

impl BuildWorkerRole {
    pub fn build(w: &mut Wiring<'_>, i: usize) -> BuildWorkerRole {
        let k = i / w.shard_config.workers_per_shard;
        BuildWorkerRole {
            core: BuildWorker::new(&w.shard_config),
            input: w.links.rx(&format!("builder{k}_build_worker{i}")),
            out: w.links.tx(&format!("build_worker{i}_builder{k}")),
            kit: w.kit(Role::BuildWorker, &format!("build_worker{i}")),
        }
    }
}

impl RoleLoop for BuildWorkerRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        (self.input.now_ns, self.out.now_ns) = (now, now);
        let flushed = self.core.flush(&mut self.out);
        flushed | self.core.take(&mut self.input)
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        if !self.core.build(pace).await {
            return false;
        }
        self.out.now_ns = now_ns();
        self.core.flush(&mut self.out);
        true
    }

    fn housekeep(&mut self) {
        let Self { core, input, out, kit } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        let built = core.windows_built_total();
        kit.publisher.publish(|s| {
            input.publish(s);
            out.publish(s);
            s.counter(&BUILD_WINDOWS_TOTAL, none, built);
            s.idle(none, idle);
        });
        kit.heartbeat.beat();
    }
}
