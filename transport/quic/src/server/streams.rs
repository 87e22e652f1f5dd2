//! A client's unidirectional stream in: its bytes as QUIC delivered them, cut into wire
//! frames by their headers. A stream may carry any number of frames and stay open.

use fpn_wire::{FRAME_HEADER_LEN, Reason, peek_frame_len};
use quinn_proto::{Connection, ReadError, StreamId};

#[derive(Debug)]
pub(super) struct UniIn {
    pub(super) id: StreamId,
    buf: Vec<u8>,
    /// Bytes of `buf` already handled.
    start: usize,
    finished: bool,
}

impl UniIn {
    pub(super) fn new(id: StreamId) -> UniIn {
        UniIn { id, buf: Vec::new(), start: 0, finished: false }
    }

    /// Drops what was handled, then appends everything QUIC has for the stream. A reset
    /// stream ends here, and its unhandled bytes with it.
    pub(super) fn read(&mut self, conn: &mut Connection) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.finished {
            return;
        }
        let mut stream = conn.recv_stream(self.id);
        let Ok(mut chunks) = stream.read(true) else { return };
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    self.finished = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(_)) => {
                    self.finished = true;
                    self.buf.clear();
                    break;
                }
            }
        }
        let _ = chunks.finalize();
    }

    /// The length of the next frame if all of it is here; `Err` when its header cannot be
    /// right (the stream cannot be read past it).
    pub(super) fn next_frame_len(&self, frame_max: usize) -> Result<Option<usize>, Reason> {
        let rest = &self.buf[self.start..];
        if rest.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        match peek_frame_len(rest)? {
            len if len > frame_max => Err(Reason::Oversized),
            len if rest.len() < len => Ok(None),
            len => Ok(Some(len)),
        }
    }

    /// The next `len` bytes (a whole frame, per [`UniIn::next_frame_len`]).
    pub(super) fn frame(&self, len: usize) -> &[u8] {
        &self.buf[self.start..self.start + len]
    }

    pub(super) fn consume(&mut self, len: usize) {
        self.start += len;
    }

    /// The stream ended inside a frame.
    pub(super) fn truncated(&self) -> bool {
        self.finished && self.buf.len() > self.start
    }

    /// The stream ended and every frame of it was handled.
    pub(super) fn done(&self) -> bool {
        self.finished && self.buf.len() == self.start
    }
}
