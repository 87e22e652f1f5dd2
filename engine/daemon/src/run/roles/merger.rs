//! Role `merger`: joins the builder shards' blocks and the cross-shard intents into the
//! window's block, applies the FIFO floor and the economics, and clears the auction
//! (`fpn_engine::Merger`). It publishes each window's result to the journal and to every
//! QUIC intake's sessions, answers book cancels to the intakes, and tells the intakes their
//! book counts.
//!
//! Output policy (bounded, never a silent drop): each consumer of published windows (the
//! journal, each QUIC intake) has a fixed pool of [`RESULT_POOL`] result buffers that it
//! gives back. The merger publishes a window only once every consumer has a buffer free and
//! room in its ring; until then the window waits, finished, in the merger, which counts the
//! wait per consumer (`fpn_merger_publish_waits_total{ring}`) and reads nothing more. A slow
//! consumer therefore holds the builders' windows, then the intakes' rings fill, and new
//! records are refused `overloaded` at the intake: memory stays as sized at start. Book
//! cancel answers need no such rule: an intake forwards at most as many as its answer ring
//! holds (`admission.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fpn_engine::shard::{Full, ShardWindow, Sink};
use fpn_engine::{Merger, MergerOutput, WindowResult, WindowSummary};
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc};
use fpn_wire::Receipt;

use super::admission::ReceiptCounters;
use crate::cores::Role;
use crate::run::links::{RxLink, RxQ, TxLink, TxQ};
use crate::run::role::{BUDGET, LoopKit, RoleLoop, SlicePace};
use crate::run::shared::{Shared, pack_book};
use crate::run::topology::Wiring;

/// Result buffers per consumer of published windows, allocated at start (each holds a full
/// window's block and clearing).
pub const RESULT_POOL: usize = 4;

pub static WINDOWS_PUBLISHED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_merger_windows_published_total", "Window results finalized by the merger.");
pub static PUBLISH_WAITS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_merger_publish_waits_total",
    "Windows whose publish waited for a consumer (no free result buffer or a full ring), by the consumer's ring.",
);
pub static WINDOW_PUBLISH_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_window_publish_latency_seconds",
    "From a window's close until the merger published its block and clearing.",
);

pub static WINDOW_RX_TO_PUBLISH_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_window_rx_to_publish_seconds",
    "Per entry of a published block: from the intent's receive timestamp (rx_ns) until the merger published the block.",
);

pub static METRICS: [&MetricDesc; 4] =
    [&WINDOWS_PUBLISHED_TOTAL, &PUBLISH_WAITS_TOTAL, &WINDOW_PUBLISH_SECONDS, &WINDOW_RX_TO_PUBLISH_SECONDS];

/// One window's result, encoded (`WindowResult::encode`) into a pooled buffer that the
/// consumer hands back.
#[derive(Debug, Default)]
pub struct ResultMsg {
    pub window: WindowSummary,
    pub published_ns: u64,
    pub bytes: Vec<u8>,
}

impl ResultMsg {
    /// A buffer with room for a full window's result.
    pub fn with_reserve(bytes: usize) -> ResultMsg {
        ResultMsg { bytes: Vec::with_capacity(bytes), ..ResultMsg::default() }
    }
}

/// Bytes reserved per result buffer: a full window's block entries and the auction's winners.
pub fn result_bytes_reserve(records_max: usize, top_k: usize) -> usize {
    1024 + fpn_wire::BLOCK_ENTRY_LEN * records_max + fpn_wire::WINNER_LEN * top_k
}

/// One consumer of published windows: its ring and its pool of buffers.
pub struct Consumer {
    tx: TxLink<ResultMsg>,
    pool: RxLink<ResultMsg>,
    waits_total: u64,
}

impl Consumer {
    pub fn new(tx: TxLink<ResultMsg>, pool: RxLink<ResultMsg>) -> Consumer {
        Consumer { tx, pool, waits_total: 0 }
    }

    fn ready(&self) -> bool {
        self.pool.rx.peek().is_some() && self.tx.tx.slots_free() > 0
    }
}

