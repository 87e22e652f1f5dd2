//! `fpn-bench`: `run` a whole comparison (what `bench/run` calls), `load` one phase against a
//! running server, or `serve` a bare baseline. See `bench/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fpn_bench::client::{ClientOpts, Target, run_phase};
use fpn_bench::load::Shape;
use fpn_bench::procstat::{allowed_cpus, parse_cpu_list, pin_current_thread};
use fpn_bench::report::{percentile_distribution, phase_json};
use fpn_bench::servers::{Mode, ThreadedServe, serve_quic, serve_quic_threads, serve_udp_echo};
use fpn_bench::suite::{self, SuiteOpts};

#[derive(Parser, Debug)]
#[command(name = "fpn-bench", about = "Open-loop tail-latency harness for flashpointd and its baselines")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The whole comparison: every target, every phase, table, ratios, JSON, plot.
    Run(RunArgs),
    /// One phase against a running server.
    Load(LoadArgs),
    /// A bare baseline server: quic-sink, quic-echo or udp-echo.
    Serve(ServeArgs),
}

#[derive(Args, Debug, Clone)]
struct ShapeArgs {
    /// Offered records per second (all connections).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    #[arg(long, default_value_t = 1)]
    conns: u32,
    /// Records per datagram.
    #[arg(long, default_value_t = 16)]
    records: u16,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Initial UDP payload size of QUIC connections: quinn's largest by default (1,472), so
    /// no MTU discovery is waited for on loopback.
    #[arg(long, default_value_t = 1472)]
    mtu: u16,
    /// Largest frame the client sends, for every target (QUIC sessions may cap it lower).
    /// 1,400 is the most the engine takes (`quic.datagram_frame_max`, which the harness sets
    /// to 1,400): 16 records of 64–80 bytes.
    #[arg(long, default_value_t = 1400)]
    frame_max: usize,
    /// Seconds to wait for the last answers.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CPUs of the client (this process).
    #[arg(long)]
    client_cpus: Option<String>,
    /// Receipt mode of the engine's sessions (`docs/transport.md`, "Receipt modes"): `all`,
    /// one receipt per record, or `refusals`, receipts for refused records only and a
    /// watermark confirming the accepted ones (their latency is the watermark's arrival).
    /// Only engine targets; the bare servers always answer as they do.
    #[arg(long, value_enum, default_value_t = Receipts::All)]
    receipts: Receipts,
}

/// `--receipts`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Receipts {
    All,
    Refusals,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// Short phases and a short search: the whole run in about a minute.
    #[arg(long)]
    quick: bool,
    /// Comma-separated: udp-echo, quic-sink, quic-echo, engine; engine-nolog (the engine with
    /// log.durability=none; with it the table ends with the input log's checks, against this
    /// disk's fdatasync measured in the same run); webtransport (the engine over its
    /// WebTransport intake), engine-wt-on (over raw QUIC, WebTransport enabled).
    #[arg(long, default_value = "udp-echo,quic-sink,quic-echo,engine")]
    targets: String,
    /// Comma-separated: fixed, burst, mix, conns, blast, saturation.
    #[arg(long, default_value = "fixed,burst,mix,conns,blast,saturation")]
    phases: String,
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// CPUs of the servers (default: the last allowed CPU; the client gets the first).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Datagrams per burst in the burst phase.
    #[arg(long, default_value_t = 16)]
    burst: u32,
    /// Bids per thousand records in the mix phase. 20 (2 %): at 100 k records/s that is
    /// 2,000 bids/s, below what the engine's default auction clears (top 64 per 20 ms window,
    /// 3,200/s); at 250 the book fills and bids are refused `book_full` (measured).
    #[arg(long, default_value_t = 20)]
    bids_per_mille: u32,
    /// Connections in the many-connections phase.
    #[arg(long, default_value_t = 64)]
    many_conns: u32,
    /// The blast phase sends as fast as the client can, up to this rate (records/s).
    #[arg(long, default_value_t = 4_000_000.0)]
    blast_rate: f64,
    /// Saturation: the corrected p99 must stay within this many milliseconds.
    #[arg(long, default_value_t = 10.0)]
    p99_bound_ms: f64,
    /// Saturation: the first rate tried (records/s).
    #[arg(long, default_value_t = 100_000.0)]
    search_from: f64,
    #[arg(long, default_value_t = 10)]
    search_steps: u32,
    /// The daemon to run (default: the `flashpointd` beside this binary, where cargo puts
    /// both, or a directory of prebuilt binaries).
    #[arg(long)]
    engine_bin: Option<PathBuf>,
    /// Engine setting, `KEY=VALUE` (repeatable), passed as `--set` after the harness's own
    /// (`quic.datagram_frame_max=1400`, `quic.rate_per_s=0`: the engine's capacity, not its
    /// rate limiter; `prover.enabled=false`: the receipt path alone), so they win.
    #[arg(long = "engine-set")]
    engine_sets: Vec<String>,
    /// Seconds to wait for the engine's quic.addr.
    #[arg(long, default_value_t = 20.0)]
    engine_start_timeout: f64,
    /// Nice value for the client and every server (inherited). On a machine shared with
    /// other work, `-20` keeps the measured processes from waiting behind it (needs root).
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
    /// Client cores: with N, N client threads, each pinned to a CPU of `--client-cpus` with its
    /// own `--conns` connections and the whole phase's rate, against N bare receivers (one
    /// `SO_REUSEPORT` group, a thread per server CPU) and the engine with `engine.intakes=N`.
    /// A list (`1,2,4`) runs each count in turn and reports the scaling. Without
    /// `--client-cpus`/`--server-cpus`: the first N allowed CPUs for the clients, the rest
    /// for the servers (all of them, with a warning, when none is left).
    #[arg(long)]
    clients: Option<String>,
}

