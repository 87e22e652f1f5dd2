//! The results journal's line format: one JSON object per published window
//! (`docs/daemon.md`, "Journal"). The daemon's journal role writes it; recovery writes the
//! lines of recovered windows with it; `fpn replay` writes the lines of replayed windows
//! with it and compares them with the journal's, byte for byte.
//!
//! The line is written straight into a reused `String`, keys in alphabetical order (the order
//! `serde_json`'s map gives): building a `serde_json::Value` tree first cost milliseconds per
//! busy window on the journal's CPU, which it shares with the intake on small machines.

use fpn_engine::{CloseReason, Pace, WindowSummary};
use fpn_wire::{BlockRef, ClearingRef, RecordRef, decode_frame};

/// What a journal line is written from: a published window's summary, its encoded block and
/// clearing frame (`WindowResult::encode`), when it was published, and whether recovery
/// rebuilt it.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub window: &'a WindowSummary,
    pub published_ns: u64,
    pub frame: &'a [u8],
    pub recovered: bool,
}

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

/// The block and the clearing of a window, decoded from the encoded frame the merger sent (so
/// the journal shows exactly the bytes a client would get).
pub fn window_records(frame: &[u8]) -> (Option<BlockRef<'_>>, Option<ClearingRef<'_>>) {
    let (mut block, mut clearing) = (None, None);
    for record in decode_frame(frame).expect("the merger encodes valid frames") {
        match record {
            RecordRef::Block(b) => block = Some(b),
            RecordRef::Clearing(c) => clearing = Some(c),
            _ => {}
        }
    }
    (block, clearing)
}

/// Whether a window's line would say nothing but its id and times: no intent, bid or
/// cancel, no winner, no bid expired (`docs/daemon.md`, "Idle windows").
pub fn is_idle(window: &WindowSummary, frame: &[u8]) -> bool {
    if window.intents_count + window.bids_count + window.cancelled_count > 0 {
        return false;
    }
    let (_, clearing) = window_records(frame);
    clearing.is_none_or(|c| c.winners.is_empty())
}

/// The line of a run of idle windows `first ..= last` (no newline):
/// `{"idle_from":F,"idle_to":L}`.
pub fn write_idle_line(first: u64, last: u64, out: &mut String) {
    let mut o = Obj::open(out);
    o.u64("idle_from", first);
    o.u64("idle_to", last);
    o.close();
}

/// The newest window a journal line covers: its `window_id` (a window line, whose last key
/// it is) or its `idle_to` (a run of idle windows). `None`: not a journal line.
pub fn line_last_window(line: &str) -> Option<u64> {
    let body = line.trim_end().strip_suffix('}')?;
    let at = body.rfind(':')?;
    let key = &body[..at];
    if !(key.ends_with("\"window_id\"") || key.ends_with("\"idle_to\"")) {
        return None;
    }
    body[at + 1..].parse().ok()
}

/// A JSON object written field by field; the caller gives keys in order.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    fn u64(&mut self, key: &str, v: u64) {
        let mut buf = itoa::Buffer::new();
        self.key(key).push_str(buf.format(v));
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key).push_str(if v { "true" } else { "false" });
    }

    /// `v` must not need escaping (the journal's strings are fixed words).
    fn str(&mut self, key: &str, v: &str) {
        let out = self.key(key);
        out.push('"');
        out.push_str(v);
        out.push('"');
    }

    fn null(&mut self, key: &str) {
        self.key(key).push_str("null");
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// Entries or winners written between two pace points.
const ITEMS_PER_POINT: usize = 512;

/// Appends the journal line of one window result to `out` (no newline): the summary counts,
/// the block and the clearing (`null` when the frame has none). Pauses at `pace`'s points
/// every [`ITEMS_PER_POINT`] entries (`docs/runtime.md`, "Slices").
pub async fn write_line(line: &Line<'_>, out: &mut String, pace: &mut impl Pace) {
    let (block, clearing) = window_records(line.frame);
    let w = line.window;
    let mut o = Obj::open(out);
    o.u64("bids_count", w.bids_count as u64);
    match block {
        Some(b) => {
            let f = b.fixed;
            let mut o = Obj::open(o.key("block"));
            o.str("builder", builder_str(f.builder));
            let out = o.key("entries");
            out.push('[');
            for (k, e) in b.entries.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                    if k % ITEMS_PER_POINT == 0 {
                        pace.point().await;
                    }
                }
                let mut o = Obj::open(out);
                o.u64("client_id", e.client_id.get());
                o.u64("payout", e.payout.get());
                o.u64("profit", e.profit.get());
                o.u64("rx_ns", e.rx_ns.get());
                o.u64("seq", e.seq.get());
                o.close();
            }
            out.push(']');
            o.bool("exact", f.exact != 0);
            o.u64("fee", f.fee.get());
            o.u64("fee_ppm", f.fee_ppm.get() as u64);
            o.u64("fifo_total", f.fifo_total.get());
            o.u64("surplus", f.surplus.get());
            o.u64("total", f.total.get());
            o.u64("upper_bound", f.upper_bound.get());
            o.u64("window_id", f.window_id.get());
            o.close();
        }
        None => o.null("block"),
    }
    o.u64("cancelled_count", w.cancelled_count as u64);
    match clearing {
        Some(c) => {
            let f = c.fixed;
            let mut o = Obj::open(o.key("clearing"));
            o.str("order", if f.order == 0 { "priority-first" } else { "amount-desc" });
            o.str("pricing", if f.pricing == 0 { "first-price" } else { "uniform" });
            o.u64("revenue", f.revenue.get());
            o.u64("uniform_price", f.uniform_price.get());
            o.u64("window_id", f.window_id.get());
            let out = o.key("winners");
            out.push('[');
            for (k, x) in c.winners.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                    if k % ITEMS_PER_POINT == 0 {
                        pace.point().await;
                    }
                }
                let mut o = Obj::open(out);
                o.u64("amount", x.amount.get());
                o.u64("client_id", x.client_id.get());
                o.u64("price", x.price.get());
                o.u64("seq", x.seq.get());
                o.close();
            }
            out.push(']');
            o.close();
        }
        None => o.null("clearing"),
    }
    o.u64("closed_ns", w.closed_ns);
    o.u64("intents_count", w.intents_count as u64);
    o.u64("opened_ns", w.opened_ns);
    o.u64("published_ns", line.published_ns);
    o.str("reason", reason_str(w.reason));
    if line.recovered {
        o.bool("recovered", true);
    }
    o.u64("window_id", w.window_id);
    o.close();
}

