//! A whole comparison in one run: the same client code and the same load against the plain
//! UDP echo (the physical floor), the bare quinn sink and echo (the transport's ceiling) and
//! the engine (over its raw QUIC intake; over its WebTransport intake, `webtransport`; and
//! over raw QUIC with the WebTransport intake enabled beside it, `engine-wt-on`), each
//! server pinned to the server CPUs and the client to the client CPUs.
//! Per target: a fixed-rate phase, bursts, a mix of intents and bids, many connections, and a
//! saturation search. Then the table, the ratios to the ceiling, the JSON summary, one
//! `.hgrm` per phase and the SVG plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{ClientOpts, PhaseOutcome, Target, run_clients, run_phase};
use crate::engine::{Metrics, Server, engine_command};
use crate::load::Shape;
use crate::report::{fmt_rate, fmt_us, percentile_distribution, phase_json};
use crate::svg::{Curve, plot};

pub mod scaling;

/// The servers a suite can run against, in the order they run. `engine-nolog` is the engine
/// with `log.durability = "none"` (receipts not waiting for the input log's `fdatasync`), for
/// the durability checks (`docs/log.md`); it runs only when asked for. `webtransport` is the
/// engine over its WebTransport intake, `engine-wt-on` the engine over raw QUIC with the
/// WebTransport intake enabled beside it.
pub const TARGETS: [&str; 7] =
    ["udp-echo", "quic-sink", "quic-echo", "engine", "engine-nolog", "webtransport", "engine-wt-on"];

/// Whether a target is the daemon (it answers with receipts, counts accepted records).
/// A run with several clients is labelled `<target>/<clients>c`.
pub fn is_engine(name: &str) -> bool {
    matches!(name.split('/').next(), Some("engine" | "engine-nolog" | "webtransport" | "engine-wt-on"))
}

/// What the engine targets with the WebTransport intake set on top of the caller's `--set`s.
const WT_SETS: [&str; 2] = ["webtransport.enabled=true", "webtransport.listen=127.0.0.1:0"];

/// Phases, in order.
pub const PHASES: [&str; 6] = ["fixed", "burst", "mix", "conns", "blast", "saturation"];

#[derive(Debug, Clone)]
pub struct SuiteOpts {
    pub targets: Vec<String>,
    pub phases: Vec<String>,
    pub out: PathBuf,
    pub client_cpus: Vec<usize>,
    pub server_cpus: Vec<usize>,
    /// The fixed-rate phases' shape (burst, mix and conns vary one field of it).
    pub base: Shape,
    pub burst: u32,
    pub bids_per_mille: u32,
    pub many_conns: u32,
    /// The blast phase's ceiling rate: the client sends as fast as it can up to it.
    pub blast_rate: f64,
    /// Saturation: the p99 bound, the first rate, the most steps, each step's shape.
    pub p99_bound: Duration,
    pub search_from: f64,
    pub search_steps: u32,
    pub search_warmup: Duration,
    pub search_duration: Duration,
    pub initial_mtu: u16,
    pub frame_len_max: usize,
    pub drain: Duration,
    pub seed: u64,
    pub self_exe: PathBuf,
    pub engine_bin: PathBuf,
    pub engine_sets: Vec<String>,
    pub engine_start_timeout: Duration,
    /// What was run, for the summary.
    pub command: String,
    /// Client counts to run in turn (`--clients`); empty: one client, the classic comparison.
    pub clients: Vec<usize>,
    /// `--receipts refusals`: the engine targets' sessions in receipt mode `refusals`.
    pub refusals: bool,
}

