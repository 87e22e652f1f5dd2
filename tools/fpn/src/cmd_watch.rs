//! `fpn watch`: subscribe to every window's result (`subscribe_all`) and print blocks and
//! clearings as they are published, and proof announcements as proofs finish, until Ctrl-C, `--count` windows or `--duration`.
//!
//! The session reconnects by itself if the daemon restarts (said on stderr); windows
//! published while disconnected are not replayed. Exit 0 when stopped by a limit or Ctrl-C,
//! 1 when the connection fails for good, 2 for usage.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use fpn_client::{Block, Clearing, Client, Event};
use serde_json::json;

use crate::net::{self, ConnectFlags, parse_seconds};
use crate::{Done, UsageError};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Client id for the default open-mode key.
    #[arg(long, default_value_t = 1)]
    pub client_id: u64,
    /// Stop after this many windows (a window's result is its block, then its clearing).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// One JSON object a line (`"type": "block"`, `"clearing"` or `"proof"`).
    #[arg(long)]
    pub json: bool,
}

fn builder_name(builder: u8) -> &'static str {
    match builder {
        0 => "fifo",
        1 => "greedy",
        2 => "improved",
        _ => "unknown",
    }
}

fn block_line(b: &Block, json: bool) -> String {
    let s = &b.summary;
    if json {
        let entries: Vec<_> = b
            .entries
            .iter()
            .map(|e| {
                json!({"seq": e.seq, "client_id": e.client_id, "profit": e.profit, "payout": e.payout, "rx_ns": e.rx_ns})
            })
            .collect();
        return json!({
            "type": "block",
            "window_id": s.window_id,
            "total": s.total,
            "fifo_total": s.fifo_total,
            "surplus": s.surplus,
            "fee": s.fee,
            "fee_ppm": s.fee_ppm,
            "upper_bound": s.upper_bound,
            "builder": builder_name(s.builder),
            "exact": s.exact,
            "entries": entries,
        })
        .to_string();
    }
    format!(
        "window {}: block of {} intent(s), total {}, fifo {}, surplus {}, fee {}, upper bound {}, builder {}{}",
        s.window_id,
        b.entries.len(),
        s.total,
        s.fifo_total,
        s.surplus,
        s.fee,
        s.upper_bound,
        builder_name(s.builder),
        if s.exact { ", exact" } else { "" }
    )
}

fn clearing_line(c: &Clearing, json: bool) -> String {
    let s = &c.summary;
    let pricing = if s.pricing == 1 { "uniform" } else { "first-price" };
    if json {
        let winners: Vec<_> = c
            .winners
            .iter()
            .map(|w| json!({"seq": w.seq, "client_id": w.client_id, "amount": w.amount, "price": w.price}))
            .collect();
        return json!({
            "type": "clearing",
            "window_id": s.window_id,
            "uniform_price": s.uniform_price,
            "revenue": s.revenue,
            "pricing": pricing,
            "order": if s.order == 1 { "amount-desc" } else { "priority-first" },
            "winners": winners,
        })
        .to_string();
    }
    format!(
        "window {}: clearing of {} winner(s), revenue {}, {pricing}{}",
        s.window_id,
        c.winners.len(),
        s.revenue,
        if s.pricing == 1 { format!(" at {}", s.uniform_price) } else { String::new() }
    )
}

fn proof_line(window_first: u64, window_last: u64, job_id: u64, proof: Option<&[u8]>, json: bool) -> String {
    let hex: Option<String> = proof.map(|p| p.iter().map(|b| format!("{b:02x}")).collect());
    if json {
        return json!({
            "type": "proof",
            "window_first": window_first,
            "window_last": window_last,
            "job_id": job_id,
            "status": if hex.is_some() { "done" } else { "failed" },
            "proof": hex,
        })
        .to_string();
    }
    let windows = if window_first == window_last {
        format!("window {window_first}")
    } else {
        format!("windows {window_first}..={window_last}")
    };
    match hex {
        Some(hex) => format!("{windows}: proof ready, job {job_id}, {}…", &hex[..16]),
        None => format!("{windows}: proof failed, job {job_id}"),
    }
}

pub fn run(args: &WatchArgs) -> Result<Done, UsageError> {
    let mut config = args.connect.config(Some(args.client_id))?;
    config.subscribe_all = true;
    let addr = config.addr;
    let json = args.json;
    let count_max = args.count;
    let duration = args.duration.map(Duration::from_secs_f64);
    net::runtime()?.block_on(async move {
        let (client, mut events) = Client::connect(config).await.map_err(|e| net::connect_error(addr, e))?;
        if !json {
            eprintln!("fpn: watching {addr} as client {} (Ctrl-C stops)", client.client_id().unwrap_or(0));
        }
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut windows = 0u64;
        let mut stdout = std::io::stdout().lock();
        let mut failure = None;
        while count_max.is_none_or(|max| windows < max) {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = &mut until => break,
                _ = &mut ctrl_c => break,
            };
            let line = match event {
                None => break,
                Some(Event::Block(b)) => block_line(&b, json),
                Some(Event::Clearing(c)) => {
                    windows += 1;
                    clearing_line(&c, json)
                }
                Some(Event::Proof { window_first, window_last, job_id, proof }) => {
                    proof_line(window_first, window_last, job_id, proof.as_ref().map(|p| &p[..]), json)
                }
                Some(Event::Disconnected { error, .. }) => {
                    eprintln!("fpn: disconnected ({error}); reconnecting");
                    continue;
                }
                Some(Event::Connected { epoch, .. }) => {
                    if epoch > 0 {
                        eprintln!("fpn: reconnected");
                    }
                    continue;
                }
                Some(Event::Closed { error }) => {
                    failure = error;
                    break;
                }
                Some(Event::BadFrame { reason, .. }) => {
                    eprintln!("fpn: the server sent a bad frame ({})", reason.as_str());
                    continue;
                }
                Some(Event::Receipt { .. } | Event::Watermark(_)) => continue,
            };
            // A closed pipe (`fpn watch | head`) ends the watch.
            if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
                break;
            }
        }
        client.close().await;
        match failure {
            Some(e) => Err(net::failed("watch", e)),
            None => Ok(Done { text: String::new(), code: 0 }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lines() {
        let proof = [0xab; 128];
        assert_eq!(
            proof_line(5, 5, 3, Some(&proof), false),
            "window 5: proof ready, job 3, abababababababab…"
        );
        assert_eq!(proof_line(5, 6, 4, None, false), "windows 5..=6: proof failed, job 4");
        let v: serde_json::Value = serde_json::from_str(&proof_line(5, 6, 3, Some(&proof), true)).unwrap();
        assert_eq!(v["type"], "proof");
        assert_eq!(
            (v["window_first"].as_u64(), v["window_last"].as_u64(), v["job_id"].as_u64()),
            (Some(5), Some(6), Some(3))
        );
        assert_eq!(v["status"], "done");
        assert_eq!(v["proof"].as_str().map(str::len), Some(256));
        let v: serde_json::Value = serde_json::from_str(&proof_line(7, 7, 9, None, true)).unwrap();
        assert_eq!((v["status"].as_str(), v["proof"].is_null()), (Some("failed"), true));
    }
}
