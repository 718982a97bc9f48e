//! Token amounts in base units: 1 AGR = 10^9 base units, stored as `u128` with checked arithmetic.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use std::fmt;

/// Base units per AGR.
pub const BASE_UNITS_PER_AGR: u128 = 1_000_000_000;

/// A non-negative token amount in base units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Amount(pub u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_agr(agr: u64) -> Amount {
        Amount(agr as u128 * BASE_UNITS_PER_AGR)
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// `floor(self * bps / 10_000)` without intermediate overflow, for `bps <= 10_000`.
    pub fn mul_bps(self, bps: u16) -> Amount {
        let bps = u128::from(bps.min(10_000));
        Amount(self.0 / 10_000 * bps + self.0 % 10_000 * bps / 10_000)
    }

    /// `floor(self * num / den)` for `num <= den`, without intermediate overflow.
    pub fn mul_ratio(self, num: u128, den: u128) -> Amount {
        if den == 0 {
            return Amount::ZERO;
        }
        let num = num.min(den);
        // Split self = q*den + r so that q*num and r*num fit whenever the result fits.
        let q = self.0 / den;
        let r = self.0 % den;
        match r.checked_mul(num) {
            Some(rn) => Amount(q * num + rn / den),
            // r and num are both < 2^128; fall back to long multiplication in 64-bit halves.
            None => Amount(q * num + mul_div_wide(r, num, den)),
        }
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal AGR amount such as `"12"`, `"0.5"` or `"1.000000001"`.
    pub fn parse_agr(s: &str) -> Result<Amount, ParseAmountError> {
        let s = s.trim();
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(ParseAmountError::Malformed);
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseAmountError::Malformed);
        }
        if frac.len() > 9 {
            return Err(ParseAmountError::TooPrecise);
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| ParseAmountError::Overflow)?
        };
        let mut frac_units: u128 = 0;
        for (i, c) in frac.chars().enumerate() {
            frac_units += u128::from(c as u8 - b'0') * 10u128.pow(8 - i as u32);
        }
        int.checked_mul(BASE_UNITS_PER_AGR)
            .and_then(|v| v.checked_add(frac_units))
            .map(Amount)
            .ok_or(ParseAmountError::Overflow)
    }
}

fn mul_div_wide(a: u128, b: u128, den: u128) -> u128 {
    // Schoolbook 256-bit product then long division by bits; only reached for huge values.
    let (hi, lo) = mul_wide(a, b);
    let mut rem: u128 = 0;
    let mut quo: u128 = 0;
    for i in (0..256).rev() {
        let bit = if i >= 128 {
            (hi >> (i - 128)) & 1
        } else {
            (lo >> i) & 1
        };
        let overflow = rem >> 127;
        rem = (rem << 1) | bit;
        if overflow == 1 || rem >= den {
            rem = rem.wrapping_sub(den);
            if i < 128 {
                quo |= 1 << i;
            }
        }
    }
    quo
}

fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let mask = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & mask);
    let (b1, b0) = (b >> 64, b & mask);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
    let lo = (p00 & mask) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAmountError {
    #[error("not a decimal AGR amount (expected e.g. 12 or 0.5)")]
    Malformed,
    #[error("more than 9 decimal places (1 base unit = 0.000000001 AGR)")]
    TooPrecise,
    #[error("amount too large")]
    Overflow,
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / BASE_UNITS_PER_AGR;
        let frac = self.0 % BASE_UNITS_PER_AGR;
        if frac == 0 {
            write!(f, "{int} AGR")
        } else {
            let frac = format!("{frac:09}");
            write!(f, "{int}.{} AGR", frac.trim_end_matches('0'))
        }
    }
}

impl Encode for Amount {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out)
    }
}

impl Decode for Amount {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Amount(r.u128()?))
    }
}

// JSON carries amounts as decimal strings of base units: u128 does not fit a JSON number safely.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Num(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Str(s) => s.parse::<u128>().map(Amount).map_err(|_| {
                serde::de::Error::custom("amount must be a decimal string of base units")
            }),
            Repr::Num(n) => Ok(Amount(u128::from(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display_agr() {
        assert_eq!(Amount::parse_agr("1.5").unwrap(), Amount(1_500_000_000));
        assert_eq!(Amount::parse_agr("0.000000001").unwrap(), Amount(1));
        assert_eq!(Amount::parse_agr("12").unwrap().to_string(), "12 AGR");
        assert_eq!(Amount(1_500_000_000).to_string(), "1.5 AGR");
        assert_eq!(
            Amount::parse_agr("1.0000000001"),
            Err(ParseAmountError::TooPrecise)
        );
        assert_eq!(Amount::parse_agr("-1"), Err(ParseAmountError::Malformed));
        assert_eq!(Amount::parse_agr("."), Err(ParseAmountError::Malformed));
    }

    proptest! {
        #[test]
        fn mul_ratio_matches_wide_arithmetic(a in any::<u128>(), num in any::<u64>(), den in 1u64..) {
            let num = u128::from(num.min(den));
            let den = u128::from(den);
            let got = Amount(a).mul_ratio(num, den).0;
            let expected = mul_div_wide(a, num, den);
            prop_assert_eq!(got, expected);
            prop_assert!(got <= a);
        }

        #[test]
        fn mul_bps_never_exceeds_input(a in any::<u128>(), bps in 0u16..=10_000) {
            let got = Amount(a).mul_bps(bps);
            prop_assert!(got.0 <= a);
            prop_assert_eq!(got, Amount(a).mul_ratio(u128::from(bps), 10_000));
        }
    }
}