/// What every summary.json starts with: the command, commit, time, machine and placement.
pub(super) fn summary_base(o: &SuiteOpts, machine: Value) -> serde_json::Map<String, Value> {
    let unix_time =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let Value::Object(map) = json!({
        "command": o.command,
        "commit": git_commit(),
        "unix_time": unix_time,
        "machine": machine,
        "client_cpus": o.client_cpus,
        "server_cpus": o.server_cpus,
        "latency_from": "intended send time (coordinated-omission corrected); latency_naive is from the actual send time",
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// Client ids per phase: each phase (and each saturation step) takes a fresh block, so that
/// nonces restart at 1 without the engine's de-duplication taking them for replays. Large
/// enough for 64 clients of 1,024 connections each.
const CLIENT_IDS_PER_PHASE: u64 = 100_000;

/// `0,1,2` for a command line.
fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// One run of a target with `clients` client threads: the client CPUs and, for the bare
/// servers, the server threads' CPUs; the engine gets `engine.intakes = clients`.
#[derive(Debug, Clone)]
struct Scale {
    clients: usize,
    client_cpus: Vec<usize>,
    sink_cpus: Vec<usize>,
}

/// What one target gave.
struct TargetRun {
    name: String,
    phases: Vec<(String, PhaseOutcome)>,
    saturation: Option<Saturation>,
    error: Option<String>,
    engine_stages: Option<Value>,
    /// The engine's counters over the blast phase: sessions it closed, refusals by reason.
    engine_blast: Option<Value>,
}

#[derive(Debug, Clone)]
struct Saturation {
    /// Highest rate that passed, with its outcome's achieved rate and p99.
    best_rate: Option<f64>,
    best_achieved: Option<f64>,
    best_p99_us: Option<f64>,
    steps: Vec<Value>,
}

fn start_server(name: &str, o: &SuiteOpts, scale: Option<&Scale>) -> Result<(Server, Target), String> {
    let dir = match scale {
        Some(sc) => o.out.join(format!("{name}-{}c.d", sc.clients)),
        None => o.out.join(format!("{name}.d")),
    };
    let serve = |mode: &str| {
        let mut cmd = Command::new(&o.self_exe);
        cmd.args(["serve", mode, "--addr-file"])
            .arg(dir.join("addr"))
            .arg("--sha-file")
            .arg(dir.join("cert.sha256"))
            .args(["--mtu", &o.initial_mtu.to_string(), "--frame-max", &o.frame_len_max.to_string()]);
        if let Some(sc) = scale {
            cmd.args(["--threads", &sc.clients.to_string(), "--cpus", &cpu_list(&sc.sink_cpus)]);
        }
        cmd
    };
    let timeout = Duration::from_secs(10);
    match name {
        "udp-echo" => {
            let s = Server::start(name, serve("udp-echo"), &dir, "addr", None, &o.server_cpus, timeout)?;
            let t = Target::Udp { addr: s.addr };
            Ok((s, t))
        }
        "quic-sink" | "quic-echo" => {
            let s =
                Server::start(name, serve(name), &dir, "addr", Some("cert.sha256"), &o.server_cpus, timeout)?;
            let t = Target::Quic { addr: s.addr, pin: s.pin, stats: true, answers: name == "quic-echo" };
            Ok((s, t))
        }
        "engine" | "engine-nolog" | "webtransport" | "engine-wt-on" => {
            if !o.engine_bin.exists() {
                return Err(format!("{} not built", o.engine_bin.display()));
            }
            let mut sets = o.engine_sets.clone();
            if name == "engine-nolog" {
                sets.push("log.durability=none".into());
            }
            if name == "webtransport" || name == "engine-wt-on" {
                sets.extend(WT_SETS.iter().map(|s| s.to_string()));
            }
            if let Some(sc) = scale {
                // Before the caller's sets, so that theirs win.
                let mut first = scaling::engine_sets(sc.clients, o);
                first.append(&mut sets);
                sets = first;
            }
            let cmd = engine_command(&o.engine_bin, &dir, &sets);
            let mut s = Server::start(
                name,
                cmd,
                &dir,
                "quic.addr",
                Some("tls/cert.sha256"),
                &o.server_cpus,
                o.engine_start_timeout,
            )?;
            s.wait_ready(o.engine_start_timeout)?;
            let t = if name == "webtransport" {
                s.webtransport_target()?
            } else {
                Target::Quic { addr: s.addr, pin: s.pin, stats: false, answers: true }
            };
            Ok((s, t))
        }
        other => Err(format!("unknown target `{other}`")),
    }
}

/// Waits until the server is idle (under 40 % of a CPU over 200 ms, at most 5 s), so a
/// backlog left by one phase (records queued in its buffers) does not land in the next.
/// 40 %: the idle engine with the `default` profile uses about a quarter of a CPU for its
/// parked roles' wake-ups (docs/daemon.md). A server that spins when idle (the `tuned`
/// profile) just costs the 5 s.
async fn settle(pid: u32) -> Duration {
    let start = std::time::Instant::now();
    let mut last = crate::procstat::cpu_s(pid);
    while start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = crate::procstat::cpu_s(pid);
        match (last, now) {
            (Some(a), Some(b)) if b - a < 0.08 => break,
            (_, None) => break,
            _ => last = now,
        }
    }
    start.elapsed()
}

/// A saturation step passes when the client kept its schedule (send lag p99 within the
/// bound, no sender gave up) and the server kept up: the sink counted ≥ 99 % of the sent
/// records; an answering server answered (the engine: accepted) ≥ 97 % of the offered rate
/// with the corrected p99 within the bound.
fn passes(o: &PhaseOutcome, engine: bool, bound_us: f64) -> bool {
    let p99_us = |h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1e3;
    let kept_schedule = !o.abandoned && !o.send_lag.is_empty() && p99_us(&o.send_lag) <= bound_us;
    if !kept_schedule {
        return false;
    }
    match o.sink_loss() {
        Some(loss) if o.counts.measured_answered == 0 => loss <= 0.01,
        _ => {
            o.achieved_per_s(engine) >= 0.97 * o.offered_per_s()
                && !o.corrected.is_empty()
                && p99_us(&o.corrected) <= bound_us
        }
    }
}

/// Runs one phase with one client on this thread, or with `scale`'s clients on theirs.
async fn phase(
    target: &Target,
    shape: &Shape,
    opts: &ClientOpts,
    scale: Option<&Scale>,
) -> Result<PhaseOutcome, String> {
    match scale {
        Some(sc) => run_clients(target, shape, opts, &sc.client_cpus).await,
        None => run_phase(target, shape, opts).await,
    }
}

async fn run_target(name: &str, o: &SuiteOpts, phase_no: &mut u64, scale: Option<&Scale>) -> TargetRun {
    let mut run = TargetRun {
        name: name.to_string(),
        phases: Vec::new(),
        saturation: None,
        error: None,
        engine_stages: None,
        engine_blast: None,
    };
    let (mut server, target) = match start_server(name, o, scale) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("fpn-bench: {name}: {e}");
            run.error = Some(e);
            return run;
        }
    };
    let engine = is_engine(name);
    eprintln!("fpn-bench: {name} on {} (pid {}, cpus {:?})", server.addr, server.pid(), o.server_cpus);
    let mut opts = ClientOpts {
        client_id_base: 1,
        initial_mtu: o.initial_mtu,
        frame_len_max: o.frame_len_max,
        drain: o.drain,
        seed: o.seed,
        server_pid: Some(server.pid()),
        give_up_lag: Duration::from_secs(1),
        blast: false,
        start_gate: None,
        refusals: o.refusals && engine,
    };
    for phase in &o.phases {
        let shape = match phase.as_str() {
            "fixed" => o.base.clone(),
            "burst" => Shape { burst: o.burst, ..o.base.clone() },
            "mix" => Shape { bids_per_mille: o.bids_per_mille, ..o.base.clone() },
            "conns" => Shape { conns: o.many_conns, ..o.base.clone() },
            "blast" => Shape { rate_per_s: o.blast_rate, ..o.base.clone() },
            "saturation" => {
                run.saturation = Some(saturate(&target, o, &mut opts, engine, phase_no, scale).await);
                continue;
            }
            other => {
                run.error = Some(format!("unknown phase `{other}`"));
                continue;
            }
        };
        // A fresh block of client ids per phase: nonces restart at 1, and the engine's
        // de-duplication must not see them as replays.
        *phase_no += 1;
        opts.client_id_base = *phase_no * CLIENT_IDS_PER_PHASE + 1;
        opts.blast = phase == "blast";
        let waited = settle(server.pid()).await;
        if waited > Duration::from_millis(500) {
            eprintln!("fpn-bench: {name}: waited {:.1} s for the server to go idle", waited.as_secs_f64());
        }
        let before = if engine && (phase == "fixed" || phase == "blast") {
            server.metrics().map_err(|e| eprintln!("fpn-bench: engine /metrics: {e}")).ok()
        } else {
            None
        };
        match self::phase(&target, &shape, &opts, scale).await {
            Ok(outcome) => {
                if opts.blast {
                    let (got, sent) = outcome.blast_per_s(engine);
                    eprintln!("fpn-bench: {name} blast: client sent {} -> {}", fmt_rate(sent), fmt_rate(got));
                } else {
                    eprintln!("fpn-bench: {name} {phase}: {}", one_line(&outcome, engine));
                }
                if let Some(before) = before {
                    // Housekeeping publishes every 100 ms: let the last of the phase land.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    match server.metrics() {
                        Ok(after) if phase == "fixed" => {
                            run.engine_stages = Some(stages_json(&after.since(&before)))
                        }
                        Ok(after) => run.engine_blast = Some(stages_json(&after.since(&before))),
                        Err(e) => eprintln!("fpn-bench: engine /metrics: {e}"),
                    }
                }
                run.phases.push((phase.clone(), outcome));
            }
            Err(e) => {
                eprintln!("fpn-bench: {name} {phase}: {e}");
                run.error = Some(format!("{phase}: {e}"));
            }
        }
    }
    let status = server.stop();
    if engine && !status.is_some_and(|s| s.success()) {
        eprintln!("fpn-bench: engine exit status {status:?}");
    }
    run
}