#[derive(Args, Debug)]
struct LoadArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// Plain UDP (the udp-echo), not QUIC.
    #[arg(long)]
    udp: bool,
    /// SHA-256 of the server certificate (hex); required for a QUIC target.
    #[arg(long)]
    pin: Option<String>,
    /// The server sends no receipts (the quic-sink).
    #[arg(long)]
    no_answers: bool,
    /// The server answers the bench's stats request (the bare quic servers).
    #[arg(long)]
    stats: bool,
    #[arg(long, default_value_t = 1)]
    client_id_base: u64,
    #[arg(long, default_value_t = 0)]
    burst_dgrams: u32,
    #[arg(long, default_value_t = 0)]
    bids_per_mille: u32,
    /// Write `<out>.hgrm`, `<out>.naive.hgrm` and `<out>.json`.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// quic-sink, quic-echo or udp-echo.
    kind: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[arg(long)]
    sha_file: Option<PathBuf>,
    #[arg(long, default_value_t = 1472)]
    mtu: u16,
    /// The welcome's largest datagram frame.
    #[arg(long, default_value_t = 1400)]
    frame_max: u16,
    /// CPUs to run on (the harness pins its children itself).
    #[arg(long)]
    cpus: Option<String>,
    /// Bare QUIC servers on this many threads, one `SO_REUSEPORT` socket each, thread `i`
    /// pinned to the `i`-th CPU of `--cpus` (round-robin).
    #[arg(long)]
    threads: Option<usize>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn shape_of(a: &ShapeArgs) -> Shape {
    Shape {
        rate_per_s: a.rate,
        conns: a.conns,
        records_per_dgram: a.records,
        burst: 1,
        bids_per_mille: 0,
        warmup: secs(a.warmup),
        duration: secs(a.duration),
    }
}

fn local_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn pin(cpus: &[usize], who: &str) -> Result<(), String> {
    pin_current_thread(cpus).map_err(|e| format!("pinning the {who} to {cpus:?}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Load(a) => cmd_load(a),
        Cmd::Serve(a) => cmd_serve(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fpn-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `1,2,4` → `[1, 2, 4]`: client counts, each at least 1.
fn parse_counts(text: &str) -> Result<Vec<usize>, String> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse::<usize>().ok().filter(|n| (1..=64).contains(n)))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("--clients {text}: a comma-separated list of counts in 1..=64"))?;
    Ok(counts)
}

fn cmd_run(a: RunArgs) -> Result<(), String> {
    let allowed = allowed_cpus();
    let clients = a.clients.as_deref().map(parse_counts).transpose()?.unwrap_or_default();
    let given = |l: &Option<String>| l.as_deref().map(parse_cpu_list).transpose();
    let (client_cpus, server_cpus) = if clients.is_empty() {
        let client = given(&a.shape.client_cpus)?.unwrap_or_else(|| vec![allowed[0]]);
        let server =
            given(&a.server_cpus)?.unwrap_or_else(|| vec![*allowed.last().expect("at least one CPU")]);
        (client, server)
    } else {
        let most = clients.iter().copied().max().unwrap_or(1);
        suite::scaling::plan_cpus(&allowed, most, given(&a.shape.client_cpus)?, given(&a.server_cpus)?)
    };
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Beside this binary is where cargo puts both (whatever its target dir), and where a
    // directory of prebuilt binaries has them.
    let engine_bin = a.engine_bin.unwrap_or_else(|| self_exe.with_file_name("flashpointd"));
    let mut base = shape_of(&a.shape);
    let (mut search_warmup, mut search_duration) = (secs(0.5), secs(2.0));
    let mut steps = a.search_steps;
    if a.quick {
        base.warmup = secs(0.3);
        base.duration = secs(1.2);
        search_warmup = secs(0.2);
        search_duration = secs(0.6);
        steps = steps.min(5);
    }
    let opts = SuiteOpts {
        targets: a.targets.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        phases: a.phases.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        out: a.out,
        client_cpus: client_cpus.clone(),
        server_cpus,
        base,
        burst: a.burst,
        bids_per_mille: a.bids_per_mille,
        many_conns: if a.quick { a.many_conns.min(16) } else { a.many_conns },
        blast_rate: a.blast_rate,
        p99_bound: secs(a.p99_bound_ms / 1e3),
        search_from: a.search_from,
        search_steps: steps,
        search_warmup,
        search_duration,
        initial_mtu: a.shape.mtu,
        frame_len_max: a.shape.frame_max,
        drain: secs(a.shape.drain),
        seed: a.shape.seed,
        self_exe,
        engine_bin,
        engine_sets: a.engine_sets,
        engine_start_timeout: secs(a.engine_start_timeout),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        clients,
        refusals: a.shape.receipts == Receipts::Refusals,
    };
    pin(&client_cpus, "client")?;
    if let Some(n) = a.nice {
        fpn_bench::procstat::set_nice(n).map_err(|e| format!("--nice {n}: {e}"))?;
    }
    let rt = local_runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, suite::run(&opts)).map(drop)
}

