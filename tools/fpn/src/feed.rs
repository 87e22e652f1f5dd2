//! Feeding JSON-lines records to an [`Engine`] as wire frames, the way a network client would.
//! Shared by `build`, `clear` and `zk prove`; the line → record mapping is also what `submit`
//! and `bid` send to a daemon.

use std::collections::HashMap;

use fpn_engine::Engine;
use fpn_wire::{Bid, FrameWriter, Intent};
use serde::Serialize;

use crate::jsonl::{BidLine, IntentLine};
use crate::{UsageError, usage};

const NS_PER_MS: u64 = 1_000_000;

/// A line the engine refused, with its wire reason.
#[derive(Debug, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: &'static str,
    pub code: u8,
}

/// What the engine said about the lines fed to it.
#[derive(Debug, Default)]
pub struct Fed {
    /// Engine sequence id → line number of every accepted record.
    pub line_of_seq: HashMap<u64, usize>,
    pub rejected: Vec<Rejected>,
}

impl Fed {
    pub fn line(&self, seq: u64) -> usize {
        self.line_of_seq.get(&seq).copied().unwrap_or(0)
    }

    fn take(&mut self, line: usize, receipt: fpn_wire::Receipt) {
        match receipt.status {
            Ok(()) => {
                self.line_of_seq.insert(receipt.seq, line);
            }
            Err(reason) => {
                self.rejected.push(Rejected { line, reason: reason.as_str(), code: reason.code() })
            }
        }
    }
}

fn send(engine: &mut Engine, fed: &mut Fed, line: usize, rx_ns: u64, frame: &[u8]) -> Result<(), UsageError> {
    engine
        .handle_frame(0, rx_ns, frame, |r| fed.take(line, r))
        .map_err(|reason| usage(format!("line {line}: frame refused: {reason}")))
}

/// The wire intent of a line; `keys` holds the line's key values ([`crate::jsonl::Key::value`]).
pub fn intent_record<'k>(intent: &IntentLine, keys: &'k [u64], sent_ns: u64) -> Intent<'k> {
    Intent {
        client_id: intent.client_id,
        nonce: intent.nonce,
        sent_ns,
        profit: intent.profit,
        priority: intent.priority,
        keys,
    }
}

/// The wire bid of a line (`at_ms` is not on the wire: the engine stamps arrival itself).
pub fn bid_record(bid: &BidLine, sent_ns: u64) -> Bid {
    Bid { client_id: bid.client_id, nonce: bid.nonce, sent_ns, amount: bid.amount, priority: bid.priority }
}

/// Sends every intent line as a one-record frame, in file order (the FIFO order).
pub fn intents(engine: &mut Engine, lines: &[(usize, IntentLine)], fed: &mut Fed) -> Result<(), UsageError> {
    let mut frame = Vec::with_capacity(1024);
    let mut keys = Vec::with_capacity(64);
    for (line, intent) in lines {
        keys.clear();
        keys.extend(intent.keys.iter().map(|k| k.value()));
        frame.clear();
        let mut w = FrameWriter::new(&mut frame, 1 << 16);
        w.push_intent(&intent_record(intent, &keys, 0))
            .map_err(|_| usage(format!("line {line}: record too large")))?;
        w.finish();
        send(engine, fed, *line, 0, &frame)?;
    }
    Ok(())
}

/// Sends every bid line as a one-record frame received at its `at_ms`.
pub fn bids(engine: &mut Engine, lines: &[(usize, BidLine)], fed: &mut Fed) -> Result<(), UsageError> {
    let mut frame = Vec::with_capacity(128);
    for (line, bid) in lines {
        frame.clear();
        let mut w = FrameWriter::new(&mut frame, 1 << 16);
        w.push_bid(&bid_record(bid, 0)).expect("one bid fits a frame");
        w.finish();
        send(engine, fed, *line, bid.at_ms.saturating_mul(NS_PER_MS), &frame)?;
    }
    Ok(())
}
