//! The client's rule for receipt mode `refusals` (`docs/transport.md`, "Receipt modes"):
//! which of its intents and bids are answered, from refusal receipts and watermarks.
//!
//! The server answers every intent and bid it reads, in its own order per path (datagrams,
//! streams). A refused one gets a receipt on the result stream; an accepted one (once it is
//! durable) is only listed, by nonce, in the next watermark of its path, which goes on the
//! same stream after the receipts of the refused ones it lists. So when a watermark lists a
//! nonce that the client sent on that path and has no refusal for, that record was accepted.
//! Nothing depends on the order or the loss of datagrams: a record the server never read is
//! in no watermark and stays pending, and the client resends it (same nonce) when it gives
//! up waiting; `duplicate_nonce` then means an earlier copy got in.
//!
//! [`Ledger`] is that rule, sans I/O: the caller tells it what it sent and hands it what the
//! server sent. It works in receipt mode `all` too (every answer is then a receipt).

use std::collections::BTreeMap;

use crate::{Kind, Reason, Receipt, WatermarkPath};

/// How one intent or bid was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In the engine (and durable): by an accepted receipt, or listed in a watermark.
    Accepted,
    /// Refused with this reason (`duplicate_nonce`: an earlier copy got in).
    Refused(Reason),
}

/// A client's intents and bids not answered yet, by nonce, with the path each went by.
///
/// A nonce is pending on one path at a time: a resend replaces the path. Keep one copy of a
/// nonce in flight; a copy on the other path answered first is still read as the nonce's
/// answer when its receipt comes, but a watermark of the other path does not list it here.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pending: BTreeMap<u64, WatermarkPath>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// An intent or bid with `nonce` was sent on `path`.
    pub fn sent(&mut self, path: WatermarkPath, nonce: u64) {
        self.pending.insert(nonce, path);
    }

    /// Intents and bids sent and not answered yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_pending(&self, nonce: u64) -> bool {
        self.pending.contains_key(&nonce)
    }

    /// The records still unanswered, by nonce: after a reconnect (or after waiting long
    /// enough for a datagram), resend these with the same nonce.
    pub fn unanswered(&self) -> impl Iterator<Item = (u64, WatermarkPath)> + '_ {
        self.pending.iter().map(|(&n, &p)| (n, p))
    }

    /// A receipt from the server: if it answers a pending intent or bid, that record's
    /// nonce and outcome. Receipts of cancels and of frames refused whole answer no nonce
    /// of the ledger and give `None`.
    pub fn handle_receipt(&mut self, receipt: &Receipt) -> Option<(u64, Outcome)> {
        if !matches!(receipt.for_kind, Some(Kind::Intent | Kind::Bid)) {
            return None;
        }
        self.pending.remove(&receipt.nonce)?;
        let outcome = match receipt.status {
            Ok(()) => Outcome::Accepted,
            Err(reason) => Outcome::Refused(reason),
        };
        Some((receipt.nonce, outcome))
    }

    /// A watermark of `path` listing the nonce `ranges` (inclusive): every pending nonce of
    /// that path in them was accepted. Appends those nonces to `accepted`, ascending.
    pub fn handle_watermark(
        &mut self,
        path: WatermarkPath,
        ranges: impl IntoIterator<Item = (u64, u64)>,
        accepted: &mut Vec<u64>,
    ) {
        let start = accepted.len();
        for (first, last) in ranges {
            if first > last {
                continue;
            }
            accepted.extend(self.pending.range(first..=last).filter(|(_, p)| **p == path).map(|(n, _)| *n));
        }
        for nonce in &accepted[start..] {
            self.pending.remove(nonce);
        }
        accepted[start..].sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(nonce: u64, status: Result<(), Reason>, kind: Kind) -> Receipt {
        Receipt { client_id: 7, nonce, seq: 0, window_id: 0, rx_ns: 0, status, for_kind: Some(kind) }
    }

    #[test]
    fn a_watermark_confirms_pending_nonces_of_its_path_only() {
        let mut l = Ledger::new();
        for n in 1..=6 {
            l.sent(WatermarkPath::Datagram, n);
        }
        l.sent(WatermarkPath::Stream, 7);
        assert_eq!(
            l.handle_receipt(&receipt(2, Err(Reason::RateLimited), Kind::Intent)),
            Some((2, Outcome::Refused(Reason::RateLimited)))
        );
        let mut acc = Vec::new();
        // 3 was lost on the way in: the server's ranges skip it. 7 went by stream.
        l.handle_watermark(WatermarkPath::Datagram, [(4, 7), (1, 2)], &mut acc);
        assert_eq!(acc, [1, 4, 5, 6]);
        assert_eq!(
            l.unanswered().collect::<Vec<_>>(),
            [(3, WatermarkPath::Datagram), (7, WatermarkPath::Stream)]
        );
        // A cancel's receipt names its target's nonce but answers no intent.
        assert_eq!(l.handle_receipt(&receipt(3, Err(Reason::NotFound), Kind::Cancel)), None);
        assert!(l.is_pending(3));
        l.handle_watermark(WatermarkPath::Stream, [(7, 7)], &mut acc);
        assert_eq!(acc, [1, 4, 5, 6, 7]);
        assert_eq!(l.pending_len(), 1);
    }

    #[test]
    fn an_answer_counts_once() {
        let mut l = Ledger::new();
        l.sent(WatermarkPath::Stream, 9);
        assert_eq!(l.handle_receipt(&receipt(9, Ok(()), Kind::Bid)), Some((9, Outcome::Accepted)));
        assert_eq!(l.handle_receipt(&receipt(9, Err(Reason::DuplicateNonce), Kind::Bid)), None);
        let mut acc = Vec::new();
        l.handle_watermark(WatermarkPath::Stream, [(0, u64::MAX)], &mut acc);
        assert!(acc.is_empty());
    }
}
