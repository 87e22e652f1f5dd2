//! Output: HdrHistogram percentile distributions in wrk2's format, the JSON of a phase, and
//! the text table.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::client::PhaseOutcome;

/// The quantiles every summary reports.
pub const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// The percentile distribution of `h` (values in ns) printed in milliseconds, as wrk2's
/// `--latency` output and HdrHistogram's `outputPercentileDistribution` (5 ticks per half
/// distance): `Value Percentile TotalCount 1/(1-Percentile)`, then the mean, deviation, max
/// and count footer. The HdrHistogram plotter reads it.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const MS: f64 = 1e6;
    let mut s = String::new();
    let _ =
        writeln!(s, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / MS;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let (mean, sd, max) =
        if h.is_empty() { (0.0, 0.0, 0.0) } else { (h.mean() / MS, h.stdev() / MS, h.max() as f64 / MS) };
    let _ = writeln!(s, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(s, "#[Max     = {max:12.3}, Total count    = {:12}]", h.len());
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    s
}

/// Quantiles, max and count of `h` in microseconds (null when empty).
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let us = |ns: u64| (h.highest_equivalent(ns) as f64 / 1e3 * 1000.0).round() / 1000.0;
    let mut m = serde_json::Map::new();
    for (name, q) in QUANTILES {
        m.insert(format!("{name}_us"), json!(us(h.value_at_quantile(q))));
    }
    m.insert("max_us".into(), json!(us(h.max())));
    m.insert("mean_us".into(), json!((h.mean() / 1e3 * 1000.0).round() / 1000.0));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

/// The JSON of one phase.
pub fn phase_json(o: &PhaseOutcome, accepted_only: bool) -> Value {
    let rejected: serde_json::Map<String, Value> =
        o.counts.measured_rejected.iter().map(|&(code, n)| (reason_name(code), json!(n))).collect();
    let frames_refused: serde_json::Map<String, Value> =
        o.counts.frames_refused.iter().map(|&(code, n)| (reason_name(code), json!(n))).collect();
    json!({
        "offered_per_s": o.offered_per_s(),
        "achieved_per_s": (o.achieved_per_s(accepted_only)).round(),
        "whole_phase_per_s": {
            "server": o.blast_per_s(accepted_only).0.round(),
            "client_sent": o.blast_per_s(accepted_only).1.round(),
        },
        "conns": o.shape.conns,
        "records_per_dgram": o.shape.records_per_dgram,
        "burst": o.shape.burst,
        "bids_per_mille": o.shape.bids_per_mille,
        "warmup_s": o.shape.warmup.as_secs_f64(),
        "duration_s": o.shape.duration.as_secs_f64(),
        "frame_len_max": o.frame_len_max,
        "mean_record_bytes": (o.mean_record_bytes() * 10.0).round() / 10.0,
        "latency_corrected": latency_json(&o.corrected),
        "latency_naive": latency_json(&o.naive),
        "send_lag": latency_json(&o.send_lag),
        "measured_sent": o.counts.measured_sent,
        "measured_answered": o.counts.measured_answered,
        "measured_accepted": o.counts.measured_accepted,
        "server_records": o.server_records,
        "rejected_by_reason": rejected,
        "frames_refused_by_reason": frames_refused,
        "unanswered": o.unanswered,
        "abandoned": o.abandoned,
        "sink_loss": o.sink_loss(),
        "duplicates": o.counts.duplicates,
        "unmatched": o.counts.unmatched,
        "receipts_via_stream": o.counts.via_stream,
        "watermarks": o.counts.watermarks,
        "answer_dgrams_read": o.counts.answer_dgrams,
        "answer_dgrams_quic_received": o.client_quic_rx_dgrams,
        "cpu_s": { "client": round3(o.client_cpu_s), "server": o.server_cpu_s.map(round3) },
        "per_client": o.per_client.iter().map(|c| json!({
            "cpu": c.cpu,
            "sent_records": c.sent_records,
            "answered": c.answered_all,
            "accepted": c.accepted_all,
            "server_records": c.server_records,
        })).collect::<Vec<_>>(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn reason_name(code: u8) -> String {
    fpn_wire::Reason::from_code(code).map_or_else(|| format!("code_{code}"), |r| r.as_str().to_string())
}

/// `12.3 µs`-style latency for the table.
pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.1} µs") }
}

/// Records per second, compact: `1.23 M/s`, `456 k/s`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_has_wrk2_shape() {
        let mut h = crate::track::new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let text = percentile_distribution(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|r| r.first().is_some_and(|v| v.parse::<f64>().is_ok()))
            .collect();
        assert_eq!(rows.first().unwrap()[2], "1");
        let last = rows.last().unwrap();
        assert_eq!((last[0], last[1], last[2], last.len()), ("1.000", "1.000000000000", "1000", 3));
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        let mid = rows.iter().find(|r| r[1] == "0.500000000000").unwrap();
        assert_eq!((mid[0], mid[3]), ("0.500", "2.00"));
        assert_eq!(latency_json(&h)["p99_us"], json!(990.207), "bucket upper bound, as HdrHistogram reports");
    }
}
