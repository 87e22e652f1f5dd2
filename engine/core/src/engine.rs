//! The engine in one thread: the offline model of the daemon's record path.
//!
//! [`Engine`] takes frames (or decoded records) with the time they arrived and answers each
//! record with a receipt; when its window is due it packs the block and clears the auction.
//! It is the daemon's own cores (`shard::IntakeCore`, `shard::BuilderShard`,
//! `shard::Merger`: one intake, one shard) stepped in one thread, so the `fpn` CLI and the
//! tests admit records exactly as the daemon does. It never reads a clock: the driver passes
//! `now_ns` to every call and asks [`Engine::poll_timeout`] when to call again.
//!
//! Call order: [`Engine::new`]; then, in any interleaving, [`Engine::handle_frame`] /
//! [`Engine::handle_record`] for input and [`Engine::poll_window`] whenever `now_ns` reaches
//! [`Engine::poll_timeout`] (or after a receipt said `overloaded` because the window was
//! full); finally [`Engine::drain`] to close the open window on shutdown.
//!
//! One intent's path: `handle_frame` → `decode_frame` (structure) → `IntakeCore::handle_record`
//! (content, de-duplication, sequence id, route) → receipt; its slots go to the builder
//! shard's queue, which the facade drains at once. At the deadline: the close markers →
//! `BuilderShard` stages and builds the window (`Packer`: FIFO and the configured builder) →
//! `Merger` (economics, the book's clearing) → `WindowResult`. The test oracle
//! (`crate::oracle`) writes the same rules once more on `Window` directly.

use fpn_wire::{
    BlockEntryWire, BlockSummary, ClearingSummary, FrameWriter, Reason, Receipt, RecordRef, WinnerWire,
    decode_frame,
};
use thiserror::Error;

use crate::amount::FeeRate;
use crate::auction::{AuctionRules, Book, Clearing, RulesError};
use crate::clock::WindowClock;
use crate::economics::Block;
use crate::select::{BuilderKind, ImprovedConfig};
use crate::shard::{
    BoundedQueue, BuilderShard, Full, IntakeCore, IntakeSink, Merger, MergerOutput, ShardConfig,
    ShardConfigError, ShardWindow, Sink, Source, ToBuilder, ToMerger,
};
use crate::window::{CloseReason, KEYS_PER_INTENT_MAX, WindowConfig, WindowConfigError};

/// Everything the engine core needs, validated by [`Engine::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub window: WindowConfig,
    pub builder: BuilderKind,
    pub improved: ImprovedConfig,
    pub fee_rate: FeeRate,
    pub auction: AuctionRules,
    /// Open bids the auction book holds across windows.
    pub book_bids_max: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            window: WindowConfig::default(),
            builder: BuilderKind::Improved,
            improved: ImprovedConfig::default(),
            fee_rate: FeeRate::from_ppm(100_000).expect("0.1 is a valid fee rate"),
            auction: AuctionRules::default(),
            book_bids_max: 65_536,
        }
    }
}

/// A configuration the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineConfigError {
    #[error("window.{0}")]
    Window(#[from] WindowConfigError),
    #[error("auction.{0}")]
    Auction(#[from] RulesError),
    #[error("auction.bids_max must be at least 1")]
    BookBidsMax,
}

/// Accounting of one closed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSummary {
    pub window_id: u64,
    pub opened_ns: u64,
    pub closed_ns: u64,
    pub reason: CloseReason,
    pub intents_count: usize,
    pub bids_count: usize,
    pub cancelled_count: usize,
}

/// What one window produced: its block and its auction clearing.
#[derive(Debug, Clone)]
pub struct WindowResult {
    pub window: WindowSummary,
    pub block: Block,
    pub clearing: Clearing,
    /// Wire codes of the auction rules in force, for [`WindowResult::encode`].
    pricing_code: u8,
    order_code: u8,
}