/// The highest rate whose achieved rate is ≥ 97 % of the offered and whose corrected p99 is
/// within the bound: doubling from `search_from` until a step fails, then bisecting.
async fn saturate(
    target: &Target,
    o: &SuiteOpts,
    opts: &mut ClientOpts,
    engine: bool,
    phase_no: &mut u64,
    scale: Option<&Scale>,
) -> Saturation {
    let bound_us = o.p99_bound.as_secs_f64() * 1e6;
    opts.blast = false;
    let mut sat = Saturation { best_rate: None, best_achieved: None, best_p99_us: None, steps: Vec::new() };
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = o.search_from;
    for _ in 0..o.search_steps {
        if let Some(pid) = opts.server_pid {
            settle(pid).await;
        }
        *phase_no += 1;
        opts.client_id_base = *phase_no * CLIENT_IDS_PER_PHASE + 1;
        let shape = Shape {
            rate_per_s: rate,
            warmup: o.search_warmup,
            duration: o.search_duration,
            ..o.base.clone()
        };
        // With several clients each offers `rate`: the step's offered rate is their sum.
        let ok = match phase(target, &shape, opts, scale).await {
            Ok(outcome) => {
                let ok = passes(&outcome, engine, bound_us);
                eprintln!(
                    "fpn-bench:   saturation {}: {} -> {}",
                    fmt_rate(rate),
                    one_line(&outcome, engine),
                    if ok { "ok" } else { "over" }
                );
                let p99 = (!outcome.corrected.is_empty())
                    .then(|| outcome.corrected.value_at_quantile(0.99) as f64 / 1e3);
                sat.steps.push(json!({"rate": rate, "ok": ok, "phase": phase_json(&outcome, engine)}));
                if ok && lo.is_none_or(|l| rate > l) {
                    sat.best_rate = Some(outcome.offered_per_s());
                    sat.best_achieved = Some(outcome.achieved_per_s(engine));
                    sat.best_p99_us = p99;
                }
                ok
            }
            Err(e) => {
                eprintln!("fpn-bench:   saturation {}: {e}", fmt_rate(rate));
                sat.steps.push(json!({"rate": rate, "ok": false, "error": e}));
                false
            }
        };
        if ok {
            lo = Some(rate);
        } else {
            hi = Some(rate);
        }
        rate = match (lo, hi) {
            (Some(l), None) => l * 2.0,
            (None, Some(h)) => h / 4.0,
            (Some(l), Some(h)) if h / l < 1.08 => break,
            (Some(l), Some(h)) => (l + h) / 2.0,
            (None, None) => unreachable!("one of them was just set"),
        };
    }
    sat
}

