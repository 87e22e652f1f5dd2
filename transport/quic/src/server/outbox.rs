//! The result stream's outbox: bytes for the session's result stream (receipt frames,
//! window results, proof announcements, watermarks) that QUIC has not taken yet, and the
//! backlog limit that closes a session whose client reads too slowly (`slow_consumer`).

use quinn_proto::{SendStream, WriteError};

/// Once this much of the outbox has gone out while some is still waiting, the sent prefix is
/// dropped so the buffer does not grow with everything ever written.
const COMPACT_AFTER: usize = 1 << 20;

/// What became of a write to the result stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flushed {
    /// Everything went, or what is left is within the backlog limit.
    Ok,
    /// The stream is stopped or gone: nobody reads the answers any more (the outbox is
    /// emptied).
    Unwanted,
    /// More than the backlog limit is waiting: the client is too slow (the outbox is freed).
    TooSlow,
}

/// Result-stream bytes not yet taken by QUIC: `bytes[sent..]` is what is left.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    /// The buffer to append whole frames to.
    pub(super) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub(super) fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
    }

    /// Bytes queued and not yet taken by QUIC.
    pub(super) fn waiting(&self) -> usize {
        self.bytes.len() - self.sent
    }

    /// Forgets what is queued (the session has no result stream to write it to).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
    }

    /// Writes what QUIC takes to `stream`; past `backlog_max` bytes left waiting the session
    /// must close (and the memory is given back at once).
    pub(super) fn write_to(&mut self, mut stream: SendStream<'_>, backlog_max: usize) -> Flushed {
        while self.sent < self.bytes.len() {
            match stream.write(&self.bytes[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(WriteError::Blocked) => break,
                Err(_) => {
                    self.clear();
                    return Flushed::Unwanted;
                }
            }
        }
        if self.sent == self.bytes.len() {
            self.clear();
        } else if self.bytes.len() - self.sent > backlog_max {
            *self = Outbox::default();
            return Flushed::TooSlow;
        } else if self.sent > COMPACT_AFTER {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
        Flushed::Ok
    }
}
