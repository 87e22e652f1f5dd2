//! The daemon's composition, in one place: every role instance and every named, bounded
//! ring, built from the [`Settings`] and the core map. `run::run`, the end-to-end bench
//! (`benches/e2e.rs`) and the integration tests all start from [`Topology::build`], so what
//! they measure and test is what the daemon runs.
//!
//! Adding a role: write its file under `run/roles/` (its struct, `build(&mut Wiring, ..)`
//! taking its ring ends by name, its [`RoleLoop`](super::role::RoleLoop), its metrics), give
//! it a [`Role`] and a core-map list (`cores.rs`, `config`), declare its rings in
//! [`declare_links`] and add its instances in [`Topology::build`]. A ring nobody takes, or
//! taken twice, stops the start with its name.
//!
//! Rings (`docs/daemon.md`, "Rings and capacities", has the policy of each):
//!
//! | ring | kind | capacity |
//! |---|---|---|
//! | `intake<i>_builder<k>` (`ToBuilder`) | stamped | `rings.capacity` |
//! | `intake<i>_merger` (`ToMerger`) | stamped | `rings.capacity` |
//! | `submit_intake<i>` (`Submit`), `intake<i>_answers` (`Answer`) | plain | `rings.capacity`; answers at least a full request's receipts |
//! | `merger_intake<i>` (book-cancel receipts) | plain | `rings.capacity` |
//! | `builder<k>_merger`, `merger_builder<k>` (`Box<ShardWindow>`) | stamped | `shard_windows_max` + workers |
//! | `builder<k>_build_worker<i>`, `build_worker<i>_builder<k>` | stamped | 1 |
//! | `merger_journal`, `merger_quic<i>`, `merger_wt` (`ResultMsg`) and their pools `journal_merger`, `quic<i>_merger`, `wt_merger` | plain | `rings.results_capacity`; 4 buffers each |
//! | `journal_prover` (`WindowInput`) | plain | `prover.queue_capacity` |
//! | `prover_quic<i>`, `prover_wt` (`ProofAnnouncement`) | plain | 256 |
//! | `intake<i>_log` (`LogMsg`) | plain | 2 × `rings.capacity` |

use std::collections::HashMap;
use std::sync::Arc;

use fpn_engine::ShardConfig;
use fpn_engine::shard::{ShardWindow, ToBuilder, ToMerger};
use fpn_log::LogMsg;
use fpn_log::replay::RecoveredIntake;
use fpn_quic::Server;
use fpn_quic::udp::UdpSocket;
use fpn_runtime::clock::now_ns;
use fpn_runtime::exec::{ExecutorSpec, RoleSpec};
use fpn_runtime::heartbeat::{Heartbeat, Heartbeats};
use fpn_runtime::metrics::MetricsHub;
use fpn_wire::Receipt;

use super::RunError;
use super::links::Links;
use super::role::{LoopKit, RING_TRANSIT_SECONDS, spec};
use super::roles::admin::{self, SUBMIT_BODY_BYTES_MAX};
use super::roles::build_worker::{self, BuildWorkerRole};
use super::roles::builder::BuilderShardRole;
use super::roles::intake::{self, Answer, IntakeRole, Submit};
use super::roles::journal::{self, JournalRole};
use super::roles::log::{self as log_role, LogRole, LogStart};
use super::roles::merger::{self, MergerRole, RESULT_POOL, ResultMsg, result_bytes_reserve};
use super::roles::prover::{ProverHandles, ProverRole};
use super::roles::webtransport::{self, WebTransportIo};
use super::roles::{admission, quic};
use super::shared::Shared;
use crate::config::Settings;
use crate::cores::{CoreMap, Role, RoleInstance};
use crate::prover::pool::WindowInput;
use crate::prover::{ANNOUNCEMENTS_CAPACITY, PROVER_METRICS, ProofAnnouncement};
use crate::recovery::Resume;

/// The id of the first window.
pub const FIRST_WINDOW_ID: u64 = 1;
/// Window lines kept for `/windows/latest`.
pub const LATEST_WINDOWS_MAX: usize = 64;

