//! The few WebTransport-over-HTTP/3 constants both sides of this crate need
//! (draft-ietf-webtrans-http3, the version Chromium speaks as `draft02`), and QUIC varints.

/// The TLS ALPN of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";
/// The default path of the extended CONNECT that opens an `fpn/1` session.
pub const DEFAULT_PATH: &str = "/fpn/1";
/// Signal value that starts a WebTransport unidirectional stream (then the session id).
pub const UNI_STREAM_TYPE: u64 = 0x54;
/// Signal value that starts a WebTransport bidirectional stream (then the session id).
pub const BIDI_SIGNAL: u64 = 0x41;
/// The first HTTP/3 error code of the range WebTransport application codes map into.
const STREAM_ERROR_FIRST: u64 = 0x52e4_a40f_a8db;

/// The HTTP/3 (QUIC) error code that carries WebTransport application error `code` on a
/// stream (RESET_STREAM, STOP_SENDING). The range skips HTTP/3's reserved `0x1f * N + 0x21`
/// codes, one in every 0x1f. A browser reports `code` back as `streamErrorCode`.
pub const fn stream_error_code(code: u32) -> u64 {
    let code = code as u64;
    STREAM_ERROR_FIRST + code + code / 0x1e
}

/// The WebTransport application code a stream error carries, if it is in the range.
pub fn app_code_of_stream_error(h3_code: u64) -> Option<u32> {
    let shifted = h3_code.checked_sub(STREAM_ERROR_FIRST)?;
    if shifted % 0x1f == 0x1e {
        return None; // a reserved code
    }
    u32::try_from(shifted - shifted / 0x1f).ok()
}

/// Appends `v` as a QUIC variable-length integer (RFC 9000 §16). Panics above 2^62 - 1.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        0x4000_0000..=0x3fff_ffff_ffff_ffff => {
            out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes())
        }
        _ => panic!("varint out of range: {v}"),
    }
}

/// Reads a QUIC varint from the start of `buf`: the value and the bytes it took, or `None`
/// when `buf` ends first.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = v << 8 | u64::from(*b);
    }
    Some((v, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_codes_skip_reserved_values_and_invert() {
        assert_eq!(stream_error_code(0), 0x52e4_a40f_a8db);
        // 0x1e maps past the reserved code in between.
        assert_eq!(stream_error_code(0x1e), 0x52e4_a40f_a8db + 0x1f);
        for code in [0u32, 1, 0x1d, 0x1e, 0x1f, 0x110, 0x118, 1 << 20, u32::MAX] {
            let h3 = stream_error_code(code);
            assert!(!(h3 - 0x21).is_multiple_of(0x1f), "{code} lands on a reserved code");
            assert_eq!(app_code_of_stream_error(h3), Some(code));
        }
        assert_eq!(app_code_of_stream_error(0x100), None);
    }

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0u64, 0x3f, 0x40, 0x3fff, 0x4000, 0x3fff_ffff, 0x4000_0000, (1 << 62) - 1] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(get_varint(&out), Some((v, out.len())));
            assert_eq!(get_varint(&out[..out.len() - 1]), None);
        }
        // RFC 9000 §A.1's examples.
        assert_eq!(get_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(get_varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
    }
}
