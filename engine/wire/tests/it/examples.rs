//! The examples printed in `docs/wire.md`, as values. `docs.rs` checks both directions:
//! the document's hex decodes to these values, and encoding these values gives that hex.

use fpn_wire::*;

pub struct Example {
    pub name: &'static str,
    pub encode: fn(&mut Vec<u8>),
}

pub const EXAMPLES: &[Example] = &[
    Example { name: "intent", encode: intent },
    Example { name: "bid-and-cancel", encode: bid_and_cancel },
    Example { name: "receipts", encode: receipts },
    Example { name: "block", encode: block },
    Example { name: "clearing", encode: clearing },
    Example { name: "proof", encode: proof },
    Example { name: "watermark", encode: watermark },
];

pub fn intent(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, DATAGRAM_FRAME_LEN_MAX);
    w.push_intent(&Intent {
        client_id: 7,
        nonce: 1,
        sent_ns: 1_763_700_000_000_000_000,
        profit: 2_500,
        priority: 3,
        keys: &[0xA1, 0xB2],
    })
    .unwrap();
    w.finish();
}

pub fn bid_and_cancel(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, DATAGRAM_FRAME_LEN_MAX);
    w.push_bid(&Bid { client_id: 7, nonce: 2, sent_ns: 1_763_700_000_000_000_000, amount: 900, priority: 1 })
        .unwrap();
    w.push_cancel(&Cancel { client_id: 7, target: CancelTarget::Nonce(1) }).unwrap();
    w.finish();
}

pub fn receipts(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, DATAGRAM_FRAME_LEN_MAX);
    w.push_receipt(&Receipt {
        client_id: 7,
        nonce: 1,
        seq: 42,
        window_id: 5,
        rx_ns: 1_763_700_000_000_040_000,
        status: Ok(()),
        for_kind: Some(Kind::Intent),
    })
    .unwrap();
    w.push_receipt(&Receipt {
        client_id: 7,
        nonce: 1,
        seq: 0,
        window_id: 0,
        rx_ns: 1_763_700_000_000_090_000,
        status: Err(Reason::DuplicateNonce),
        for_kind: Some(Kind::Intent),
    })
    .unwrap();
    w.finish();
}

/// The receive times of the block example's two intents: seq 42 is the intent the receipts
/// example accepts (same `rx_ns`), seq 43 came 20 µs later.
pub const BLOCK_RX_NS: [u64; 2] = [1_763_700_000_000_040_000, 1_763_700_000_000_060_000];

pub fn block(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, 1 << 20);
    w.push_block(
        &BlockSummary {
            window_id: 5,
            total: 3_000,
            fifo_total: 2_500,
            surplus: 500,
            fee: 50,
            upper_bound: 3_100,
            fee_ppm: 100_000,
            builder: 2,
            exact: false,
        },
        &[
            BlockEntryWire::new(42, 7, 2_500, 2_458, BLOCK_RX_NS[0]),
            BlockEntryWire::new(43, 9, 500, 492, BLOCK_RX_NS[1]),
        ],
    )
    .unwrap();
    w.finish();
}

pub fn clearing(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, 1 << 20);
    w.push_clearing(
        &ClearingSummary { window_id: 5, uniform_price: 0, revenue: 900, pricing: 0, order: 0 },
        &[WinnerWire::new(44, 7, 900, 900)],
    )
    .unwrap();
    w.finish();
}

/// The placeholder proof bytes of the example: 0, 1, .., 127.
pub fn proof_bytes() -> [u8; PROOF_BYTES_LEN] {
    std::array::from_fn(|i| i as u8)
}

pub fn proof(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, 1 << 20);
    w.push_proof(&ProofAnnounce { window_first: 5, window_last: 6, job_id: 3, proof: Some(proof_bytes()) })
        .unwrap();
    w.finish();
}

/// The watermark example: datagram nonces 1 ..= 8 were sent, 6 was lost on the way, 3 was
/// refused (its receipt came first); the others were accepted, the last as seq 48.
pub fn watermark(buf: &mut Vec<u8>) {
    let mut w = FrameWriter::new(buf, DATAGRAM_FRAME_LEN_MAX);
    w.push_watermark(&Watermark {
        path: WatermarkPath::Datagram,
        accepted_total: 6,
        answered_total: 7,
        seq_last: 48,
        ranges: &[(1, 5), (7, 8)],
    })
    .unwrap();
    w.finish();
}
