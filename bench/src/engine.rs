//! Servers as child processes: the bare baselines (this binary's `serve` command) and the
//! engine (`flashpointd`), each pinned to the server's CPUs, with a data directory of its
//! own; and the engine's admin `/metrics` (Prometheus text), read and reduced to the
//! per-stage histograms and the refusals by reason.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procstat;

/// A server process the harness started.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub name: String,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// The engine's admin endpoint (none for the baselines).
    pub admin: Option<SocketAddr>,
    /// SHA-256 of the server's certificate, when it is a QUIC server.
    pub pin: Option<[u8; 32]>,
}

/// Makes `cmd` start on `cpus` only (sched_setaffinity in the child before exec).
pub fn pin_command(cmd: &mut Command, cpus: Vec<usize>) {
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // sched_setaffinity (async-signal-safe) through `pin_current_thread`, which does not
    // allocate on success, and CPU indexes were checked by the caller.
    unsafe {
        cmd.pre_exec(move || procstat::pin_current_thread(&cpus));
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Server {
    /// Starts `cmd` (stdout and stderr to `<dir>/server.log`) and waits until it has written
    /// `<dir>/<addr_file>`.
    pub fn start(
        name: &str,
        mut cmd: Command,
        dir: &Path,
        addr_file: &str,
        sha_file: Option<&str>,
        cpus: &[usize],
        timeout: Duration,
    ) -> Result<Server, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        pin_command(&mut cmd, cpus.to_vec());
        let child = cmd.spawn().map_err(|e| format!("{name}: cannot start {:?}: {e}", cmd.get_program()))?;
        let mut server = Server {
            child,
            name: name.to_string(),
            dir: dir.to_path_buf(),
            addr: ([0, 0, 0, 0], 0).into(),
            admin: None,
            pin: None,
        };
        let mut deadline = Instant::now() + timeout;
        let mut admin_seen = false;
        loop {
            if let Some(addr) = read_trimmed(&dir.join(addr_file)) {
                server.addr =
                    addr.parse().map_err(|_| format!("{name}: bad address `{addr}` in {addr_file}"))?;
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{name} exited ({status}) before writing {addr_file}:\n{}",
                    log_tail(&log_path)
                ));
            }
            // A daemon whose admin endpoint is up is past its start-up: if it has a QUIC
            // intake, its address follows within moments.
            if !admin_seen && addr_file != "admin.addr" && dir.join("admin.addr").exists() {
                admin_seen = true;
                deadline = deadline.min(Instant::now() + Duration::from_secs(5));
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(format!(
                    "{name}: no {addr_file} in time (does it have a QUIC intake?):\n{}",
                    log_tail(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(f) = sha_file {
            // The certificate digest is written before the address, or right after it.
            let deadline = Instant::now() + Duration::from_secs(2);
            while read_trimmed(&dir.join(f)).is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            server.pin = read_trimmed(&dir.join(f)).and_then(|s| crate::tls::parse_sha256_hex(&s));
        }
        if let Some(admin) = read_trimmed(&dir.join("admin.addr")) {
            server.admin = admin.parse().ok();
        }
        Ok(server)
    }

    /// Waits until the daemon's admin endpoint says ready (`GET /health/ready` → 200): the
    /// daemon writes `quic.addr` when it binds, before its intake loop runs.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.admin.is_none() {
                self.admin = read_trimmed(&self.dir.join("admin.addr")).and_then(|a| a.parse().ok());
            }
            if let Some(admin) = self.admin
                && http_get(admin, "/health/ready").is_ok()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited ({status}) before ready", self.name));
            }
            if Instant::now() > deadline {
                return Err(format!("{}: not ready after {} s", self.name, timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The engine's WebTransport intake as a target, once ready: its address from
    /// `<dir>/webtransport.addr`, its path and the current certificate hash from the admin
    /// endpoint's `GET /webtransport` (a page would fetch the same before it connects).
    pub fn webtransport_target(&mut self) -> Result<crate::client::Target, String> {
        let name = &self.name;
        let addr = read_trimmed(&self.dir.join("webtransport.addr"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{name}: no webtransport.addr (is webtransport.enabled set?)"))?;
        let admin = self.admin.ok_or_else(|| format!("{name}: no admin endpoint"))?;
        let body = http_get(admin, "/webtransport")?;
        let info: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("GET /webtransport: {e}: {body}"))?;
        let hash = info["hashes"][0].as_str().and_then(crate::tls::parse_sha256_hex);
        let pin = hash.ok_or_else(|| format!("GET /webtransport: no certificate hash in {body}"))?;
        // `https://host:port/path`: the path starts at the first `/` after the authority.
        let url = info["url"].as_str().unwrap_or_default();
        let path = url.strip_prefix("https://").and_then(|r| r.find('/').map(|i| r[i..].to_string()));
        let path = path.ok_or_else(|| format!("GET /webtransport: no path in {url:?}"))?;
        Ok(crate::client::Target::WebTransport { addr, path, pin })
    }

    /// SIGTERM, then SIGKILL after 15 s. Returns the exit status if it exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// The engine's `/metrics`, parsed. The admin address is read when first needed: the
    /// daemon may write it after its QUIC address.
    pub fn metrics(&mut self) -> Result<Metrics, String> {
        if self.admin.is_none() {
            self.admin = read_trimmed(&self.dir.join("admin.addr")).and_then(|a| a.parse().ok());
        }
        let admin = self.admin.ok_or_else(|| format!("{}: no admin endpoint", self.name))?;
        Ok(Metrics::parse(&http_get(admin, "/metrics")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the harness sets on the engine before the caller's `--set`s: the largest datagram
/// frame it takes (so 16 records fit, and the same frames go to every target), no
/// per-client rate limit (the bench measures the engine, not its token bucket), and no
/// prover: on the bench's one server CPU its Groth16 proofs (seconds each, measured
/// 2026-11-21: five in a 10 s phase) would share the CPU with the receipt path being
/// measured. `--engine-set prover.enabled=true` puts it back.
pub const ENGINE_SETS: [&str; 4] =
    ["quic.listen=127.0.0.1:0", "quic.datagram_frame_max=1400", "quic.rate_per_s=0", "prover.enabled=false"];

/// `flashpointd` with a fresh data dir under `dir`, the admin endpoint and the QUIC intake
/// on free loopback ports, [`ENGINE_SETS`], then `sets` as `--set KEY=VALUE` (later wins).
/// `FPN_*` variables of the harness's environment pass through.
pub fn engine_command(bin: &Path, dir: &Path, sets: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir").arg(dir).args(["--admin-addr", "127.0.0.1:0"]);
    for s in ENGINE_SETS.iter().copied().chain(sets.iter().map(String::as_str)) {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// A minimal HTTP/1.0 GET on loopback (the admin endpoint); returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let err = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(err)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(err)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(err)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET {path}: no HTTP header"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// One histogram series: cumulative bucket counts by upper bound (seconds), sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromHistogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl PromHistogram {
    /// The upper bound of the bucket holding quantile `q` (what a bucketed histogram can say).
    pub fn quantile_le(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = (q * self.count).ceil().max(1.0);
        self.buckets.iter().find(|(_, c)| *c >= rank).map(|(le, _)| *le).or(Some(f64::INFINITY))
    }

    fn minus(&self, before: &PromHistogram) -> PromHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| (le, c - before.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1)))
            .collect();
        PromHistogram { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }
}

/// The parts of a Prometheus text exposition the harness reads. Series keys are
/// `name{labels}` with the labels as printed (minus `le` for buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub values: BTreeMap<String, f64>,
    pub histograms: BTreeMap<String, PromHistogram>,
}

/// Splits `name{a="b",c="d"} value` into (name, labels without braces, value).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    match series.split_once('{') {
        Some((name, rest)) => Some((name, rest.strip_suffix('}')?, value)),
        None => Some((series, "", value)),
    }
}

/// Removes the `le` label; returns the rest and the bound.
fn take_le(labels: &str) -> (String, Option<f64>) {
    let mut le = None;
    let mut rest = Vec::new();
    for part in labels.split(',').filter(|p| !p.is_empty()) {
        match part.strip_prefix("le=") {
            Some(v) => {
                let v = v.trim_matches('"');
                le = if v == "+Inf" { Some(f64::INFINITY) } else { v.parse().ok() };
            }
            None => rest.push(part),
        }
    }
    (rest.join(","), le)
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut histogram_names = Vec::new();
        let mut m = Metrics::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, "histogram")) = rest.split_once(' ') {
                    histogram_names.push(name.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((name, labels, value)) = split_sample(line) else { continue };
            let hist = histogram_names.iter().find(|h| {
                name.strip_prefix(h.as_str()).is_some_and(|s| matches!(s, "_bucket" | "_sum" | "_count"))
            });
            match hist {
                Some(h) => {
                    let (labels, le) = take_le(labels);
                    let e = m.histograms.entry(format!("{h}{{{labels}}}")).or_default();
                    match &name[h.len()..] {
                        "_bucket" => e.buckets.extend(le.map(|le| (le, value))),
                        "_sum" => e.sum = value,
                        _ => e.count = value,
                    }
                }
                None => {
                    m.values.insert(format!("{name}{{{labels}}}"), value);
                }
            }
        }
        m
    }

    /// What happened between `before` and `self` (counters and histograms; gauges are
    /// subtracted too, which is meaningless for them and harmless here).
    pub fn since(&self, before: &Metrics) -> Metrics {
        let values =
            self.values.iter().map(|(k, v)| (k.clone(), v - before.values.get(k).unwrap_or(&0.0))).collect();
        let histograms = self
            .histograms
            .iter()
            .map(|(k, h)| (k.clone(), before.histograms.get(k).map_or_else(|| h.clone(), |b| h.minus(b))))
            .collect();
        Metrics { values, histograms }
    }

    /// Sum of a counter over its per-shard series (`shard="all"` excluded), by the value of
    /// label `by` (or `""` for all together).
    pub fn counter_by(&self, name: &str, by: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.values {
            let Some(labels) = k.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else { continue };
            if labels.contains("shard=\"all\"") {
                continue;
            }
            let key = labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{by}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += v;
        }
        out
    }

    /// Every nonzero counter whose name starts with `prefix`, summed over shards, keyed by
    /// name and its other labels.
    pub fn counters_with_prefix(&self, prefix: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.values {
            let Some((name, labels)) = k.split_once('{') else { continue };
            if !name.starts_with(prefix) || !name.ends_with("_total") || labels.contains("shard=\"all\"") {
                continue;
            }
            let rest: Vec<&str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty() && !p.starts_with("shard="))
                .collect();
            *out.entry(format!("{name}{{{}}}", rest.join(","))).or_insert(0.0) += v;
        }
        out.retain(|_, v| *v != 0.0);
        out
    }

    /// The merged (`shard="all"`) histograms that saw samples.
    pub fn stages(&self) -> impl Iterator<Item = (&String, &PromHistogram)> {
        self.histograms.iter().filter(|(k, h)| k.contains("shard=\"all\"") && h.count > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP fpn_records_rejected_total refused
# TYPE fpn_records_rejected_total counter
fpn_records_rejected_total{shard="intake0",reason="duplicate_nonce"} 3
fpn_records_rejected_total{shard="intake1",reason="duplicate_nonce"} 2
fpn_records_rejected_total{shard="intake0",reason="rate_limited"} 7
# TYPE fpn_intake_handle_latency_seconds histogram
fpn_intake_handle_latency_seconds_bucket{shard="all",le="0.000001"} 0
fpn_intake_handle_latency_seconds_bucket{shard="all",le="0.00001"} 90
fpn_intake_handle_latency_seconds_bucket{shard="all",le="0.001"} 100
fpn_intake_handle_latency_seconds_bucket{shard="all",le="+Inf"} 100
fpn_intake_handle_latency_seconds_sum{shard="all"} 0.002
fpn_intake_handle_latency_seconds_count{shard="all"} 100
"#;

    #[test]
    fn parses_counters_and_histograms() {
        let m = Metrics::parse(TEXT);
        let by = m.counter_by("fpn_records_rejected_total", "reason");
        assert_eq!(by.get("duplicate_nonce"), Some(&5.0));
        assert_eq!(by.get("rate_limited"), Some(&7.0));
        let c = m.counters_with_prefix("fpn_records_");
        assert_eq!(c.get("fpn_records_rejected_total{reason=\"duplicate_nonce\"}"), Some(&5.0));
        let (name, h) = m.stages().next().unwrap();
        assert_eq!(name, "fpn_intake_handle_latency_seconds{shard=\"all\"}");
        assert_eq!(h.count, 100.0);
        assert_eq!(h.quantile_le(0.5), Some(0.00001));
        assert_eq!(h.quantile_le(0.99), Some(0.001));
        let d = m.since(&Metrics::parse(
            &TEXT.replace("} 90", "} 50").replace("_count{shard=\"all\"} 100", "_count{shard=\"all\"} 60"),
        ));
        assert_eq!(d.histograms.values().next().unwrap().count, 40.0);
    }
}
