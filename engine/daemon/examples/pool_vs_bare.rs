//! Time per clearing proof in the prover pool's worker against a bare ark-groth16 prove of
//! the same circuit, side by side on the same CPU.
//!
//! ```sh
//! cargo run --release -p flashpointd --example pool_vs_bare -- [proofs] [cpu]
//! #                                                             10       the last allowed CPU
//! ```
//!
//! - **pool**: a real worker (`flashpointd::prover::worker::spawn`): its own thread pinned to
//!   `cpu`, `SCHED_IDLE` and nice 19, keys from a `KeySlot`; the job goes over its ring and the
//!   time is the worker's own (`WorkerDone::elapsed`: pre-check, commitments, synthesis,
//!   witness map, MSMs and the snarkjs JSON of the proof).
//! - **bare**: `Groth16::<Bn254>::prove` of `ClearingCircuit::new(witness)` (no pre-check
//!   timing, no JSON) on this thread, pinned to the same CPU at normal priority.
//! - **pool code, normal priority**: the worker's `prove` (the same work as the pool worker)
//!   on this thread: the pool's code path without the idle scheduling class, to tell the two
//!   apart on a busy machine.
//!
//! Runs alternate (bare, pool, bare, pool, …) so drifting machine load hits both alike. A
//! full-capacity witness (64 entries, 16 winners): proving time does not depend on the values.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ark_snark::SNARK;
use ark_std::rand::rngs::OsRng;
use flashpointd::prover::worker::{self, KeySlot, WorkerDone, WorkerJob};
use fpn_prover::{
    AuctionWitness, BLOCK_ENTRIES_MAX, Bn254, ClearingCircuit, ClearingWitness, EntryWitness,
    PRICING_UNIFORM, WINNERS_MAX, WinnerWitness,
};
use fpn_runtime::ring::ring;

fn full_capacity() -> ClearingWitness {
    let entries: Vec<EntryWitness> = (0..BLOCK_ENTRIES_MAX as u64)
        .map(|i| EntryWitness { seq: 10 + i, profit: 1_000_000 + i, payout: 990_000 + i })
        .collect();
    let payouts: u64 = entries.iter().map(|e| e.payout).sum();
    let winners = (0..WINNERS_MAX as u64)
        .map(|j| {
            let amount = 1_000_000 + j * 1_000;
            WinnerWitness { seq: 2_000 + j, amount, price: amount.min(1_005_000) }
        })
        .collect();
    ClearingWitness {
        window_id: 7,
        windows_count: 1,
        fee_ppm: 1_000_000,
        fifo_total: payouts,
        entries,
        auction: AuctionWitness {
            pricing: PRICING_UNIFORM,
            reserve: 1_000_000,
            uniform_price: 1_005_000,
            winners,
        },
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let proofs: usize = args.get(1).map_or(10, |a| a.parse().expect("proofs"));
    let allowed = flashpointd::CpuSet::host();
    let cpu: usize =
        args.get(2).map_or_else(|| allowed.iter().last().expect("a CPU"), |a| a.parse().expect("cpu"));

    let dir = std::env::temp_dir().join(format!("fpn-pool-vs-bare-{}", std::process::id()));
    let keys = Arc::new(KeySlot::new(dir.clone()));
    let start = Instant::now();
    let circuit_keys = keys.load().as_ref().expect("keys").clone();
    eprintln!("keys set up in {:.1} s", start.elapsed().as_secs_f64());

    let (mut jobs, jobs_rx) = ring::<WorkerJob>(1);
    let (done_tx, mut done) = ring::<WorkerDone>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = worker::spawn(0, cpu, keys, jobs_rx, done_tx, stop.clone()).expect("worker");
    assert!(core_affinity::set_for_current(core_affinity::CoreId { id: cpu }), "pin to cpu {cpu}");

    let witness = full_capacity();
    let (mut bare, mut pool, mut code) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..proofs {
        let t = Instant::now();
        let circuit = ClearingCircuit::new(witness.clone()).expect("valid witness");
        let proof =
            ark_groth16::Groth16::<Bn254>::prove(&circuit_keys.pk, circuit, &mut OsRng).expect("prove");
        bare.push(t.elapsed());
        std::hint::black_box(proof);

        let t = Instant::now();
        std::hint::black_box(worker::prove(&circuit_keys, &witness).expect("prove"));
        code.push(t.elapsed());

        assert!(
            jobs.try_push(WorkerJob { job_id: i as u64, witness: witness.clone() }).is_ok(),
            "idle worker"
        );
        handle.thread().unpark();
        let answer = loop {
            if let Some(a) = done.pop() {
                break a;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let files = answer.result.expect("the pool proves");
        pool.push(answer.elapsed);
        let t = files.timings;
        eprintln!(
            "proof {i}: bare {:.0} ms, pool code {:.0} ms, pool {:.0} ms (synthesis {:.0}, witness map {:.0}, msm {:.0})",
            bare[i].as_secs_f64() * 1e3,
            code[i].as_secs_f64() * 1e3,
            pool[i].as_secs_f64() * 1e3,
            t.synthesis.as_secs_f64() * 1e3,
            t.witness_map.as_secs_f64() * 1e3,
            t.msm.as_secs_f64() * 1e3
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    handle.thread().unpark();
    let _ = handle.join();
    let _ = std::fs::remove_dir_all(&dir);
    let (b, c, p) = (median(&mut bare), median(&mut code), median(&mut pool));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "cpu {cpu}, {proofs} proofs each, median (min): bare {:.1} ms ({:.1}), pool code at normal priority \
         {:.1} ms ({:.1}), pool worker {:.1} ms ({:.1}); pool code/bare {:.3}, pool worker/bare {:.3}",
        ms(b),
        ms(bare[0]),
        ms(c),
        ms(code[0]),
        ms(p),
        ms(pool[0]),
        c.as_secs_f64() / b.as_secs_f64(),
        p.as_secs_f64() / b.as_secs_f64()
    );
}
