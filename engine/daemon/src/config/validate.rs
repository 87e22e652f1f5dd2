//! Validation: [`Config`] to [`Settings`], collecting every error.
//!
//! Each range below is listed in `docs/config.md`; a test checks that every error names its
//! key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fpn_engine::{BuilderKind, FeeRate, FeeRateError, MAX_AMOUNT};

use super::{Config, ConfigError, LockMemory, Origin, Profile, Realtime};
use crate::cores::{CoreMap, CpuSet, PerRole, Role, RoleInstance};
use crate::idle::{IdleStrategy, spins_forever};

/// The validated configuration, in the units and types the runtime uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub profile: Profile,
    /// As configured; a relative path is relative to the working directory at start.
    pub data_dir: PathBuf,
    pub lock_memory: LockMemory,
    /// `SCHED_FIFO` for the executors of hot roles, and its priority (`1..=99`).
    pub realtime: Realtime,
    pub realtime_priority: u8,
    pub window: WindowSettings,
    pub builder: BuilderSettings,
    pub auction: AuctionSettings,
    pub rings: RingSettings,
    pub idle: PerRole<IdleStrategy>,
    /// The CPU lists as configured (after validation).
    pub cores: PerRole<Vec<usize>>,
    /// Which CPU runs which role instance.
    pub core_map: CoreMap,
    pub admin: AdminSettings,
    pub prover: ProverSettings,
    pub quic: QuicSettings,
    pub webtransport: WebTransportSettings,
    pub log: LogSettings,
    pub journal: JournalSettings,
}

/// `log.durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A record's `accepted` receipt leaves only once its group commit is on disk; a window
    /// is published only once all its inputs are.
    Group,
    /// Acknowledge at once (the log is still written): for benchmarks and development.
    None,
}

/// `log.on_corruption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    Refuse,
    Truncate,
}

/// `log.sync`: how the log role waits for its group commit's write and `fdatasync`
/// (`docs/log.md`, "Waiting for the disk").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSync {
    /// `wait` where the log role shares its CPU with an intake and receipts wait for the log
    /// (`durability = "group"`), `poll` otherwise ([`Settings::log_sync`]).
    Auto,
    /// Submit to io_uring and poll for the completion: the other roles of the log's CPU
    /// keep running while the kernel's io-wq worker writes and syncs.
    Poll,
    /// Submit to io_uring and wait in `io_uring_enter` for the completion: the log's
    /// executor thread sleeps until the group is on disk.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub durability: Durability,
    pub group_bytes_max: usize,
    pub group_wait_ns: u64,
    pub segment_bytes_max: u64,
    pub retain_bytes_max: u64,
    /// 0: no age limit.
    pub retain_age_ns: u64,
    pub on_corruption: OnCorruption,
    pub sync: LogSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalSettings {
    pub segment_bytes_max: u64,
    pub retain_bytes_max: u64,
    /// 0: no age limit.
    pub retain_age_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    pub window_ns: u64,
    pub records_max: usize,
    pub keys_max: usize,
    pub bids_max: usize,
    pub dedup_horizon_windows: usize,
    pub clients_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuilderSettings {
    pub kind: BuilderKind,
    pub shards: usize,
    pub workers: usize,
    pub local_search_steps_max: u64,
    pub exact_intents_max: usize,
    pub exact_nodes_max: u64,
    pub fee_rate: FeeRate,
}

pub use fpn_engine::auction::{BidOrder, Pricing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuctionSettings {
    pub top_k: usize,
    pub reserve: u64,
    pub budget_cap: Option<u64>,
    pub recency_ns: Option<u64>,
    pub order: BidOrder,
    pub pricing: Pricing,
    pub bids_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSettings {
    pub capacity: usize,
    pub results_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    pub enabled: bool,
}

/// What the prover pool does when windows arrive faster than it proves them
/// (`docs/daemon.md`, "Prover pool").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProverMode {
    /// Proves the oldest queued windows together, as one span proof (`docs/proofs.md`).
    Coalesce,
    /// Skips every queued window but the newest, and proves that one.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProverSettings {
    pub enabled: bool,
    pub workers: usize,
    pub mode: ProverMode,
    /// Windows waiting for a worker, at most (older ones are skipped and counted).
    pub queue_capacity: usize,
    /// Windows one span proof covers, at most (`1..=1024`, the circuit's bound).
    pub span_max: usize,
    /// Proof jobs kept for the admin API (the oldest finished ones are evicted).
    pub jobs_max: usize,
}

/// How API keys are checked (`quic.auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicAuth {
    /// The key is the client id in decimal (development; the daemon warns).
    Open,
    /// Key → client id, read from `quic.keys_file` at start.
    Keys(BTreeMap<Vec<u8>, u64>),
}

/// Which receive timestamps the intake sockets ask for (`quic.rx_timestamps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxTimestamps {
    Off,
    Software,
    Hardware,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub connections_max: usize,
    pub conns_per_client: u32,
    pub conns_per_ip: u32,
    /// Certificate and key PEM files; `None`: generated in `<data_dir>/tls/`.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    pub auth: QuicAuth,
    pub rate_per_s: u32,
    pub burst: u32,
    pub idle_timeout_ms: u64,
    pub retry_above: usize,
    pub datagram_frame_max: u16,
    pub receipts_held_max: usize,
    pub rx_timestamps: RxTimestamps,
}

