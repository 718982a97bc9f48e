//! The sampler's randomness: a keyed PRF of `(seed, position, token)` and Gumbel noise built on
//! it, with `ln`/`exp` from IEEE-754 `+ - * /` only, so every machine draws the same numbers.

/// SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The keyed PRF: 64 uniform bits for `(seed, position, token)`.
#[inline]
pub fn prf(seed: u64, position: u64, token: u32) -> u64 {
    prf_keyed(prf_key(seed, position), token)
}

/// The part of [`prf`] that depends only on `(seed, position)`, computed once per step.
#[inline]
pub(super) fn prf_key(seed: u64, position: u64) -> u64 {
    let a = mix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    mix64(a ^ position.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

#[inline]
fn prf_keyed(key: u64, token: u32) -> u64 {
    mix64(key ^ u64::from(token).wrapping_mul(0x8cb9_2ba7_2f3d_8dd7))
}

/// The uniform in (0, 1) for `(seed, position, token)`: 53 bits, offset by half a step.
#[inline]
pub fn uniform(seed: u64, position: u64, token: u32) -> f64 {
    uniform_keyed(prf_key(seed, position), token)
}

#[inline]
pub(super) fn uniform_keyed(key: u64, token: u32) -> f64 {
    ((prf_keyed(key, token) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

const LN2: f64 = std::f64::consts::LN_2;

/// Natural logarithm from `+ - * /` only; exact to about 1e-15 relative. `x` must be positive and
/// finite.
pub fn portable_ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if (bits >> 52) & 0x7ff == 0 {
        // Subnormal: scale up first.
        return portable_ln(x * (1u64 << 54) as f64) - 54.0 * LN2;
    }
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * LN2
}

/// `1/n!` for n = 0..=15, correctly rounded.
const INV_FACTORIAL: [f64; 16] = [
    1.0,
    1.0,
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
    0.0001984126984126984,
    2.48015873015873e-05,
    2.7557319223985893e-06,
    2.755731922398589e-07,
    2.505210838544172e-08,
    2.08767569878681e-09,
    1.6059043836821613e-10,
    1.1470745597729725e-11,
    7.647163731819816e-13,
];

/// `e^x` from `+ - * /` only. Underflows to 0 below -745, saturates to infinity above 709.
pub fn portable_exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = (x / LN2 + if x >= 0.0 { 0.5 } else { -0.5 }) as i64;
    let r = x - k as f64 * LN2;
    // Taylor series for |r| <= ln2/2 in Horner form: the first omitted term, r^16/16!, is below
    // 1e-20, and there is no division in the loop (this runs once per vocabulary entry for top-p).
    let mut sum = INV_FACTORIAL[15];
    for c in INV_FACTORIAL[..15].iter().rev() {
        sum = sum * r + c;
    }
    // Multiply by 2^k in two steps so subnormal results stay correct.
    let half = k / 2;
    let p1 = f64::from_bits(((half + 1023) as u64) << 52);
    let p2 = f64::from_bits(((k - half + 1023) as u64) << 52);
    sum * p1 * p2
}

/// Gumbel noise for `(seed, position, token)`.
#[inline]
pub fn gumbel(seed: u64, position: u64, token: u32) -> f64 {
    gumbel_keyed(prf_key(seed, position), token)
}

#[inline]
pub(super) fn gumbel_keyed(key: u64, token: u32) -> f64 {
    -portable_ln(-portable_ln(uniform_keyed(key, token)))
}
