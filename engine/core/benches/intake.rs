//! One intake core's work per intent, on one thread: `IntakeCore::handle_frame` on
//! pre-encoded frames (16 intents of 4 keys each, keys from 2^18, 1,024 clients), which
//! decodes, validates, de-duplicates, routes and writes each intent into its builder queue.
//! This is CPU 0's part of `cargo bench -p flashpointd --bench e2e`, without the other CPU
//! and the clock.
//!
//! Each iteration admits one full window of 65,536 intents with the default settings (one
//! intake, one builder shard, a 16-window de-duplication horizon), then closes it outside
//! the timed part. The builder queue is a preallocated `Vec` of `ToBuilder`, so the per-slot
//! write is in the figure as it is in the daemon's ring. The frames of 17 windows are
//! encoded once (`fpn_testkit::load_frames`), back to back in one buffer, and used in turn: a (client, nonce) pair comes
//! back only after it has left the horizon, so every intent is admitted and the table is at
//! steady state (inserting while expiring).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpn_engine::shard::{Full, IntakeSink, ShardConfig, ToBuilder, ToMerger};
use fpn_engine::{EngineConfig, IntakeCore, WindowClock, prefetch_frame};
use fpn_testkit::load_frames;

const RECORDS: usize = 65_536;
const PER_FRAME: usize = 16;
const KEYS: usize = 4;
const KEY_SPACE: u64 = 1 << 18;
const CLIENTS: u64 = 1_024;
/// Windows of frames encoded: one more than the de-duplication horizon.
const WINDOWS: usize = 17;
/// The next frame is prefetched while this one is decoded, as the daemon's submit path does
/// (`fpn_engine::prefetch_frame`); `INTAKE_PREFETCH=0` leaves it out, for comparison.
static PREFETCH_NEXT: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("INTAKE_PREFETCH").is_none_or(|v| v != "0"));

struct Queues {
    to_builder: Vec<ToBuilder>,
    to_merger: Vec<ToMerger>,
}

impl IntakeSink for Queues {
    #[inline]
    fn to_builder(&mut self, _shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        if self.to_builder.len() == self.to_builder.capacity() {
            return Err(Full(msg));
        }
        self.to_builder.push(msg);
        Ok(())
    }

    #[inline]
    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        if self.to_merger.len() == self.to_merger.capacity() {
            return Err(Full(msg));
        }
        self.to_merger.push(msg);
        Ok(())
    }

    fn builder_room(&self, _shard: usize) -> usize {
        self.to_builder.capacity() - self.to_builder.len()
    }

    fn merger_room(&self) -> usize {
        self.to_merger.capacity() - self.to_merger.len()
    }
}

fn handle_frames(c: &mut Criterion) {
    let config = ShardConfig::new(EngineConfig::default(), 1, 1);
    config.validate().expect("default shard config");
    let frames_per_window = RECORDS / PER_FRAME;
    let input = load_frames(WINDOWS * frames_per_window, PER_FRAME, KEYS, KEY_SPACE, CLIENTS);
    let mut core = IntakeCore::new(&config, 0, 1);
    let mut clock = WindowClock::new(config.engine.window.window_ns, 1, 0);
    let mut queues =
        Queues { to_builder: Vec::with_capacity(RECORDS + 16), to_merger: Vec::with_capacity(RECORDS + 16) };
    let mut now = 0u64;
    let mut w = 0usize;
    // One window: every frame of input window `w`, timed; then the close, untimed.
    let mut window = |core: &mut IntakeCore, queues: &mut Queues| -> Duration {
        let first = (w % WINDOWS) * frames_per_window;
        let mut accepted = 0usize;
        let t = Instant::now();
        for f in first..first + frames_per_window {
            if *PREFETCH_NEXT {
                prefetch_frame(input.frame((f + 1) % input.len()));
            }
            core.handle_frame(now, input.frame(f), queues, |r| accepted += usize::from(r.status.is_ok()))
                .expect("frame structure");
        }
        let took = t.elapsed();
        assert_eq!(accepted, RECORDS, "every intent is admitted");
        now += config.engine.window.window_ns;
        let close = clock.close_now(now, core.wants_close());
        core.handle_window(close, queues).expect("room for the close");
        black_box(&queues.to_builder);
        queues.to_builder.clear();
        queues.to_merger.clear();
        w += 1;
        took
    };
    // The whole horizon first, so every timed window also expires one.
    for _ in 0..WINDOWS {
        window(&mut core, &mut queues);
    }
    let mut group = c.benchmark_group("intake");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("handle_frame_16x4_keys_65536", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| window(&mut core, &mut queues)).sum())
    });
    group.finish();
}

criterion_group!(benches, handle_frames);
criterion_main!(benches);