/// Counters the engine keeps; the driver publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineCounters {
    pub frames_total: u64,
    pub frames_rejected_total: u64,
    pub records_accepted_total: u64,
    /// Indexed by `Reason::code() - 1`.
    pub records_rejected_total: [u64; Reason::ALL.len()],
    pub windows_closed_total: u64,
    pub bids_expired_total: u64,
}

impl EngineCounters {
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.records_rejected_total[reason.code() as usize - 1]
    }
}

/// The offline engine: one intake, one builder shard and the merger of [`crate::shard`],
/// stepped in one thread. See the module doc for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    clock: WindowClock,
    intake: IntakeCore,
    builder: BuilderShard,
    merger: Merger,
    /// `[shard][intake]`: one queue.
    to_builder: Vec<BoundedQueue<ToBuilder>>,
    to_merger: [BoundedQueue<ToMerger>; 1],
    shard_out: [BoundedQueue<Box<ShardWindow>>; 1],
    out: Outputs,
    /// A window closed because it was full, waiting for `poll_window`.
    result_pending: bool,
    counters: EngineCounters,
}

/// The merger's outputs, kept for the caller.
#[derive(Debug)]
struct Outputs {
    result: WindowResult,
    /// The last window result published since the facade asked.
    published: bool,
    /// The merger's answer to the book cancel just forwarded.
    late: Option<Receipt>,
    /// The merger's latest book count for the intake.
    book_open: Option<(usize, u64)>,
    shard_back: [BoundedQueue<Box<ShardWindow>>; 1],
}

impl MergerOutput for Outputs {
    fn window_result(&mut self, result: &WindowResult) {
        self.result.copy_from(result);
        self.published = true;
    }

    fn receipt(&mut self, _intake: usize, receipt: Receipt) {
        debug_assert!(self.late.is_none(), "one book cancel at a time");
        self.late = Some(receipt);
    }

    fn book_open(&mut self, _intake: usize, open: usize, taken_total: u64) {
        self.book_open = Some((open, taken_total));
    }

    fn return_window(
        &mut self,
        _shard: usize,
        window: Box<ShardWindow>,
    ) -> Result<(), Full<Box<ShardWindow>>> {
        self.shard_back[0].push(window)
    }
}

/// The intake's queues, as its core sees them.
struct Queues<'a> {
    to_builder: &'a mut [BoundedQueue<ToBuilder>],
    to_merger: &'a mut BoundedQueue<ToMerger>,
}

impl IntakeSink for Queues<'_> {
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        self.to_builder[shard].push(msg)
    }

    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        self.to_merger.push(msg)
    }

    fn builder_room(&self, shard: usize) -> usize {
        self.to_builder[shard].room()
    }

    fn merger_room(&self) -> usize {
        self.to_merger.room()
    }
}

/// Slots of the intake's queues: the facade drains them after every record, so they hold at
/// most one record's slots and one close marker.
const QUEUE_SLOTS: usize = 2 * (1 + KEYS_PER_INTENT_MAX);

