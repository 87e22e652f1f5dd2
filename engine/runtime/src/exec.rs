//! Pinned thread-per-core executors.
//!
//! [`start`] takes one [`ExecutorSpec`] per CPU and runs a glommio `LocalExecutor` on its own
//! thread, pinned with `Placement::Fixed(cpu)`. The roles of an executor (shards sharing the
//! CPU) are tasks on it; a role given `shares` gets its own glommio task queue
//! (`Shares::Static(shares)`, `Latency::NotImportant`), the others share the default queue.
//! An executor may be given a setup ([`ExecutorSetup`]): run on its thread, once pinned and
//! before any role starts, for what applies to the thread as a whole (its scheduling policy,
//! say); an error stops the start.
//! Every role's run loop checks the [`StopFlag`]; [`Executors::stop`] sets it and
//! [`Executors::join`] waits for all threads. A panicking executor sets the stop flag so the
//! rest of the process winds down instead of running headless.
//!
//! Start-up is checked before any thread runs user code: CPU ids must be in the process's
//! allowed set and distinct, and `RLIMIT_MEMLOCK` must cover glommio's io_uring needs summed
//! over the executors (raised
//! when allowed, otherwise a clear error). `start` returns only once every executor has
//! created its io_uring rings and spawned its roles, or with the first error.
//!
//! This module talks to the kernel (`sched_getcpu`, `sched_getaffinity`, `getrlimit`,
//! `setrlimit`) and holds this crate's `unsafe` for that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use crate::idle::ParkMode;

/// Smallest `RLIMIT_MEMLOCK` glommio 0.9 accepts for one executor (`sys/uring.rs`:
/// `MIN_MEMLOCK_LIMIT`), before the registered I/O memory.
pub const GLOMMIO_MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

/// Default preempt timer: how often a spinning task queue gives way to other task queues,
/// timers and I/O on the same executor. This is glommio's own default (100 ms). Shorter
/// values would let a parked role sharing a CPU with a spinner wake sooner, but with 1-3 ms
/// glommio 0.9 lost timer wake-ups within seconds on our VM (the executor stays blocked in
/// `io_uring_enter`; see `docs/runtime.md`), while at 10-100 ms no loss showed in 20 s runs.
pub const PREEMPT_TIMER_DEFAULT: Duration = Duration::from_millis(100);

/// Default I/O memory registered with io_uring per executor. Shards do no storage I/O, so
/// this is far below glommio's 10 MiB default (glommio rounds it up to at least 64 KiB).
pub const IO_MEMORY_BYTES_DEFAULT: usize = 1024 * 1024;

/// A shared stop signal: set once, read by every run loop each iteration (a relaxed load
/// of a line nobody writes until shutdown, so it stays in every core's cache).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every run loop to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once [`StopFlag::stop`] was called.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a role's factory receives on its executor thread.
#[derive(Clone, Debug)]
pub struct RoleContext {
    /// Name of the executor (one per CPU).
    pub executor_name: Arc<str>,
    /// Name of this role.
    pub role_name: Arc<str>,
    /// The CPU the executor is pinned to.
    pub cpu_id: usize,
    /// The process-wide stop signal.
    pub stop: StopFlag,
    /// How this role parks: [`ParkMode::ThreadSleep`] when it is alone on its executor,
    /// [`ParkMode::Together`] when it shares the executor's task queue with other roles,
    /// [`ParkMode::ExecutorTimer`] when roles have task queues of their own.
    pub park_mode: ParkMode,
}

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
type RoleFactory = Box<dyn FnOnce(RoleContext) -> LocalFuture + Send>;

/// One role (a shard's run loop) to run as a task on an executor.
pub struct RoleSpec {
    name: Arc<str>,
    shares: Option<usize>,
    factory: RoleFactory,
}