/// What the topology is built with besides the settings.
#[derive(Default)]
pub struct TopologyIo {
    /// One bound QUIC server and socket per intake (`quic.enabled`), or none.
    pub quic: Vec<(Server, UdpSocket)>,
    /// The WebTransport endpoint's rings (`webtransport.enabled`), driven by intake 0.
    pub webtransport: Option<WebTransportIo>,
    /// Whether the journal (and with it the prover) runs. Without it, whoever builds the
    /// topology takes `merger_journal` and `journal_merger` from [`Topology::links`] (the
    /// e2e bench counts published windows there).
    pub journal: bool,
    /// The input log's role, as recovery left it; without it nothing is logged and no
    /// receipt or window waits for a disk (the e2e bench's `nolog` variants).
    pub log: Option<LogStart>,
    /// Where the engine resumes (window ids, sequence ids, de-duplication, the book).
    pub resume: Resume,
}

/// What a role's `build` takes its parts from. See the module doc.
pub struct Wiring<'a> {
    pub settings: &'a Settings,
    pub shard_config: ShardConfig,
    pub links: Links,
    pub shared: Arc<Shared>,
    pub hub: Arc<MetricsHub>,
    pub first_window_id: u64,
    /// When the topology was built: the first window opens now.
    pub now_ns: u64,
    beats: HashMap<String, Heartbeat>,
    quic: Vec<Option<(Server, UdpSocket)>>,
    webtransport: Option<WebTransportIo>,
    resume: Resume,
    /// Per intake: its open bids in the restored book.
    book_open: Vec<usize>,
    log: bool,
}

impl Wiring<'_> {
    /// Whether receipts and published windows wait for the log (`log.durability = "group"`
    /// and a log role).
    pub fn gate_on_log(&self) -> bool {
        self.log && self.settings.log.durability == crate::config::Durability::Group
    }

    /// What intake `i` resumes from (`None`: a fresh start), and its open bids in the book.
    pub fn resume_intake(&self, i: usize) -> Option<(&RecoveredIntake, usize)> {
        self.resume.intakes.get(i).map(|r| (r, self.book_open.get(i).copied().unwrap_or(0)))
    }

    /// The merger's restored book's counts per intake.
    pub fn set_book_open(&mut self, open: Vec<usize>) {
        self.book_open = open;
    }

    /// The book the merger resumes with.
    pub fn take_book(&mut self) -> Vec<fpn_engine::auction::Bid> {
        std::mem::take(&mut self.resume.book)
    }

    /// The loop kit of role instance `name`: its idle strategy, metrics publisher and
    /// heartbeat.
    pub fn kit(&mut self, role: Role, name: &str) -> LoopKit {
        let beat = self.beats.remove(name).unwrap_or_else(|| panic!("role instance {name} has no heartbeat"));
        LoopKit::new(*self.settings.idle.get(role), self.hub.register(name), beat)
    }

    /// Intake `i`'s QUIC server and socket, if it has one.
    pub fn take_quic(&mut self, i: usize) -> Option<(Server, UdpSocket)> {
        self.quic.get_mut(i).and_then(Option::take)
    }

    /// The WebTransport endpoint's rings, if the topology has an endpoint (intake 0's).
    pub fn take_webtransport(&mut self) -> Option<WebTransportIo> {
        self.webtransport.take()
    }
}

/// Every role built and every ring taken but the drivers' ends. See the module doc.
pub struct Topology {
    pub shared: Arc<Shared>,
    pub hub: Arc<MetricsHub>,
    pub heartbeats: Heartbeats,
    /// The ring ends left for the drivers: each intake's `submit_intake<i>` producer and
    /// `intake<i>_answers` consumer (the admin side), and without a journal the merger's
    /// `merger_journal` / `journal_merger`.
    pub links: Links,
    /// The prover pool's shared state and threads, when it runs.
    pub prover: Option<ProverHandles>,
    tasks: Vec<(RoleInstance, RoleSpec)>,
}

/// The role instances of `settings`, in heartbeat order.
fn instances(settings: &Settings, c: &ShardConfig, journal: bool, log: bool) -> Vec<(RoleInstance, String)> {
    let ri = |role, index| RoleInstance { role, index };
    let mut out = Vec::new();
    out.extend((0..c.intakes_n).map(|i| (ri(Role::Intake, i), format!("intake{i}"))));
    out.extend((0..c.shards_n).map(|k| (ri(Role::Builder, k), format!("builder{k}"))));
    let workers = c.shards_n * c.workers_per_shard;
    out.extend((0..workers).map(|i| (ri(Role::BuildWorker, i), format!("build_worker{i}"))));
    out.push((ri(Role::Merger, 0), "merger".into()));
    if log {
        out.push((ri(Role::Log, 0), "log".into()));
    }
    if journal {
        out.push((ri(Role::Journal, 0), "journal".into()));
        if settings.prover.enabled {
            out.push((ri(Role::Prover, 0), "prover".into()));
        }
    }
    out
}

