//! The session preamble (`docs/transport.md`): the hello read off the control stream, the
//! decision on it (API key, connections per client), and the welcome that answers it. The
//! decision and the welcome are public: the WebTransport endpoint (`fpn-webtransport`) runs
//! the same preamble inside its sessions.

use fpn_wire::Reason;
use fpn_wire::session::{API_KEY_LEN_MAX, HELLO_FIXED_LEN, Hello, HelloError, SESSION_VERSION, Welcome};
use quinn_proto::{Connection, StreamId};

use super::limits::{Auth, Clients, Limits};

/// The longest hello: a client cannot make the server buffer more than this.
const HELLO_LEN_MAX: usize = HELLO_FIXED_LEN + API_KEY_LEN_MAX;

/// Who a session is, once its hello was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub client_id: u64,
    pub subscribe_all: bool,
    pub receipts: ReceiptMode,
}

/// How a session's accepted intents and bids are answered (the hello's flag bit 1,
/// `docs/transport.md`, "Receipt modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiptMode {
    /// One receipt per record (the default).
    #[default]
    All,
    /// Receipts for refused records and cancels only; accepted intents and bids are listed
    /// in watermarks (`docs/wire.md`, kind 0x85).
    Refusals,
}

/// Appends what the control stream has to `hello` (up to the longest hello); `true` if the
/// client finished the stream.
pub(super) fn read_hello_bytes(conn: &mut Connection, control: StreamId, hello: &mut Vec<u8>) -> bool {
    let mut stream = conn.recv_stream(control);
    let Ok(mut chunks) = stream.read(true) else { return false };
    let mut finished = false;
    loop {
        match chunks.next(HELLO_LEN_MAX) {
            Ok(Some(chunk)) => {
                hello.extend_from_slice(&chunk.bytes);
                if hello.len() >= HELLO_LEN_MAX {
                    break;
                }
            }
            Ok(None) => {
                finished = true;
                break;
            }
            Err(_) => break,
        }
    }
    let _ = chunks.finalize();
    finished
}

/// The decision on the bytes read so far: `None` while the hello is incomplete and more may
/// come. An accepted hello counts a session of its client. `refusals_supported`: whether the
/// transport runs receipt mode `refusals`; a hello asking for it where it does not is
/// refused `reserved_nonzero`, as an unknown flag is.
pub fn decide(
    hello: &[u8],
    finished: bool,
    auth: &Auth,
    clients: &mut Clients,
    limits: &Limits,
    now_ns: u64,
    refusals_supported: bool,
) -> Option<Result<Bound, Reason>> {
    let hello = match Hello::decode(hello) {
        Ok((hello, _)) => hello,
        Err(HelloError::Incomplete(_)) if !finished => return None,
        Err(HelloError::Incomplete(_)) => return Some(Err(Reason::Truncated)),
        Err(HelloError::Refused(reason)) => return Some(Err(reason)),
    };
    if hello.receipts_refusals() && !refusals_supported {
        return Some(Err(Reason::ReservedNonzero));
    }
    let Some(client_id) = auth.client_of(hello.api_key) else { return Some(Err(Reason::Unauthorized)) };
    let receipts = if hello.receipts_refusals() { ReceiptMode::Refusals } else { ReceiptMode::All };
    Some(clients.open_session(client_id, limits, now_ns).map(|()| Bound {
        client_id,
        subscribe_all: hello.subscribe_all(),
        receipts,
    }))
}

/// The welcome that answers `decided`, telling the client the token bucket of `limits` and
/// `datagram_frame_max` (the transport may take less than `limits.datagram_frame_max` in a
/// datagram).
pub fn welcome_for(decided: Result<Bound, Reason>, limits: &Limits, datagram_frame_max: u16) -> Welcome {
    match decided {
        Ok(bound) => Welcome {
            status: Ok(()),
            client_id: bound.client_id,
            rate_per_s: limits.rate_per_s,
            burst: limits.burst,
            datagram_frame_max,
        },
        Err(reason) => Welcome::refused(reason),
    }
}

/// The welcome that answers `decided`, encoded.
pub(super) fn welcome(decided: Result<Bound, Reason>, limits: &Limits) -> [u8; 32] {
    let bytes = welcome_for(decided, limits, limits.datagram_frame_max).encode();
    debug_assert_eq!(bytes[4], SESSION_VERSION);
    bytes
}
