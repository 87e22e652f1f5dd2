//! Any bytes into the frame decoder and every per-record check: must never panic, and a
//! frame that decodes must re-encode to a frame that decodes to the same record count.
#![no_main]

use fpn_wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = decode_frame(data) else { return };
    let declared = records.len();
    let mut seen = 0usize;
    for r in records {
        seen += 1;
        match r {
            RecordRef::Intent(i) => {
                let _ = i.validate();
                let _ = i.keys_le();
            }
            RecordRef::Bid(b) => {
                let _ = validate_bid(b);
            }
            RecordRef::Cancel(c) => {
                let _ = validate_cancel(c);
            }
            RecordRef::Receipt(r) => {
                let _ = Reason::from_code(r.status);
            }
            RecordRef::Block(b) => assert_eq!(b.entries.len(), b.fixed.entries_count.get() as usize),
            RecordRef::Clearing(c) => assert_eq!(c.winners.len(), c.fixed.winners_count.get() as usize),
            RecordRef::Proof(p) => {
                let _ = validate_proof(p);
            }
            RecordRef::Watermark(w) => {
                assert_eq!(w.ranges.len(), usize::from(w.fixed.ranges_count.get()));
                let _ = validate_watermark(&w);
            }
        }
    }
    assert_eq!(seen, declared);
});
