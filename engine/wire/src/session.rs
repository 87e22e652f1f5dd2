//! The QUIC session preamble (`docs/transport.md`): a client's [`Hello`] opens its first
//! bidirectional stream (the control stream) and the server answers with a [`Welcome`] on the
//! same stream. Everything after the welcome is wire frames (`docs/wire.md`).
//!
//! Kept here, beside the frames, so the server, the client library and the bench harness
//! share one encoder and one decoder.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Reason;

/// The TLS ALPN protocol id of Flashpoint over QUIC.
pub const ALPN: &[u8] = b"fpn/1";
/// First four bytes of a hello.
pub const HELLO_MAGIC: [u8; 4] = *b"FPNH";
/// First four bytes of a welcome.
pub const WELCOME_MAGIC: [u8; 4] = *b"FPNW";
/// Session version this crate speaks.
pub const SESSION_VERSION: u8 = 1;
/// Hello flag: push every window's block and clearing, not only those of windows the client
/// had records in.
pub const HELLO_SUBSCRIBE_ALL: u8 = 0x01;
/// Hello flag: receipt mode `refusals`. Only refused records (and cancels) get a receipt;
/// accepted intents and bids are confirmed by watermarks (`docs/wire.md`, kind 0x85).
pub const HELLO_RECEIPTS_REFUSALS: u8 = 0x02;
/// Every hello flag this crate knows; any other bit is refused `reserved_nonzero`.
pub const HELLO_FLAGS_KNOWN: u8 = HELLO_SUBSCRIBE_ALL | HELLO_RECEIPTS_REFUSALS;
/// Longest API key.
pub const API_KEY_LEN_MAX: usize = 256;
/// Fixed part of a hello, before the key.
pub const HELLO_FIXED_LEN: usize = 8;
/// A welcome's length.
pub const WELCOME_LEN: usize = 32;
/// QUIC application error codes (CONNECTION_CLOSE, STOP_SENDING, RESET_STREAM) that carry a
/// reason are `APP_ERROR_REASON_BASE + reason code`; 0 is a normal close.
pub const APP_ERROR_REASON_BASE: u64 = 0x100;

/// Why a hello could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed: at least this many in all.
    #[error("incomplete: {0} bytes needed")]
    Incomplete(usize),
    /// Refused with this reason (bad magic, unsupported version, reserved flags, key length).
    #[error("refused: {}", .0.as_str())]
    Refused(Reason),
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HelloWire {
    magic: [u8; 4],
    version: u8,
    flags: u8,
    key_len: U16,
}

/// Client → server, the first bytes of the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    pub flags: u8,
    pub api_key: &'a [u8],
}

impl<'a> Hello<'a> {
    /// Bytes this hello takes on the stream.
    pub fn encoded_len(&self) -> usize {
        HELLO_FIXED_LEN + self.api_key.len()
    }

    /// Appends the hello to `out`. Panics if the key is empty or longer than
    /// [`API_KEY_LEN_MAX`] (a caller bug: keys come from configuration).
    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(
            (1..=API_KEY_LEN_MAX).contains(&self.api_key.len()),
            "API key of {} bytes (1..={API_KEY_LEN_MAX})",
            self.api_key.len()
        );
        let fixed = HelloWire {
            magic: HELLO_MAGIC,
            version: SESSION_VERSION,
            flags: self.flags,
            key_len: U16::new(self.api_key.len() as u16),
        };
        out.extend_from_slice(fixed.as_bytes());
        out.extend_from_slice(self.api_key);
    }

    /// Reads a hello from the start of `buf`; returns it and the bytes it took.
    pub fn decode(buf: &'a [u8]) -> Result<(Hello<'a>, usize), HelloError> {
        // Check what is there as soon as it is there, so garbage is refused early.
        if buf.len() < 4 {
            if !HELLO_MAGIC.starts_with(buf) {
                return Err(HelloError::Refused(Reason::BadMagic));
            }
            return Err(HelloError::Incomplete(HELLO_FIXED_LEN));
        }
        if buf[..4] != HELLO_MAGIC {
            return Err(HelloError::Refused(Reason::BadMagic));
        }
        let Ok((fixed, _)) = HelloWire::ref_from_prefix(buf) else {
            return Err(HelloError::Incomplete(HELLO_FIXED_LEN));
        };
        if fixed.version != SESSION_VERSION {
            return Err(HelloError::Refused(Reason::UnsupportedVersion));
        }
        if fixed.flags & !HELLO_FLAGS_KNOWN != 0 {
            return Err(HelloError::Refused(Reason::ReservedNonzero));
        }
        let key_len = fixed.key_len.get() as usize;
        if key_len == 0 || key_len > API_KEY_LEN_MAX {
            return Err(HelloError::Refused(Reason::BadLength));
        }
        let total = HELLO_FIXED_LEN + key_len;
        if buf.len() < total {
            return Err(HelloError::Incomplete(total));
        }
        Ok((Hello { flags: fixed.flags, api_key: &buf[HELLO_FIXED_LEN..total] }, total))
    }

    pub fn subscribe_all(&self) -> bool {
        self.flags & HELLO_SUBSCRIBE_ALL != 0
    }

    /// The session asks for receipt mode `refusals` (else `all`).
    pub fn receipts_refusals(&self) -> bool {
        self.flags & HELLO_RECEIPTS_REFUSALS != 0
    }
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WelcomeWire {
    magic: [u8; 4],
    version: u8,
    status: u8,
    reserved: [u8; 2],
    client_id: U64,
    rate_per_s: U32,
    burst: U32,
    datagram_frame_max: U16,
    reserved2: [u8; 6],
}