/// Every ring of the topology, by name. See the module doc's table.
fn declare_links(
    settings: &Settings,
    c: &ShardConfig,
    quic_n: usize,
    wt: bool,
    journal: bool,
    log: bool,
) -> Links {
    let mut links = Links::new();
    let (n, s, w) = (c.intakes_n, c.shards_n, c.workers_per_shard);
    let cap = settings.rings.capacity;
    // Every record of the largest request body gets a receipt, plus `Done`: the answer ring
    // holds at least that, so an intake can always take a frame once the ring has drained.
    let answers_cap = cap.max((SUBMIT_BODY_BYTES_MAX / fpn_wire::RECORD_HEADER_LEN + 1).next_power_of_two());
    for i in 0..n {
        for k in 0..s {
            links.stamped::<ToBuilder>(&format!("intake{i}_builder{k}"), cap);
        }
        links.stamped::<ToMerger>(&format!("intake{i}_merger"), cap);
        links.plain::<Submit>(&format!("submit_intake{i}"), cap);
        links.plain::<Answer>(&format!("intake{i}_answers"), answers_cap);
        links.plain::<Receipt>(&format!("merger_intake{i}"), cap);
        if log {
            // A copy of each message to the builders and the merger: twice a ring's room,
            // so the log ring fills only once the log role fell behind.
            links.plain::<LogMsg>(&format!("intake{i}_log"), 2 * cap);
        }
    }
    for k in 0..s {
        // Each build worker holds one of the shard's windows while it builds it.
        let windows = c.shard_windows_max + w;
        links.stamped::<Box<ShardWindow>>(&format!("builder{k}_merger"), windows);
        links.stamped::<Box<ShardWindow>>(&format!("merger_builder{k}"), windows);
        for i in k * w..(k + 1) * w {
            links.stamped::<Box<ShardWindow>>(&format!("builder{k}_build_worker{i}"), 1);
            links.stamped::<Box<ShardWindow>>(&format!("build_worker{i}_builder{k}"), 1);
        }
    }
    let e = &c.engine;
    let reserve = result_bytes_reserve(e.window.records_max, e.auction.top_k as usize);
    let results = settings.rings.results_capacity;
    for (out, back) in consumers(quic_n, wt) {
        links.plain::<ResultMsg>(&out, results);
        links.pool(&back, results + RESULT_POOL, (0..RESULT_POOL).map(|_| ResultMsg::with_reserve(reserve)));
    }
    if journal && settings.prover.enabled {
        links.plain::<WindowInput>("journal_prover", settings.prover.queue_capacity);
        for i in 0..quic_n {
            links.plain::<ProofAnnouncement>(&format!("prover_quic{i}"), ANNOUNCEMENTS_CAPACITY);
        }
        if wt {
            links.plain::<ProofAnnouncement>("prover_wt", ANNOUNCEMENTS_CAPACITY);
        }
    }
    links
}

/// The consumers of published windows: `(ring out, pool ring back)`, the journal first.
fn consumers(quic_n: usize, wt: bool) -> Vec<(String, String)> {
    let journal = ("merger_journal".to_string(), "journal_merger".to_string());
    let wt = wt.then(|| ("merger_wt".to_string(), "wt_merger".to_string()));
    std::iter::once(journal)
        .chain((0..quic_n).map(|i| (format!("merger_quic{i}"), format!("quic{i}_merger"))))
        .chain(wt)
        .collect()
}

