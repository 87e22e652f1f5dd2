use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fpn_runtime::exec::{self, ExecError, ExecutorSpec, RoleSpec, StopFlag};
use fpn_runtime::idle::{IdleStrategy, Idler, ParkMode};
use fpn_runtime::ring::{Full, ring};

/// Executor tests pin threads to the two CPUs and spin: run them one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

fn two_cpus() -> Option<(usize, usize)> {
    let cpus = exec::allowed_cpus().unwrap();
    match cpus.as_slice() {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

/// Sets `stop` after `limit` so a broken test ends instead of spinning forever.
fn stop_after(stop: &StopFlag, limit: Duration) {
    let stop = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        stop.stop();
    });
}

#[test]
fn pinned_executors_move_values_across_cores() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some((cpu_a, cpu_b)) = two_cpus() else {
        eprintln!("skipped: fewer than two CPUs allowed");
        return;
    };
    const COUNT: u64 = 20_000;
    let (mut tx, mut rx) = ring::<u64>(256);
    let stop = StopFlag::new();
    stop_after(&stop, Duration::from_secs(20));
    let seen_cpus = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    let fulls = Arc::new(AtomicU64::new(0));
    let strategy: IdleStrategy = "spin-then-park:2000:50us".parse().unwrap();

    let producer = RoleSpec::new("producer", {
        let (seen_cpus, fulls) = (seen_cpus.clone(), fulls.clone());
        move |ctx| async move {
            seen_cpus.lock().unwrap().push(("producer", ctx.cpu_id, exec::current_cpu()));
            assert_eq!(ctx.park_mode, ParkMode::ThreadSleep, "alone on its executor");
            assert_eq!(exec::timer_slack_ns().unwrap(), 1, "executor threads sleep without slack");
            let mut idler = Idler::new(strategy);
            let mut next = 0;
            while next < COUNT && !ctx.stop.is_stopped() {
                let did_work = match tx.try_push(next) {
                    Ok(()) => {
                        next += 1;
                        true
                    }
                    Err(Full(value)) => {
                        assert_eq!(value, next);
                        false
                    }
                };
                idler.idle(did_work).perform(ctx.park_mode).await;
            }
            fulls.store(tx.counters().full_total, Ordering::Relaxed);
        }
    });
    let consumer = RoleSpec::new("consumer", {
        let (seen_cpus, received) = (seen_cpus.clone(), received.clone());
        move |ctx| async move {
            seen_cpus.lock().unwrap().push(("consumer", ctx.cpu_id, exec::current_cpu()));
            let mut idler = Idler::new(strategy);
            let mut expected = 0;
            while expected < COUNT && !ctx.stop.is_stopped() {
                let n = rx.drain(64, |v| {
                    assert_eq!(v, expected);
                    expected += 1;
                });
                idler.idle(n > 0).perform(ctx.park_mode).await;
            }
            received.store(rx.counters().popped_total, Ordering::Relaxed);
        }
    });
    let executors = exec::start(
        vec![
            ExecutorSpec::new(cpu_a, "prod", vec![producer]),
            ExecutorSpec::new(cpu_b, "cons", vec![consumer]),
        ],
        stop.clone(),
    )
    .unwrap();
    assert_eq!(executors.executors().collect::<Vec<_>>(), [("prod", cpu_a), ("cons", cpu_b)]);
    for (name, result) in executors.join() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(!stop.is_stopped(), "the roles finished by themselves, not by the time limit");
    assert_eq!(received.load(Ordering::Relaxed), COUNT);
    let mut seen = seen_cpus.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("consumer", cpu_b, Some(cpu_b)), ("producer", cpu_a, Some(cpu_a))]);
    eprintln!("ring full {} times", fulls.load(Ordering::Relaxed));
}

#[test]
fn roles_sharing_a_cpu_all_make_progress() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cpu = exec::allowed_cpus().unwrap()[0];
    let stop = StopFlag::new();
    stop_after(&stop, Duration::from_secs(20));
    // Two spinning roles in the default task queue, one parking role and one spinning role
    // in their own task queues: each must get turns on the single CPU.
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let role = |index: usize, strategy: &str| {
        let strategy: IdleStrategy = strategy.parse().unwrap();
        let counts = counts.clone();
        RoleSpec::new(format!("role-{index}"), move |ctx| async move {
            assert_eq!(ctx.park_mode, ParkMode::ExecutorTimer, "roles share the executor");
            // Rc: the future need not be Send.
            let local = Rc::new(Cell::new(0u64));
            let mut idler = Idler::new(strategy);
            while !ctx.stop.is_stopped() {
                local.set(local.get() + 1);
                counts[index].store(local.get(), Ordering::Relaxed);
                idler.idle(false).perform(ctx.park_mode).await;
            }
        })
    };
    let roles = vec![
        role(0, "spin"),
        role(1, "spin"),
        role(2, "park:1ms").with_shares(100),
        role(3, "spin").with_shares(100),
    ];
    let executors = exec::start(vec![ExecutorSpec::new(cpu, "shared", roles)], stop.clone()).unwrap();
    let started = Instant::now();
    // The parked role's timer is only seen at a preempt tick (100 ms) while others spin.
    let minimums = [20, 20, 5, 20];
    let progressed = || counts.iter().zip(minimums).all(|(c, min)| c.load(Ordering::Relaxed) >= min);
    while !progressed() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    executors.stop();
    for (name, result) in executors.join() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let values: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert!(values.iter().zip(minimums).all(|(&v, min)| v >= min), "a role starved: {values:?}");
    eprintln!("iterations per role after {:?}: {values:?}", started.elapsed());
}

