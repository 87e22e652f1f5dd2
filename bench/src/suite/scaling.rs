//! `--clients N[,N…]`: the comparison with N client cores. For each count, N client threads
//! (one per client CPU, their connections and outcomes their own, merged into one histogram)
//! against N bare quinn receivers (`serve --threads N`: one `SO_REUSEPORT` group, a thread
//! per server CPU) and the engine with `engine.intakes = N` (its intake sockets are one
//! `SO_REUSEPORT` group too, and its default map puts the intakes on the first server CPUs).
//! The kernel spreads connections over both groups by their 4-tuple, so give each client a
//! few connections (`--conns`) for an even spread. Then the per-target totals, the ratio of
//! the engine to the sinks at each count, and the scaling against one client.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    Scale, SuiteOpts, TargetRun, is_engine, run_target, summary_base, table_rows, targets_json, write,
};
use crate::report::{fmt_rate, percentile_distribution};

/// The targets that run with several clients: the QUIC ones.
pub const SCALING_TARGETS: [&str; 4] = ["quic-sink", "quic-echo", "engine", "engine-nolog"];

/// `n` CPUs from `list`, wrapping round when it has fewer.
pub fn take_n(list: &[usize], n: usize) -> Vec<usize> {
    (0..n).map(|i| list[i % list.len()]).collect()
}

/// The client and server CPUs for `--clients` up to `clients_max`: the given lists, else the
/// first `clients_max` allowed CPUs for the clients and the rest for the servers; all allowed
/// CPUs for the servers when none is left (the figures then mean little: a warning says so).
pub fn plan_cpus(
    allowed: &[usize],
    clients_max: usize,
    client: Option<Vec<usize>>,
    server: Option<Vec<usize>>,
) -> (Vec<usize>, Vec<usize>) {
    let client = client.unwrap_or_else(|| allowed[..clients_max.clamp(1, allowed.len())].to_vec());
    let server = server.unwrap_or_else(|| {
        let rest: Vec<usize> = allowed.iter().copied().filter(|c| !client.contains(c)).collect();
        if rest.is_empty() { allowed.to_vec() } else { rest }
    });
    (client, server)
}

/// What makes a run's figures doubtful, said before it starts and kept in the summary.
pub fn warnings(o: &SuiteOpts) -> Vec<String> {
    let mut w = Vec::new();
    let shared: Vec<usize> = o.client_cpus.iter().copied().filter(|c| o.server_cpus.contains(c)).collect();
    if !shared.is_empty() {
        w.push(format!(
            "client and server CPUs overlap ({shared:?}): clients and servers take turns on them, so the \
             figures are not meaningful (a many-core host gives each its own)"
        ));
    }
    let most = o.clients.iter().copied().max().unwrap_or(1);
    if most > o.client_cpus.len() {
        w.push(format!("{most} clients on {} client CPUs: clients share CPUs", o.client_cpus.len()));
    }
    if most > o.server_cpus.len() {
        w.push(format!("{most} bare receivers on {} server CPUs: they share CPUs", o.server_cpus.len()));
    }
    if o.server_cpus.len() < 3 * most + 2 {
        w.push(format!(
            "{} server CPUs: the engine's default map gives {most} intakes, {most} shards with a build worker \
             each, the merger and the services CPUs of their own only from {} CPUs on",
            o.server_cpus.len(),
            3 * most + 2
        ));
    }
    w
}

/// The engine's settings for `clients` clients: that many intakes, and connection limits
/// that take every client's connections from one address.
pub fn engine_sets(clients: usize, o: &SuiteOpts) -> Vec<String> {
    let conns = o.base.conns.max(o.many_conns) as usize * clients;
    let limit = (2 * conns).max(1024);
    vec![
        format!("engine.intakes={clients}"),
        format!("quic.connections_max={limit}"),
        format!("quic.conns_per_ip={limit}"),
        format!("quic.conns_per_client={limit}"),
    ]
}

/// A target's throughput, all clients together: the blast phase's (whole phase), else the
/// saturation search's best.
fn throughput(r: &TargetRun) -> Option<(f64, &'static str)> {
    let engine = is_engine(&r.name);
    if let Some((_, out)) = r.phases.iter().find(|(p, _)| p == "blast") {
        return Some((out.blast_per_s(engine).0, "blast"));
    }
    r.saturation.as_ref().and_then(|s| s.best_achieved).map(|a| (a, "saturation"))
}