/// Server → client on the control stream, in answer to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// `Ok` when the session is open; else why not (the server then closes the connection
    /// with `APP_ERROR_REASON_BASE + code`).
    pub status: Result<(), Reason>,
    /// The client id every record on this connection must carry (0 when refused).
    pub client_id: u64,
    /// The client's token bucket: records per second (0: unlimited) and burst.
    pub rate_per_s: u32,
    pub burst: u32,
    /// Largest frame the server takes in one datagram on this connection.
    pub datagram_frame_max: u16,
}

impl Welcome {
    pub fn refused(reason: Reason) -> Welcome {
        Welcome { status: Err(reason), client_id: 0, rate_per_s: 0, burst: 0, datagram_frame_max: 0 }
    }

    pub fn encode(&self) -> [u8; WELCOME_LEN] {
        let wire = WelcomeWire {
            magic: WELCOME_MAGIC,
            version: SESSION_VERSION,
            status: match self.status {
                Ok(()) => 0,
                Err(reason) => reason.code(),
            },
            reserved: [0; 2],
            client_id: U64::new(self.client_id),
            rate_per_s: U32::new(self.rate_per_s),
            burst: U32::new(self.burst),
            datagram_frame_max: U16::new(self.datagram_frame_max),
            reserved2: [0; 6],
        };
        let mut out = [0u8; WELCOME_LEN];
        out.copy_from_slice(wire.as_bytes());
        out
    }

    /// Reads a welcome from the first [`WELCOME_LEN`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Welcome, HelloError> {
        let Ok((wire, _)) = WelcomeWire::ref_from_prefix(buf) else {
            return Err(HelloError::Incomplete(WELCOME_LEN));
        };
        if wire.magic != WELCOME_MAGIC {
            return Err(HelloError::Refused(Reason::BadMagic));
        }
        if wire.version != SESSION_VERSION {
            return Err(HelloError::Refused(Reason::UnsupportedVersion));
        }
        let status = match wire.status {
            0 => Ok(()),
            code => Err(Reason::from_code(code).ok_or(HelloError::Refused(Reason::UnknownKind))?),
        };
        Ok(Welcome {
            status,
            client_id: wire.client_id.get(),
            rate_per_s: wire.rate_per_s.get(),
            burst: wire.burst.get(),
            datagram_frame_max: wire.datagram_frame_max.get(),
        })
    }
}

/// The QUIC application error code that carries `reason`.
pub const fn app_error(reason: Reason) -> u64 {
    APP_ERROR_REASON_BASE + reason.code() as u64
}

/// The reason an application error code carries, if it carries one.
pub fn reason_of_app_error(code: u64) -> Option<Reason> {
    code.checked_sub(APP_ERROR_REASON_BASE).and_then(|c| u8::try_from(c).ok()).and_then(Reason::from_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_prefixes() {
        let hello = Hello { flags: HELLO_SUBSCRIBE_ALL, api_key: b"k-123" };
        let mut buf = Vec::new();
        hello.encode(&mut buf);
        assert_eq!(buf.len(), hello.encoded_len());
        assert_eq!(&buf[..8], b"FPNH\x01\x01\x05\x00");
        buf.extend_from_slice(b"trailing frames");
        assert_eq!(Hello::decode(&buf), Ok((hello, 13)));
        for cut in 0..13 {
            assert!(matches!(Hello::decode(&buf[..cut]), Err(HelloError::Incomplete(_))), "cut {cut}");
        }
    }

    #[test]
    fn hello_refusals() {
        let refused = |b: &[u8]| match Hello::decode(b) {
            Err(HelloError::Refused(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(b"GET / HTTP/1.1"), Reason::BadMagic);
        assert_eq!(refused(b"FX"), Reason::BadMagic);
        assert_eq!(refused(b"FPNH\x02\x00\x01\x00k"), Reason::UnsupportedVersion);
        assert_eq!(refused(b"FPNH\x01\x04\x01\x00k"), Reason::ReservedNonzero);
        assert_eq!(refused(b"FPNH\x01\x80\x01\x00k"), Reason::ReservedNonzero);
        let (both, _) = Hello::decode(b"FPNH\x01\x03\x01\x00k").unwrap();
        assert!(both.subscribe_all() && both.receipts_refusals());
        assert_eq!(refused(b"FPNH\x01\x00\x00\x00"), Reason::BadLength);
        assert_eq!(refused(b"FPNH\x01\x00\x01\x01"), Reason::BadLength);
    }

    #[test]
    fn welcome_round_trip() {
        let ok = Welcome {
            status: Ok(()),
            client_id: 7,
            rate_per_s: 100_000,
            burst: 4096,
            datagram_frame_max: 1350,
        };
        assert_eq!(Welcome::decode(&ok.encode()), Ok(ok));
        let refused = Welcome::refused(Reason::Unauthorized);
        let bytes = refused.encode();
        assert_eq!(bytes[5], 16);
        assert_eq!(Welcome::decode(&bytes), Ok(refused));
        assert!(matches!(Welcome::decode(&bytes[..31]), Err(HelloError::Incomplete(32))));
    }

    #[test]
    fn app_error_codes() {
        assert_eq!(app_error(Reason::Unauthorized), 0x110);
        assert_eq!(reason_of_app_error(0x110), Some(Reason::Unauthorized));
        assert_eq!(reason_of_app_error(0), None);
        assert_eq!(reason_of_app_error(0x100 + 200), None);
    }
}
