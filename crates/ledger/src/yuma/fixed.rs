//! `Fixed`: an unsigned Q32.32 number (32 integer bits, 32 fractional bits) in a `u64`.
//!
//! Yuma works on proportions in [0, 1] and needs the same answer on every replica, so it runs on
//! integers: products go through `u128` and are floored, division by zero gives 0 (subtensor's
//! `safe_div`), and nothing wraps: every operation saturates. The resolution, 2^-32, is that of
//! subtensor's `I32F32`.

use std::fmt;

/// An unsigned Q32.32 fixed-point number.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(u64);

const FRAC_BITS: u32 = 32;

impl Fixed {
    pub const ZERO: Fixed = Fixed(0);
    pub const ONE: Fixed = Fixed(1 << FRAC_BITS);
    pub const MAX: Fixed = Fixed(u64::MAX);

    /// The number whose raw Q32.32 bits are `bits`.
    pub const fn from_bits(bits: u64) -> Fixed {
        Fixed(bits)
    }

    /// The raw Q32.32 bits.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// `n` as a fixed-point number (saturating above 2^32 - 1).
    pub const fn from_int(n: u64) -> Fixed {
        if n >= 1 << 32 {
            Fixed::MAX
        } else {
            Fixed(n << FRAC_BITS)
        }
    }

    /// `num / den`, floored; 0 when `den` is 0, saturating when the quotient is 2^32 or more.
    /// Exact for any `u128` operands: large ones are scaled down together before the division.
    pub fn ratio(num: u128, den: u128) -> Fixed {
        if den == 0 {
            return Fixed::ZERO;
        }
        // (num << 32) must fit in u128: drop the same low bits of both (at most a relative
        // error of 2^-95, far below the 2^-32 resolution).
        let shift = (128 - num.leading_zeros()).saturating_sub(96);
        let (num, den) = (num >> shift, den >> shift);
        if den == 0 {
            return Fixed::MAX;
        }
        let q = (num << FRAC_BITS) / den;
        u64::try_from(q).map_or(Fixed::MAX, Fixed)
    }

    /// A share given in parts per million (`500_000` is one half).
    pub fn from_ppm(ppm: u32) -> Fixed {
        Fixed::ratio(u128::from(ppm), 1_000_000)
    }

    pub fn saturating_add(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(other.0))
    }

    /// `self * other`, floored.
    pub fn mul_floor(self, other: Fixed) -> Fixed {
        let p = (u128::from(self.0) * u128::from(other.0)) >> FRAC_BITS;
        u64::try_from(p).map_or(Fixed::MAX, Fixed)
    }

    /// `self / other`, floored; 0 when `other` is 0.
    pub fn div_floor(self, other: Fixed) -> Fixed {
        Fixed::ratio(u128::from(self.0), u128::from(other.0))
    }

    /// The share rounded down to parts per million (for display and explanation).
    pub fn to_ppm(self) -> u64 {
        ((u128::from(self.0) * 1_000_000) >> FRAC_BITS) as u64
    }

    /// Sum of `values`, saturating.
    pub fn sum(values: impl IntoIterator<Item = Fixed>) -> Fixed {
        values.into_iter().fold(Fixed::ZERO, Fixed::saturating_add)
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Nine decimals, truncated: enough to compare with published vectors, and no float in sight.
impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 >> FRAC_BITS;
        let frac = ((u128::from(self.0 & 0xFFFF_FFFF) * 1_000_000_000) >> FRAC_BITS) as u64;
        write!(f, "{int}.{frac:09}")
    }
}