/// What the table must not hide about a phase: a client that fell behind, records not
/// answered, refusals, a sink that lost records.
fn notes(o: &PhaseOutcome) -> String {
    let mut n = Vec::new();
    if o.abandoned {
        n.push("client fell behind >1 s (abandoned)".to_string());
    }
    if o.unanswered > 0 {
        n.push(format!("{} unanswered", o.unanswered));
    }
    let rejected: u64 = o.counts.measured_rejected.iter().map(|(_, c)| c).sum();
    if rejected > 0 {
        n.push(format!("{rejected} refused"));
    }
    if o.counts.via_stream > 0 {
        n.push(format!("{} receipts via stream", o.counts.via_stream));
    }
    if o.counts.watermarks > 0 {
        n.push(format!("{} watermarks", o.counts.watermarks));
    }
    if let Some(l) = o.sink_loss().filter(|l| *l > 0.001) {
        n.push(format!("sink loss {:.1}%", l * 100.0));
    }
    n.join("; ")
}

fn one_line(o: &PhaseOutcome, engine: bool) -> String {
    let lat = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() { "-".to_string() } else { fmt_us(h.value_at_quantile(q) as f64 / 1e3) }
    };
    format!(
        "offered {} achieved {} p50 {} p99 {} (naive p99 {}) send lag p99 {} unanswered {}{}{}",
        fmt_rate(o.offered_per_s()),
        fmt_rate(o.achieved_per_s(engine)),
        lat(&o.corrected, 0.5),
        lat(&o.corrected, 0.99),
        lat(&o.naive, 0.99),
        lat(&o.send_lag, 0.99),
        o.unanswered,
        o.sink_loss().map_or(String::new(), |l| format!(" sink loss {:.2}%", l * 100.0)),
        if o.abandoned { " CLIENT FELL BEHIND" } else { "" }
    )
}