pub(super) async fn run(o: &SuiteOpts, machine: Value) -> Result<Value, String> {
    let warnings = warnings(o);
    for w in &warnings {
        eprintln!("fpn-bench: WARNING: {w}");
    }
    let mut phase_no = 0;
    let mut runs: Vec<TargetRun> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for &n in &o.clients {
        let scale = Scale {
            clients: n,
            client_cpus: take_n(&o.client_cpus, n),
            sink_cpus: take_n(&o.server_cpus, n),
        };
        for t in &o.targets {
            if !SCALING_TARGETS.contains(&t.as_str()) {
                eprintln!("fpn-bench: {t}: skipped with --clients (only {})", SCALING_TARGETS.join(", "));
                continue;
            }
            eprintln!("fpn-bench: {t} with {n} client(s) on cpus {:?}", scale.client_cpus);
            let mut r = run_target(t, o, &mut phase_no, Some(&scale)).await;
            r.name = format!("{t}/{n}c");
            runs.push(r);
            counts.push(n);
        }
    }
    for r in &runs {
        let base = r.name.replace('/', "-");
        for (p, out) in &r.phases {
            write(&o.out.join(format!("{base}-{p}.hgrm")), &percentile_distribution(&out.corrected))?;
            write(&o.out.join(format!("{base}-{p}.naive.hgrm")), &percentile_distribution(&out.naive))?;
        }
    }

    let mut t = String::new();
    for w in &warnings {
        let _ = writeln!(t, "WARNING: {w}");
    }
    t.push_str(&table_rows(&runs, o));
    let (text, scaling) = scaling_report(&runs, &counts, o);
    t.push_str(&text);
    print!("{t}");
    write(&o.out.join("table.txt"), &t)?;
    let mut summary = summary_base(o, machine);
    summary.insert("clients".into(), json!(o.clients));
    summary.insert("warnings".into(), json!(warnings));
    summary.insert("targets".into(), Value::Object(targets_json(&runs, o)));
    summary.insert("scaling".into(), scaling);
    let summary = Value::Object(summary);
    write(&o.out.join("summary.json"), &serde_json::to_string_pretty(&summary).expect("json"))?;
    println!("\nwrote {}/{{summary.json,table.txt,*.hgrm}}", o.out.display());
    Ok(summary)
}