impl RoleSpec {
    /// A role whose future is built on the executor thread by `factory`, so the future itself
    /// need not be `Send` (it may hold `Rc`s, glommio sockets, ...).
    pub fn new<F, Fut>(name: impl Into<Arc<str>>, factory: F) -> Self
    where
        F: FnOnce(RoleContext) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self { name: name.into(), shares: None, factory: Box::new(move |ctx| Box::pin(factory(ctx))) }
    }

    /// Runs the role in its own glommio task queue with static `shares` (CPU time between
    /// task queues of one executor is split by shares once the preempt timer fires).
    ///
    /// # Panics
    /// If `shares` is zero.
    pub fn with_shares(mut self, shares: usize) -> Self {
        assert!(shares > 0, "task queue shares must be at least 1");
        self.shares = Some(shares);
        self
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for RoleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSpec").field("name", &self.name).field("shares", &self.shares).finish()
    }
}

/// What an [`ExecutorSetup`] is told about its executor.
#[derive(Debug, Clone)]
pub struct SetupContext<'a> {
    /// The executor's name (its thread is `fpn-<name>`).
    pub executor_name: &'a str,
    /// The CPU the thread is pinned to.
    pub cpu_id: usize,
}

/// A setup run on an executor's own thread once it is pinned, before any of its roles
/// starts: what must apply to the thread (a scheduling policy, say). `Err(message)` stops
/// the start with [`ExecError::Setup`].
pub struct ExecutorSetup(Box<SetupFn>);

type SetupFn = dyn FnOnce(&SetupContext<'_>) -> Result<(), String> + Send;

impl ExecutorSetup {
    pub fn new(f: impl FnOnce(&SetupContext<'_>) -> Result<(), String> + Send + 'static) -> Self {
        Self(Box::new(f))
    }
}

impl std::fmt::Debug for ExecutorSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorSetup(..)")
    }
}

/// One executor: a thread pinned to `cpu_id` running `roles`.
#[derive(Debug)]
pub struct ExecutorSpec {
    pub cpu_id: usize,
    pub name: String,
    pub roles: Vec<RoleSpec>,
    /// See [`PREEMPT_TIMER_DEFAULT`].
    pub preempt_timer: Duration,
    /// See [`IO_MEMORY_BYTES_DEFAULT`].
    pub io_memory_bytes: usize,
    /// How long glommio itself spins before blocking in io_uring when every task is
    /// asleep (`None`: block at once). Our idle strategies do the spinning in the role.
    pub spin_before_park: Option<Duration>,
    /// Run on the executor's thread before its roles (see [`ExecutorSetup`]).
    pub setup: Option<ExecutorSetup>,
}

impl ExecutorSpec {
    /// An executor on `cpu_id` with the defaults above.
    pub fn new(cpu_id: usize, name: impl Into<String>, roles: Vec<RoleSpec>) -> Self {
        Self {
            cpu_id,
            name: name.into(),
            roles,
            preempt_timer: PREEMPT_TIMER_DEFAULT,
            io_memory_bytes: IO_MEMORY_BYTES_DEFAULT,
            spin_before_park: None,
            setup: None,
        }
    }
}

/// Why executors could not start or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no executors given")]
    NoExecutors,
    #[error("executor {executor:?} has no roles")]
    NoRoles { executor: String },
    #[error("CPU {cpu_id} for executor {executor:?} is not in this process's allowed CPUs {allowed:?}")]
    CpuNotAllowed { executor: String, cpu_id: usize, allowed: Vec<usize> },
    #[error(
        "CPU {cpu_id} is given to executors {first:?} and {second:?}; roles sharing a CPU belong in one executor"
    )]
    CpuTwice { cpu_id: usize, first: String, second: String },
    #[error(
        "RLIMIT_MEMLOCK is {current_bytes} bytes but glommio's io_uring needs {required_bytes}; \
         raising it failed ({reason}). Set LimitMEMLOCK= in the systemd unit or `ulimit -l` \
         (KiB) before starting"
    )]
    MemlockTooLow { current_bytes: u64, required_bytes: u64, reason: String },
    #[error("reading the process CPU affinity failed: {0}")]
    Affinity(std::io::Error),
    #[error("spawning the thread for executor {executor:?} failed: {source}")]
    Spawn { executor: String, source: std::io::Error },
    #[error("glommio executor {executor:?} failed: {message}")]
    Glommio { executor: String, message: String },
    #[error("executor {executor:?} setup: {message}")]
    Setup { executor: String, message: String },
    #[error("executor {executor:?} panicked: {message}")]
    Panicked { executor: String, message: String },
}

