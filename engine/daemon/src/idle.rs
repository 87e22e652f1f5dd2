//! What a role's loop does when its input rings are empty: the runtime's
//! [`fpn_runtime::idle::IdleStrategy`], re-exported so the configuration and the run loops
//! share one type and one syntax (`docs/runtime.md`, "Idle strategies"):
//!
//! - `spin`: busy-poll forever. Lowest wake-up latency; burns its CPU at 100 %.
//! - `park:<park>`: sleep `<park>` between polls.
//! - `spin-then-park:<budget>:<park>`: busy-poll for `<budget>` (an iteration count such as
//!   `20000`, or a duration such as `50us`) after the last work, then sleep `<park>` between
//!   polls until work arrives.
//!
//! Durations are an integer with a unit `ns`, `us`, `ms` or `s`; a park is `1ns..=1s`.

pub use fpn_runtime::idle::{IdleParseError, IdleStrategy, SpinBudget};

/// Whether a role with this strategy keeps its CPU busy while idle.
pub fn spins_forever(strategy: IdleStrategy) -> bool {
    strategy == IdleStrategy::Spin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for text in ["spin", "park:1us", "park:1s", "spin-then-park:50us:200us", "spin-then-park:20000:1ms"] {
            let s: IdleStrategy = text.parse().unwrap();
            assert_eq!(s.to_string(), text);
        }
        assert!(spins_forever("spin".parse().unwrap()));
        assert!(!spins_forever("park:5us".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_syntax_and_ranges() {
        for text in
            ["", "Spin", "spin:5", "park", "park:", "park:0us", "park:2s", "park:5", "spin-then-park:0:1ms"]
        {
            assert!(text.parse::<IdleStrategy>().is_err(), "{text:?} parsed");
        }
    }
}
