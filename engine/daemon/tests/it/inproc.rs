//! The daemon in this test process (`flashpointd::run::run` on a thread), for tests that
//! need what a child process cannot give: a counting allocator, or a core map the config
//! validation would refuse (two intakes on one CPU, when the test may use only one CPU).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flashpointd::Settings;
use flashpointd::config::{Inputs, load};
use flashpointd::run::RunError;

use crate::daemon::{allowed_cpus, config_text, http, metrics_until, scratch_dir};

/// One in-process daemon at a time: they would count each other's allocations.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct InProcess {
    pub addr: String,
    pub data: PathBuf,
    tid: libc::pthread_t,
    handle: Option<JoinHandle<Result<(), RunError>>>,
    _guard: MutexGuard<'static, ()>,
}

/// Settings from the test config text (see `daemon::config_text`).
pub fn settings(name: &str, duration_ms: u64, shards: usize) -> (Settings, PathBuf) {
    let dir = scratch_dir(name);
    let config = dir.join("flashpointd.toml");
    let data = dir.join("data");
    std::fs::write(&config, config_text(&data, duration_ms, shards)).unwrap();
    let inputs = Inputs::gather(Some(config), vec![], vec![]).unwrap();
    (load(&inputs, &flashpointd::CpuSet::new(allowed_cpus())).unwrap().settings, data)
}

impl InProcess {
    /// Starts the daemon and waits until `/health/ready` answers 200.
    pub fn start(settings: Settings, data: PathBuf) -> InProcess {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() } as u64).unwrap();
            flashpointd::run::run(&settings)
        });
        let tid = tid_rx.recv().unwrap() as libc::pthread_t;
        let mut d = InProcess { addr: String::new(), data, tid, handle: Some(handle), _guard: guard };
        let deadline = Instant::now() + Duration::from_secs(20);
        d.addr = loop {
            if let Ok(text) = std::fs::read_to_string(d.data.join("admin.addr"))
                && text.ends_with('\n')
            {
                break text.trim().to_string();
            }
            assert!(Instant::now() < deadline, "no admin.addr");
            assert!(!d.handle.as_ref().unwrap().is_finished(), "the daemon stopped: {:?}", d.stop());
            std::thread::sleep(Duration::from_millis(20));
        };
        while http(&d.addr, "GET", "/health/ready", b"").0 != 200 {
            assert!(Instant::now() < deadline, "not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `/metrics` once `ready` holds for it (see [`metrics_until`]).
    pub fn metrics_until(&self, ready: impl Fn(&str) -> bool) -> String {
        metrics_until(&self.addr, ready)
    }

    /// SIGTERM to the daemon's thread (it takes it with sigtimedwait), then its result.
    pub fn stop(&mut self) -> Result<(), RunError> {
        let handle = self.handle.take().expect("not stopped yet");
        // SAFETY: the thread is alive until joined below; SIGTERM is blocked in it, so it
        // stays pending for its sigtimedwait.
        unsafe { libc::pthread_kill(self.tid, libc::SIGTERM) };
        handle.join().unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.stop();
        }
    }
}