/// Running executors. Dropping this does not stop them: call [`Executors::stop`] and
/// [`Executors::join`].
#[derive(Debug)]
pub struct Executors {
    stop: StopFlag,
    threads: Vec<(String, usize, JoinHandle<()>)>,
}

impl Executors {
    /// The stop signal shared by all roles.
    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Asks every role to stop (they see it at their next loop iteration).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// `(name, cpu_id)` of each executor, in start order.
    pub fn executors(&self) -> impl Iterator<Item = (&str, usize)> {
        self.threads.iter().map(|(name, cpu, _)| (name.as_str(), *cpu))
    }

    /// Waits until every executor thread ended; one result per executor, in start order.
    /// Roles must end by themselves (normally by seeing the stop flag).
    pub fn join(self) -> Vec<(String, Result<(), ExecError>)> {
        self.threads
            .into_iter()
            .map(|(name, _, handle)| {
                let result = handle.join().map_err(|payload| ExecError::Panicked {
                    executor: name.clone(),
                    message: panic_text(&payload),
                });
                (name, result)
            })
            .collect()
    }
}

/// Starts one pinned executor per spec. Returns once all executors run their roles, or the
/// first error (then the ones already started are stopped and joined).
pub fn start(specs: Vec<ExecutorSpec>, stop: StopFlag) -> Result<Executors, ExecError> {
    if specs.is_empty() {
        return Err(ExecError::NoExecutors);
    }
    let allowed = allowed_cpus().map_err(ExecError::Affinity)?;
    for (i, spec) in specs.iter().enumerate() {
        if spec.roles.is_empty() {
            return Err(ExecError::NoRoles { executor: spec.name.clone() });
        }
        if !allowed.contains(&spec.cpu_id) {
            return Err(ExecError::CpuNotAllowed {
                executor: spec.name.clone(),
                cpu_id: spec.cpu_id,
                allowed: allowed.clone(),
            });
        }
        if let Some(first) = specs[..i].iter().find(|s| s.cpu_id == spec.cpu_id) {
            return Err(ExecError::CpuTwice {
                cpu_id: spec.cpu_id,
                first: first.name.clone(),
                second: spec.name.clone(),
            });
        }
    }
    // Registered I/O memory counts against the process's locked memory (without
    // CAP_IPC_LOCK), so the executors' needs add up.
    let required_bytes = specs.iter().map(|s| memlock_bytes_required(s.io_memory_bytes)).sum();
    ensure_memlock(required_bytes)?;

    let mut executors = Executors { stop: stop.clone(), threads: Vec::with_capacity(specs.len()) };
    for spec in specs {
        let name = spec.name.clone();
        let cpu_id = spec.cpu_id;
        let (started_tx, started_rx) = mpsc::sync_channel::<Result<(), StartFailure>>(1);
        let spawned = std::thread::Builder::new().name(format!("fpn-{name}")).spawn({
            let stop = stop.clone();
            move || run_executor(spec, stop, started_tx)
        });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(source) => {
                stop_and_join(executors);
                return Err(ExecError::Spawn { executor: name, source });
            }
        };
        executors.threads.push((name.clone(), cpu_id, handle));
        let outcome = started_rx.recv();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(StartFailure::Glommio(message))) => Some(ExecError::Glommio { executor: name, message }),
            Ok(Err(StartFailure::Setup(message))) => Some(ExecError::Setup { executor: name, message }),
            // The thread died before reporting: it panicked; join says why.
            Err(mpsc::RecvError) => {
                let (_, _, handle) = executors.threads.pop().expect("pushed above");
                let message = handle.join().err().map(|p| panic_text(&p)).unwrap_or_default();
                Some(ExecError::Panicked { executor: name, message })
            }
        };
        if let Some(error) = failure {
            stop_and_join(executors);
            return Err(error);
        }
    }
    Ok(executors)
}

fn stop_and_join(executors: Executors) {
    executors.stop();
    drop(executors.join());
}

/// Sets the stop flag if the executor thread unwinds, so other executors wind down.
struct StopOnPanic(StopFlag);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// Why an executor thread did not start its roles.
enum StartFailure {
    Glommio(String),
    Setup(String),
}

