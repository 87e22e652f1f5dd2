//! The daemon's configuration: the file shape ([`Config`]), its built-in defaults, the layered
//! loader ([`load`]) and the validated result ([`Settings`]).
//!
//! Precedence, lowest first: built-in defaults < one TOML file < `FPN_*` environment
//! variables < command-line flags. Every key exists in every layer; `docs/config.md` lists
//! them all.
//!
//! [`Config`] holds plain values (integers, strings, CPU lists) exactly as an operator writes
//! them, and is what `--print-config` prints. [`Settings`] is the same configuration after
//! validation, in typed form (nanoseconds, parts per million, enums, socket addresses and the
//! resolved [`CoreMap`](crate::cores::CoreMap)); the runtime consumes only `Settings`.

mod error;
mod load;
mod validate;

use serde::{Deserialize, Serialize};

use crate::cores::{CpuSet, Layout, PerRole, Role, Shape, default_layout, default_shape};

pub use error::{ConfigError, ConfigErrors, Origin};
pub use load::{Flag, Inputs, Loaded, NON_KEY_VARS, env_var_name, key_paths, load};
pub use validate::{
    AdminSettings, AuctionSettings, BidOrder, BuilderSettings, Durability, JournalSettings, LogSettings,
    LogSync, OnCorruption, Pricing, ProverMode, ProverSettings, QuicAuth, QuicSettings, RingSettings,
    RxTimestamps, Settings, WebTransportCert, WebTransportSettings, WindowSettings,
};

/// The whole configuration file. Every field is always present after loading: the defaults
/// fill what no layer sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub engine: EngineSection,
    pub window: WindowSection,
    pub builder: BuilderSection,
    pub auction: AuctionSection,
    pub rings: RingsSection,
    /// CPU ids per role.
    pub cores: PerRole<Vec<usize>>,
    /// Idle strategy per role (see [`crate::idle`] for the syntax).
    pub idle: PerRole<String>,
    pub admin: AdminSection,
    pub prover: ProverSection,
    pub quic: QuicSection,
    pub webtransport: WebtransportSection,
    pub log: LogSection,
    pub journal: JournalSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Journal and snapshots live here. A relative path is taken from the working directory.
    pub data_dir: String,
    /// `default`, `test` or `tuned`.
    pub profile: String,
    /// Intake instances (`cores.intake`, round-robin). Defaults from the profile and the
    /// allowed CPUs ([`default_shape`]), or to the length of `cores.intake` where a layer sets
    /// that list and not this key.
    pub intakes: u64,
    /// `off`, `try` or `on`: lock the process's memory (`mlockall`), see [`LockMemory`].
    pub lock_memory: String,
    /// `off`, `try` or `on`: `SCHED_FIFO` for the executors of hot roles, see [`Realtime`].
    pub realtime: String,
    /// The `SCHED_FIFO` priority they get, `1..=99`.
    pub realtime_priority: u64,
}

/// `engine.lock_memory`: whether the daemon locks its memory (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`) before it starts the roles. On the dev VM, touching memory that had not
/// been touched for a second or so stalled a role for up to 10 ms, and locking removed
/// most of those stalls (`docs/daemon.md`, "Memory locking").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMemory {
    Off,
    /// Lock if permitted; otherwise say why on stderr and run unlocked.
    Try,
    /// Lock, or refuse to start.
    On,
}

impl LockMemory {
    pub const ALL: [LockMemory; 3] = [LockMemory::Off, LockMemory::Try, LockMemory::On];

    pub const fn as_str(self) -> &'static str {
        match self {
            LockMemory::Off => "off",
            LockMemory::Try => "try",
            LockMemory::On => "on",
        }
    }
}

/// `engine.realtime`: whether the executor threads that run hot roles (`Role::is_hot`:
/// intake, builder, build worker, merger) are put on `SCHED_FIFO` at
/// `engine.realtime_priority`, so no ordinary (`SCHED_OTHER`) task on their CPU can preempt
/// them (`docs/daemon.md`, "Realtime priority"). Off by default: a spinning `SCHED_FIFO`
/// thread leaves its CPU's other threads only the kernel's RT throttling slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    Off,
    /// Ask; if refused (no `CAP_SYS_NICE`, `RLIMIT_RTPRIO` too low), say why on stderr and
    /// run on `SCHED_OTHER`.
    Try,
    /// Ask, or refuse to start.
    On,
}

impl Realtime {
    pub const ALL: [Realtime; 3] = [Realtime::Off, Realtime::Try, Realtime::On];

