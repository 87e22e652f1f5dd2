//! Amounts and the fee rate. Integers only: no float touches the economics.

use thiserror::Error;

pub use fpn_wire::MAX_AMOUNT;

/// Parts per million in one whole (fee rate 1.0).
pub const PPM_ONE: u32 = 1_000_000;

/// The sequencer's share of the surplus, in parts per million (`0..=1_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct FeeRate(u32);

/// A fee rate that cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeeRateError {
    #[error("fee_rate must be within [0, 1], got {0}")]
    OutOfRange(String),
    #[error("fee_rate {0} is not a decimal number (example: 0.1)")]
    NotDecimal(String),
    #[error("fee_rate {0} has more than 6 decimal places (the engine counts in parts per million)")]
    TooPrecise(String),
}

impl FeeRate {
    pub const ZERO: FeeRate = FeeRate(0);
    pub const ONE: FeeRate = FeeRate(PPM_ONE);

    /// A fee rate from parts per million.
    pub fn from_ppm(ppm: u32) -> Result<FeeRate, FeeRateError> {
        if ppm > PPM_ONE {
            return Err(FeeRateError::OutOfRange(format!("{ppm} ppm")));
        }
        Ok(FeeRate(ppm))
    }

    /// Parses a decimal such as `0.1`, `1`, `0.000005`, exactly (no float round trip).
    pub fn parse_decimal(text: &str) -> Result<FeeRate, FeeRateError> {
        let s = text.trim();
        let not_decimal = || FeeRateError::NotDecimal(text.to_string());
        if let Some(rest) = s.strip_prefix('-') {
            // A well-formed negative number is out of range rather than malformed.
            if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(FeeRateError::OutOfRange(text.to_string()));
            }
            return Err(not_decimal());
        }
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.chars().all(|c| c.is_ascii_digit())
            || !frac_part.chars().all(|c| c.is_ascii_digit())
        {
            return Err(not_decimal());
        }
        let frac_trimmed = frac_part.trim_end_matches('0');
        if frac_trimmed.len() > 6 {
            return Err(FeeRateError::TooPrecise(text.to_string()));
        }
        let int_trimmed = int_part.trim_start_matches('0');
        if int_trimmed.len() > 1 {
            return Err(FeeRateError::OutOfRange(text.to_string()));
        }
        let whole: u64 =
            if int_trimmed.is_empty() { 0 } else { int_trimmed.parse().map_err(|_| not_decimal())? };
        let mut frac: u64 = 0;
        for (i, c) in frac_trimmed.chars().enumerate() {
            frac += u64::from(c as u8 - b'0') * 10u64.pow(5 - i as u32);
        }
        let ppm = whole * u64::from(PPM_ONE) + frac;
        if ppm > u64::from(PPM_ONE) {
            return Err(FeeRateError::OutOfRange(text.to_string()));
        }
        Ok(FeeRate(ppm as u32))
    }

    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// `floor(rate × amount)`, exact.
    pub fn apply_floor(self, amount: u64) -> u64 {
        ((u128::from(amount) * u128::from(self.0)) / u128::from(PPM_ONE)) as u64
    }
}

impl std::fmt::Display for FeeRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.0 / PPM_ONE;
        let frac = self.0 % PPM_ONE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:06}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(FeeRate::parse_decimal("0.1").unwrap().ppm(), 100_000);
        assert_eq!(FeeRate::parse_decimal("1").unwrap().ppm(), 1_000_000);
        assert_eq!(FeeRate::parse_decimal("1.000").unwrap().ppm(), 1_000_000);
        assert_eq!(FeeRate::parse_decimal("0").unwrap().ppm(), 0);
        assert_eq!(FeeRate::parse_decimal(".5").unwrap().ppm(), 500_000);
        assert_eq!(FeeRate::parse_decimal("0.000001").unwrap().ppm(), 1);
        assert_eq!(FeeRate::parse_decimal("0.25").unwrap().to_string(), "0.25");
    }

    #[test]
    fn rejects_out_of_range_and_garbage() {
        assert!(matches!(FeeRate::parse_decimal("1.5"), Err(FeeRateError::OutOfRange(_))));
        assert!(matches!(FeeRate::parse_decimal("-0.1"), Err(FeeRateError::OutOfRange(_))));
        assert!(matches!(FeeRate::parse_decimal("12"), Err(FeeRateError::OutOfRange(_))));
        assert!(matches!(FeeRate::parse_decimal("abc"), Err(FeeRateError::NotDecimal(_))));
        assert!(matches!(FeeRate::parse_decimal(""), Err(FeeRateError::NotDecimal(_))));
        assert!(matches!(FeeRate::parse_decimal("0.0000001"), Err(FeeRateError::TooPrecise(_))));
        assert!(FeeRate::from_ppm(1_000_001).is_err());
    }

    #[test]
    fn apply_floor_rounds_down() {
        let r = FeeRate::parse_decimal("0.3").unwrap();
        assert_eq!(r.apply_floor(10), 3);
        assert_eq!(r.apply_floor(7), 2);
        assert_eq!(FeeRate::ONE.apply_floor(MAX_AMOUNT), MAX_AMOUNT);
    }
}
