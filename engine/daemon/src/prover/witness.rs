//! Witnesses from the daemon's JSON: a journal line (`docs/daemon.md`, "Journal") for the
//! pool, and the body of `POST /proofs` for a submitted job.

use fpn_prover::{
    AuctionWitness, BLOCK_ENTRIES_MAX, ClearingWitness, EntryWitness, PRICING_FIRST_PRICE, PRICING_UNIFORM,
    WINNERS_MAX, WinnerWitness,
};
use fpn_wire::{BlockRef, ClearingRef};
use serde_json::Value;

use super::pool::SkipReason;

fn uint(v: &Value, field: &str) -> Result<u64, String> {
    v.get(field).and_then(Value::as_u64).ok_or_else(|| format!("`{field}`: expected an unsigned integer"))
}

fn array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value], String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("`{field}`: expected an array"))
}

fn pricing_code(v: &Value) -> Result<u8, String> {
    match v {
        Value::String(s) if s == "first-price" => Ok(PRICING_FIRST_PRICE),
        Value::String(s) if s == "uniform" => Ok(PRICING_UNIFORM),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(PRICING_FIRST_PRICE),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(PRICING_UNIFORM),
        other => Err(format!("`pricing`: expected \"first-price\", \"uniform\", 0 or 1, got {other}")),
    }
}

fn entries(values: &[Value]) -> Result<Vec<EntryWitness>, String> {
    values
        .iter()
        .map(|e| {
            Ok(EntryWitness { seq: uint(e, "seq")?, profit: uint(e, "profit")?, payout: uint(e, "payout")? })
        })
        .collect()
}

fn winners(values: &[Value]) -> Result<Vec<WinnerWitness>, String> {
    values
        .iter()
        .map(|w| {
            Ok(WinnerWitness { seq: uint(w, "seq")?, amount: uint(w, "amount")?, price: uint(w, "price")? })
        })
        .collect()
}

/// The witness of one journal line: its block and clearing, with the auction `reserve` of the
/// configuration (the clearing record does not carry it). Windows over the circuit's
/// capacity are [`SkipReason::TooLarge`] before anything is copied. The witness is not
/// checked here (the worker's pre-check does it, off the shared cores).
pub fn journal_witness(line: &Value, reserve: u64) -> Result<ClearingWitness, SkipReason> {
    let block = &line["block"];
    let clearing = &line["clearing"];
    let (Ok(entry_values), Ok(winner_values)) = (array(block, "entries"), array(clearing, "winners")) else {
        return Err(SkipReason::Unprovable);
    };
    if entry_values.len() > BLOCK_ENTRIES_MAX || winner_values.len() > WINNERS_MAX {
        return Err(SkipReason::TooLarge);
    }
    let build = || -> Result<ClearingWitness, String> {
        let pricing = pricing_code(&clearing["pricing"])?;
        Ok(ClearingWitness {
            window_id: uint(line, "window_id")?,
            windows_count: 1,
            fee_ppm: u32::try_from(uint(block, "fee_ppm")?).map_err(|e| e.to_string())?,
            fifo_total: uint(block, "fifo_total")?,
            entries: entries(entry_values)?,
            auction: AuctionWitness {
                pricing,
                reserve,
                // A uniform clearing without winners has no price (0 on the wire); the engine's
                // P is at least the reserve.
                uniform_price: if pricing == PRICING_UNIFORM {
                    uint(clearing, "uniform_price")?.max(reserve)
                } else {
                    0
                },
                winners: winners(winner_values)?,
            },
        })
    };
    build().map_err(|_| SkipReason::Unprovable)
}

/// The witness of one window straight from its encoded block and clearing (the journal
/// role's path: no JSON in between). Same rules as [`journal_witness`].
pub fn frame_witness(
    block: Option<BlockRef<'_>>,
    clearing: Option<ClearingRef<'_>>,
    reserve: u64,
) -> Result<ClearingWitness, SkipReason> {
    let (Some(b), Some(c)) = (block, clearing) else { return Err(SkipReason::Unprovable) };
    if b.entries.len() > BLOCK_ENTRIES_MAX || c.winners.len() > WINNERS_MAX {
        return Err(SkipReason::TooLarge);
    }
    let pricing = c.fixed.pricing;
    if pricing != PRICING_FIRST_PRICE && pricing != PRICING_UNIFORM {
        return Err(SkipReason::Unprovable);
    }
    Ok(ClearingWitness {
        window_id: b.fixed.window_id.get(),
        windows_count: 1,
        fee_ppm: b.fixed.fee_ppm.get(),
        fifo_total: b.fixed.fifo_total.get(),
        entries: b
            .entries
            .iter()
            .map(|e| EntryWitness { seq: e.seq.get(), profit: e.profit.get(), payout: e.payout.get() })
            .collect(),
        auction: AuctionWitness {
            pricing,
            reserve,
            uniform_price: if pricing == PRICING_UNIFORM {
                c.fixed.uniform_price.get().max(reserve)
            } else {
                0
            },
            winners: c
                .winners
                .iter()
                .map(|w| WinnerWitness { seq: w.seq.get(), amount: w.amount.get(), price: w.price.get() })
                .collect(),
        },
    })
}

