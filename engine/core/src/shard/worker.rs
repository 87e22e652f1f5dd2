//! A build worker: builds whole windows of one builder shard, so that several windows of a
//! shard are built at once (on other cores) while the shard collects the next.

use crate::economics::Packer;
use crate::pace::{Pace, Unpaced, run_unpaced};
use crate::shard::ShardConfig;
use crate::shard::builder::build_window;
use crate::shard::msg::{ShardWindow, Sink, Source};

/// Largest `ShardConfig::workers_per_shard`.
pub const WORKERS_PER_SHARD_MAX: usize = 16;

/// Builds the windows its shard hands it, one at a time, with a builder of its own (the
/// configured kind and settings, as the shard's), and hands each back built.
///
/// Call order: [`BuildWorker::new`]; then in the worker's loop [`BuildWorker::take`] from the
/// shard's queue, [`BuildWorker::build`] (paced, so it can share a CPU), and
/// [`BuildWorker::flush`] back to the shard; or [`BuildWorker::poll`], which does all three
/// without pausing. A window is built exactly as the shard would build it (same code,
/// `build_window`), and the builders keep no state from one window to the next that a
/// selection depends on, so whoever builds a window, its block is the same.
#[derive(Debug)]
pub struct BuildWorker {
    packer: Packer,
    /// Taken, not built yet.
    held: Option<Box<ShardWindow>>,
    /// Built, not handed back yet (the queue back was full).
    built: Option<Box<ShardWindow>>,
    windows_built_total: u64,
}

impl BuildWorker {
    /// A worker for windows of `config`'s shape. Allocates its builder's scratch space for a
    /// full window. Panics if `config` does not validate.
    pub fn new(config: &ShardConfig) -> BuildWorker {
        config.validate().expect("valid ShardConfig");
        let (records_max, keys_max) = config.window_capacity();
        let e = &config.engine;
        BuildWorker {
            packer: Packer::new(e.builder, records_max, keys_max, e.improved),
            held: None,
            built: None,
            windows_built_total: 0,
        }
    }

    /// Takes the next window to build, if it holds none. Whether it took one.
    pub fn take(&mut self, input: &mut impl Source<Box<ShardWindow>>) -> bool {
        if self.held.is_some() || self.built.is_some() {
            return false;
        }
        self.held = input.pop();
        self.held.is_some()
    }

    /// Builds the window it holds, pausing at `pace`'s points. Whether there was one.
    pub async fn build(&mut self, pace: &mut impl Pace) -> bool {
        let Some(mut w) = self.held.take() else { return false };
        build_window(&mut self.packer, &mut w, pace).await;
        self.windows_built_total += 1;
        self.built = Some(w);
        true
    }

    /// Hands the built window back to the shard. Whether it did (`false`: none, or the queue
    /// refused it; it stays and goes next time).
    pub fn flush(&mut self, out: &mut impl Sink<Box<ShardWindow>>) -> bool {
        let Some(w) = self.built.take() else { return false };
        match out.push(w) {
            Ok(()) => true,
            Err(full) => {
                self.built = Some(full.0);
                false
            }
        }
    }

    /// `flush`, `take`, `build` unpaced, `flush`. Whether anything happened.
    pub fn poll(
        &mut self,
        input: &mut impl Source<Box<ShardWindow>>,
        out: &mut impl Sink<Box<ShardWindow>>,
    ) -> bool {
        let mut progress = self.flush(out);
        progress |= self.take(input);
        if run_unpaced(self.build(&mut Unpaced)) {
            progress = true;
            self.flush(out);
        }
        progress
    }

    /// Windows built since start.
    pub fn windows_built_total(&self) -> u64 {
        self.windows_built_total
    }
}
