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
//! encoded once, back to back in one buffer, and used in turn: a (client, nonce) pair comes
//! back only after it has left the horizon, so every intent is admitted and the table is at
//! steady state (inserting while expiring).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpn_engine::shard::{Full, IntakeSink, ShardConfig, ToBuilder, ToMerger, mix64};
use fpn_engine::{EngineConfig, IntakeCore, WindowClock};
use fpn_wire::{FrameWriter, Intent};

const RECORDS: usize = 65_536;
const PER_FRAME: usize = 16;
const KEYS: usize = 4;
const KEY_SPACE: u64 = 1 << 18;
const CLIENTS: u64 = 1_024;
/// Windows of frames encoded: one more than the de-duplication horizon.
const WINDOWS: usize = 17;

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

/// `WINDOWS` windows of frames, back to back; `ends[w]` are window `w`'s frame ends.
struct Input {
    bytes: Vec<u8>,
    ends: Vec<Vec<usize>>,
}

fn encode() -> Input {
    let mut seed = 7u64;
    let mut rng = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(seed)
    };
    let mut nonces = vec![0u64; CLIENTS as usize];
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut keys = Vec::with_capacity(KEYS);
    let mut f = 0u64;
    for _ in 0..WINDOWS {
        let mut window = Vec::new();
        for _ in 0..RECORDS / PER_FRAME {
            let client = f % CLIENTS;
            f += 1;
            let mut buf = Vec::new();
            let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
            for _ in 0..PER_FRAME {
                nonces[client as usize] += 1;
                keys.clear();
                while keys.len() < KEYS {
                    let key = 1 + rng() % KEY_SPACE;
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                let intent = Intent {
                    client_id: 1 + client,
                    nonce: nonces[client as usize],
                    sent_ns: 0,
                    profit: 1 + rng() % 1000,
                    priority: 0,
                    keys: &keys,
                };
                w.push_intent(&intent).expect("frame room");
            }
            w.finish();
            bytes.extend_from_slice(&buf);
            window.push(bytes.len());
        }
        ends.push(window);
    }
    Input { bytes, ends }
}

fn handle_frames(c: &mut Criterion) {
    let config = ShardConfig::new(EngineConfig::default(), 1, 1);
    config.validate().expect("default shard config");
    let input = encode();
    let mut core = IntakeCore::new(&config, 0, 1);
    let mut clock = WindowClock::new(config.engine.window.window_ns, 1, 0);
    let mut queues =
        Queues { to_builder: Vec::with_capacity(RECORDS + 16), to_merger: Vec::with_capacity(RECORDS + 16) };
    let mut now = 0u64;
    let mut w = 0usize;
    // One window: every frame of input window `w`, timed; then the close, untimed.
    let mut window = |core: &mut IntakeCore, queues: &mut Queues| -> Duration {
        let i = w % WINDOWS;
        let ends = &input.ends[i];
        let mut start_byte = if i == 0 { 0 } else { *input.ends[i - 1].last().expect("frames") };
        let mut accepted = 0usize;
        let t = Instant::now();
        for &end in ends {
            let frame = &input.bytes[start_byte..end];
            start_byte = end;
            core.handle_frame(now, now, frame, queues, |r| accepted += usize::from(r.status.is_ok()))
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