fn stages_json(m: &Metrics) -> Value {
    let stages: Vec<Value> = m
        .stages()
        .map(|(k, h)| {
            json!({
                "series": k,
                "count": h.count,
                "mean_us": if h.count > 0.0 { h.sum / h.count * 1e6 } else { 0.0 },
                "p50_le_us": h.quantile_le(0.5).map(|s| s * 1e6),
                "p99_le_us": h.quantile_le(0.99).map(|s| s * 1e6),
                "p999_le_us": h.quantile_le(0.999).map(|s| s * 1e6),
            })
        })
        .collect();
    json!({
        "stages": stages,
        "accepted": m.counter_by("fpn_records_accepted_total", "").values().sum::<f64>(),
        "quic_counters": m.counters_with_prefix("fpn_quic_"),
        "rejected_by_reason": m.counter_by("fpn_records_rejected_total", "reason").into_iter().filter(|(_, v)| *v > 0.0).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).ok();
    let mem_kib = read("/proc/meminfo")
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "cpu": model,
        "cpus": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "mem_gib": mem_kib.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "loadavg_at_start": read("/proc/loadavg"),
    })
}

fn git_commit() -> Option<String> {
    let out = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    let dirty = Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]).output().ok()?;
    let c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!c.is_empty()).then(|| if dirty.stdout.is_empty() { c } else { format!("{c}-dirty") })
}

fn lat_us(o: &PhaseOutcome, q: f64) -> Option<f64> {
    (!o.corrected.is_empty())
        .then(|| o.corrected.highest_equivalent(o.corrected.value_at_quantile(q)) as f64 / 1e3)
}