    pub const fn as_str(self) -> &'static str {
        match self {
            Realtime::Off => "off",
            Realtime::Try => "try",
            Realtime::On => "on",
        }
    }
}

/// Default `engine.realtime_priority`: above every ordinary task, below the kernel's
/// threaded interrupt handlers (`SCHED_FIFO` 50) and its per-CPU watchdog and migration
/// threads (99), so interrupts on a hot CPU are still served.
pub const REALTIME_PRIORITY_DEFAULT: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    pub duration_ms: u64,
    pub records_max: u64,
    /// Resource keys across all records of one window. Defaults to `records_max * 8`.
    pub keys_max: u64,
    pub bids_max: u64,
    pub dedup_horizon_windows: u64,
    /// Clients whose nonce high-water marks each intake keeps (replay protection beyond the
    /// de-duplication horizon).
    pub clients_max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderSection {
    /// `improved`, `greedy` or `fifo`.
    pub kind: String,
    pub shards: u64,
    /// Build workers per shard (`cores.build_worker`).
    pub workers: u64,
    pub local_search_steps_max: u64,
    pub exact_intents_max: u64,
    pub exact_nodes_max: u64,
    /// A decimal string in `[0, 1]` with at most 6 decimal places, parsed exactly.
    pub fee_rate: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionSection {
    pub top_k: u64,
    pub reserve: u64,
    /// `0` means no cap.
    pub budget_cap: u64,
    /// `0` means no recency limit.
    pub recency_ms: u64,
    /// `priority-first` or `amount-desc`.
    pub order: String,
    /// `first-price` or `uniform`.
    pub pricing: String,
    pub bids_max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingsSection {
    pub capacity: u64,
    pub results_capacity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub addr: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProverSection {
    pub enabled: bool,
    pub workers: u64,
    /// `coalesce` or `skip`.
    pub mode: String,
    pub queue_capacity: u64,
    pub span_max: u64,
    pub jobs_max: u64,
}

/// The QUIC intake (`docs/transport.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicSection {
    pub enabled: bool,
    pub listen: String,
    pub connections_max: u64,
    pub conns_per_client: u64,
    pub conns_per_ip: u64,
    /// PEM paths; both empty: a self-signed pair in `<data_dir>/tls/`.
    pub cert: String,
    pub key: String,
    /// `open` or `keys`.
    pub auth: String,
    /// With `auth = "keys"`: lines `<client_id> <api key>`.
    pub keys_file: String,
    pub rate_per_s: u64,
    pub burst: u64,
    pub idle_timeout_ms: u64,
    pub retry_above: u64,
    pub datagram_frame_max: u64,
    /// Receipts a session's path may hold (behind a late answer or the log) before the
    /// session stops reading that path.
    pub receipts_held_max: u64,
    /// `software`, `hardware` or `off`.
    pub rx_timestamps: String,
}

/// The WebTransport intake for browsers (`docs/webtransport.md`). Its API keys, token
/// buckets and connection limits are `[quic]`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebtransportSection {
    pub enabled: bool,
    pub listen: String,
    /// The path of the extended CONNECT that opens a session.
    pub path: String,
    /// The host of the published URL; empty: the IP of `listen`.
    pub url_host: String,
    /// PEM paths; both empty: a self-signed ECDSA P-256 certificate, renewed before expiry.
    pub cert: String,
    pub key: String,
    pub cert_validity_hours: u64,
    pub cert_renew_before_hours: u64,
    /// Frames in flight from the endpoint to intake 0.
    pub frames_capacity: u64,
    /// Receipts, windows and proofs in flight from intake 0 to the endpoint.
    pub answers_capacity: u64,
    /// Windows and proofs that may wait for room in the answer ring.
    pub results_pending_max: u64,
}

/// The durable input log (`docs/log.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `group` (acknowledge once durable) or `none` (acknowledge at once).
    pub durability: String,
    /// A group commit writes at most this many bytes of entries.
    pub group_bytes_max: u64,
    /// How long a group waits for more entries before it is written (0: written as soon as
    /// the previous one is on disk).
    pub group_wait_us: u64,
    pub segment_bytes_max: u64,
    pub retain_bytes_max: u64,
    /// 0: no age limit (size only).
    pub retain_age_s: u64,
    /// `refuse` (do not start) or `truncate` (drop the log from the corrupt batch on).
    pub on_corruption: String,
    /// How the log role waits for a group commit: `auto`, `poll` or `wait`.
    pub sync: String,
}