/// Where the WebTransport endpoint's certificate comes from (`webtransport.cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebTransportCert {
    /// Generated at start (ECDSA P-256, what Chromium pins by hash), valid for `validity`
    /// and replaced `renew_before` ahead of its expiry.
    SelfSigned { validity: Duration, renew_before: Duration },
    /// A configured chain and key (CA-issued: browsers need no hash). Not rotated.
    Pem { cert: PathBuf, key: PathBuf },
}

/// The WebTransport intake (`[webtransport]`; API keys, token buckets and connection limits
/// are `[quic]`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebTransportSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub path: String,
    /// The host of the published URL; `None`: the IP of `listen`.
    pub url_host: Option<String>,
    pub cert: WebTransportCert,
    pub frames_capacity: usize,
    pub answers_capacity: usize,
    pub results_pending_max: usize,
}

impl QuicSettings {
    /// The API keys as the transports of `fpn/1` check them (the raw QUIC intake and the
    /// WebTransport endpoint).
    pub fn auth(&self) -> fpn_quic::Auth {
        match &self.auth {
            QuicAuth::Open => fpn_quic::Auth::Open,
            QuicAuth::Keys(keys) => fpn_quic::Auth::Keys(keys.iter().map(|(k, v)| (k.clone(), *v)).collect()),
        }
    }

    /// The session limits of both transports: token buckets, connection counts, timeouts.
    pub fn limits(&self) -> fpn_quic::Limits {
        fpn_quic::Limits {
            rate_per_s: self.rate_per_s,
            burst: self.burst,
            conns_per_client: self.conns_per_client,
            conns_per_ip: self.conns_per_ip,
            conns_max: self.connections_max,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            retry_above: self.retry_above,
            datagram_frame_max: self.datagram_frame_max,
            receipts_held_max: self.receipts_held_max,
            ..fpn_quic::Limits::default()
        }
    }
}

pub const DURATION_MS_MAX: u64 = 1_000;
/// `quic.receipts_held_max`: at least one frame's records, at most 48 MiB of receipts a path.
pub const RECEIPTS_HELD_MIN: u64 = 1_024;
pub const RECEIPTS_HELD_MAX_MAX: u64 = 1 << 20;
/// `SCHED_FIFO` priorities Linux accepts (`sched_get_priority_min/max`).
pub const REALTIME_PRIORITY_MIN: u64 = 1;
pub const REALTIME_PRIORITY_MAX: u64 = 99;
pub const RECORDS_MAX_MAX: u64 = 1 << 20;
pub const KEYS_MAX_MAX: u64 = 1 << 26;
pub const BIDS_MAX_MAX: u64 = 1 << 20;
pub const DEDUP_HORIZON_WINDOWS_MAX: u64 = 4_096;
pub const SHARDS_MAX: u64 = 64;
/// The same bound as builder shards (the input log's segment header would take 65 535).
pub const INTAKES_MAX: u64 = 64;
pub const LOCAL_SEARCH_STEPS_MAX_MAX: u64 = 1_000_000_000;
pub const EXACT_INTENTS_MAX_MAX: u64 = 64;
pub const EXACT_NODES_MAX_MAX: u64 = 1_000_000_000;
pub const RECENCY_MS_MAX: u64 = 3_600_000;
pub const RING_CAPACITY_MAX: u64 = 1 << 24;
/// An intent with the most keys takes several record-ring slots and is sent whole or not at
/// all, so a smaller ring could never take it.
pub const RING_CAPACITY_MIN: u64 = 8;
const _: () =
    assert!(RING_CAPACITY_MIN as usize >= fpn_engine::shard::slots_for(fpn_engine::KEYS_PER_INTENT_MAX));