fn run_executor(
    mut spec: ExecutorSpec,
    stop: StopFlag,
    started_tx: mpsc::SyncSender<Result<(), StartFailure>>,
) {
    let _guard = StopOnPanic(stop.clone());
    if let Err(error) = set_timer_slack_ns(1) {
        let _ = started_tx.send(Err(StartFailure::Glommio(format!("setting timer slack: {error}"))));
        return;
    }
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(spec.cpu_id))
        .name(&spec.name)
        .preempt_timer(spec.preempt_timer)
        .io_memory(spec.io_memory_bytes);
    if let Some(spin) = spec.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    let executor = match builder.make() {
        Ok(executor) => executor,
        Err(error) => {
            let _ = started_tx.send(Err(StartFailure::Glommio(error.to_string())));
            return;
        }
    };
    // `make` pinned this thread; the setup runs on it before any role.
    if let Some(setup) = spec.setup.take() {
        let ctx = SetupContext { executor_name: &spec.name, cpu_id: spec.cpu_id };
        if let Err(message) = (setup.0)(&ctx) {
            let _ = started_tx.send(Err(StartFailure::Setup(message)));
            return;
        }
    }
    let executor_name: Arc<str> = spec.name.as_str().into();
    let cpu_id = spec.cpu_id;
    // Roles in the executor's own task queue park together (see `ParkMode`); roles in task
    // queues of their own only run when the scheduler switches queues, so they keep the timer.
    let together = spec.roles.len() <= crate::idle::TOGETHER_ROLES_MAX
        && spec.roles.iter().all(|role| role.shares.is_none());
    let roles_n = spec.roles.len() as u8;
    let park_mode = |slot: usize| match spec.roles.len() {
        1 => ParkMode::ThreadSleep,
        _ if together => ParkMode::Together { slot: slot as u8, roles: roles_n },
        _ => ParkMode::ExecutorTimer,
    };
    let park_modes: Vec<ParkMode> = (0..spec.roles.len()).map(park_mode).collect();
    executor.run(async move {
        let mut tasks = Vec::with_capacity(spec.roles.len());
        for (role, park_mode) in spec.roles.into_iter().zip(park_modes) {
            let ctx = RoleContext {
                executor_name: executor_name.clone(),
                role_name: role.name.clone(),
                cpu_id,
                stop: stop.clone(),
                park_mode,
            };
            let queue = match role.shares {
                Some(shares) => glommio::executor().create_task_queue(
                    Shares::Static(shares),
                    Latency::NotImportant,
                    &role.name,
                ),
                None => glommio::executor().current_task_queue(),
            };
            match glommio::spawn_local_into((role.factory)(ctx), queue) {
                Ok(task) => tasks.push(task),
                Err(error) => {
                    stop.stop();
                    let _ = started_tx
                        .send(Err(StartFailure::Glommio(format!("spawning role {:?}: {error}", role.name))));
                    return;
                }
            }
        }
        let _ = started_tx.send(Ok(()));
        for task in tasks {
            task.await;
        }
    });
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// `RLIMIT_MEMLOCK` one executor needs: glommio's floor plus its registered I/O memory
/// (rounded up as glommio does). Root has `CAP_IPC_LOCK` and is not limited in practice,
/// but glommio checks the number regardless.
pub fn memlock_bytes_required(io_memory_bytes: usize) -> u64 {
    let io_memory = io_memory_bytes.max(64 * 1024).next_multiple_of(4096) as u64;
    GLOMMIO_MEMLOCK_BYTES_MIN + io_memory
}

/// Makes sure the soft `RLIMIT_MEMLOCK` is at least `required_bytes`, raising it (and the
/// hard limit, which needs `CAP_SYS_RESOURCE`) if needed. Returns the soft limit in force.
pub fn ensure_memlock(required_bytes: u64) -> Result<u64, ExecError> {
    let (soft, hard) = memlock_limit().map_err(|e| ExecError::MemlockTooLow {
        current_bytes: 0,
        required_bytes,
        reason: format!("getrlimit: {e}"),
    })?;
    if soft >= required_bytes {
        return Ok(soft);
    }
    let new_hard = hard.max(required_bytes);
    set_memlock_limit(required_bytes, new_hard).map_err(|e| ExecError::MemlockTooLow {
        current_bytes: soft,
        required_bytes,
        reason: format!("setrlimit: {e}"),
    })?;
    Ok(required_bytes)
}