#[cfg(test)]
mod tests {
    use fpn_engine::WindowSummary;
    use serde_json::{Value, json};

    use super::*;

    fn window() -> WindowSummary {
        WindowSummary {
            window_id: 7,
            opened_ns: 100,
            closed_ns: 123,
            reason: CloseReason::Deadline,
            intents_count: 4,
            bids_count: 1,
            cancelled_count: 1,
        }
    }

    fn frame(entries: &[(u64, u64, u64, u64)], pricing: Option<u8>) -> Vec<u8> {
        fpn_testkit::window_result_frame(entries, pricing)
    }

    fn line(frame: &[u8], recovered: bool) -> String {
        let w = window();
        let l = Line { window: &w, published_ns: 130, frame, recovered };
        let mut out = String::new();
        let mut pace = fpn_engine::EveryPoint::default();
        fpn_engine::run_to_completion(write_line(&l, &mut out, &mut pace));
        // One point per 512 entries past the first.
        let (block, _) = window_records(frame);
        assert_eq!(
            pace.points as usize,
            block.map_or(0, |b| b.entries.len().saturating_sub(1) / ITEMS_PER_POINT)
        );
        out
    }

    #[test]
    fn the_line_is_the_documented_object_with_sorted_keys() {
        let text = line(&frame(&[(3, 1, 1000, 900), (5, 2, 2500, 2300), (11, 1, 700, 680)], Some(0)), false);
        let expected = json!({
            "window_id": 7, "opened_ns": 100, "closed_ns": 123, "published_ns": 130, "reason": "deadline",
            "intents_count": 4, "bids_count": 1, "cancelled_count": 1,
            "block": {"window_id": 7, "builder": "improved", "exact": false, "total": 4200,
                      "fifo_total": 1000, "surplus": 3200, "fee": 320, "fee_ppm": 100000, "upper_bound": 5000,
                      "entries": [{"seq": 3, "client_id": 1, "profit": 1000, "payout": 900, "rx_ns": 3100},
                                  {"seq": 5, "client_id": 2, "profit": 2500, "payout": 2300, "rx_ns": 5100},
                                  {"seq": 11, "client_id": 1, "profit": 700, "payout": 680, "rx_ns": 11100}]},
            "clearing": {"window_id": 7, "pricing": "first-price", "order": "priority-first",
                         "uniform_price": 0, "revenue": 800,
                         "winners": [{"seq": 9, "client_id": 3, "amount": 800, "price": 800}]}
        });
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, expected);
        // Byte for byte what serde_json writes for the same object (keys sorted).
        assert_eq!(text, expected.to_string());
        // A recovered window says so, in its place among the sorted keys.
        let recovered = line(&frame(&[], Some(0)), true);
        let parsed: Value = serde_json::from_str(&recovered).unwrap();
        assert_eq!(parsed["recovered"], json!(true));
        assert_eq!(recovered, parsed.to_string());
    }

    #[test]
    fn empty_blocks_and_missing_records_are_written() {
        let parsed: Value = serde_json::from_str(&line(&frame(&[], Some(1)), false)).unwrap();
        assert_eq!(parsed["block"]["entries"], json!([]));
        assert_eq!(parsed["clearing"]["pricing"], json!("uniform"));
        let parsed: Value = serde_json::from_str(&line(&frame(&[], None), false)).unwrap();
        assert_eq!(parsed["clearing"], Value::Null);
    }

    #[test]
    fn long_blocks_are_written_across_pace_points() {
        let entries: Vec<(u64, u64, u64, u64)> = (0..1_500).map(|i| (i, i % 7, 100 + i, 90 + i)).collect();
        let parsed: Value = serde_json::from_str(&line(&frame(&entries, Some(0)), false)).unwrap();
        let got = parsed["block"]["entries"].as_array().unwrap();
        assert_eq!(got.len(), 1_500);
        for (i, e) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                e,
                &json!({"seq": i, "client_id": i % 7, "profit": 100 + i, "payout": 90 + i, "rx_ns": 100 + 1_000 * i})
            );
        }
    }

    #[test]
    fn idle_windows_are_told_apart_and_summed_up_in_one_line() {
        let mut w = window();
        assert!(!is_idle(&w, &frame(&[], None)));
        (w.intents_count, w.bids_count, w.cancelled_count) = (0, 0, 0);
        assert!(is_idle(&w, &frame(&[], None)));
        assert!(!is_idle(&w, &frame(&[], Some(0))), "a winner is news");
        let mut out = String::new();
        write_idle_line(8, 40, &mut out);
        assert_eq!(out, r#"{"idle_from":8,"idle_to":40}"#);
    }
}