/// Runs the suite; prints the table and the ratios; writes the files under `o.out`.
pub async fn run(o: &SuiteOpts) -> Result<Value, String> {
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let machine = machine();
    let mut phase_no = 0;
    if !o.clients.is_empty() {
        return scaling::run(o, machine).await;
    }
    let mut runs = Vec::new();
    for t in &o.targets {
        runs.push(run_target(t, o, &mut phase_no, None).await);
    }
    let find = |t: &str, p: &str| {
        runs.iter().find(|r| r.name == t).and_then(|r| r.phases.iter().find(|(n, _)| n == p)).map(|(_, o)| o)
    };
    let sat = |t: &str| {
        runs.iter().find(|r| r.name == t).and_then(|r| r.saturation.as_ref()).and_then(|s| s.best_achieved)
    };

    // Files: .hgrm per phase (corrected and naive), the plot of the fixed phases.
    let mut curves = Vec::new();
    for r in &runs {
        for (p, out) in &r.phases {
            write(&o.out.join(format!("{}-{p}.hgrm", r.name)), &percentile_distribution(&out.corrected))?;
            write(&o.out.join(format!("{}-{p}.naive.hgrm", r.name)), &percentile_distribution(&out.naive))?;
            if p == "fixed" && !out.corrected.is_empty() {
                curves.push(Curve::from_histogram(&r.name, &out.corrected));
            }
        }
    }
    let rate = fmt_rate(o.base.rate_per_s);
    let title = format!(
        "round trip from intended send time, {rate}, {} records/datagram (load avg {} at start)",
        o.base.records_per_dgram,
        machine["loadavg_at_start"].as_str().and_then(|l| l.split_whitespace().next()).unwrap_or("?")
    );
    write(&o.out.join("percentiles.svg"), &plot(&title, &curves))?;

    let mut t = table_rows(&runs, o);

    // Ratios to the ceiling: engine / quic-echo latency, engine / quic-sink throughput, and
    // the QUIC transport over the UDP floor.
    let mut ratios = serde_json::Map::new();
    let _ = writeln!(t, "\nratios (latency: corrected, same phase; throughput: saturation):");
    for (num, den) in [("engine", "quic-echo"), ("quic-echo", "udp-echo")] {
        for p in PHASES.iter().take(4) {
            let (Some(a), Some(b)) = (find(num, p), find(den, p)) else { continue };
            let mut row = serde_json::Map::new();
            let mut line = format!("  {num} / {den} {p:<6}");
            for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
                if let (Some(x), Some(y)) = (lat_us(a, q), lat_us(b, q)) {
                    row.insert(name.into(), json!((x / y * 100.0).round() / 100.0));
                    let _ = write!(line, "  {name} {:.2}x", x / y);
                }
            }
            let _ = writeln!(t, "{line}");
            ratios.insert(format!("{num}/{den} {p}"), Value::Object(row));
        }
    }
    let blast = |t: &str| find(t, "blast").map(|o| o.blast_per_s(is_engine(t)));
    for (num, den) in [("engine", "quic-sink"), ("engine", "quic-echo"), ("quic-echo", "quic-sink")] {
        if let (Some((a, _)), Some((b, b_sent))) = (blast(num), blast(den)) {
            let bound =
                if b >= 0.95 * b_sent { " (the baseline kept up with the client: client-bound)" } else { "" };
            let _ = writeln!(
                t,
                "  {num} / {den} blast throughput {:.2}x ({} / {}){bound}",
                a / b,
                fmt_rate(a),
                fmt_rate(b)
            );
            ratios.insert(format!("{num}/{den} blast throughput"), json!((a / b * 1000.0).round() / 1000.0));
        }
    }
    for (num, den) in [("engine", "quic-sink"), ("quic-sink", "udp-echo"), ("quic-echo", "quic-sink")] {
        if let (Some(a), Some(b)) = (sat(num), sat(den)) {
            let _ = writeln!(
                t,
                "  {num} / {den} saturation throughput {:.2}x ({} / {})",
                a / b,
                fmt_rate(a),
                fmt_rate(b)
            );
            ratios.insert(
                format!("{num}/{den} saturation throughput"),
                json!((a / b * 1000.0).round() / 1000.0),
            );
        }
    }
    // Issue #4's three targets.
    let mut checks = serde_json::Map::new();
    let _ = writeln!(t, "\nissue #4 targets (16 records per datagram):");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let (Some((e, _)), Some((s, s_sent))) = (blast("engine"), blast("quic-sink")) {
        let bound = if s >= 0.95 * s_sent { " (client-bound: the sink kept up with the client)" } else { "" };
        let _ = writeln!(
            t,
            "  engine accepts >= 90% of bare quinn receiver records/s (blast): {:.1}% -> {}{bound}",
            e / s * 100.0,
            verdict(e / s >= 0.9)
        );
        checks.insert(
            "accept_rate_vs_sink_blast".into(),
            json!({"ratio": e / s, "met": e / s >= 0.9, "client_bound": !bound.is_empty()}),
        );
    }
    match (sat("engine"), sat("quic-sink")) {
        (Some(e), Some(s)) => {
            // A sink search that ended far below what the sink took in the blast phase was
            // ended by client stalls (send lag over the bound), not by the sink.
            let unreliable = blast("quic-sink").is_some_and(|(b, _)| s < 0.5 * b);
            let _ = writeln!(
                t,
                "  engine accepts >= 90% of bare quinn receiver records/s (saturation): {:.1}% -> {}{}",
                e / s * 100.0,
                verdict(e / s >= 0.9),
                if unreliable {
                    " (unreliable: the sink's search ended far below its blast figure, on client stalls)"
                } else {
                    ""
                }
            );
            checks.insert(
                "accept_rate_vs_sink".into(),
                json!({"ratio": e / s, "met": e / s >= 0.9, "unreliable": unreliable}),
            );
        }
        _ => {
            let _ = writeln!(t, "  engine accepts >= 90% of bare quinn receiver records/s: not measured");
        }
    }
    for (name, q, limit) in [("p50", 0.5, 1.3), ("p99", 0.99, 1.5)] {
        match (
            find("engine", "fixed").and_then(|a| lat_us(a, q)),
            find("quic-echo", "fixed").and_then(|b| lat_us(b, q)),
        ) {
            (Some(x), Some(y)) => {
                let _ = writeln!(
                    t,
                    "  receipt round trip {name} <= {limit}x bare quinn echo: {:.2}x -> {}",
                    x / y,
                    verdict(x / y <= limit)
                );
                checks.insert(
                    format!("{name}_vs_echo"),
                    json!({"ratio": x / y, "limit": limit, "met": x / y <= limit}),
                );
            }
            _ => {
                let _ = writeln!(t, "  receipt round trip {name} <= {limit}x bare quinn echo: not measured");
            }
        }
    }
    let wt_checks = webtransport_checks(&mut t, &find, &sat);
    // Issue #15: the input log's cost (docs/log.md), with this disk's fdatasync measured here.
    let mut log_checks = serde_json::Map::new();
    if o.targets.iter().any(|t| t == "engine-nolog") {
        let _ = writeln!(t, "\nissue #15 targets (input log, log.durability = group against none):");
        let sync = fdatasync_percentiles(&o.out);
        if let Some((p50, p99)) = sync {
            let _ = writeln!(
                t,
                "  this disk's fdatasync of 64 KiB appends: p50 {}, p99 {}",
                fmt_us(p50),
                fmt_us(p99)
            );
            log_checks.insert("fdatasync_64k_us".into(), json!({"p50": p50, "p99": p99}));
        }
        match (sat("engine"), sat("engine-nolog")) {
            (Some(g), Some(n)) => {
                let _ = writeln!(
                    t,
                    "  saturation with group commit >= 90% of without: {:.1}% ({} / {}) -> {}",
                    g / n * 100.0,
                    fmt_rate(g),
                    fmt_rate(n),
                    verdict(g / n >= 0.9)
                );
                log_checks
                    .insert("saturation_group_vs_none".into(), json!({"ratio": g / n, "met": g / n >= 0.9}));
            }
            _ => {
                let _ = writeln!(t, "  saturation with group commit >= 90% of without: not measured");
            }
        }
        match (
            find("engine", "fixed").and_then(|a| lat_us(a, 0.99)),
            find("quic-echo", "fixed").and_then(|b| lat_us(b, 0.99)),
            sync,
        ) {
            (Some(x), Some(y), Some((_, s99))) => {
                let bound = y + 2.0 * s99;
                let _ = writeln!(
                    t,
                    "  receipt p99 <= bare quinn echo p99 + 2 x fdatasync p99: {} <= {} + 2 x {} = {} -> {}",
                    fmt_us(x),
                    fmt_us(y),
                    fmt_us(s99),
                    fmt_us(bound),
                    verdict(x <= bound)
                );
                log_checks.insert(
                    "p99_vs_echo_plus_sync".into(),
                    json!({"engine_p99_us": x, "echo_p99_us": y, "fdatasync_p99_us": s99, "bound_us": bound, "met": x <= bound}),
                );
            }
            _ => {
                let _ = writeln!(t, "  receipt p99 <= bare quinn echo p99 + 2 x fdatasync p99: not measured");
            }
        }
    }
    print!("{t}");
    write(&o.out.join("table.txt"), &t)?;

    let mut summary = summary_base(o, machine);
    summary.insert("targets".into(), Value::Object(targets_json(&runs, o)));
    summary.insert("ratios".into(), json!(ratios));
    summary.insert("issue4".into(), json!(checks));
    summary.insert("webtransport".into(), json!(wt_checks));
    summary.insert("issue15".into(), json!(log_checks));
    let summary = Value::Object(summary);
    write(&o.out.join("summary.json"), &serde_json::to_string_pretty(&summary).expect("json"))?;
    println!("\nwrote {}/{{summary.json,table.txt,percentiles.svg,*.hgrm}}", o.out.display());
    Ok(summary)
}