pub const RESULTS_CAPACITY_MAX: u64 = 1 << 20;
pub const PROVER_WORKERS_MAX: u64 = 64;
pub const PROVER_QUEUE_CAPACITY_MAX: u64 = 65_536;
pub const PROVER_SPAN_MAX_MAX: u64 = fpn_prover::SPAN_WINDOWS_MAX as u64;
pub const PROVER_JOBS_MAX_MAX: u64 = 65_536;
pub const CONNECTIONS_MAX_MAX: u64 = 1_000_000;
pub const RATE_PER_S_MAX: u64 = u32::MAX as u64;
pub const IDLE_TIMEOUT_MS_MAX: u64 = 3_600_000;
/// The smallest datagram frame that holds a header and one 48-byte record; the largest that
/// fits a 1,500-byte Ethernet MTU after IP, UDP and QUIC overhead.
pub const DATAGRAM_FRAME_MIN: u64 = 64;
pub const DATAGRAM_FRAME_MAX_MAX: u64 = 1_400;
pub const LOG_GROUP_BYTES_MIN: u64 = 4 << 10;
pub const LOG_GROUP_BYTES_MAX: u64 = 64 << 20;
pub const LOG_GROUP_WAIT_US_MAX: u64 = 100_000;
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const SEGMENT_BYTES_MAX: u64 = 4 << 30;
pub const RETAIN_BYTES_MAX: u64 = 1 << 50;
pub const RETAIN_AGE_S_MAX: u64 = 10 * 365 * 86_400;
/// Keys in `quic.keys_file`, at most.
pub const QUIC_KEYS_MAX: usize = 1 << 20;
/// Chromium pins a certificate by hash only if it is valid for at most 14 days.
pub const WT_CERT_VALIDITY_HOURS_MAX: u64 = 14 * 24;
/// The WebTransport frame and answer rings, at most.
pub const WT_RING_CAPACITY_MAX: u64 = 1 << 24;
/// The answer ring holds every receipt of the largest frame.
pub const WT_ANSWERS_CAPACITY_MIN: u64 = fpn_webtransport::engine::RECORDS_PER_FRAME_MAX as u64;
pub const WT_RESULTS_PENDING_MAX_MAX: u64 = 65_536;
/// Longest `webtransport.path` and `webtransport.url_host`.
pub const WT_TEXT_LEN_MAX: usize = 256;

const NS_PER_MS: u64 = 1_000_000;

struct Check<'a> {
    origins: &'a BTreeMap<String, Origin>,
    errors: Vec<ConfigError>,
}

