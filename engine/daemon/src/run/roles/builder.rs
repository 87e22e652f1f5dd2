//! Role `builder<k>`: builder shard `k` (`fpn_engine::BuilderShard`). It reads its ring from
//! every intake, stages each closed window, hands it to an idle build worker of its own (or
//! builds it here, in slices, when it is behind and every worker is busy), and sends the
//! built windows to the merger in window order; the merger gives each window's buffer back.

use fpn_engine::BuilderShard;
use fpn_engine::shard::{ShardWindow, Source, ToBuilder};

use crate::cores::Role;
use crate::run::links::{RxQ, TxQ};
use crate::run::role::{BUDGET, LoopKit, RoleLoop, SlicePace};
use crate::run::topology::Wiring;

pub struct BuilderShardRole {
    core: BuilderShard,
    inputs: Vec<RxQ<ToBuilder>>,
    out: TxQ<Box<ShardWindow>>,
    back: RxQ<Box<ShardWindow>>,
    /// To and from this shard's build workers (`builder.workers`), one ring pair each.
    to_workers: Vec<TxQ<Box<ShardWindow>>>,
    from_workers: Vec<RxQ<Box<ShardWindow>>>,
    kit: LoopKit,
}

impl BuilderShardRole {
    pub fn build(w: &mut Wiring<'_>, k: usize) -> BuilderShardRole {
        let c = w.shard_config.clone();
        let workers = (0..c.workers_per_shard).map(|j| k * c.workers_per_shard + j);
        BuilderShardRole {
            core: BuilderShard::new(&c, k, w.first_window_id),
            inputs: (0..c.intakes_n).map(|i| w.links.rx(&format!("intake{i}_builder{k}"))).collect(),
            out: w.links.tx(&format!("builder{k}_merger")),
            back: w.links.rx(&format!("merger_builder{k}")),
            to_workers: workers.clone().map(|i| w.links.tx(&format!("builder{k}_build_worker{i}"))).collect(),
            from_workers: workers.map(|i| w.links.rx(&format!("build_worker{i}_builder{k}"))).collect(),
            kit: w.kit(Role::Builder, &format!("builder{k}")),
        }
    }
}

impl RoleLoop for BuilderShardRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        for q in &mut self.inputs {
            q.now_ns = now;
        }
        for q in &mut self.from_workers {
            q.now_ns = now;
        }
        for q in &mut self.to_workers {
            q.now_ns = now;
        }
        (self.out.now_ns, self.back.now_ns) = (now, now);
        let mut did_work = false;
        while let Some(w) = self.back.pop() {
            self.core.handle_returned(w);
            did_work = true;
        }
        did_work |= self.core.take_built(&mut self.from_workers);
        did_work |= self.core.collect(&mut self.inputs, &mut self.out, BUDGET);
        // A staged window goes to an idle build worker; `slow` builds it here otherwise.
        did_work |= self.core.dispatch(&mut self.to_workers);
        did_work | self.core.flush(&mut self.out)
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        if !self.core.should_build_here() || !self.core.build_staged(pace).await {
            return false;
        }
        self.core.flush(&mut self.out);
        true
    }

    fn housekeep(&mut self) {
        let Self { inputs, out, back, to_workers, from_workers, kit, .. } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            inputs.iter().for_each(|q| q.publish(s));
            out.publish(s);
            back.publish(s);
            to_workers.iter().for_each(|q| q.publish(s));
            from_workers.iter().for_each(|q| q.publish(s));
            s.idle(none, idle);
        });
        kit.heartbeat.beat();
    }
}