/// The table: one row per target and phase (the blast phase's throughput, the saturation
/// search's best rate), an error line for a target that failed.
fn table_rows(runs: &[TargetRun], o: &SuiteOpts) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<12} {:<10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}  notes",
        "target",
        "phase",
        "offered",
        "achieved",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "naive p99",
        "cpu cli/srv",
    );
    for r in runs {
        let engine = is_engine(&r.name);
        for (p, out) in &r.phases {
            if p == "blast" {
                let (got, sent) = out.blast_per_s(engine);
                let _ = writeln!(
                    t,
                    "{:<12} {:<10} {:>11} {:>11}   (as fast as the client can, up to {}; offered = what the client sent{})",
                    r.name,
                    p,
                    fmt_rate(sent),
                    fmt_rate(got),
                    fmt_rate(out.offered_per_s()),
                    if got >= 0.95 * sent { "; client-bound: the server kept up" } else { "" }
                );
                continue;
            }
            let q = |q: f64| lat_us(out, q).map_or("-".into(), fmt_us);
            let max =
                if out.corrected.is_empty() { "-".into() } else { fmt_us(out.corrected.max() as f64 / 1e3) };
            let naive = if out.naive.is_empty() {
                "-".into()
            } else {
                fmt_us(out.naive.value_at_quantile(0.99) as f64 / 1e3)
            };
            let secs = out.shape.duration.as_secs_f64();
            let cpu = format!(
                "{:.0}%/{}",
                out.client_cpu_s / secs * 100.0,
                out.server_cpu_s.map_or("-".into(), |s| format!("{:.0}%", s / secs * 100.0))
            );
            let _ = writeln!(
                t,
                "{:<12} {:<10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}  {}",
                r.name,
                p,
                fmt_rate(out.offered_per_s()),
                fmt_rate(out.achieved_per_s(engine)),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                q(0.9999),
                max,
                naive,
                cpu,
                notes(out)
            );
        }
        if let Some(s) = &r.saturation {
            let _ = writeln!(
                t,
                "{:<12} {:<10} {:>11} {:>11} {:>10} {:>10} {:>10}   (highest rate with achieved >= 97% of offered, p99 <= {})",
                r.name,
                "saturation",
                s.best_rate.map_or("none".into(), fmt_rate),
                s.best_achieved.map_or("-".into(), fmt_rate),
                "",
                "",
                s.best_p99_us.map_or("-".into(), fmt_us),
                fmt_us(o.p99_bound.as_secs_f64() * 1e6),
            );
        }
        if let Some(e) = &r.error {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(t, "{:<12} error: {first}", r.name);
        }
    }
    t
}

