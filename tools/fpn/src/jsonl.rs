//! JSON-lines input for `fpn build` and `fpn clear` (documented in `docs/jsonl.md`).
//!
//! One JSON object a line; blank lines and lines starting with `#` are skipped. A line that
//! is not valid JSON for its record type is an input error naming the line (exit 2). A line
//! that parses but breaks an engine rule (zero profit, repeated key, …) is encoded anyway and
//! refused by the engine with its wire reason code, exactly as it would be over the network.

use serde::Deserialize;

/// A resource key: a number, or a name that is hashed to one (FNV-1a, 64-bit, of the UTF-8
/// bytes) so files can say `"pool:ETH/USDC"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Key {
    Number(u64),
    Name(String),
}

impl Key {
    pub fn value(&self) -> u64 {
        match self {
            Key::Number(n) => *n,
            Key::Name(s) => fnv1a64(s.as_bytes()),
        }
    }
}

/// FNV-1a 64: the documented, stable mapping from key names to key numbers.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentLine {
    pub client_id: u64,
    pub nonce: u64,
    pub profit: u64,
    #[serde(default)]
    pub priority: u32,
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidLine {
    pub client_id: u64,
    pub nonce: u64,
    pub amount: u64,
    #[serde(default)]
    pub priority: u32,
    /// Arrival time in ms (default 0), for the recency window.
    #[serde(default)]
    pub at_ms: u64,
}

/// An input error: which line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses every record line of `text` as `T`, with its 1-based line number.
pub fn parse_lines<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Vec<(usize, T)>, LineError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let value =
            serde_json::from_str(trimmed).map_err(|e| LineError { line: i + 1, message: e.to_string() })?;
        out.push((i + 1, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_names() {
        let text = "# comment\n{\"client_id\":1,\"nonce\":2,\"profit\":3,\"keys\":[5,\"pool:ETH/USDC\"]}\n\n";
        let lines: Vec<(usize, IntentLine)> = parse_lines(text).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0, 2);
        assert_eq!(lines[0].1.keys[0].value(), 5);
        assert_eq!(lines[0].1.keys[1].value(), fnv1a64(b"pool:ETH/USDC"));
    }

    #[test]
    fn fnv_matches_the_published_vectors() {
        // Reference values of FNV-1a 64 (the empty string and "a").
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_lines::<IntentLine>("{\"client_id\":1}\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("missing field"), "{}", err.message);
        let err =
            parse_lines::<BidLine>("{\"client_id\":1,\"nonce\":1,\"amount\":1,\"bogus\":1}").unwrap_err();
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }
}