/// Totals per target and client count, engine / sink at each count, each target against its
/// own one-client figure, the p99 of the engine against the echo's, and issue #16's targets.
fn scaling_report(runs: &[TargetRun], counts: &[usize], o: &SuiteOpts) -> (String, Value) {
    let mut t = String::new();
    let names: Vec<&str> =
        SCALING_TARGETS.iter().copied().filter(|n| o.targets.iter().any(|t| t == n)).collect();
    let at = |name: &str, n: usize| {
        runs.iter()
            .zip(counts)
            .find(|(r, c)| **c == n && r.name.split('/').next() == Some(name))
            .map(|(r, _)| r)
    };
    let from = runs.iter().find_map(throughput).map_or("-", |(_, f)| f);
    let _ = writeln!(t, "\nscaling: records/s of all clients together ({from}), N clients on N client CPUs");
    let _ = write!(t, "  {:>7}", "clients");
    for n in &names {
        let _ = write!(t, " {n:>13}");
    }
    let _ = writeln!(t, " {:>17}", "engine/quic-sink");
    let mut by_clients = serde_json::Map::new();
    for &n in &o.clients {
        let mut row = serde_json::Map::new();
        let _ = write!(t, "  {n:>7}");
        for name in &names {
            let v = at(name, n).and_then(throughput).map(|(v, _)| v);
            let _ = write!(t, " {:>13}", v.map_or("-".into(), fmt_rate));
            row.insert((*name).into(), json!(v.map(f64::round)));
        }
        let ratio = at("engine", n).and_then(throughput).zip(at("quic-sink", n).and_then(throughput));
        let ratio = ratio.map(|((e, _), (s, _))| e / s);
        let _ = writeln!(t, " {:>17}", ratio.map_or("-".into(), |r| format!("{r:.2}x")));
        row.insert("engine/quic-sink".into(), json!(ratio.map(|r| (r * 1000.0).round() / 1000.0)));
        by_clients.insert(n.to_string(), Value::Object(row));
    }
    let mut vs_one = serde_json::Map::new();
    if let Some(&first) = o.clients.first() {
        let _ = writeln!(t, "  against {first} client(s):");
        for name in &names {
            let Some((base, _)) = at(name, first).and_then(throughput) else { continue };
            let mut row = serde_json::Map::new();
            let mut line = format!("    {name:<12}");
            for &n in o.clients.iter().skip(1) {
                if let Some((v, _)) = at(name, n).and_then(throughput) {
                    let _ = write!(line, "  {n}: {:.2}x", v / base);
                    row.insert(n.to_string(), json!((v / base * 1000.0).round() / 1000.0));
                }
            }
            let _ = writeln!(t, "{line}");
            vs_one.insert((*name).into(), Value::Object(row));
        }
    }
    // The spread over the clients: one client far below the others was hashed onto a busy
    // receiver (or its CPU was busy).
    for r in runs.iter().filter(|r| is_engine(&r.name) || r.name.starts_with("quic-sink")) {
        if let Some((_, out)) =
            r.phases.iter().find(|(p, _)| p == "blast").filter(|(_, o)| o.per_client.len() > 1)
        {
            let secs = out.shape.total().as_secs_f64();
            let parts: Vec<String> = out
                .per_client
                .iter()
                .map(|c| {
                    let got = if is_engine(&r.name) { c.accepted_all } else { c.server_records.unwrap_or(0) };
                    format!("cpu {} {}", c.cpu, fmt_rate(got as f64 / secs))
                })
                .collect();
            let _ = writeln!(t, "  {} blast per client: {}", r.name, parts.join(", "));
        }
    }
    let mut p99 = serde_json::Map::new();
    for phase in ["fixed", "conns"] {
        for &n in &o.clients {
            let lat = |name: &str| {
                at(name, n)
                    .and_then(|r| r.phases.iter().find(|(p, _)| p == phase))
                    .and_then(|(_, out)| super::lat_us(out, 0.99))
            };
            if let (Some(e), Some(x)) = (lat("engine"), lat("quic-echo")) {
                let _ = writeln!(t, "  p99 engine / quic-echo, {phase}, {n} client(s): {:.2}x", e / x);
                p99.insert(format!("{phase} {n}"), json!((e / x * 100.0).round() / 100.0));
            }
        }
    }
    // Issue #16 (a host with >= 16 CPUs): 4 intakes take >= 90 % of what 4 bare receivers
    // count; the engine's scaling 1 -> 2 -> 4 >= 1.8x and 3.4x.
    let mut checks = serde_json::Map::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(t, "\nissue #16 targets (figures from a host with >= 16 CPUs only):");
    if let Some(r) = by_clients.get("4").and_then(|r| r["engine/quic-sink"].as_f64()) {
        let _ = writeln!(
            t,
            "  engine >= 90% of 4 bare receivers with 4 clients: {:.1}% -> {}",
            r * 100.0,
            verdict(r >= 0.9)
        );
        checks.insert("engine_vs_sinks_4".into(), json!({"ratio": r, "met": r >= 0.9}));
    }
    if o.clients.first() == Some(&1) {
        for (n, limit) in [(2, 1.8), (4, 3.4)] {
            if let Some(x) = vs_one.get("engine").and_then(|r| r[n.to_string()].as_f64()) {
                let _ =
                    writeln!(t, "  engine 1 -> {n} clients >= {limit}x: {x:.2}x -> {}", verdict(x >= limit));
                checks.insert(
                    format!("engine_scaling_{n}"),
                    json!({"ratio": x, "limit": limit, "met": x >= limit}),
                );
            }
        }
    }
    let value = json!({
        "throughput_from": from,
        "by_clients": by_clients,
        "vs_first": vs_one,
        "p99_engine_vs_echo": p99,
        "issue16": checks,
    });
    (t, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_for_the_clients_and_the_servers() {
        // 16 CPUs, up to 4 clients: clients on 0-3, servers on the rest.
        let all: Vec<usize> = (0..16).collect();
        let (c, s) = plan_cpus(&all, 4, None, None);
        assert_eq!(c, vec![0, 1, 2, 3]);
        assert_eq!(s, (4..16).collect::<Vec<_>>());
        // The 2-CPU VM: one client keeps today's split; two share every CPU.
        assert_eq!(plan_cpus(&[0, 1], 1, None, None), (vec![0], vec![1]));
        assert_eq!(plan_cpus(&[0, 1], 2, None, None), (vec![0, 1], vec![0, 1]));
        // Given lists are kept.
        assert_eq!(plan_cpus(&all, 4, Some(vec![8, 9]), Some(vec![2])), (vec![8, 9], vec![2]));
        assert_eq!(take_n(&[5, 6], 3), vec![5, 6, 5]);
        assert_eq!(take_n(&[5, 6, 7], 2), vec![5, 6]);
    }
}
