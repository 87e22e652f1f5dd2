//! What the load generator sends and when: the open-loop [`Schedule`] and the frames of
//! records ([`FrameGen`]). Sans-IO: times are nanoseconds since the run's start, passed in.
//!
//! Each connection sends datagrams on its own fixed schedule; datagram `j` of a connection is
//! *intended* at `Schedule::intended_ns(j)` whatever happened before it. The sender never
//! waits for an answer, so a server that stalls cannot slow the schedule down; a client that
//! falls behind (its own stall, a full send buffer) sends late, and the latency measured from
//! the intended time charges that delay to the run (the coordinated-omission correction).

use std::time::Duration;

use fpn_wire::{BID_LEN, Bid, FRAME_HEADER_LEN, FrameWriter, INTENT_FIXED_LEN, Intent};

/// Most keys the generator puts in an intent: 6 keys make a 96-byte record.
pub const KEYS_MAX: usize = 6;
/// Fewest keys (when the frame budget allows): 2 keys make a 64-byte record.
pub const KEYS_MIN: usize = 2;

/// The load of one phase, over all connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Offered records per second, all connections together.
    pub rate_per_s: f64,
    pub conns: u32,
    /// Records in each datagram (one frame per datagram).
    pub records_per_dgram: u16,
    /// Datagrams sent back to back at one intended time (1: evenly spaced). The average rate
    /// is the same; a burst of `b` comes every `b` intervals.
    pub burst: u32,
    /// Share of bids among the records, in parts per thousand (the rest are intents).
    pub bids_per_mille: u32,
    /// Sent but not measured, before the measured interval.
    pub warmup: Duration,
    /// The measured interval.
    pub duration: Duration,
}

impl Shape {
    pub fn total(&self) -> Duration {
        self.warmup + self.duration
    }
}

/// One connection's send schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
    offset_ns: f64,
    burst: u64,
    /// Datagrams in the whole phase (warm-up included).
    pub dgrams: u64,
}

impl Schedule {
    /// Connection `conn` of `shape.conns`: connections are staggered evenly inside one
    /// interval so that together they send evenly.
    pub fn new(shape: &Shape, conn: u32) -> Schedule {
        assert!(shape.rate_per_s > 0.0 && shape.conns > 0 && shape.records_per_dgram > 0 && shape.burst > 0);
        assert!(conn < shape.conns);
        let dgram_rate_per_conn =
            shape.rate_per_s / f64::from(shape.records_per_dgram) / f64::from(shape.conns);
        let interval_ns = 1e9 / dgram_rate_per_conn;
        let burst = u64::from(shape.burst);
        let offset_ns = interval_ns * burst as f64 * f64::from(conn) / f64::from(shape.conns);
        let dgrams = (shape.total().as_secs_f64() * dgram_rate_per_conn).ceil().max(1.0) as u64;
        Schedule { interval_ns, offset_ns, burst, dgrams }
    }

    /// When datagram `j` is meant to leave, in ns since the phase's start.
    pub fn intended_ns(&self, j: u64) -> u64 {
        let slot = j / self.burst * self.burst;
        (self.offset_ns + slot as f64 * self.interval_ns) as u64
    }
}

/// SplitMix64: a tiny deterministic generator, so a phase's records replay from its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (slightly biased for huge ranges; fine for load).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Builds the frame of datagram `j`: records with nonces `j·R + 1 ..= j·R + R`, so a receipt's
/// nonce names its datagram and the datagram its intended time.
#[derive(Debug, Clone)]
pub struct FrameGen {
    records_per_dgram: u16,
    bids_per_mille: u32,
    keys_min: usize,
    keys_max: usize,
    frame_len_max: usize,
    seed: u64,
}

/// `records_per_dgram` records cannot fit in frames of `frame_len_max` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    pub frame_len_max: usize,
    pub records_per_dgram: u16,
}

impl std::fmt::Display for TooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records do not fit in a {}-byte frame", self.records_per_dgram, self.frame_len_max)
    }
}

