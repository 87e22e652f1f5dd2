//! `fpn status`: the daemon's admin endpoint, `GET /health/ready` and `GET /metrics/json`,
//! and where browsers connect when the WebTransport intake is on (`GET /webtransport`).
//!
//! Exit 0 when the daemon is ready, 1 when it is not (or cannot be reached), 2 for usage.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::net::{parse_seconds, resolve};
use crate::{Done, UsageError};

/// The admin address when neither `--admin` nor `<data-dir>/admin.addr` gives one.
pub const ADMIN_DEFAULT: &str = "127.0.0.1:9464";
/// Largest admin answer read.
const RESPONSE_BYTES_MAX: u64 = 16 << 20;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin endpoint, host:port. Default: <data-dir>/admin.addr, else 127.0.0.1:9464.
    #[arg(long)]
    pub admin: Option<String>,
    /// The daemon's data directory, for admin.addr.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Seconds allowed for each request.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// JSON output: readiness and the daemon's whole /metrics/json.
    #[arg(long)]
    pub json: bool,
}

/// One HTTP/1.1 GET (`Connection: close`); the status code and the body.
fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let socket = resolve(addr).map_err(|e| e.message)?;
    let mut stream =
        TcpStream::connect_timeout(&socket, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut raw = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut raw).map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET {path}: no HTTP answer"))?;
    let code = head
        .lines()
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line"))?;
    Ok((code, body.to_string()))
}

#[derive(Debug, Serialize)]
struct StatusReport {
    admin: String,
    ready: bool,
    /// The /health/ready answer: `ready`, `starting`, `draining`, `stalled: …`.
    health: String,
    /// `GET /webtransport` (`{url, hashes, not_after_unix_s}`) with the demo page's URL
    /// added as `demo`; null when the daemon's WebTransport intake is off.
    webtransport: serde_json::Value,
    metrics: serde_json::Value,
}

/// The metrics worth a line: every series of the merged shard `all`, or of the metric's
/// only shard.
fn metric_lines(metrics: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in metrics["metrics"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("?");
        let series: Vec<&serde_json::Value> = m["series"].as_array().into_iter().flatten().collect();
        let merged = series.iter().any(|s| s["labels"]["shard"] == "all");
        for s in series {
            if merged && s["labels"]["shard"] != "all" {
                continue;
            }
            let labels: Vec<String> = s["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !(merged && *k == "shard"))
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            if let Some(count) = s.get("count") {
                let ms = |k: &str| s[k].as_f64().map_or("?".to_string(), |v| format!("{:.3}", v * 1e3));
                out.push(format!(
                    "{name}{labels} count {count} p50 {} ms p99 {} ms max {} ms",
                    ms("p50_seconds"),
                    ms("p99_seconds"),
                    ms("max_seconds")
                ));
            } else {
                out.push(format!("{name}{labels} {}", s["value"]));
            }
        }
    }
    out
}

pub fn run(args: &StatusArgs) -> Result<Done, UsageError> {
    let admin = match &args.admin {
        Some(a) => a.clone(),
        None => std::fs::read_to_string(args.data_dir.join("admin.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ADMIN_DEFAULT.to_string()),
    };
    // Strip a scheme, so the URL the daemon prints also works.
    let admin = admin.trim_start_matches("http://").trim_end_matches('/').to_string();
    let timeout = Duration::from_secs_f64(args.timeout);
    let (code, health) =
        get(&admin, "/health/ready", timeout).map_err(|e| UsageError { message: e, code: 1 })?;
    let ready = code == 200;
    let metrics = match get(&admin, "/metrics/json", timeout) {
        Ok((200, body)) => serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    let webtransport = match get(&admin, "/webtransport", timeout) {
        Ok((200, body)) => {
            let mut info: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            if info.is_object() {
                info["demo"] = format!("http://{admin}/webtransport/demo?key=<api key>").into();
            }
            info
        }
        _ => serde_json::Value::Null,
    };
    let report = StatusReport { admin, ready, health: health.trim().to_string(), webtransport, metrics };
    let code = u8::from(!ready);
    if args.json {
        return Ok(Done { text: serde_json::to_string_pretty(&report)? + "\n", code });
    }
    let mut text =
        format!("{}: {} ({})\n", report.admin, if ready { "ready" } else { "not ready" }, report.health);
    if let (Some(url), Some(demo)) =
        (report.webtransport["url"].as_str(), report.webtransport["demo"].as_str())
    {
        text.push_str(&format!("webtransport: {url} (demo page: {demo})\n"));
    }
    for line in metric_lines(&report.metrics) {
        text.push_str(&line);
        text.push('\n');
    }
    Ok(Done { text, code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_prefer_the_merged_shard() {
        let metrics = serde_json::json!({"metrics": [
            {"name": "fpn_a_total", "type": "counter", "help": "", "series": [
                {"labels": {"shard": "intake#0", "outcome": "ok"}, "value": 2},
                {"labels": {"shard": "all", "outcome": "ok"}, "value": 2}]},
            {"name": "fpn_b_seconds", "type": "histogram", "help": "", "series": [
                {"labels": {"shard": "admin"}, "count": 3, "sum_seconds": 0.1, "p50_seconds": 0.001,
                 "p99_seconds": 0.002, "p999_seconds": 0.002, "max_seconds": 0.003}]}]});
        assert_eq!(
            metric_lines(&metrics),
            vec![
                "fpn_a_total{outcome=ok} 2".to_string(),
                "fpn_b_seconds{shard=admin} count 3 p50 1.000 ms p99 2.000 ms max 3.000 ms".to_string(),
            ]
        );
    }
}