/// The results journal's files (`docs/daemon.md`, "Journal").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    pub segment_bytes_max: u64,
    pub retain_bytes_max: u64,
    /// 0: no age limit (size only).
    pub retain_age_s: u64,
}

/// A set of defaults for one kind of machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Uses the machine without owning it: on 4 or more allowed CPUs the spread map (every
    /// hot role a CPU of its own, as many intakes and builder shards as the CPUs allow), on
    /// fewer the 2-CPU map; hot roles spin briefly then park, so an idle daemon leaves its
    /// CPUs idle.
    Default,
    /// For tests and CI: the 2-CPU map on any host, every role parks.
    Test,
    /// A dedicated host: the same maps as `default`, and hot roles spin.
    Tuned,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Default, Profile::Test, Profile::Tuned];

    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Test => "test",
            Profile::Tuned => "tuned",
        }
    }

    pub fn parse(text: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The idle strategy of `role` under this profile.
    pub const fn idle(self, role: Role) -> &'static str {
        match (self, role) {
            (Profile::Tuned, Role::Intake | Role::Builder | Role::Merger) => "spin",
            // A build worker shares its CPU with parking roles; it spins through the gap
            // between two windows it builds in a row, and parks when windows stop coming.
            (Profile::Tuned | Profile::Default, Role::BuildWorker) => "spin-then-park:50us:200us",
            (Profile::Tuned, Role::Journal) => "spin-then-park:50us:500us",
            // The intake keeps spinning through the gaps of a steady load (a datagram every
            // 160 µs at 100 k records/s): receipt p50 20 µs instead of 204 µs, and the same
            // parks once quiet for 2 ms (BENCHMARKS.md, "After the fixes").
            (Profile::Default, Role::Intake) => "spin-then-park:2ms:200us",
            (Profile::Default, Role::Builder | Role::Merger) => "spin-then-park:50us:200us",
            (Profile::Default, Role::Journal) => "park:1ms",
            (Profile::Test, Role::Intake | Role::Builder | Role::BuildWorker | Role::Merger) => "park:200us",
            (Profile::Test, Role::Journal) => "park:1ms",
            // The log role is on every acknowledgement's path (group commit): it wakes within
            // 100 µs of an entry and spins a little after each batch.
            (Profile::Default | Profile::Tuned, Role::Log) => "spin-then-park:50us:100us",
            (Profile::Test, Role::Log) => "park:200us",
            // The prover's dispatcher hands out proofs that take a second: reacting within
            // 10 ms costs nothing, polling every 1 ms cost 4-10 % of a CPU on an idle daemon
            // (BENCHMARKS.md, "Prover pool").
            (_, Role::Prover) => "park:10ms",
            (_, Role::Admin) => "park:10ms",
        }
    }
}

/// Keys whose defaults follow from other keys. The loader reads them from the layers above
/// the defaults before it builds the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultsBasis {
    /// `engine.profile`: idle strategies, the shape and the core map.
    pub profile: Profile,
    /// `window.records_max`: `window.keys_max` defaults to 8 keys per record.
    pub records_max: u64,
    /// `engine.intakes` if a layer sets it, else the length of `cores.intake` if a layer sets
    /// that; else [`default_shape`].
    pub intakes: Option<u64>,
    /// `builder.shards` if a layer sets it; else [`default_shape`].
    pub shards: Option<u64>,
    /// `builder.workers` if a layer sets it; else [`default_shape`].
    pub workers: Option<u64>,
    /// `log.durability = "none"`: `log.group_wait_us` defaults to
    /// [`LOG_GROUP_WAIT_US_NONE`] (nothing waits for the disk, so nothing gains from a sync
    /// a millisecond).
    pub log_durability_none: bool,
}

/// `log.group_wait_us` by default with `log.durability = "none"`: 10 ms. With the log's
/// group commit running back to back (the `group` default, 0), the daemon synced about
/// 1,000 times a second at 100 k records/s, and on the harness's one server CPU the kernel's
/// sync work took the intake's receipt p50 from 34 µs to 70 µs; at 10 ms it stays at the
/// log-less figure (BENCHMARKS.md, "Daemon topology").
pub const LOG_GROUP_WAIT_US_NONE: u64 = 10_000;