impl Check<'_> {
    fn fail(&mut self, key: &str, value: String, problem: String) {
        let origin = self.origins.get(key).cloned().unwrap_or(Origin::Default);
        self.errors.push(ConfigError::Invalid { key: key.to_string(), value, origin, problem });
    }

    /// `value` if within `lo..=hi`, else records the error and returns `lo`.
    fn range(&mut self, key: &str, value: u64, lo: u64, hi: u64) -> u64 {
        if (lo..=hi).contains(&value) {
            value
        } else {
            self.fail(key, value.to_string(), format!("must be in {lo}..={hi}"));
            lo
        }
    }

    fn size(&mut self, key: &str, value: u64, lo: u64, hi: u64) -> usize {
        // All upper bounds are far below usize::MAX on 64-bit targets.
        usize::try_from(self.range(key, value, lo, hi)).expect("bounded sizes fit usize")
    }

    fn power_of_two(&mut self, key: &str, value: u64, lo: u64, hi: u64) -> usize {
        if value.is_power_of_two() && (lo..=hi).contains(&value) {
            usize::try_from(value).expect("bounded sizes fit usize")
        } else {
            self.fail(key, value.to_string(), format!("must be a power of two in {lo}..={hi}"));
            usize::try_from(lo).expect("bounded sizes fit usize")
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, value: &str, choices: &[(&str, T)]) -> T {
        match choices.iter().find(|(name, _)| *name == value) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.fail(key, format!("{value:?}"), format!("must be one of {}", names.join(", ")));
                choices[0].1
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> SocketAddr {
        match value.parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.fail(
                    key,
                    format!("{value:?}"),
                    "must be an IP address and port, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\" (host names are not resolved)"
                        .into(),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }
}

fn fee_rate(check: &mut Check<'_>, text: &str) -> FeeRate {
    FeeRate::parse_decimal(text).unwrap_or_else(|e| {
        let problem = match e {
            FeeRateError::OutOfRange(_) => "must be within [0, 1]",
            FeeRateError::NotDecimal(_) => "must be a decimal number such as \"0.1\" (no exponent, no sign)",
            FeeRateError::TooPrecise(_) => {
                "must have at most 6 decimal places (the engine counts fees in parts per million)"
            }
        };
        check.fail("builder.fee_rate", format!("{text:?}"), problem.into());
        FeeRate::ZERO
    })
}

/// A `<section>.cert` / `<section>.key` pair of PEM paths: both or neither, each readable.
fn cert_key_pair(c: &mut Check<'_>, section: &str, cert: &str, key: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert_key, key_key) = (format!("{section}.cert"), format!("{section}.key"));
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => None,
        (false, false) => {
            for (k, path) in [(&cert_key, cert), (&key_key, key)] {
                if let Err(e) = std::fs::metadata(path) {
                    c.fail(k, format!("{path:?}"), format!("cannot be read: {e}"));
                }
            }
            Some((PathBuf::from(cert), PathBuf::from(key)))
        }
        (false, true) => {
            c.fail(&cert_key, format!("{cert:?}"), format!("needs {key_key} too (set both or neither)"));
            None
        }
        (true, false) => {
            c.fail(&key_key, format!("{key:?}"), format!("needs {cert_key} too (set both or neither)"));
            None
        }
    }
}

/// `[webtransport]`, checked against `[quic]`'s address.
fn webtransport(
    c: &mut Check<'_>,
    w: &super::WebtransportSection,
    quic: &QuicSettings,
) -> WebTransportSettings {
    let listen = c.socket_addr("webtransport.listen", &w.listen);
    if w.enabled && quic.enabled && listen.port() != 0 && listen == quic.listen {
        c.fail("webtransport.listen", format!("{:?}", w.listen), "must differ from quic.listen".into());
    }
    let text_ok = |t: &str, extra: &[char]| {
        t.len() <= WT_TEXT_LEN_MAX && t.chars().all(|ch| ch.is_ascii_graphic() && !extra.contains(&ch))
    };
    if !w.path.starts_with('/') || !text_ok(&w.path, &['?', '#']) {
        let problem = format!(
            "must start with `/`, at most {WT_TEXT_LEN_MAX} printable ASCII characters, no `?` or `#`"
        );
        c.fail("webtransport.path", format!("{:?}", w.path), problem);
    }
    if !text_ok(&w.url_host, &['/', '?', '#', '@']) {
        let problem =
            format!("must be a host name or IP (IPv6 in brackets), at most {WT_TEXT_LEN_MAX} characters");
        c.fail("webtransport.url_host", format!("{:?}", w.url_host), problem);
    }
    let validity_h =
        c.range("webtransport.cert_validity_hours", w.cert_validity_hours, 3, WT_CERT_VALIDITY_HOURS_MAX);
    // The certificate is backdated an hour (for clocks slightly behind), which counts in its
    // validity: it must be renewed before the rest runs out.
    // An out-of-range validity is reported once: the renewal is checked against it clamped.
    let renew_max = w.cert_validity_hours.clamp(3, WT_CERT_VALIDITY_HOURS_MAX) - 2;
    let renew_h = c.range("webtransport.cert_renew_before_hours", w.cert_renew_before_hours, 1, renew_max);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let cert = match cert_key_pair(c, "webtransport", &w.cert, &w.key) {
        Some((cert, key)) => WebTransportCert::Pem { cert, key },
        None => WebTransportCert::SelfSigned { validity: hours(validity_h), renew_before: hours(renew_h) },
    };
    WebTransportSettings {
        enabled: w.enabled,
        listen,
        path: w.path.clone(),
        url_host: (!w.url_host.is_empty()).then(|| w.url_host.clone()),
        cert,
        frames_capacity: c.size("webtransport.frames_capacity", w.frames_capacity, 1, WT_RING_CAPACITY_MAX),
        answers_capacity: c.size(
            "webtransport.answers_capacity",
            w.answers_capacity,
            WT_ANSWERS_CAPACITY_MIN,
            WT_RING_CAPACITY_MAX,
        ),
        results_pending_max: c.size(
            "webtransport.results_pending_max",
            w.results_pending_max,
            1,
            WT_RESULTS_PENDING_MAX_MAX,
        ),
    }
}

/// Reads `quic.keys_file`: one `<client_id> <api key>` per line (blank lines and lines
/// starting with `#` skipped); ids ≥ 1, keys 1..=256 bytes without spaces, each key once.
fn keys_file(check: &mut Check<'_>, path: &str) -> BTreeMap<Vec<u8>, u64> {
    let key = "quic.keys_file";
    let mut keys = BTreeMap::new();
    if path.is_empty() {
        check.fail(key, "\"\"".into(), "must name a file when quic.auth = \"keys\"".into());
        return keys;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            check.fail(key, format!("{path:?}"), format!("cannot be read: {e}"));
            return keys;
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(char::is_whitespace).and_then(|(id, api_key)| {
            let id = id.parse::<u64>().ok().filter(|&id| id >= 1)?;
            let api_key = api_key.trim();
            (1..=fpn_wire::session::API_KEY_LEN_MAX)
                .contains(&api_key.len())
                .then(|| (api_key.as_bytes().to_vec(), id))
        });
        match parsed {
            Some((api_key, id)) if keys.len() < QUIC_KEYS_MAX => {
                if keys.insert(api_key, id).is_some() {
                    check.fail(key, format!("{path:?}"), format!("line {}: a key listed twice", n + 1));
                }
            }
            Some(_) => {
                check.fail(key, format!("{path:?}"), format!("more than {QUIC_KEYS_MAX} keys"));
                break;
            }
            None => check.fail(
                key,
                format!("{path:?}"),
                format!("line {}: expected `<client_id ≥ 1> <api key of 1..=256 bytes>`", n + 1),
            ),
        }
    }
    if keys.is_empty() {
        check.fail(key, format!("{path:?}"), "lists no key".into());
    }
    keys
}

/// Checks one role's CPU list: non-empty, no repeats, every CPU allowed.
fn cpu_list(check: &mut Check<'_>, role: Role, list: &[usize], cpus: &CpuSet) -> bool {
    let key = format!("cores.{role}");
    let shown = format!("{list:?}");
    if list.is_empty() {
        check.fail(&key, shown, "must list at least one CPU".into());
        return false;
    }
    let mut ok = true;
    for (i, cpu) in list.iter().enumerate() {
        if list[..i].contains(cpu) {
            check.fail(&key, shown.clone(), format!("lists cpu {cpu} twice"));
            ok = false;
        }
        if !cpus.contains(*cpu) {
            check.fail(
                &key,
                shown.clone(),
                format!("cpu {cpu} is not in this process's allowed CPUs {cpus}"),
            );
            ok = false;
        }
    }
    ok
}

/// Validates `config`; on success also returns warnings about legal but doubtful choices.
pub(crate) fn validate(
    config: &Config,
    origins: &BTreeMap<String, Origin>,
    cpus: &CpuSet,
) -> Result<(Settings, Vec<String>), Vec<ConfigError>> {
    let mut c = Check { origins, errors: Vec::new() };

    let profile = c.choice("engine.profile", &config.engine.profile, &Profile::ALL.map(|p| (p.as_str(), p)));
    if config.engine.data_dir.is_empty() {
        c.fail("engine.data_dir", "\"\"".into(), "must not be empty".into());
    }
    let lock_memory =
        c.choice("engine.lock_memory", &config.engine.lock_memory, &LockMemory::ALL.map(|l| (l.as_str(), l)));
    let realtime =
        c.choice("engine.realtime", &config.engine.realtime, &Realtime::ALL.map(|r| (r.as_str(), r)));
    let realtime_priority = c.range(
        "engine.realtime_priority",
        config.engine.realtime_priority,
        REALTIME_PRIORITY_MIN,
        REALTIME_PRIORITY_MAX,
    ) as u8;
    let intakes = c.size("engine.intakes", config.engine.intakes, 1, INTAKES_MAX);

    let w = &config.window;
    let window = WindowSettings {
        window_ns: c.range("window.duration_ms", w.duration_ms, 1, DURATION_MS_MAX) * NS_PER_MS,
        records_max: c.size("window.records_max", w.records_max, 1, RECORDS_MAX_MAX),
        keys_max: c.size("window.keys_max", w.keys_max, 1, KEYS_MAX_MAX),
        bids_max: c.size("window.bids_max", w.bids_max, 1, BIDS_MAX_MAX),
        dedup_horizon_windows: c.size(
            "window.dedup_horizon_windows",
            w.dedup_horizon_windows,
            1,
            DEDUP_HORIZON_WINDOWS_MAX,
        ),
        clients_max: c.size(
            "window.clients_max",
            w.clients_max,
            1,
            fpn_engine::WindowConfig::CLIENTS_MAX_MAX as u64,
        ),
    };

    let b = &config.builder;
    let kinds = [BuilderKind::Improved, BuilderKind::Greedy, BuilderKind::Fifo];
    let builder = BuilderSettings {
        kind: c.choice("builder.kind", &b.kind, &kinds.map(|k| (k.as_str(), k))),
        shards: c.size("builder.shards", b.shards, 1, SHARDS_MAX),
        workers: c.size("builder.workers", b.workers, 0, fpn_engine::shard::WORKERS_PER_SHARD_MAX as u64),
        local_search_steps_max: c.range(
            "builder.local_search_steps_max",
            b.local_search_steps_max,
            0,
            LOCAL_SEARCH_STEPS_MAX_MAX,
        ),
        exact_intents_max: c.size("builder.exact_intents_max", b.exact_intents_max, 0, EXACT_INTENTS_MAX_MAX),
        exact_nodes_max: c.range("builder.exact_nodes_max", b.exact_nodes_max, 0, EXACT_NODES_MAX_MAX),
        fee_rate: fee_rate(&mut c, &b.fee_rate),
    };

    let a = &config.auction;
    let optional = |v: u64| (v != 0).then_some(v);
    let auction = AuctionSettings {
        top_k: c.size("auction.top_k", a.top_k, 1, BIDS_MAX_MAX),
        reserve: c.range("auction.reserve", a.reserve, 0, MAX_AMOUNT),
        budget_cap: optional(c.range("auction.budget_cap", a.budget_cap, 0, MAX_AMOUNT)),
        recency_ns: optional(c.range("auction.recency_ms", a.recency_ms, 0, RECENCY_MS_MAX) * NS_PER_MS),
        order: c.choice(
            "auction.order",
            &a.order,
            &[("priority-first", BidOrder::PriorityFirst), ("amount-desc", BidOrder::AmountDescending)],
        ),
        pricing: c.choice(
            "auction.pricing",
            &a.pricing,
            &[("first-price", Pricing::FirstPrice), ("uniform", Pricing::Uniform)],
        ),
        bids_max: c.size("auction.bids_max", a.bids_max, 1, BIDS_MAX_MAX),
    };

    let rings = RingSettings {
        capacity: c.power_of_two(
            "rings.capacity",
            config.rings.capacity,
            RING_CAPACITY_MIN,
            RING_CAPACITY_MAX,
        ),
        results_capacity: c.power_of_two(
            "rings.results_capacity",
            config.rings.results_capacity,
            2,
            RESULTS_CAPACITY_MAX,
        ),
    };

    let admin = AdminSettings {
        addr: c.socket_addr("admin.addr", &config.admin.addr),
        enabled: config.admin.enabled,
    };

    let p = &config.prover;
    let prover = ProverSettings {
        enabled: p.enabled,
        workers: c.size("prover.workers", p.workers, 1, PROVER_WORKERS_MAX),
        mode: c.choice(
            "prover.mode",
            &p.mode,
            &[("coalesce", ProverMode::Coalesce), ("skip", ProverMode::Skip)],
        ),
        queue_capacity: c.size("prover.queue_capacity", p.queue_capacity, 1, PROVER_QUEUE_CAPACITY_MAX),
        span_max: c.size("prover.span_max", p.span_max, 1, PROVER_SPAN_MAX_MAX),
        jobs_max: c.size("prover.jobs_max", p.jobs_max, 1, PROVER_JOBS_MAX_MAX),
    };

    let l = &config.log;
    let log = LogSettings {
        durability: c.choice(
            "log.durability",
            &l.durability,
            &[("group", Durability::Group), ("none", Durability::None)],
        ),
        group_bytes_max: c.size(
            "log.group_bytes_max",
            l.group_bytes_max,
            LOG_GROUP_BYTES_MIN,
            LOG_GROUP_BYTES_MAX,
        ),
        group_wait_ns: c.range("log.group_wait_us", l.group_wait_us, 0, LOG_GROUP_WAIT_US_MAX) * 1_000,
        segment_bytes_max: c.range(
            "log.segment_bytes_max",
            l.segment_bytes_max,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        ),
        retain_bytes_max: c.range(
            "log.retain_bytes_max",
            l.retain_bytes_max,
            SEGMENT_BYTES_MIN,
            RETAIN_BYTES_MAX,
        ),
        retain_age_ns: c.range("log.retain_age_s", l.retain_age_s, 0, RETAIN_AGE_S_MAX) * 1_000_000_000,
        on_corruption: c.choice(
            "log.on_corruption",
            &l.on_corruption,
            &[("refuse", OnCorruption::Refuse), ("truncate", OnCorruption::Truncate)],
        ),
        sync: c.choice(
            "log.sync",
            &l.sync,
            &[("auto", LogSync::Auto), ("poll", LogSync::Poll), ("wait", LogSync::Wait)],
        ),
    };
    if log.segment_bytes_max < 2 * log.group_bytes_max as u64 {
        c.fail(
            "log.segment_bytes_max",
            log.segment_bytes_max.to_string(),
            format!("must be at least twice log.group_bytes_max ({})", log.group_bytes_max),
        );
    }
    let j = &config.journal;
    let journal = JournalSettings {
        segment_bytes_max: c.range(
            "journal.segment_bytes_max",
            j.segment_bytes_max,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        ),
        retain_bytes_max: c.range(
            "journal.retain_bytes_max",
            j.retain_bytes_max,
            SEGMENT_BYTES_MIN,
            RETAIN_BYTES_MAX,
        ),
        retain_age_ns: c.range("journal.retain_age_s", j.retain_age_s, 0, RETAIN_AGE_S_MAX) * 1_000_000_000,
    };

    let q = &config.quic;
    let cert_key = cert_key_pair(&mut c, "quic", &q.cert, &q.key);
    let auth = match c.choice("quic.auth", &q.auth, &[("open", false), ("keys", true)]) {
        false => QuicAuth::Open,
        true => QuicAuth::Keys(keys_file(&mut c, &q.keys_file)),
    };
    let quic = QuicSettings {
        enabled: q.enabled,
        listen: c.socket_addr("quic.listen", &q.listen),
        connections_max: c.size("quic.connections_max", q.connections_max, 1, CONNECTIONS_MAX_MAX),
        conns_per_client: c.range("quic.conns_per_client", q.conns_per_client, 1, CONNECTIONS_MAX_MAX) as u32,
        conns_per_ip: c.range("quic.conns_per_ip", q.conns_per_ip, 1, CONNECTIONS_MAX_MAX) as u32,
        cert_key,
        auth,
        rate_per_s: c.range("quic.rate_per_s", q.rate_per_s, 0, RATE_PER_S_MAX) as u32,
        burst: c.range("quic.burst", q.burst, 1, RATE_PER_S_MAX) as u32,
        idle_timeout_ms: c.range("quic.idle_timeout_ms", q.idle_timeout_ms, 1, IDLE_TIMEOUT_MS_MAX),
        retry_above: c.size("quic.retry_above", q.retry_above, 0, CONNECTIONS_MAX_MAX),
        datagram_frame_max: c.range(
            "quic.datagram_frame_max",
            q.datagram_frame_max,
            DATAGRAM_FRAME_MIN,
            DATAGRAM_FRAME_MAX_MAX,
        ) as u16,
        receipts_held_max: c.size(
            "quic.receipts_held_max",
            q.receipts_held_max,
            RECEIPTS_HELD_MIN,
            RECEIPTS_HELD_MAX_MAX,
        ),
        rx_timestamps: c.choice(
            "quic.rx_timestamps",
            &q.rx_timestamps,
            &[
                ("software", RxTimestamps::Software),
                ("hardware", RxTimestamps::Hardware),
                ("off", RxTimestamps::Off),
            ],
        ),
    };

    let webtransport = webtransport(&mut c, &config.webtransport, &quic);

    let idle = PerRole::from_fn(|role| {
        let text = config.idle.get(role);
        text.parse::<IdleStrategy>().unwrap_or_else(|problem| {
            c.fail(&format!("idle.{role}"), format!("{text:?}"), problem.to_string());
            IdleStrategy::Spin
        })
    });

    // The core map. Instance counts: `engine.intakes` intakes, `builder.shards` shards and
    // `prover.workers` workers spread round-robin over their lists; one auction, one journal,
    // one log, one admin thread.
    let lists = config.cores.clone();
    let mut lists_ok = true;
    for role in Role::ALL {
        lists_ok &= cpu_list(&mut c, role, lists.get(role), cpus);
    }
    let mut spread =
        vec![(Role::Intake, "engine.intakes", intakes), (Role::Builder, "builder.shards", builder.shards)];
    if builder.workers > 0 {
        spread.push((
            Role::BuildWorker,
            "builder.shards × builder.workers",
            builder.shards * builder.workers,
        ));
    }
    if prover.enabled {
        spread.push((Role::Prover, "prover.workers", prover.workers));
    }
    for (role, count_key, count) in spread {
        let list = lists.get(role);
        if list.len() > count {
            lists_ok = false;
            c.fail(
                &format!("cores.{role}"),
                format!("{list:?}"),
                format!(
                    "lists {} CPUs but {count_key} = {count}; every listed CPU must get at least one \
                     (they are assigned round-robin over the list)",
                    list.len()
                ),
            );
        }
    }
    for role in [Role::Merger, Role::Journal, Role::Log, Role::Admin] {
        let list = lists.get(role);
        if list.len() > 1 {
            lists_ok = false;
            c.fail(
                &format!("cores.{role}"),
                format!("{list:?}"),
                format!("lists {} CPUs; {role} runs as one thread, list exactly one CPU", list.len()),
            );
        }
    }

    if !c.errors.is_empty() || !lists_ok {
        return Err(c.errors);
    }

    let counts = PerRole {
        intake: intakes,
        builder: builder.shards,
        build_worker: builder.shards * builder.workers,
        merger: 1,
        prover: if prover.enabled { prover.workers } else { 0 },
        journal: 1,
        log: 1,
        admin: usize::from(admin.enabled),
    };
    let core_map = CoreMap::resolve(&lists, &counts);

    let mut warnings = Vec::new();
    for plan in &core_map.plans {
        for instance in &plan.roles {
            let strategy = idle.get(instance.role);
            if !spins_forever(*strategy) || plan.roles.len() == 1 {
                continue;
            }
            let others: Vec<String> =
                plan.roles.iter().filter(|r| *r != instance).map(RoleInstance::to_string).collect();
            warnings.push(format!(
                "cpu {}: {instance} spins (idle.{} = \"spin\") but shares the CPU with {}; they run only \
                 at its yields and the CPU never idles. Give spinning roles a CPU each or use spin-then-park.",
                plan.cpu,
                instance.role,
                others.join(", "),
            ));
        }
    }

    if realtime != Realtime::Off {
        warnings.extend(realtime_warnings(&core_map, &idle));
    }

    let settings = Settings {
        profile,
        data_dir: PathBuf::from(&config.engine.data_dir),
        lock_memory,
        realtime,
        realtime_priority,
        window,
        builder,
        auction,
        rings,
        idle,
        cores: lists,
        core_map,
        admin,
        prover,
        quic,
        webtransport,
        log,
        journal,
    };
    Ok((settings, warnings))
}

/// With `engine.realtime`: a `SCHED_FIFO` executor whose roles include one that spins
/// forever never sleeps, so the daemon's own threads placed on its CPU beside it (the
/// journal writer, the admin threads, prover workers) run only in the kernel's RT throttling
/// slack (`kernel.sched_rt_runtime_us`: 5 % of each second by default).
fn realtime_warnings(core_map: &CoreMap, idle: &PerRole<IdleStrategy>) -> Vec<String> {
    let mut warnings = Vec::new();
    for plan in &core_map.plans {
        let threads: Vec<String> = plan
            .roles
            .iter()
            .filter(|r| matches!(r.role, Role::Journal | Role::Admin | Role::Prover))
            .map(RoleInstance::to_string)
            .collect();
        if !plan.roles.iter().any(|r| r.role.is_hot()) || threads.is_empty() {
            continue;
        }
        if let Some(spinner) = plan.roles.iter().find(|r| spins_forever(*idle.get(r.role))) {
            warnings.push(format!(
                "cpu {}: engine.realtime gives its executor SCHED_FIFO and {spinner} spins (idle.{} = \"spin\"): \
                 the executor never sleeps, so the threads of {} on cpu {} run only in the kernel's RT \
                 throttling slack (kernel.sched_rt_runtime_us). Move them to another CPU or use spin-then-park.",
                plan.cpu,
                spinner.role,
                threads.join(", "),
                plan.cpu,
            ));
        }
    }
    warnings
}

impl Settings {
    /// `log.sync` resolved: [`LogSync::Poll`] or [`LogSync::Wait`]. `auto` waits where the
    /// log role shares its CPU with an intake and receipts wait for the log: there the
    /// intake's executor spins, and the io-wq worker that runs the `fdatasync` gets the CPU
    /// only when the scheduler preempts it (`docs/log.md`, "Waiting for the disk").
    pub fn log_sync(&self) -> LogSync {
        match self.log.sync {
            LogSync::Auto => {
                let log = RoleInstance { role: Role::Log, index: 0 };
                let beside_intake = self.core_map.neighbours(log).iter().any(|r| r.role == Role::Intake);
                if beside_intake && self.log.durability == Durability::Group {
                    LogSync::Wait
                } else {
                    LogSync::Poll
                }
            }
            chosen => chosen,
        }
    }

    /// Intake instances (`engine.intakes`, round-robin over `cores.intake`).
    pub fn intakes_n(&self) -> usize {
        self.core_map.instances(Role::Intake)
    }

    /// The engine configuration these settings describe (window, builder, economics,
    /// auction). `window.*` and `auction.bids_max` are totals over all intakes.
    pub fn engine_config(&self) -> fpn_engine::EngineConfig {
        let w = &self.window;
        let a = &self.auction;
        let b = &self.builder;
        let window = fpn_engine::WindowConfig {
            window_ns: w.window_ns,
            records_max: w.records_max,
            keys_max: w.keys_max,
            bids_max: w.bids_max,
            dedup_horizon_windows: u32::try_from(w.dedup_horizon_windows).expect("validated <= 4096"),
            first_seq: 1,
            clients_max: w.clients_max,
        };
        let improved = fpn_engine::ImprovedConfig {
            local_search_steps_max: b.local_search_steps_max,
            exact_intents_max: b.exact_intents_max,
            exact_nodes_max: b.exact_nodes_max,
            ..fpn_engine::ImprovedConfig::default()
        };
        let auction = fpn_engine::AuctionRules {
            top_k: u32::try_from(a.top_k).expect("validated <= 2^20"),
            reserve: a.reserve,
            budget_cap: a.budget_cap,
            recency_ns: a.recency_ns,
            order: a.order,
            pricing: a.pricing,
        };
        fpn_engine::EngineConfig {
            window,
            builder: b.kind,
            improved,
            fee_rate: b.fee_rate,
            auction,
            book_bids_max: a.bids_max,
        }
    }

    /// The sharded engine's shape: `intakes_n` intakes, `builder.shards` builder shards with
    /// `builder.workers` build workers each.
    pub fn shard_config(&self) -> fpn_engine::ShardConfig {
        let mut c = fpn_engine::ShardConfig::new(self.engine_config(), self.intakes_n(), self.builder.shards);
        c.workers_per_shard = self.builder.workers;
        c
    }
}