impl Engine {
    /// Validates `config` and allocates every buffer; nothing allocates afterwards.
    pub fn new(config: EngineConfig, now_ns: u64) -> Result<Engine, EngineConfigError> {
        let mut shard = ShardConfig::new(config.clone(), 1, 1);
        shard.shard_windows_max = 1;
        shard.validate().map_err(|e| match e {
            ShardConfigError::Engine(e) => e,
            other => unreachable!("one intake and one shard: {other}"),
        })?;
        let first = 1;
        let w = &config.window;
        let result = WindowResult::with_capacity(w.records_max, &config.auction);
        Ok(Engine {
            clock: WindowClock::new(w.window_ns, first, now_ns),
            intake: IntakeCore::new(&shard, 0, first),
            builder: BuilderShard::new(&shard, 0, first),
            merger: Merger::new(&shard, first),
            to_builder: vec![BoundedQueue::new(QUEUE_SLOTS)],
            to_merger: [BoundedQueue::new(QUEUE_SLOTS)],
            shard_out: [BoundedQueue::new(1)],
            out: Outputs {
                result,
                published: false,
                late: None,
                book_open: None,
                shard_back: [BoundedQueue::new(1)],
            },
            result_pending: false,
            counters: EngineCounters::default(),
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// The open auction book.
    pub fn book(&self) -> &Book {
        self.merger.book()
    }

    /// The id of the open window.
    pub fn window_id(&self) -> u64 {
        self.clock.window_id()
    }

    /// When the open window is due: call [`Engine::poll_window`] at or after this time.
    pub fn poll_timeout(&self) -> u64 {
        if self.result_pending { 0 } else { self.clock.deadline_ns() }
    }

    /// Decodes one frame and answers each record through `receipt`, in record order. A frame
    /// whose structure is invalid is refused whole: `Err(reason)`, and no record of it is
    /// taken.
    pub fn handle_frame(
        &mut self,
        now_ns: u64,
        rx_ns: u64,
        bytes: &[u8],
        mut receipt: impl FnMut(Receipt),
    ) -> Result<(), Reason> {
        self.counters.frames_total += 1;
        let records = match decode_frame(bytes) {
            Ok(records) => records,
            Err(reason) => {
                self.counters.frames_rejected_total += 1;
                return Err(reason);
            }
        };
        for record in records {
            receipt(self.handle_record(now_ns, rx_ns, record));
        }
        Ok(())
    }

    /// Takes one decoded record and returns its receipt.
    pub fn handle_record(&mut self, now_ns: u64, rx_ns: u64, record: RecordRef<'_>) -> Receipt {
        let receipt = self.admit(now_ns, rx_ns, record);
        match receipt.status {
            Ok(()) => self.counters.records_accepted_total += 1,
            Err(reason) => self.counters.records_rejected_total[reason.code() as usize - 1] += 1,
        }
        receipt
    }

    fn admit(&mut self, now_ns: u64, rx_ns: u64, record: RecordRef<'_>) -> Receipt {
        if !self.result_pending && self.intake.wants_close() {
            // The window is full: close it now; the record is refused and the result waits
            // for `poll_window` (taking more would need a second result buffer).
            self.close_window(now_ns);
            self.result_pending = true;
        }
        if self.result_pending {
            let mut r = Receipt::for_record(record, rx_ns);
            r.status = Err(Reason::Overloaded);
            return r;
        }
        let mut sink = Queues { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger[0] };
        let answered = self.intake.handle_record(rx_ns, record, &mut sink);
        self.pump();
        answered.unwrap_or_else(|| self.out.late.take().expect("the merger answers a book cancel at once"))
    }

    /// Moves everything the intake queued on: the builder takes its records, the merger its
    /// bids, cancels and closes (and answers book cancels).
    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(w) = self.out.shard_back[0].pop() {
                self.builder.handle_returned(w);
                progress = true;
            }
            progress |= self.builder.poll(&mut self.to_builder, &mut self.shard_out[0], usize::MAX);
            progress |= self.merger.poll(&mut self.to_merger, &mut self.shard_out, &mut self.out, usize::MAX);
            if let Some((open, taken)) = self.out.book_open.take() {
                self.intake.set_book_open(open, taken);
            }
            if !progress {
                return;
            }
        }
    }

    /// Closes the open window if it is due (its deadline passed, or it is full) or was closed
    /// full, and returns its result.
    pub fn poll_window(&mut self, now_ns: u64) -> Option<&WindowResult> {
        if self.result_pending {
            self.result_pending = false;
            return Some(&self.out.result);
        }
        if now_ns < self.clock.deadline_ns() && !self.intake.wants_close() {
            return None;
        }
        self.close_window(now_ns);
        Some(&self.out.result)
    }

    /// Closes the open window now, whatever its deadline (shutdown, end of input), and
    /// returns its result. A result still pending from a full window comes first.
    pub fn drain(&mut self, now_ns: u64) -> &WindowResult {
        if self.result_pending {
            self.result_pending = false;
            return &self.out.result;
        }
        self.close_window(now_ns);
        &self.out.result
    }

    /// Closes the open window (reason `Full` if the intake is full, else `Deadline` if due,
    /// else `Drain`) and runs the builder and the merger until its result is published.
    fn close_window(&mut self, now_ns: u64) {
        let close = self.clock.close_now(now_ns, self.intake.wants_close());
        let mut sink = Queues { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger[0] };
        let delivered = self.intake.handle_window(close, &mut sink);
        debug_assert!(delivered.is_ok(), "the queues were drained");
        self.out.published = false;
        self.pump();
        assert!(self.out.published, "a closed window is published at once");
        self.counters.windows_closed_total += 1;
        self.counters.bids_expired_total += self.out.result.clearing.expired_count as u64;
    }
}

impl WindowResult {
    /// An empty result with room for `records_max` block entries and the winners of
    /// `rules`, encoding `rules`' pricing and order codes.
    pub(crate) fn with_capacity(records_max: usize, rules: &AuctionRules) -> WindowResult {
        WindowResult {
            window: WindowSummary::default(),
            block: Block::with_capacity(records_max),
            clearing: Clearing::with_capacity(rules.top_k),
            pricing_code: rules.pricing.code(),
            order_code: rules.order.code(),
        }
    }