impl DefaultsBasis {
    /// The counts the default core map is laid out for on `cpus`: what the layers set, the
    /// profile's defaults for the rest.
    pub fn shape(&self, cpus: &CpuSet) -> Shape {
        let d = default_shape(self.profile, cpus.len());
        let count =
            |v: Option<u64>, default: usize| v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX));
        Shape {
            intakes: count(self.intakes, d.intakes),
            shards: count(self.shards, d.shards),
            workers: count(self.workers, d.workers),
        }
    }

    /// The default core map for this basis on `cpus`, with the reason for each role's list.
    pub fn layout(&self, cpus: &CpuSet) -> Layout {
        default_layout(self.profile, cpus, self.shape(cpus))
    }
}

impl Default for DefaultsBasis {
    fn default() -> DefaultsBasis {
        DefaultsBasis {
            profile: Profile::Default,
            records_max: RECORDS_MAX_DEFAULT,
            intakes: None,
            shards: None,
            workers: None,
            log_durability_none: false,
        }
    }
}

pub const RECORDS_MAX_DEFAULT: u64 = 65_536;
/// Default `window.keys_max` per record of `window.records_max`.
pub const KEYS_PER_RECORD_DEFAULT: u64 = 8;

impl Config {
    /// The built-in defaults for `basis` on a host with `cpus`.
    pub fn defaults(basis: DefaultsBasis, cpus: &CpuSet) -> Config {
        let shape = basis.shape(cpus);
        Config {
            engine: EngineSection {
                data_dir: "./data".into(),
                profile: basis.profile.as_str().into(),
                intakes: shape.intakes as u64,
                lock_memory: LockMemory::Try.as_str().into(),
                realtime: Realtime::Off.as_str().into(),
                realtime_priority: REALTIME_PRIORITY_DEFAULT,
            },
            window: WindowSection {
                duration_ms: 20,
                records_max: basis.records_max,
                keys_max: basis.records_max.saturating_mul(KEYS_PER_RECORD_DEFAULT),
                bids_max: 65_536,
                dedup_horizon_windows: 16,
                clients_max: 65_536,
            },
            builder: BuilderSection {
                kind: "improved".into(),
                shards: shape.shards as u64,
                workers: shape.workers as u64,
                local_search_steps_max: 100_000,
                exact_intents_max: 32,
                exact_nodes_max: 1_000_000,
                fee_rate: "0.1".into(),
            },
            auction: AuctionSection {
                top_k: 64,
                reserve: 0,
                budget_cap: 0,
                recency_ms: 0,
                order: "priority-first".into(),
                pricing: "first-price".into(),
                bids_max: 65_536,
            },
            rings: RingsSection { capacity: 65_536, results_capacity: 1_024 },
            cores: basis.layout(cpus).lists,
            idle: PerRole::from_fn(|role| basis.profile.idle(role).to_string()),
            admin: AdminSection { addr: "127.0.0.1:9464".into(), enabled: true },
            prover: ProverSection {
                enabled: true,
                workers: 1,
                mode: "coalesce".into(),
                queue_capacity: 64,
                span_max: 1_024,
                jobs_max: 256,
            },
            quic: QuicSection {
                enabled: true,
                listen: "127.0.0.1:4433".into(),
                connections_max: 1_024,
                conns_per_client: 16,
                conns_per_ip: 256,
                cert: String::new(),
                key: String::new(),
                auth: "open".into(),
                keys_file: String::new(),
                rate_per_s: 1_000_000,
                burst: 100_000,
                idle_timeout_ms: 30_000,
                retry_above: 64,
                datagram_frame_max: 1_200,
                receipts_held_max: fpn_quic::RECEIPTS_HELD_MAX as u64,
                rx_timestamps: "software".into(),
            },
            webtransport: WebtransportSection {
                enabled: false,
                listen: "127.0.0.1:4434".into(),
                path: "/fpn/1".into(),
                url_host: String::new(),
                cert: String::new(),
                key: String::new(),
                cert_validity_hours: 13 * 24,
                cert_renew_before_hours: 24,
                frames_capacity: 4_096,
                answers_capacity: 16_384,
                results_pending_max: 64,
            },
            log: LogSection {
                durability: "group".into(),
                group_bytes_max: 1 << 20,
                group_wait_us: if basis.log_durability_none { LOG_GROUP_WAIT_US_NONE } else { 0 },
                segment_bytes_max: 64 << 20,
                retain_bytes_max: 1 << 30,
                retain_age_s: 86_400,
                on_corruption: "refuse".into(),
                sync: "auto".into(),
            },
            journal: JournalSection {
                segment_bytes_max: 64 << 20,
                retain_bytes_max: 1 << 30,
                retain_age_s: 86_400,
            },
        }
    }
}

#[cfg(test)]
mod tests;