/// `(soft, hard)` `RLIMIT_MEMLOCK` in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

fn set_memlock_limit(soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a valid `rlimit` read by the kernel during the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs the calling thread may run on (call from the main thread before pinning).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let cpu_count = libc::CPU_SETSIZE as usize;
    // SAFETY: `set` was filled by the kernel and `cpu` stays below `CPU_SETSIZE`.
    Ok((0..cpu_count).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`). Linux lets a normal
/// thread's sleeps end up to 50 µs late by default so that wake-ups can be batched; the
/// `idle` bench measured a thread-sleep park overshooting by ~72 µs (p50) with the default
/// and ~30 µs with 1 ns. Executor threads set 1 ns.
pub fn set_timer_slack_ns(ns: u64) -> std::io::Result<()> {
    let ns = libc::c_ulong::try_from(ns.max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches only this thread.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's timer slack in nanoseconds.
pub fn timer_slack_ns() -> std::io::Result<u64> {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer arguments and returns the slack.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_TIMERSLACK,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc as u64)
}

/// The CPU the calling thread runs on right now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: `sched_getcpu` takes no arguments and only returns a number or -1.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_requirement_covers_glommio_floor_and_io_memory() {
        assert_eq!(memlock_bytes_required(0), 512 * 1024 + 64 * 1024);
        assert_eq!(memlock_bytes_required(1024 * 1024), 512 * 1024 + 1024 * 1024);
        assert_eq!(memlock_bytes_required(100_000), 512 * 1024 + 102_400);
    }

    #[test]
    fn ensure_memlock_accepts_what_is_already_there() {
        let (soft, _) = memlock_limit().unwrap();
        assert_eq!(ensure_memlock(soft.min(4096)).unwrap(), soft);
    }

    #[test]
    fn ensure_memlock_raises_the_limit_or_says_how() {
        let (soft, _) = memlock_limit().unwrap();
        if soft == u64::MAX {
            return; // unlimited: nothing to raise
        }
        let wanted = soft + 64 * 1024;
        match ensure_memlock(wanted) {
            Ok(limit) => {
                assert_eq!(limit, wanted);
                assert_eq!(memlock_limit().unwrap().0, wanted);
            }
            Err(error @ ExecError::MemlockTooLow { .. }) => {
                assert!(error.to_string().contains("LimitMEMLOCK="), "{error}");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn allowed_cpus_contains_the_current_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        assert!(allowed.contains(&current_cpu().unwrap()));
    }

    #[test]
    fn timer_slack_is_set_per_thread() {
        std::thread::spawn(|| {
            set_timer_slack_ns(1).unwrap();
            assert_eq!(timer_slack_ns().unwrap(), 1);
            set_timer_slack_ns(50_000).unwrap();
            assert_eq!(timer_slack_ns().unwrap(), 50_000);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn stop_flag_is_shared_by_clones() {
        let a = StopFlag::new();
        let b = a.clone();
        assert!(!b.is_stopped());
        a.stop();
        assert!(b.is_stopped());
    }

    #[test]
    fn bad_specs_are_refused_before_any_thread_starts() {
        let role = || RoleSpec::new("r", |_ctx| async {});
        assert!(matches!(start(vec![], StopFlag::new()), Err(ExecError::NoExecutors)));
        assert!(matches!(
            start(vec![ExecutorSpec::new(allowed_cpus().unwrap()[0], "empty", vec![])], StopFlag::new()),
            Err(ExecError::NoRoles { .. })
        ));
        let err = start(vec![ExecutorSpec::new(4095, "far", vec![role()])], StopFlag::new()).unwrap_err();
        assert!(matches!(err, ExecError::CpuNotAllowed { cpu_id: 4095, .. }), "{err}");
        // Any CPU this process may run on (tests can run under taskset).
        let cpu = allowed_cpus().unwrap()[0];
        let err = start(
            vec![ExecutorSpec::new(cpu, "a", vec![role()]), ExecutorSpec::new(cpu, "b", vec![role()])],
            StopFlag::new(),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::CpuTwice { cpu_id, .. } if cpu_id == cpu), "{err}");
    }
}
