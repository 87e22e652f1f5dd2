//! Records in: where the engine takes them ([`Admit`]) and the transport's checks on each
//! record of a frame ([`handle_frame`]), shared by the datagram and the stream path and by
//! the fuzz target.

use fpn_wire::{Reason, Receipt, RecordRef, decode_frame};

use super::Counters;

/// Where the engine side takes records.
pub trait Admit {
    /// Whether the next frame may be taken now (asked before each frame). While `false`,
    /// stream frames wait in QUIC's buffers (flow control slows the client down), and
    /// datagram records are answered `overloaded` at once: a datagram left waiting would be
    /// dropped without a word once the connection's receive buffer is full.
    fn ready(&mut self) -> bool;
    /// One record of a structurally valid frame, already checked for the session's client id
    /// and its token bucket. `None`: answered later through [`super::Server::handle_late_receipt`].
    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt>;
    /// A receipt the transport made itself (`rate_limited`, `client_mismatch`,
    /// `unauthorized`, a frame refused whole): for the engine's counters.
    fn refused(&mut self, receipt: &Receipt);
    /// A record [`Admit::admit`] will see a few records from now: a chance to start its
    /// memory loads early (the engine prefetches its de-duplication slot). Only a hint.
    fn prefetch(&mut self, record: RecordRef<'_>) {
        let _ = record;
    }
    /// The position the engine's input log must be durable at before the receipt
    /// [`Admit::admit`] just returned may go out (0: at once). The server holds the receipt
    /// (and those after it on its path) until [`super::Server::set_durable`] reaches it.
    fn durable_at(&self) -> u64 {
        0
    }
}

/// How many records ahead of the one being admitted [`handle_frame`] calls
/// [`Admit::prefetch`].
pub const PREFETCH_AHEAD: usize = 8;

/// One wire frame of a session: the frame's structure, then for each record the transport's
/// checks (a session must be open: `client_id` is `Some`; the record's client id must be
/// the session's; `take_token` must give a token) and the engine (`admit`). Every record's
/// answer goes to `answer` in record order: `Some(receipt)`, or `None` when the engine
/// answers later; with it, the log position the receipt waits for ([`Admit::durable_at`], 0
/// for a refusal). `Err`: the frame is refused whole (nothing was answered).
///
/// This is the intake's handling of untrusted bytes after QUIC; the fuzz target
/// `quic_datagram` drives it with arbitrary datagram payloads.
pub fn handle_frame(
    bytes: &[u8],
    rx_ns: u64,
    client_id: Option<u64>,
    counters: &mut Counters,
    take_token: &mut dyn FnMut() -> bool,
    admit: &mut impl Admit,
    mut answer: impl FnMut(Option<Receipt>, u64),
) -> Result<(), Reason> {
    for (record, ahead) in decode_frame(bytes)?.with_lookahead(PREFETCH_AHEAD) {
        for r in ahead {
            admit.prefetch(r);
        }
        let mut receipt = Receipt::for_record(record, rx_ns);
        let refusal = match client_id {
            None => {
                counters.records_unauthorized_total += 1;
                Some(Reason::Unauthorized)
            }
            Some(id) if record.kind().is_client_kind() && receipt.client_id != id => {
                counters.records_client_mismatch_total += 1;
                Some(Reason::ClientMismatch)
            }
            Some(_) if !take_token() => {
                counters.records_rate_limited_total += 1;
                Some(Reason::RateLimited)
            }
            Some(_) => None,
        };
        match refusal {
            Some(reason) => {
                receipt.status = Err(reason);
                admit.refused(&receipt);
                answer(Some(receipt), 0);
            }
            None => {
                let answered = admit.admit(rx_ns, record);
                let durable_at =
                    if answered.is_some_and(|r| r.status.is_ok()) { admit.durable_at() } else { 0 };
                answer(answered, durable_at);
            }
        }
    }
    Ok(())
}

/// Answers every record `overloaded` (after the transport's own checks): how a datagram is
/// handled while the engine cannot take a frame. `inner` hears of every refusal
/// ([`Admit::refused`]); `refused` counts the records it answered `overloaded`. Both
/// transports of `fpn/1` (this server, `fpn-webtransport`'s endpoint) use it.
pub struct RefuseOverloaded<'a, A> {
    pub inner: &'a mut A,
    pub refused: u64,
}

impl<'a, A: Admit> RefuseOverloaded<'a, A> {
    pub fn new(inner: &'a mut A) -> RefuseOverloaded<'a, A> {
        RefuseOverloaded { inner, refused: 0 }
    }
}

impl<A: Admit> Admit for RefuseOverloaded<'_, A> {
    fn ready(&mut self) -> bool {
        true
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        let mut receipt = Receipt::for_record(record, rx_ns);
        receipt.status = Err(Reason::Overloaded);
        self.inner.refused(&receipt);
        self.refused += 1;
        Some(receipt)
    }

    fn refused(&mut self, receipt: &Receipt) {
        self.inner.refused(receipt);
    }
}