impl Topology {
    /// Builds every role and ring. Nothing runs until the executors start (`run::run`); the
    /// journal's writer thread and the prover's workers are started here (they wait for work).
    pub fn build(settings: &Settings, io: TopologyIo) -> Result<Topology, RunError> {
        let c = settings.shard_config();
        c.validate().map_err(|e| RunError::Config(e.to_string()))?;
        let quic_n = io.quic.len();
        let wt = io.webtransport.is_some();
        assert!(quic_n == 0 || quic_n == c.intakes_n, "one QUIC server per intake, or none");
        let log = io.log.is_some();
        let named = instances(settings, &c, io.journal, log);
        let (heartbeats, beats) = Heartbeats::new(named.iter().map(|(_, name)| name.clone()));
        let beats = named.iter().map(|(_, name)| name.clone()).zip(beats).collect();
        let hub = Arc::new(MetricsHub::new());
        hub.describe(&[
            &RING_TRANSIT_SECONDS,
            &admission::RECORDS_ACCEPTED_TOTAL,
            &admission::RECORDS_REJECTED_TOTAL,
        ]);
        hub.describe(&intake::METRICS);
        hub.describe(&build_worker::METRICS);
        hub.describe(&merger::METRICS);
        hub.describe(&journal::METRICS);
        hub.describe(&admin::METRICS);
        hub.describe(&PROVER_METRICS);
        if log {
            hub.describe(&log_role::METRICS);
        }
        if quic_n > 0 {
            hub.describe(&quic::METRICS);
        }
        if wt {
            webtransport::describe(&hub);
        }
        let first_window_id = io.resume.next_window_id.max(FIRST_WINDOW_ID);
        let shared = Arc::new(Shared::new(c.intakes_n, first_window_id, LATEST_WINDOWS_MAX));
        let mut w = Wiring {
            settings,
            links: declare_links(settings, &c, quic_n, wt, io.journal, log),
            shard_config: c,
            shared: shared.clone(),
            hub: hub.clone(),
            first_window_id,
            now_ns: now_ns(),
            beats,
            quic: io.quic.into_iter().map(Some).collect(),
            webtransport: io.webtransport,
            book_open: Vec::new(),
            resume: io.resume,
            log,
        };
        let mut log_start = io.log;
        let mut tasks = Vec::with_capacity(named.len());
        let mut prover = None;
        // The merger first: it restores the book, whose per-intake counts the intakes take.
        let mut order: Vec<&(RoleInstance, String)> = named.iter().collect();
        order.sort_by_key(|(i, _)| i.role != Role::Merger);
        for (instance, name) in order {
            let (role, i) = (instance.role, instance.index);
            let task = match role {
                Role::Intake => spec(name, IntakeRole::build(&mut w, i)?),
                Role::Builder => spec(name, BuilderShardRole::build(&mut w, i)),
                Role::BuildWorker => spec(name, BuildWorkerRole::build(&mut w, i)),
                Role::Merger => spec(name, MergerRole::build(&mut w, &consumers(quic_n, wt))),
                Role::Log => {
                    let start = log_start.take().expect("one log role");
                    spec(name, LogRole::build(&mut w, start)?)
                }
                Role::Journal => spec(name, JournalRole::build(&mut w)?),
                Role::Prover => {
                    let (role, handles) = ProverRole::build(&mut w, quic_n)?;
                    prover = Some(handles);
                    spec(name, role)
                }
                Role::Admin => unreachable!("the admin role runs on std threads"),
            };
            tasks.push((*instance, task));
        }
        tasks.sort_by_key(|(i, _)| named.iter().position(|(n, _)| n == i));
        assert!(w.quic.iter().all(Option::is_none), "every QUIC server has its intake");
        assert!(w.webtransport.is_none(), "the WebTransport endpoint has its intake");
        assert!(w.beats.is_empty(), "every heartbeat has its role");
        Ok(Topology { shared, hub, heartbeats, links: w.links, prover, tasks })
    }

    /// One executor per CPU of `core_map` that has a task, with the role tasks pinned there
    /// and `extra` tasks (`(cpu, task)`: the bench's load) added to their CPU's executor.
    ///
    /// # Panics
    /// If a role instance has no CPU in the map, or an extra task's CPU runs nothing.
    pub fn executor_specs(
        &mut self,
        core_map: &CoreMap,
        mut extra: Vec<(usize, RoleSpec)>,
    ) -> Vec<ExecutorSpec> {
        let mut specs = Vec::new();
        for plan in &core_map.plans {
            let mut roles = Vec::new();
            for instance in &plan.roles {
                if let Some(pos) = self.tasks.iter().position(|(i, _)| i == instance) {
                    roles.push(self.tasks.remove(pos).1);
                }
            }
            while let Some(pos) = extra.iter().position(|(cpu, _)| *cpu == plan.cpu) {
                roles.push(extra.remove(pos).1);
            }
            if !roles.is_empty() {
                specs.push(ExecutorSpec::new(plan.cpu, format!("cpu{}", plan.cpu), roles));
            }
        }
        let left: Vec<String> = self.tasks.iter().map(|(i, _)| i.to_string()).collect();
        assert!(left.is_empty(), "role instances without a CPU in the core map: {left:?}");
        assert!(extra.is_empty(), "extra tasks on CPUs the core map does not use");
        specs
    }
}