/// e^x for a signed Q32.32 `x` (given as sign and magnitude), clamped to x in [-20, 20] as
/// subtensor's `exp_safe` does; returns Q32.32. Integer only: x = k ln2 + r with r in [0, ln2),
/// e^r from its Taylor series in Q64, then a shift by k.
pub fn exp(negative: bool, magnitude: Fixed) -> Fixed {
    let limit = Fixed::from_int(20);
    let magnitude = magnitude.min(limit);
    // ln 2 in Q64 (0xB17217F7D1CF79AB is floor(ln2 * 2^64)).
    const LN2_Q64: u128 = 0xB172_17F7_D1CF_79AB;
    let x_q64 = u128::from(magnitude.0) << 32;
    let k = x_q64 / LN2_Q64;
    let r = x_q64 - k * LN2_Q64; // r < ln2 < 1, in Q64
    // e^r = sum r^n / n!, in Q64; terms fall below 2^-64 after 20.
    let one_q64: u128 = 1 << 64;
    let mut term = one_q64;
    let mut sum = one_q64;
    for n in 1..=24u128 {
        term = mul_q64(term, r) / n;
        if term == 0 {
            break;
        }
        sum += term;
    }
    let k = k as u32; // at most 20 / ln2 < 29
    if negative {
        // e^-x = 1 / (e^r * 2^k): Q32.32 of 2^64 / sum, shifted right by k.
        let inv = (one_q64 << 31) / (sum >> 1); // 2^96 / sum ~ Q32 of 1/e^r, no overflow
        Fixed((inv >> k) as u64)
    } else {
        let v = (sum >> 32) << k; // Q32.32 of e^r * 2^k
        u64::try_from(v).map_or(Fixed::MAX, Fixed)
    }
}

fn mul_q64(a: u128, b: u128) -> u128 {
    // a, b < 2^65: split b to keep the product inside u128.
    let (bh, bl) = (b >> 32, b & 0xFFFF_FFFF);
    ((a * bh) >> 32) + ((a * bl) >> 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(x: Fixed, expected_nano: u64, tolerance_nano: u64) {
        let got = ((u128::from(x.to_bits()) * 1_000_000_000) >> 32) as u64;
        assert!(
            got.abs_diff(expected_nano) <= tolerance_nano,
            "{x} is not within {tolerance_nano}e-9 of {expected_nano}e-9"
        );
    }

    #[test]
    fn ratio_floors_and_survives_huge_operands() {
        assert_eq!(Fixed::ratio(1, 2), Fixed::from_bits(1 << 31));
        assert_eq!(Fixed::ratio(1, 3).to_bits(), 1_431_655_765);
        assert_eq!(Fixed::ratio(5, 0), Fixed::ZERO);
        assert_eq!(Fixed::ratio(u128::MAX, u128::MAX), Fixed::ONE);
        assert_eq!(
            Fixed::ratio(u128::MAX / 3, u128::MAX).to_bits(),
            1_431_655_765
        );
        assert_eq!(Fixed::ratio(u128::MAX, 1), Fixed::MAX);
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Fixed::MAX.saturating_add(Fixed::ONE), Fixed::MAX);
        assert_eq!(Fixed::ZERO.saturating_sub(Fixed::ONE), Fixed::ZERO);
        assert_eq!(Fixed::MAX.mul_floor(Fixed::MAX), Fixed::MAX);
        assert_eq!(Fixed::ONE.div_floor(Fixed::ZERO), Fixed::ZERO);
        assert_eq!(
            Fixed::from_ppm(250_000).mul_floor(Fixed::from_int(4)),
            Fixed::ONE
        );
        assert_eq!(
            Fixed::ONE
                .div_floor(Fixed::from_int(3))
                .mul_floor(Fixed::from_int(3)),
            Fixed::from_bits((1 << 32) - 1)
        );
    }

    #[test]
    fn exp_matches_known_values() {
        // e^0 = 1, e^1, e^-1, e^5, e^-5, e^20 (the clamp), e^-20.
        approx(exp(false, Fixed::ZERO), 1_000_000_000, 1);
        approx(exp(false, Fixed::ONE), 2_718_281_828, 3);
        approx(exp(true, Fixed::ONE), 367_879_441, 2);
        approx(exp(false, Fixed::from_int(5)), 148_413_159_102, 40);
        approx(exp(true, Fixed::from_int(5)), 6_737_947, 2);
        approx(exp(true, Fixed::from_int(20)), 2, 2);
        let e20 = exp(false, Fixed::from_int(20));
        assert_eq!(e20, exp(false, Fixed::from_int(30)), "clamped at 20");
        assert_eq!(e20.to_bits() >> 32, 485_165_195);
    }

    #[test]
    fn display_prints_nine_decimals() {
        assert_eq!(Fixed::ratio(1, 8).to_string(), "0.125000000");
        assert_eq!(Fixed::from_int(3).to_string(), "3.000000000");
    }
}