/// A witness given as JSON (`POST /proofs`, `docs/daemon.md`):
/// `{"window_id", "windows_count"?, "fee_ppm", "fifo_total", "entries": [{"seq", "profit",
/// "payout"}], "auction": {"pricing", "reserve", "uniform_price", "winners": [{"seq",
/// "amount", "price"}]}}`. Checked against the statement; the error names the problem.
pub fn submitted_witness(v: &Value) -> Result<ClearingWitness, String> {
    let auction = v.get("auction").ok_or("`auction`: missing")?;
    let witness = ClearingWitness {
        window_id: uint(v, "window_id")?,
        windows_count: match v.get("windows_count") {
            None => 1,
            Some(_) => {
                u32::try_from(uint(v, "windows_count")?).map_err(|e| format!("`windows_count`: {e}"))?
            }
        },
        fee_ppm: u32::try_from(uint(v, "fee_ppm")?).map_err(|e| format!("`fee_ppm`: {e}"))?,
        fifo_total: uint(v, "fifo_total")?,
        entries: entries(array(v, "entries")?)?,
        auction: AuctionWitness {
            pricing: pricing_code(auction.get("pricing").unwrap_or(&Value::Null))?,
            reserve: uint(auction, "reserve")?,
            uniform_price: uint(auction, "uniform_price")?,
            winners: winners(array(auction, "winners")?)?,
        },
    };
    witness.check().map_err(|e| e.to_string())?;
    Ok(witness)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn line() -> Value {
        json!({
            "window_id": 7, "closed_ns": 123,
            "block": {"window_id": 7, "fee_ppm": 100000, "fifo_total": 1000, "total": 4200,
                      "entries": [{"seq": 3, "client_id": 1, "profit": 1000, "payout": 900},
                                  {"seq": 5, "client_id": 2, "profit": 2500, "payout": 2300},
                                  {"seq": 11, "client_id": 1, "profit": 700, "payout": 680}]},
            "clearing": {"window_id": 7, "pricing": "first-price", "uniform_price": 0, "revenue": 800,
                         "winners": [{"seq": 7, "client_id": 3, "amount": 800, "price": 800}]}
        })
    }

    #[test]
    fn journal_lines_become_valid_witnesses() {
        let w = journal_witness(&line(), 0).unwrap();
        let p = w.check().unwrap();
        assert_eq!((p.total, p.fee, p.revenue, p.windows_count, w.window_id), (4200, 320, 800, 1, 7));
    }

    #[test]
    fn over_capacity_and_malformed_lines_are_skipped() {
        let mut big = line();
        big["block"]["entries"] =
            Value::Array(vec![big["block"]["entries"][0].clone(); BLOCK_ENTRIES_MAX + 1]);
        assert_eq!(journal_witness(&big, 0), Err(SkipReason::TooLarge));
        let mut bad = line();
        bad["block"]["fee_ppm"] = json!("x");
        assert_eq!(journal_witness(&bad, 0), Err(SkipReason::Unprovable));
    }

    #[test]
    fn submitted_witnesses_are_checked() {
        let mut v = json!({
            "window_id": 42, "fee_ppm": 100000, "fifo_total": 1200,
            "entries": [{"seq": 3, "profit": 1000, "payout": 900}, {"seq": 5, "profit": 2500, "payout": 2300},
                        {"seq": 11, "profit": 700, "payout": 700}],
            "auction": {"pricing": "uniform", "reserve": 100, "uniform_price": 500,
                        "winners": [{"seq": 7, "amount": 800, "price": 500}, {"seq": 9, "amount": 300, "price": 300}]}
        });
        assert_eq!(submitted_witness(&v).unwrap(), ClearingWitness::sample());
        v["fee_ppm"] = json!(200000);
        assert!(submitted_witness(&v).unwrap_err().contains("payouts sum"), "{:?}", submitted_witness(&v));
        v["fee_ppm"] = json!(-1);
        assert!(submitted_witness(&v).unwrap_err().contains("fee_ppm"));
    }
}
