//! What a role's loop does when its input rings are empty.
//!
//! Syntax (exact, lower case, no spaces):
//! - `spin`: busy-poll forever. Lowest wake-up latency; burns its CPU at 100 %.
//! - `park:<park_us>`: sleep `park_us` microseconds between polls.
//! - `spin-then-park:<spin_us>:<park_us>`: busy-poll for `spin_us` microseconds after the last
//!   work, then sleep `park_us` microseconds between polls until work arrives.
//!
//! Both numbers are whole microseconds in `1..=1_000_000`.

use std::fmt;
use std::time::Duration;

/// Microsecond bounds for `spin_us` and `park_us`.
pub const IDLE_US_MIN: u64 = 1;
pub const IDLE_US_MAX: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdleStrategy {
    Spin,
    SpinThenPark { spin: Duration, park: Duration },
    Park { park: Duration },
}

impl IdleStrategy {
    /// Parses the syntax above. The error is the problem, for a message that names the key.
    pub fn parse(text: &str) -> Result<IdleStrategy, String> {
        let syntax = "expected \"spin\", \"park:<park_us>\" or \"spin-then-park:<spin_us>:<park_us>\"";
        let micros = |field: &str, s: &str| -> Result<Duration, String> {
            let us: u64 =
                s.parse().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| {
                    format!("{field} {s:?} is not a whole number of microseconds; {syntax}")
                })?;
            if !(IDLE_US_MIN..=IDLE_US_MAX).contains(&us) {
                return Err(format!(
                    "{field} must be in {IDLE_US_MIN}..={IDLE_US_MAX} microseconds, got {us}"
                ));
            }
            Ok(Duration::from_micros(us))
        };
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["spin"] => Ok(IdleStrategy::Spin),
            ["park", park] => Ok(IdleStrategy::Park { park: micros("park_us", park)? }),
            ["spin-then-park", spin, park] => Ok(IdleStrategy::SpinThenPark {
                spin: micros("spin_us", spin)?,
                park: micros("park_us", park)?,
            }),
            _ => Err(syntax.to_string()),
        }
    }

    /// Whether the role keeps its CPU busy while idle.
    pub fn spins_forever(self) -> bool {
        self == IdleStrategy::Spin
    }
}

impl fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleStrategy::Spin => f.write_str("spin"),
            IdleStrategy::Park { park } => write!(f, "park:{}", park.as_micros()),
            IdleStrategy::SpinThenPark { spin, park } => {
                write!(f, "spin-then-park:{}:{}", spin.as_micros(), park.as_micros())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for text in ["spin", "park:1", "park:1000000", "spin-then-park:50:200"] {
            let s = IdleStrategy::parse(text).unwrap();
            assert_eq!(s.to_string(), text);
        }
        assert_eq!(
            IdleStrategy::parse("spin-then-park:50:200").unwrap(),
            IdleStrategy::SpinThenPark { spin: Duration::from_micros(50), park: Duration::from_micros(200) }
        );
        assert!(IdleStrategy::parse("spin").unwrap().spins_forever());
        assert!(!IdleStrategy::parse("park:5").unwrap().spins_forever());
    }

    #[test]
    fn rejects_bad_syntax_and_ranges() {
        let cases = [
            ("", "expected \"spin\""),
            ("Spin", "expected \"spin\""),
            ("spin:5", "expected \"spin\""),
            ("park", "expected \"spin\""),
            ("park:", "park_us \"\" is not a whole number"),
            ("park:0", "park_us must be in 1..=1000000 microseconds, got 0"),
            ("park:1000001", "park_us must be in 1..=1000000"),
            ("park:+5", "park_us \"+5\" is not a whole number"),
            ("park:1.5", "park_us \"1.5\" is not a whole number"),
            ("spin-then-park:10", "expected \"spin\""),
            ("spin-then-park:0:10", "spin_us must be in"),
            ("spin-then-park:10:x", "park_us \"x\" is not"),
            ("spin-then-park:1:2:3", "expected \"spin\""),
        ];
        for (text, want) in cases {
            let err = IdleStrategy::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err:?} does not contain {want:?}");
        }
    }
}
