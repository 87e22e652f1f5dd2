//! The journal's line format: one JSON object per window (`docs/daemon.md`, "Journal").

use fpn_engine::CloseReason;
use fpn_wire::{RecordRef, decode_frame};
use serde_json::{Value, json};

use super::roles::ResultMsg;

pub fn reason_str(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Deadline => "deadline",
        CloseReason::Full => "full",
        CloseReason::Drain => "drain",
    }
}

fn builder_str(code: u8) -> &'static str {
    match code {
        0 => "fifo",
        1 => "greedy",
        2 => "improved",
        _ => "unknown",
    }
}

/// The journal line of one window result: the summary counts, the block and the clearing,
/// decoded back from the encoded frame the merger sent (so the journal shows exactly the
/// bytes a client would get).
pub fn window_json(msg: &ResultMsg) -> Value {
    let w = &msg.window;
    let mut block = Value::Null;
    let mut clearing = Value::Null;
    let records = decode_frame(&msg.bytes).expect("the merger encodes valid frames");
    for record in records {
        match record {
            RecordRef::Block(b) => {
                let f = b.fixed;
                let entries: Vec<Value> = b
                    .entries
                    .iter()
                    .map(|e| {
                        json!({
                            "seq": e.seq.get(),
                            "client_id": e.client_id.get(),
                            "profit": e.profit.get(),
                            "payout": e.payout.get(),
                        })
                    })
                    .collect();
                block = json!({
                    "window_id": f.window_id.get(),
                    "builder": builder_str(f.builder),
                    "exact": f.exact != 0,
                    "total": f.total.get(),
                    "fifo_total": f.fifo_total.get(),
                    "surplus": f.surplus.get(),
                    "fee": f.fee.get(),
                    "fee_ppm": f.fee_ppm.get(),
                    "upper_bound": f.upper_bound.get(),
                    "entries": entries,
                });
            }
            RecordRef::Clearing(c) => {
                let f = c.fixed;
                let winners: Vec<Value> = c
                    .winners
                    .iter()
                    .map(|x| {
                        json!({
                            "seq": x.seq.get(),
                            "client_id": x.client_id.get(),
                            "amount": x.amount.get(),
                            "price": x.price.get(),
                        })
                    })
                    .collect();
                clearing = json!({
                    "window_id": f.window_id.get(),
                    "pricing": if f.pricing == 0 { "first-price" } else { "uniform" },
                    "order": if f.order == 0 { "priority-first" } else { "amount-desc" },
                    "uniform_price": f.uniform_price.get(),
                    "revenue": f.revenue.get(),
                    "winners": winners,
                });
            }
            _ => {}
        }
    }
    json!({
        "window_id": w.window_id,
        "opened_ns": w.opened_ns,
        "closed_ns": w.closed_ns,
        "published_ns": msg.published_ns,
        "reason": reason_str(w.reason),
        "intents_count": w.intents_count,
        "bids_count": w.bids_count,
        "cancelled_count": w.cancelled_count,
        "block": block,
        "clearing": clearing,
    })
}
