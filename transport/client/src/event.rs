//! What the server sends, decoded into owned values.

use fpn_wire::session::Welcome;
use fpn_wire::{
    BlockSummary, ClearingSummary, PROOF_BYTES_LEN, PROOF_DONE, Reason, Receipt, RecordRef, WatermarkPath,
    decode_frame, validate_proof, validate_watermark,
};

/// Where a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A QUIC datagram: fast, may be lost.
    Datagram,
    /// A stream: reliable and ordered.
    Stream,
}

impl Via {
    /// The watermark path of records sent this way.
    pub const fn path(self) -> WatermarkPath {
        match self {
            Via::Datagram => WatermarkPath::Datagram,
            Via::Stream => WatermarkPath::Stream,
        }
    }
}

/// A watermark (`docs/wire.md`, kind 0x85; receipt mode `refusals`): the nonces of the
/// intents and bids sent on `path` that the server answered since its previous watermark of
/// that path. Those without a refusal receipt (which came before this) were accepted and are
/// durable; [`crate::Ledger`] keeps that account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub path: WatermarkPath,
    /// Intents and bids of this path accepted since the session opened.
    pub accepted_total: u64,
    /// Intents and bids of this path answered (accepted or refused) since the session opened.
    pub answered_total: u64,
    /// Engine seq of the last accepted record listed here (0: none).
    pub seq_last: u64,
    /// Inclusive nonce ranges.
    pub ranges: Vec<(u64, u64)>,
}

/// One intent of a published block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub seq: u64,
    pub client_id: u64,
    pub profit: u64,
    pub payout: u64,
    /// The engine's receive time of the intent (its receipt's `rx_ns`), ns since the Unix
    /// epoch.
    pub rx_ns: u64,
}

/// A published block (`docs/wire.md`, kind 0x82).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub summary: BlockSummary,
    pub entries: Vec<BlockEntry>,
    /// The entries are this session's client's only (`docs/wire.md`, block `scope`): what a
    /// session without `subscribe_all` gets. The summary is the whole block's either way.
    pub client_only: bool,
}

/// One winner of an auction clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winner {
    pub seq: u64,
    pub client_id: u64,
    pub amount: u64,
    pub price: u64,
}

/// A published auction clearing (`docs/wire.md`, kind 0x83).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clearing {
    pub summary: ClearingSummary,
    pub winners: Vec<Winner>,
}

/// What a client's event receiver yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session is open: the first one (epoch 0) and each one after a reconnect. Records
    /// sent on an earlier epoch without a receipt may need resending (see the crate doc).
    Connected {
        epoch: u64,
        welcome: Welcome,
    },
    /// The session of this epoch ended; the client reconnects unless told not to.
    Disconnected {
        epoch: u64,
        error: String,
        /// The reason the server closed it with (`0x100 + reason`), if it did:
        /// [`Reason::SlowConsumer`] when this client read its answers too slowly (see
        /// [`Event::is_slow_consumer`]), `shutting_down` when the daemon stopped.
        reason: Option<Reason>,
    },
    /// The client stopped for good: closed by the caller, reconnect off or given up, or a
    /// permanent refusal. No event follows.
    Closed {
        error: Option<String>,
    },
    /// The answer to one record, matched to it by (for_kind, nonce).
    Receipt {
        receipt: Receipt,
        via: Via,
    },
    /// Receipt mode `refusals`: accepted intents and bids, by nonce range.
    Watermark(Watermark),
    Block(Block),
    Clearing(Clearing),
    /// The clearing proof of windows `window_first ..= window_last` is ready (`docs/wire.md`,
    /// kind 0x84), sent to `subscribe_all` sessions. Its public inputs and the verifying key
    /// are on the admin endpoint (`GET /proofs/{job_id}/proof`, `GET /proofs/vk`).
    Proof {
        window_first: u64,
        window_last: u64,
        job_id: u64,
        /// The Groth16 proof, ark-serialize compressed; `None` when the job failed.
        proof: Option<[u8; PROOF_BYTES_LEN]>,
    },
    /// A frame from the server that does not decode (or a record that makes no sense coming
    /// from a server). Kept visible rather than dropped silently.
    BadFrame {
        via: Via,
        reason: Reason,
    },
}

impl Event {
    /// The server closed the session because this client did not read its answers fast
    /// enough (`docs/transport.md`, "Slow consumers"). Records without an answer may or may
    /// not be in: resend them with their same nonce after the reconnect.
    pub fn is_slow_consumer(&self) -> bool {
        matches!(self, Event::Disconnected { reason: Some(Reason::SlowConsumer), .. })
    }
}