fn cmd_load(a: LoadArgs) -> Result<(), String> {
    if let Some(l) = &a.shape.client_cpus {
        pin(&parse_cpu_list(l)?, "client")?;
    }
    let pin_sha = match &a.pin {
        Some(h) => Some(fpn_bench::tls::parse_sha256_hex(h).ok_or("--pin: 64 hex digits")?),
        None => None,
    };
    let target = if a.udp {
        Target::Udp { addr: a.addr }
    } else {
        Target::Quic { addr: a.addr, pin: pin_sha, stats: a.stats, answers: !a.no_answers }
    };
    let mut shape = shape_of(&a.shape);
    shape.burst = a.burst_dgrams.max(1);
    shape.bids_per_mille = a.bids_per_mille;
    let opts = ClientOpts {
        client_id_base: a.client_id_base,
        initial_mtu: a.shape.mtu,
        frame_len_max: a.shape.frame_max,
        drain: secs(a.shape.drain),
        seed: a.shape.seed,
        server_pid: None,
        give_up_lag: secs(1.0),
        blast: false,
        start_gate: None,
        refusals: a.shape.receipts == Receipts::Refusals,
    };
    let rt = local_runtime();
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&rt, run_phase(&target, &shape, &opts))?;
    print!("{}", percentile_distribution(&outcome.corrected));
    let json = phase_json(&outcome, true);
    println!("{}", serde_json::to_string_pretty(&json).expect("json"));
    if let Some(out) = a.out {
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", out.display()));
        std::fs::write(with("hgrm"), percentile_distribution(&outcome.corrected))
            .map_err(|e| e.to_string())?;
        std::fs::write(with("naive.hgrm"), percentile_distribution(&outcome.naive))
            .map_err(|e| e.to_string())?;
        std::fs::write(with("json"), json.to_string()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn cmd_serve(a: ServeArgs) -> Result<(), String> {
    let cpus = a.cpus.as_deref().map(parse_cpu_list).transpose()?.unwrap_or_default();
    if !cpus.is_empty() {
        pin(&cpus, "server")?;
    }
    if let Some(threads) = a.threads {
        let mode = match a.kind.as_str() {
            "quic-sink" => Mode::Sink,
            "quic-echo" => Mode::Echo,
            other => return Err(format!("--threads: only quic-sink and quic-echo, not `{other}`")),
        };
        let serve = ThreadedServe {
            mode,
            bind: a.bind,
            initial_mtu: a.mtu,
            frame_max: a.frame_max,
            addr_file: a.addr_file.as_deref(),
            sha_file: a.sha_file.as_deref(),
            threads: threads.max(1),
            cpus: &cpus,
        };
        return serve_quic_threads(&serve).map_err(|e| e.to_string());
    }
    let rt = local_runtime();
    let local = tokio::task::LocalSet::new();
    let addr_file = a.addr_file.as_deref();
    let res = match a.kind.as_str() {
        "quic-sink" => local.block_on(
            &rt,
            serve_quic(Mode::Sink, a.bind, a.mtu, a.frame_max, addr_file, a.sha_file.as_deref()),
        ),
        "quic-echo" => local.block_on(
            &rt,
            serve_quic(Mode::Echo, a.bind, a.mtu, a.frame_max, addr_file, a.sha_file.as_deref()),
        ),
        "udp-echo" => local.block_on(&rt, serve_udp_echo(a.bind, addr_file)),
        other => return Err(format!("unknown server `{other}` (quic-sink, quic-echo, udp-echo)")),
    };
    res.map_err(|e| e.to_string())
}