/// Every target's phases, saturation search, engine metrics and error, by name.
fn targets_json(runs: &[TargetRun], o: &SuiteOpts) -> serde_json::Map<String, Value> {
    runs.iter()
        .map(|r| {
            let engine = is_engine(&r.name);
            let phases: serde_json::Map<String, Value> =
                r.phases.iter().map(|(p, out)| (p.clone(), phase_json(out, engine))).collect();
            let sat = r.saturation.as_ref().map(|s| {
                json!({"best_rate": s.best_rate, "best_achieved_per_s": s.best_achieved, "best_p99_us": s.best_p99_us,
                       "p99_bound_us": o.p99_bound.as_secs_f64() * 1e6, "steps": s.steps})
            });
            (r.name.clone(), json!({"phases": phases, "saturation": sat, "engine_metrics": r.engine_stages,
                                  "engine_metrics_blast": r.engine_blast, "error": r.error}))
        })
        .collect()
}

/// The WebTransport intake's targets, when the run has them: its receipt round trip against
/// the raw QUIC intake's at the same load (fixed phase: p50 ≤ 1.3×, p99 ≤ 1.5×), its records/s
/// at saturation (≥ 80 % of the raw intake's), and the raw intake's p99 with WebTransport
/// enabled beside it (`engine-wt-on`) against without (`engine`): within 5 %. One run of
/// each is one sample: `bench/wt_overhead.sh` alternates them.
fn webtransport_checks<'a>(
    t: &mut String,
    find: &impl Fn(&str, &str) -> Option<&'a PhaseOutcome>,
    sat: &impl Fn(&str) -> Option<f64>,
) -> Value {
    let mut checks = serde_json::Map::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let pairs = [
        ("webtransport", "engine", "p50", 0.5, 1.3),
        ("webtransport", "engine", "p99", 0.99, 1.5),
        ("engine-wt-on", "engine", "p99", 0.99, 1.05),
    ];
    for (num, den, name, q, limit) in pairs {
        let (Some(x), Some(y)) =
            (find(num, "fixed").and_then(|a| lat_us(a, q)), find(den, "fixed").and_then(|b| lat_us(b, q)))
        else {
            continue;
        };
        if checks.is_empty() {
            let _ = writeln!(t, "\nWebTransport targets (fixed phase; saturation):");
        }
        let _ = writeln!(
            t,
            "  {num} / {den} receipt round trip {name} <= {limit}x: {} / {} = {:.2}x -> {}",
            fmt_us(x),
            fmt_us(y),
            x / y,
            verdict(x / y <= limit)
        );
        checks.insert(
            format!("{num}/{den} {name}"),
            json!({"ratio": x / y, "limit": limit, "met": x / y <= limit}),
        );
    }
    if let (Some(w), Some(e)) = (sat("webtransport"), sat("engine")) {
        let _ = writeln!(
            t,
            "  webtransport / engine records/s at saturation >= 0.8x: {} / {} = {:.2}x -> {}",
            fmt_rate(w),
            fmt_rate(e),
            w / e,
            verdict(w / e >= 0.8)
        );
        checks.insert(
            "webtransport/engine saturation".into(),
            json!({"ratio": w / e, "limit": 0.8, "met": w / e >= 0.8}),
        );
    }
    Value::Object(checks)
}

/// p50 and p99 (µs) of `fdatasync` after a 64 KiB append, 300 times, in a file under `dir`
/// (the engines' data dirs are there too: the same disk).
fn fdatasync_percentiles(dir: &Path) -> Option<(f64, f64)> {
    use std::io::Write;
    let path = dir.join("fdatasync.probe");
    let mut file = std::fs::File::create(&path).ok()?;
    let chunk = vec![7u8; 64 * 1024];
    let mut us = Vec::with_capacity(300);
    for _ in 0..300 {
        file.write_all(&chunk).ok()?;
        let t = std::time::Instant::now();
        file.sync_data().ok()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    us.sort_by(f64::total_cmp);
    Some((us[us.len() / 2], us[us.len() * 99 / 100]))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