/// The merger's outputs. See the module doc for the policy.
pub struct MergerOutputs {
    shard_back: Vec<TxQ<Box<ShardWindow>>>,
    /// The journal first (when there is one), then each QUIC intake.
    consumers: Vec<Consumer>,
    /// Book-cancel answers, one ring per intake.
    receipts: Vec<TxLink<Receipt>>,
    shared: Arc<Shared>,
    counters: ReceiptCounters,
    windows_published_total: u64,
    publish_latency: Histogram,
    /// `published_ns - rx_ns` of every entry of every published block.
    rx_to_publish: Histogram,
    /// The window whose publish is waiting (counted once per consumer).
    waiting: Option<u64>,
}

impl MergerOutputs {
    /// Whether every consumer can take window `window_id` now; counts a wait once per window.
    fn ready(&mut self, window_id: u64) -> bool {
        let mut ready = true;
        let counted = self.waiting == Some(window_id);
        for c in &mut self.consumers {
            if !c.ready() {
                ready = false;
                if !counted {
                    c.waits_total += 1;
                }
            }
        }
        self.waiting = (!ready).then_some(window_id);
        ready
    }
}

impl MergerOutput for MergerOutputs {
    fn window_result(&mut self, result: &WindowResult) {
        let published_ns = now_ns();
        let (first, rest) = self.consumers.split_first_mut().expect("a merger has a consumer");
        let mut msg = first.pool.rx.pop().expect("publish waits for a free buffer");
        msg.bytes.clear();
        result.encode(&mut msg.bytes);
        (msg.window, msg.published_ns) = (result.window, published_ns);
        for c in rest {
            let mut copy = c.pool.rx.pop().expect("publish waits for a free buffer");
            copy.bytes.clear();
            copy.bytes.extend_from_slice(&msg.bytes);
            (copy.window, copy.published_ns) = (msg.window, published_ns);
            assert!(c.tx.tx.try_push(copy).is_ok(), "publish waits for ring room");
        }
        assert!(first.tx.tx.try_push(msg).is_ok(), "publish waits for ring room");
        self.publish_latency.record_ns(published_ns.saturating_sub(result.window.closed_ns).max(1));
        // A receive time from another clock (an unsynchronised NIC) may be ahead: 1 ns then.
        for e in &result.block.entries {
            self.rx_to_publish.record_ns(published_ns.saturating_sub(e.rx_ns).max(1));
        }
        self.windows_published_total += 1;
        self.shared.merger_window_id.store(result.window.window_id, Ordering::Release);
    }

    fn receipt(&mut self, intake: usize, receipt: Receipt) {
        self.counters.count(receipt.status);
        // The intake forwards at most as many book cancels as this ring holds.
        let pushed = self.receipts[intake].tx.try_push(receipt);
        assert!(pushed.is_ok(), "an intake had more book cancels outstanding than its answer ring holds");
    }

    fn book_open(&mut self, intake: usize, open: usize, taken_total: u64) {
        self.shared.book_open[intake].0.store(pack_book(open, taken_total), Ordering::Relaxed);
    }

    fn return_window(
        &mut self,
        shard: usize,
        window: Box<ShardWindow>,
    ) -> Result<(), Full<Box<ShardWindow>>> {
        self.shard_back[shard].push(window)
    }
}

pub struct MergerRole {
    core: Merger,
    intakes: Vec<RxQ<fpn_engine::shard::ToMerger>>,
    shards: Vec<RxQ<Box<ShardWindow>>>,
    out: MergerOutputs,
    consumer_labels: Vec<Labels>,
    kit: LoopKit,
    /// A window is published only once the log has all its inputs (`log.durability =
    /// "group"` with a log).
    gate: bool,
}