    /// Copies `other` into this result's buffers (no allocation within their capacity).
    pub(crate) fn copy_from(&mut self, other: &WindowResult) {
        let WindowResult { window, block, clearing, pricing_code, order_code } = other;
        (self.window, self.pricing_code, self.order_code) = (*window, *pricing_code, *order_code);
        let Block {
            window_id,
            builder,
            entries,
            total,
            fifo_total,
            surplus,
            fee,
            fee_rate,
            upper_bound,
            exact,
        } = block;
        let b = &mut self.block;
        (b.window_id, b.builder, b.total, b.fifo_total, b.surplus) =
            (*window_id, *builder, *total, *fifo_total, *surplus);
        (b.fee, b.fee_rate, b.upper_bound, b.exact) = (*fee, *fee_rate, *upper_bound, *exact);
        b.entries.clear();
        b.entries.extend_from_slice(entries);
        let Clearing {
            window_id,
            winners,
            uniform_price,
            revenue,
            eligible_count,
            expired_count,
            open_count_after,
        } = clearing;
        let c = &mut self.clearing;
        (c.window_id, c.uniform_price, c.revenue) = (*window_id, *uniform_price, *revenue);
        (c.eligible_count, c.expired_count, c.open_count_after) =
            (*eligible_count, *expired_count, *open_count_after);
        c.winners.clear();
        c.winners.extend_from_slice(winners);
    }

    /// Appends this window's block and clearing records as one frame (for streams: blocks
    /// can exceed a datagram). Deterministic: equal results give equal bytes.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let block = &self.block;
        let mut w = FrameWriter::new(buf, u32::MAX as usize);
        let entries = block
            .entries
            .iter()
            .map(|e| BlockEntryWire::new(e.seq, e.client_id, e.profit, e.payout, e.rx_ns));
        w.push_block_iter(
            &BlockSummary {
                window_id: block.window_id,
                total: block.total,
                fifo_total: block.fifo_total,
                surplus: block.surplus,
                fee: block.fee,
                upper_bound: block.upper_bound,
                fee_ppm: block.fee_rate.ppm(),
                builder: block.builder.code(),
                exact: block.exact,
            },
            entries,
        )
        .expect("a u32-sized frame holds a window's block");
        let c = &self.clearing;
        let winners = c.winners.iter().map(|x| WinnerWire::new(x.seq, x.client_id, x.amount, x.price));
        w.push_clearing_iter(
            &ClearingSummary {
                window_id: c.window_id,
                uniform_price: c.uniform_price.unwrap_or(0),
                revenue: c.revenue,
                pricing: self.pricing_code,
                order: self.order_code,
            },
            winners,
        )
        .expect("a u32-sized frame holds a window's clearing");
        w.finish();
    }
}
