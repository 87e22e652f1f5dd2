//! A workaround for h3 0.0.8, which can leave a WebTransport unidirectional stream unread.
//!
//! h3 resolves a new unidirectional stream's type (and a WebTransport stream's session id) by
//! reading the stream *before* it looks at what it already buffered. When the type, the
//! session id and the stream's first data arrive in one read and nothing follows (a records
//! stream that sent one frame and stays open), h3 waits for more data that never comes, and
//! the frame is never delivered. `docs/webtransport.md` has the evidence.
//!
//! [`Conn`] wraps h3-quinn's connection and hands h3 the first bytes of each unidirectional
//! stream cut at the header's boundaries: the type in one read, the session id in the next,
//! then the rest. Every read h3 makes while parsing the header then finds data. Everything
//! else goes straight to h3-quinn.

use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId};
use h3_datagram::quic_traits::DatagramConnectionExt;

use crate::wt::UNI_STREAM_TYPE;

/// h3-quinn's connection, with [`UniRecv`] for unidirectional streams.
pub struct Conn(pub h3_quinn::Connection);

impl<B: Buf> quic::OpenStreams<B> for Conn {
    type BidiStream = h3_quinn::BidiStream<B>;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_bidi(&mut self.0, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.0, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.0, code, reason)
    }
}

impl<B: Buf> quic::Connection<B> for Conn {
    type RecvStream = UniRecv;
    type OpenStreams = h3_quinn::OpenStreams;

    fn poll_accept_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<UniRecv, ConnectionErrorIncoming>> {
        let inner = ready!(quic::Connection::<B>::poll_accept_recv(&mut self.0, cx))?;
        Poll::Ready(Ok(UniRecv {
            inner,
            pending: Bytes::new(),
            header: Header::Type,
            varint: Vec::with_capacity(8),
        }))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
        quic::Connection::<B>::poll_accept_bidi(&mut self.0, cx)
    }

    fn opener(&self) -> Self::OpenStreams {
        quic::Connection::<B>::opener(&self.0)
    }
}

impl<B: Buf> DatagramConnectionExt<B> for Conn {
    type SendDatagramHandler = h3_quinn::datagram::SendDatagramHandler;
    type RecvDatagramHandler = h3_quinn::datagram::RecvDatagramHandler;

    fn send_datagram_handler(&self) -> Self::SendDatagramHandler {
        DatagramConnectionExt::<B>::send_datagram_handler(&self.0)
    }

    fn recv_datagram_handler(&self) -> Self::RecvDatagramHandler {
        DatagramConnectionExt::<B>::recv_datagram_handler(&self.0)
    }
}

/// Which part of the stream header comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Type,
    SessionId,
    Done,
}

/// A unidirectional stream whose header bytes are handed out one varint per read.
pub struct UniRecv {
    inner: h3_quinn::RecvStream,
    pending: Bytes,
    header: Header,
    /// The header varint being handed out, so far.
    varint: Vec<u8>,
}

impl UniRecv {
    /// How many of the pending bytes the next read hands out.
    fn next_cut(&mut self) -> usize {
        next_cut(&self.pending, &mut self.header, &mut self.varint)
    }
}

impl quic::RecvStream for UniRecv {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if self.pending.is_empty() {
            match ready!(self.inner.poll_data(cx))? {
                Some(mut chunk) => self.pending = chunk.copy_to_bytes(chunk.remaining()),
                None => return Poll::Ready(Ok(None)),
            }
            if self.pending.is_empty() {
                return Poll::Ready(Ok(Some(Bytes::new())));
            }
        }
        let n = self.next_cut();
        Poll::Ready(Ok(Some(self.pending.split_to(n))))
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.inner.stop_sending(error_code)
    }

    fn recv_id(&self) -> StreamId {
        self.inner.recv_id()
    }
}

/// The cut rule of [`UniRecv::next_cut`], on its parts (shared with the tests).
fn next_cut(pending: &Bytes, header: &mut Header, varint: &mut Vec<u8>) -> usize {
    if *header == Header::Done {
        return pending.len();
    }
    let need = if varint.is_empty() { 1usize << (pending[0] >> 6) } else { 1usize << (varint[0] >> 6) };
    let take = (need - varint.len()).min(pending.len());
    varint.extend_from_slice(&pending[..take]);
    if varint.len() == need {
        let (value, _) = crate::wt::get_varint(varint).expect("a whole varint");
        *header = match *header {
            Header::Type if value == UNI_STREAM_TYPE => Header::SessionId,
            _ => Header::Done,
        };
        varint.clear();
    }
    take
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cuts `next_cut` makes of bytes arriving in these chunks.
    fn cuts(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let (mut header, mut varint, mut out) = (Header::Type, Vec::new(), Vec::new());
        for chunk in chunks {
            let mut pending = Bytes::copy_from_slice(chunk);
            while !pending.is_empty() {
                let n = next_cut(&pending, &mut header, &mut varint);
                out.push(pending.split_to(n).to_vec());
            }
        }
        out
    }

    #[test]
    fn a_webtransport_header_and_its_data_are_handed_out_apart() {
        // Type 0x54 (two bytes), session 0, then 5 bytes of data, all in one chunk.
        let chunk = [0x40, 0x54, 0x00, 1, 2, 3, 4, 5];
        assert_eq!(cuts(&[&chunk]), vec![vec![0x40, 0x54], vec![0x00], vec![1, 2, 3, 4, 5]]);
        // The type split over two chunks, a two-byte session id.
        assert_eq!(
            cuts(&[&[0x40], &[0x54, 0x40, 0x44, 9]]),
            vec![vec![0x40], vec![0x54], vec![0x40, 0x44], vec![9]]
        );
        // A control stream (type 0) has no session id.
        assert_eq!(cuts(&[&[0x00, 0x04, 0x00]]), vec![vec![0x00], vec![0x04, 0x00]]);
    }
}