impl MergerRole {
    /// `consumers`: the names of the rings published windows go out on, each with its pool
    /// ring `<consumer side>_merger` (`merger_journal` / `journal_merger`, `merger_quic<i>` /
    /// `quic<i>_merger`).
    pub fn build(w: &mut Wiring<'_>, consumers: &[(String, String)]) -> MergerRole {
        let c = w.shard_config.clone();
        let mut core = Merger::new(&c, w.first_window_id);
        let book = w.take_book();
        if !book.is_empty() {
            let open = core.restore_book(book);
            for (i, &n) in open.iter().enumerate() {
                w.shared.book_open[i].0.store(pack_book(n, 0), Ordering::Relaxed);
            }
            w.set_book_open(open);
        }
        let consumer_labels =
            consumers.iter().map(|(out, _)| Labels::new(&[("ring", out.as_str())])).collect();
        let consumers = consumers
            .iter()
            .map(|(out, back)| Consumer::new(w.links.plain_tx(out), w.links.plain_rx(back)))
            .collect();
        MergerRole {
            core,
            intakes: (0..c.intakes_n).map(|i| w.links.rx(&format!("intake{i}_merger"))).collect(),
            shards: (0..c.shards_n).map(|k| w.links.rx(&format!("builder{k}_merger"))).collect(),
            out: MergerOutputs {
                shard_back: (0..c.shards_n).map(|k| w.links.tx(&format!("merger_builder{k}"))).collect(),
                consumers,
                receipts: (0..c.intakes_n).map(|i| w.links.plain_tx(&format!("merger_intake{i}"))).collect(),
                shared: w.shared.clone(),
                counters: ReceiptCounters::default(),
                windows_published_total: 0,
                publish_latency: Histogram::new(),
                rx_to_publish: Histogram::new(),
                waiting: None,
            },
            consumer_labels,
            kit: w.kit(Role::Merger, "merger"),
            gate: w.gate_on_log(),
        }
    }
}

impl RoleLoop for MergerRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        for q in &mut self.intakes {
            q.now_ns = now;
        }
        for q in &mut self.shards {
            q.now_ns = now;
        }
        for q in &mut self.out.shard_back {
            q.now_ns = now;
        }
        self.core.collect(&mut self.intakes, &mut self.shards, &mut self.out, BUDGET)
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        if !self.core.is_ready() || !self.out.ready(self.core.window_id()) {
            return false;
        }
        if self.gate && self.out.shared.log_durable_window.0.load(Ordering::Acquire) < self.core.window_id() {
            // Some of the window's inputs are not on disk yet (`docs/log.md`, "Durability").
            return false;
        }
        self.core.finalize_paced(&mut self.out, pace).await
    }

    fn housekeep(&mut self) {
        if self.out.shared.book_oldest_asked.swap(false, Ordering::AcqRel) {
            // The log role asks before it deletes a segment: once per rotation, not per window.
            let oldest = self.core.book().bids().iter().map(|b| b.rx_ns).min().unwrap_or(u64::MAX);
            let published = self.out.shared.merger_window_id.load(Ordering::Acquire);
            *self.out.shared.book_oldest.lock().unwrap_or_else(|p| p.into_inner()) = (published, oldest);
        }
        let Self { intakes, shards, out, consumer_labels, kit, .. } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            intakes.iter().for_each(|q| q.publish(s));
            shards.iter().for_each(|q| q.publish(s));
            out.shard_back.iter().for_each(|q| q.publish(s));
            for (c, labels) in out.consumers.iter().zip(consumer_labels.iter()) {
                c.tx.publish(s);
                c.pool.publish(s);
                s.counter(&PUBLISH_WAITS_TOTAL, labels, c.waits_total);
            }
            out.receipts.iter().for_each(|r| r.publish(s));
            s.idle(none, idle);
            out.counters.publish(s, none);
            s.counter(&WINDOWS_PUBLISHED_TOTAL, none, out.windows_published_total);
            s.histogram(&WINDOW_PUBLISH_SECONDS, none, &out.publish_latency);
            s.histogram(&WINDOW_RX_TO_PUBLISH_SECONDS, none, &out.rx_to_publish);
        });
        kit.heartbeat.beat();
    }
}