#[test]
fn roles_sharing_a_queue_park_the_thread_together() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cpu = exec::allowed_cpus().unwrap()[0];
    let stop = StopFlag::new();
    stop_after(&stop, Duration::from_secs(20));
    // Three idle roles in the default task queue, parking 2 ms each: the executor thread
    // must sleep (a few hundred rounds in a second), not spin through yields (millions).
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let modes = Arc::new(Mutex::new(Vec::new()));
    let roles = (0..3)
        .map(|index| {
            let (counts, modes) = (counts.clone(), modes.clone());
            RoleSpec::new(format!("role-{index}"), move |ctx| async move {
                modes.lock().unwrap().push(ctx.park_mode);
                let mut idler = Idler::new(IdleStrategy::Park { park_ns: 2_000_000 });
                while !ctx.stop.is_stopped() {
                    counts[index].fetch_add(1, Ordering::Relaxed);
                    idler.idle(false).perform(ctx.park_mode).await;
                }
            })
        })
        .collect();
    let executors = exec::start(vec![ExecutorSpec::new(cpu, "shared", roles)], stop.clone()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    executors.stop();
    for (name, result) in executors.join() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut modes = modes.lock().unwrap().clone();
    modes.sort_by_key(|m| match m {
        ParkMode::Together { slot, .. } => *slot,
        _ => u8::MAX,
    });
    assert_eq!(modes, (0..3).map(|slot| ParkMode::Together { slot, roles: 3 }).collect::<Vec<_>>());
    let values: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!("iterations per role in 1 s: {values:?}");
    // Each role ran (after every sleep each looks for work once) but the thread slept: at
    // most one round per 2 ms sleep, plus the start.
    assert!(values.iter().all(|&v| v >= 5), "a role starved: {values:?}");
    assert!(values.iter().all(|&v| v <= 1_000), "the thread did not sleep: {values:?}");
}

#[test]
fn a_panicking_role_stops_the_other_executors() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some((cpu_a, cpu_b)) = two_cpus() else {
        eprintln!("skipped: fewer than two CPUs allowed");
        return;
    };
    let stop = StopFlag::new();
    stop_after(&stop, Duration::from_secs(20));
    let started = Instant::now();
    let doomed = RoleSpec::new("doomed", |_ctx| async {
        std::thread::sleep(Duration::from_millis(20));
        panic!("role failed on purpose");
    });
    let survivor = RoleSpec::new("survivor", |ctx| async move {
        let mut idler = Idler::new(IdleStrategy::Park { park_ns: 1_000_000 });
        while !ctx.stop.is_stopped() {
            idler.idle(false).perform(ctx.park_mode).await;
        }
    });
    let executors = exec::start(
        vec![
            ExecutorSpec::new(cpu_a, "doomed", vec![doomed]),
            ExecutorSpec::new(cpu_b, "survivor", vec![survivor]),
        ],
        stop.clone(),
    )
    .unwrap();
    let results = executors.join();
    assert!(started.elapsed() < Duration::from_secs(10), "stopped by the panic, not the time limit");
    assert!(stop.is_stopped());
    match &results[0] {
        (name, Err(ExecError::Panicked { message, .. })) => {
            assert_eq!(name, "doomed");
            assert!(message.contains("on purpose"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(results[1].1.is_ok(), "{:?}", results[1]);
}

#[test]
fn a_setup_runs_on_the_pinned_thread_before_the_roles_and_its_error_stops_the_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cpu = exec::allowed_cpus().unwrap()[0];
    // What the setup saw, then what the role saw: the same thread, already pinned.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = StopFlag::new();
    stop_after(&stop, Duration::from_secs(20));
    let role = RoleSpec::new("r", {
        let seen = seen.clone();
        move |_ctx| async move {
            let t = std::thread::current();
            seen.lock().unwrap().push((
                "role",
                t.name().unwrap_or("").to_string(),
                exec::current_cpu().unwrap(),
            ));
        }
    });
    let mut spec = ExecutorSpec::new(cpu, "setup", vec![role]);
    spec.setup = Some(exec::ExecutorSetup::new({
        let seen = seen.clone();
        move |ctx| {
            assert_eq!((ctx.executor_name, ctx.cpu_id), ("setup", cpu));
            let t = std::thread::current();
            seen.lock().unwrap().push((
                "setup",
                t.name().unwrap_or("").to_string(),
                exec::current_cpu().unwrap(),
            ));
            Ok(())
        }
    }));
    let executors = exec::start(vec![spec], stop.clone()).unwrap();
    assert!(executors.join().into_iter().all(|(_, r)| r.is_ok()));
    let name = "fpn-setup".to_string();
    assert_eq!(*seen.lock().unwrap(), vec![("setup", name.clone(), cpu), ("role", name, cpu)]);

    // A failing setup: the start fails with its message, the role never runs.
    let ran = Arc::new(AtomicU64::new(0));
    let role = RoleSpec::new("r", {
        let ran = ran.clone();
        move |_ctx| async move {
            ran.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut spec = ExecutorSpec::new(cpu, "refused", vec![role]);
    spec.setup = Some(exec::ExecutorSetup::new(|_| Err("not permitted, on purpose".into())));
    match exec::start(vec![spec], StopFlag::new()) {
        Err(ExecError::Setup { executor, message }) => {
            assert_eq!((executor.as_str(), message.as_str()), ("refused", "not permitted, on purpose"));
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert_eq!(ran.load(Ordering::Relaxed), 0);
}