/// Decodes one frame from the server into events, appended to `out`.
pub fn decode_server_frame(frame: &[u8], via: Via, out: &mut Vec<Event>) {
    let records = match decode_frame(frame) {
        Ok(records) => records,
        Err(reason) => {
            out.push(Event::BadFrame { via, reason });
            return;
        }
    };
    for record in records {
        match record {
            RecordRef::Receipt(r) => match Receipt::from_wire(r) {
                Some(receipt) => out.push(Event::Receipt { receipt, via }),
                None => out.push(Event::BadFrame { via, reason: Reason::UnknownKind }),
            },
            RecordRef::Block(b) => {
                let f = b.fixed;
                out.push(Event::Block(Block {
                    summary: BlockSummary {
                        window_id: f.window_id.get(),
                        total: f.total.get(),
                        fifo_total: f.fifo_total.get(),
                        surplus: f.surplus.get(),
                        fee: f.fee.get(),
                        upper_bound: f.upper_bound.get(),
                        fee_ppm: f.fee_ppm.get(),
                        builder: f.builder,
                        exact: f.exact != 0,
                    },
                    entries: b
                        .entries
                        .iter()
                        .map(|e| BlockEntry {
                            seq: e.seq.get(),
                            client_id: e.client_id.get(),
                            profit: e.profit.get(),
                            payout: e.payout.get(),
                            rx_ns: e.rx_ns.get(),
                        })
                        .collect(),
                    client_only: f.scope == fpn_wire::BLOCK_SCOPE_CLIENT,
                }));
            }
            RecordRef::Clearing(c) => {
                let f = c.fixed;
                out.push(Event::Clearing(Clearing {
                    summary: ClearingSummary {
                        window_id: f.window_id.get(),
                        uniform_price: f.uniform_price.get(),
                        revenue: f.revenue.get(),
                        pricing: f.pricing,
                        order: f.order,
                    },
                    winners: c
                        .winners
                        .iter()
                        .map(|w| Winner {
                            seq: w.seq.get(),
                            client_id: w.client_id.get(),
                            amount: w.amount.get(),
                            price: w.price.get(),
                        })
                        .collect(),
                }));
            }
            RecordRef::Proof(p) => {
                if let Err(reason) = validate_proof(p) {
                    out.push(Event::BadFrame { via, reason });
                    continue;
                }
                out.push(Event::Proof {
                    window_first: p.window_first.get(),
                    window_last: p.window_last.get(),
                    job_id: p.job_id.get(),
                    proof: (p.status == PROOF_DONE).then_some(p.proof),
                });
            }
            RecordRef::Watermark(w) => {
                if let Err(reason) = validate_watermark(&w) {
                    out.push(Event::BadFrame { via, reason });
                    continue;
                }
                let f = w.fixed;
                out.push(Event::Watermark(Watermark {
                    path: WatermarkPath::from_code(f.path).expect("validated"),
                    accepted_total: f.accepted_total.get(),
                    answered_total: f.answered_total.get(),
                    seq_last: f.seq_last.get(),
                    ranges: w.ranges.iter().map(|r| (r.first.get(), r.last.get())).collect(),
                }));
            }
            RecordRef::Intent(_) | RecordRef::Bid(_) | RecordRef::Cancel(_) => {
                out.push(Event::BadFrame { via, reason: Reason::UnknownKind });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpn_wire::{BlockEntryWire, FrameWriter, Kind, ProofAnnounce, WinnerWire};

    #[test]
    fn decodes_receipts_blocks_clearings_and_proofs() {
        let mut frame = Vec::new();
        let mut w = FrameWriter::new(&mut frame, 1 << 16);
        let receipt = Receipt {
            client_id: 7,
            nonce: 1,
            seq: 42,
            window_id: 5,
            rx_ns: 9,
            status: Err(Reason::DuplicateNonce),
            for_kind: Some(Kind::Intent),
        };
        w.push_receipt(&receipt).unwrap();
        let block =
            BlockSummary { window_id: 5, total: 10, fifo_total: 10, exact: true, ..Default::default() };
        w.push_block(&block, &[BlockEntryWire::new(42, 7, 10, 10, 1_000_042)]).unwrap();
        let clearing = ClearingSummary { window_id: 5, revenue: 3, ..Default::default() };
        w.push_clearing(&clearing, &[WinnerWire::new(44, 7, 5, 3)]).unwrap();
        w.push_proof(&ProofAnnounce { window_first: 4, window_last: 5, job_id: 2, proof: Some([9; 128]) })
            .unwrap();
        w.push_proof(&ProofAnnounce { window_first: 6, window_last: 6, job_id: 3, proof: None }).unwrap();
        let ranges = [(1, 4), (9, 9)];
        let watermark = fpn_wire::Watermark {
            path: WatermarkPath::Stream,
            accepted_total: 4,
            answered_total: 5,
            seq_last: 77,
            ranges: &ranges,
        };
        w.push_watermark(&watermark).unwrap();
        w.finish();
        let mut out = Vec::new();
        decode_server_frame(&frame, Via::Stream, &mut out);
        assert_eq!(
            out,
            vec![
                Event::Receipt { receipt, via: Via::Stream },
                Event::Block(Block {
                    summary: block,
                    entries: vec![BlockEntry {
                        seq: 42,
                        client_id: 7,
                        profit: 10,
                        payout: 10,
                        rx_ns: 1_000_042
                    }],
                    client_only: false
                }),
                Event::Clearing(Clearing {
                    summary: clearing,
                    winners: vec![Winner { seq: 44, client_id: 7, amount: 5, price: 3 }]
                }),
                Event::Proof { window_first: 4, window_last: 5, job_id: 2, proof: Some([9; 128]) },
                Event::Proof { window_first: 6, window_last: 6, job_id: 3, proof: None },
                Event::Watermark(Watermark {
                    path: WatermarkPath::Stream,
                    accepted_total: 4,
                    answered_total: 5,
                    seq_last: 77,
                    ranges: ranges.to_vec()
                }),
            ]
        );
        out.clear();
        decode_server_frame(&frame[..20], Via::Datagram, &mut out);
        assert_eq!(out, vec![Event::BadFrame { via: Via::Datagram, reason: Reason::Truncated }]);
    }
}
