//! Holds `docs/wire.md` to the code: its hex examples and its reason table.

use fpn_wire::*;

use super::examples::EXAMPLES;

fn wire_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/wire.md");
    std::fs::read_to_string(path).expect("docs/wire.md is readable")
}

/// Every ```` ```hex example=NAME ```` block of the document, as (name, bytes).
fn doc_examples() -> Vec<(String, Vec<u8>)> {
    let md = wire_md();
    let mut out = Vec::new();
    let mut lines = md.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```hex example=") else { continue };
        let mut bytes = Vec::new();
        for body in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
            for tok in body.split_whitespace() {
                bytes.push(u8::from_str_radix(tok, 16).expect("hex byte"));
            }
        }
        out.push((name.trim().to_string(), bytes));
    }
    out
}

#[test]
fn every_example_is_in_the_document_and_matches_the_encoder() {
    let docs = doc_examples();
    assert_eq!(docs.len(), EXAMPLES.len(), "one hex block per example");
    for ex in EXAMPLES {
        let (_, doc_bytes) =
            docs.iter().find(|(n, _)| n == ex.name).unwrap_or_else(|| panic!("example {} missing", ex.name));
        let mut encoded = Vec::new();
        (ex.encode)(&mut encoded);
        assert_eq!(&encoded, doc_bytes, "example {} differs from the encoder", ex.name);
    }
}

fn doc_bytes(name: &str) -> Vec<u8> {
    doc_examples().into_iter().find(|(n, _)| n == name).map(|(_, b)| b).expect("example present")
}

#[test]
fn intent_example_decodes_to_the_documented_values() {
    let bytes = doc_bytes("intent");
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    assert_eq!(recs.len(), 1);
    let RecordRef::Intent(i) = recs[0] else { panic!("not an intent") };
    i.validate().unwrap();
    assert_eq!(i.fixed.client_id.get(), 7);
    assert_eq!(i.fixed.nonce.get(), 1);
    assert_eq!(i.fixed.sent_ns.get(), 1_763_700_000_000_000_000);
    assert_eq!(i.fixed.profit.get(), 2_500);
    assert_eq!(i.fixed.priority.get(), 3);
    assert_eq!((i.key(0), i.key(1)), (0xA1, 0xB2));
    assert_eq!(bytes.len(), 76);
}

#[test]
fn bid_and_cancel_example_decodes_to_the_documented_values() {
    let bytes = doc_bytes("bid-and-cancel");
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Bid(b) = recs[0] else { panic!("not a bid") };
    validate_bid(b).unwrap();
    assert_eq!((b.client_id.get(), b.nonce.get(), b.amount.get(), b.priority.get()), (7, 2, 900, 1));
    let RecordRef::Cancel(c) = recs[1] else { panic!("not a cancel") };
    validate_cancel(c).unwrap();
    assert_eq!((c.client_id.get(), c.mode, c.target.get()), (7, CANCEL_BY_NONCE, 1));
    assert_eq!(bytes.len(), 92);
}

#[test]
fn receipts_example_decodes_to_the_documented_values() {
    let bytes = doc_bytes("receipts");
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Receipt(ok) = recs[0] else { panic!("not a receipt") };
    assert_eq!((ok.seq.get(), ok.window_id.get(), ok.status, ok.for_kind), (42, 5, 0, 0x01));
    let RecordRef::Receipt(dup) = recs[1] else { panic!("not a receipt") };
    assert_eq!(Reason::from_code(dup.status), Some(Reason::DuplicateNonce));
    assert_eq!((dup.seq.get(), dup.window_id.get()), (0, 0));
}

#[test]
fn block_example_decodes_and_balances() {
    let bytes = doc_bytes("block");
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Block(b) = recs[0] else { panic!("not a block") };
    let f = b.fixed;
    assert_eq!((f.window_id.get(), f.total.get(), f.fifo_total.get()), (5, 3_000, 2_500));
    assert_eq!((f.surplus.get(), f.fee.get(), f.fee_ppm.get(), f.builder, f.exact), (500, 50, 100_000, 2, 0));
    let payouts: u64 = b.entries.iter().map(|e| e.payout.get()).sum();
    assert_eq!(payouts + f.fee.get(), f.total.get());
    assert_eq!(b.entries[0], BlockEntryWire::new(42, 7, 2_500, 2_458, 1_763_700_000_000_040_000));
    assert_eq!(b.entries[1].rx_ns.get(), 1_763_700_000_000_060_000);
    // Block record version 2, 40-byte entries.
    assert_eq!((bytes[13], bytes.len()), (BLOCK_VERSION, 12 + 72 + 2 * 40));
    // The first entry's rx_ns is the accepted receipt's.
    let receipts = doc_bytes("receipts");
    let RecordRef::Receipt(r) = decode_frame(&receipts).unwrap().next().unwrap() else { panic!() };
    assert_eq!((r.seq.get(), r.rx_ns.get()), (42, b.entries[0].rx_ns.get()));
}

#[test]
fn clearing_example_decodes() {
    let bytes = doc_bytes("clearing");
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Clearing(c) = recs[0] else { panic!("not a clearing") };
    assert_eq!((c.fixed.window_id.get(), c.fixed.revenue.get(), c.fixed.pricing), (5, 900, 0));
    assert_eq!(c.winners, &[WinnerWire::new(44, 7, 900, 900)]);
}

#[test]
fn proof_example_decodes() {
    let bytes = doc_bytes("proof");
    assert_eq!(bytes.len(), 180);
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Proof(p) = recs[0] else { panic!("not a proof") };
    validate_proof(p).unwrap();
    assert_eq!((p.window_first.get(), p.window_last.get(), p.job_id.get(), p.status), (5, 6, 3, PROOF_DONE));
    assert_eq!(p.proof, super::examples::proof_bytes());
}

#[test]
fn watermark_example_decodes_and_confirms_by_the_client_rule() {
    let bytes = doc_bytes("watermark");
    assert_eq!(bytes.len(), 84);
    let recs: Vec<_> = decode_frame(&bytes).unwrap().collect();
    let RecordRef::Watermark(w) = recs[0] else { panic!("not a watermark") };
    validate_watermark(&w).unwrap();
    let f = w.fixed;
    assert_eq!((f.path, f.accepted_total.get(), f.answered_total.get(), f.seq_last.get()), (0, 6, 7, 48));
    let ranges: Vec<_> = w.ranges.iter().map(|r| (r.first.get(), r.last.get())).collect();
    assert_eq!(ranges, [(1, 5), (7, 8)]);
    // The document's story: 1 ..= 8 sent by datagram, 3 refused, 6 lost.
    let mut ledger = confirm::Ledger::new();
    (1..=8).for_each(|n| ledger.sent(WatermarkPath::Datagram, n));
    let refused = Receipt {
        client_id: 7,
        nonce: 3,
        seq: 0,
        window_id: 0,
        rx_ns: 0,
        status: Err(Reason::RateLimited),
        for_kind: Some(Kind::Intent),
    };
    assert!(ledger.handle_receipt(&refused).is_some());
    let mut accepted = Vec::new();
    ledger.handle_watermark(WatermarkPath::Datagram, ranges, &mut accepted);
    assert_eq!(accepted, [1, 2, 4, 5, 7, 8]);
    assert_eq!(accepted.len() as u64, f.accepted_total.get());
    assert_eq!(ledger.unanswered().collect::<Vec<_>>(), [(6, WatermarkPath::Datagram)]);
}

#[test]
fn reason_table_matches_the_code() {
    let md = wire_md();
    let table: Vec<(u8, String)> = md
        .lines()
        .skip_while(|l| !l.starts_with("## Reason codes"))
        .filter_map(|l| {
            let cells: Vec<_> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse::<u8>().ok()?;
            Some((code, cells.get(2)?.to_string()))
        })
        .collect();
    let code: Vec<(u8, String)> = Reason::ALL.iter().map(|r| (r.code(), r.as_str().to_string())).collect();
    assert_eq!(table, code);
}
