//! Decoding throughput: one packed frame of intents (4 keys each) and of bids, structure check
//! plus iteration, with and without the per-record content checks.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpn_wire::*;
use std::hint::black_box;

const RECORDS: usize = 1_024;

fn packed_intents(keys_per_intent: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1 << 24);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..RECORDS as u64 {
        let keys: Vec<u64> = (0..keys_per_intent as u64)
            .map(|k| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 16) ^ k
            })
            .collect();
        w.push_intent(&Intent {
            client_id: 7,
            nonce: n,
            sent_ns: n,
            profit: 1 + n % 1000,
            priority: 0,
            keys: &keys,
        })
        .unwrap();
    }
    w.finish();
    buf
}

fn packed_bids() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1 << 24);
    for n in 0..RECORDS as u64 {
        w.push_bid(&Bid { client_id: 7, nonce: n, sent_ns: n, amount: 1 + n, priority: (n % 4) as u32 })
            .unwrap();
    }
    w.finish();
    buf
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for keys in [2usize, 4, 8] {
        let buf = packed_intents(keys);
        g.bench_function(format!("intents_{keys}keys_structure"), |b| {
            b.iter(|| {
                let mut profit = 0u64;
                for r in decode_frame(black_box(&buf)).unwrap() {
                    if let RecordRef::Intent(i) = r {
                        profit = profit.wrapping_add(i.fixed.profit.get());
                    }
                }
                profit
            })
        });
        g.bench_function(format!("intents_{keys}keys_validated"), |b| {
            b.iter(|| {
                let mut ok = 0u32;
                for r in decode_frame(black_box(&buf)).unwrap() {
                    if let RecordRef::Intent(i) = r {
                        ok += u32::from(i.validate().is_ok());
                    }
                }
                ok
            })
        });
    }
    let bids = packed_bids();
    g.bench_function("bids_validated", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for r in decode_frame(black_box(&bids)).unwrap() {
                if let RecordRef::Bid(w) = r {
                    ok += u32::from(validate_bid(w).is_ok());
                }
            }
            ok
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let keys = [1u64, 2, 3, 4];
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("intents_4keys", |b| {
        b.iter(|| {
            buf.clear();
            let mut w = FrameWriter::new(&mut buf, 1 << 24);
            for n in 0..RECORDS as u64 {
                w.push_intent(&Intent {
                    client_id: 7,
                    nonce: n,
                    sent_ns: n,
                    profit: 5,
                    priority: 0,
                    keys: &keys,
                })
                .unwrap();
            }
            w.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