impl FrameGen {
    /// Intents draw 2..=6 keys (64–96 bytes) uniformly, capped so that every frame of
    /// `records_per_dgram` records fits `frame_len_max`: each record gets an equal share of the
    /// frame. At 16 records a 1,548-byte frame allows all sizes; the 1,400 bytes the engine
    /// takes at most cap intents at 4 keys (80 bytes), its default 1,200 at 3 keys (72 bytes).
    /// The summary reports the mean record size actually sent.
    pub fn new(shape: &Shape, frame_len_max: usize, seed: u64) -> Result<FrameGen, TooSmall> {
        let too_small = TooSmall { frame_len_max, records_per_dgram: shape.records_per_dgram };
        let share = frame_len_max.checked_sub(FRAME_HEADER_LEN).ok_or(too_small)?
            / usize::from(shape.records_per_dgram);
        let keys_cap = share.checked_sub(INTENT_FIXED_LEN).ok_or(too_small)? / 8;
        if keys_cap == 0 || share < BID_LEN {
            return Err(too_small);
        }
        let keys_max = keys_cap.min(KEYS_MAX);
        let keys_min = KEYS_MIN.min(keys_max);
        Ok(FrameGen {
            records_per_dgram: shape.records_per_dgram,
            bids_per_mille: shape.bids_per_mille,
            keys_min,
            keys_max,
            frame_len_max,
            seed,
        })
    }

    pub fn records_per_dgram(&self) -> u16 {
        self.records_per_dgram
    }

    /// Appends datagram `j`'s frame for `client_id` to `out` and returns its length.
    pub fn frame(&self, client_id: u64, j: u64, sent_ns: u64, out: &mut Vec<u8>) -> usize {
        let mut rng =
            SplitMix64::new(self.seed ^ client_id.rotate_left(32) ^ j.wrapping_mul(0xA24B_AED4_963E_E407));
        let r = u64::from(self.records_per_dgram);
        let mut keys = [0u64; KEYS_MAX];
        let mut w = FrameWriter::new(out, self.frame_len_max);
        for i in 0..r {
            let nonce = j * r + i + 1;
            let pushed = if rng.range(0, 999) < u64::from(self.bids_per_mille) {
                w.push_bid(&Bid {
                    client_id,
                    nonce,
                    sent_ns,
                    amount: rng.range(1, 1_000_000),
                    priority: rng.range(0, 7) as u32,
                })
            } else {
                let n = rng.range(self.keys_min as u64, self.keys_max as u64) as usize;
                for (m, key) in keys[..n].iter_mut().enumerate() {
                    // Distinct within the intent by construction (low bits are the index);
                    // 2^20 distinct bases give the engine conflicts to resolve.
                    *key = (rng.next_u64() & 0xF_FFFF) << 3 | m as u64;
                }
                w.push_intent(&Intent {
                    client_id,
                    nonce,
                    sent_ns,
                    profit: rng.range(1, 1_000_000),
                    priority: 0,
                    keys: &keys[..n],
                })
            };
            pushed.expect("the per-record share keeps every record inside the frame");
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rate: f64, conns: u32, r: u16, burst: u32) -> Shape {
        Shape {
            rate_per_s: rate,
            conns,
            records_per_dgram: r,
            burst,
            bids_per_mille: 0,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
        }
    }

    #[test]
    fn schedule_spaces_and_staggers() {
        // 16,000 records/s, 16 per datagram, 2 connections: 500 datagrams/s each, 2 ms apart,
        // the second connection 1 ms after the first.
        let s = shape(16_000.0, 2, 16, 1);
        let a = Schedule::new(&s, 0);
        let b = Schedule::new(&s, 1);
        assert_eq!(a.dgrams, 1250);
        assert_eq!(a.intended_ns(0), 0);
        assert_eq!(a.intended_ns(3), 6_000_000);
        assert_eq!(b.intended_ns(0), 1_000_000);
        // Bursts of 4 keep the average rate: 4 datagrams at 0, the next 4 at 8 ms.
        let c = Schedule::new(&shape(16_000.0, 2, 16, 4), 0);
        assert_eq!((c.intended_ns(3), c.intended_ns(4)), (0, 8_000_000));
    }

    #[test]
    fn frames_decode_with_nonces_of_their_datagram() {
        for (len_max, keys_max) in [(1548, 6), (1434, 5), (1400, 4), (1200, 3)] {
            let s = Shape { bids_per_mille: 250, ..shape(1000.0, 1, 16, 1) };
            let g = FrameGen::new(&s, len_max, 7).unwrap();
            assert_eq!(g.keys_max, keys_max);
            let mut out = Vec::new();
            let len = g.frame(9, 3, 1, &mut out);
            assert!(len <= len_max && len == out.len());
            let nonces: Vec<u64> = fpn_wire::decode_frame(&out)
                .unwrap()
                .map(|r| match r {
                    fpn_wire::RecordRef::Intent(i) => {
                        i.validate().unwrap();
                        assert!((64..=96).contains(&(i.fixed.header.len.get() as usize)));
                        i.fixed.nonce.get()
                    }
                    fpn_wire::RecordRef::Bid(b) => b.nonce.get(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(nonces, (49..=64).collect::<Vec<_>>());
        }
        assert!(FrameGen::new(&shape(1.0, 1, 16, 1), 600, 0).is_err());
    }
}
