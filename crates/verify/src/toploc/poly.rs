//! One chunk's proof: the polynomial over GF(65497) through the chunk's top-k points, its
//! injective index modulus, evaluation, and the 2 + 2k byte wire format.

use super::bf16::{MAX_CHUNK_VALUES, top_k_abs};
use super::{K, ProveError};

/// The field prime. Every bf16 pattern at or above it (`0xFFD9..=0xFFFF`) is a negative NaN, so
/// finite values never alias.
pub const PRIME: u16 = 65497;
const P: u64 = PRIME as u64;

/// The longest chunk proof on the wire: the modulus and `K` coefficients.
pub const MAX_CHUNK_BYTES: usize = 2 + 2 * K;

/// A chunk proof: the index modulus `m` and the coefficients `c_0..c_{n-1}` (ascending, each
/// below [`PRIME`]) of the polynomial `P` with `P(idx mod m) = bits (mod 65497)` for every top-k
/// point `(idx, bits)` of the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkProof {
    modulus: u16,
    coeffs: Vec<u16>,
}

/// Bytes that are not a chunk proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkDecodeError {
    #[error("a chunk proof is 2 + 2n bytes with 1 <= n <= {K}; got {len}")]
    Length { len: usize },
    #[error("modulus {modulus} is outside {points}..=65497 for {points} coefficients")]
    Modulus { modulus: u16, points: usize },
    #[error("coefficient {index} is {value}, not below 65497")]
    Coefficient { index: usize, value: u16 },
}

impl ChunkProof {
    /// The proof of a chunk of values: their bf16 top-k ([`top_k_abs`]), interpolated.
    pub fn of_values(values: &[f32]) -> Result<Self, ProveError> {
        if values.is_empty() {
            return Err(ProveError::EmptyChunk);
        }
        if values.len() >= MAX_CHUNK_VALUES {
            return Err(ProveError::ChunkTooLarge { len: values.len() });
        }
        Self::from_points(&top_k_abs(values, K))
    }

    /// The proof through `points` (flat index, bf16 bits); indices must be distinct, at most [`K`]
    /// points. Their order does not matter: the interpolating polynomial is unique.
    pub fn from_points(points: &[(u64, u16)]) -> Result<Self, ProveError> {
        if points.is_empty() {
            return Err(ProveError::EmptyChunk);
        }
        if points.len() > K {
            return Err(ProveError::TooManyPoints {
                points: points.len(),
            });
        }
        let idx: Vec<u64> = points.iter().map(|p| p.0).collect();
        let modulus =
            injective_modulus(&idx).ok_or(ProveError::NoInjectiveModulus { points: idx.len() })?;
        let xs: Vec<u64> = idx.iter().map(|&i| i % u64::from(modulus)).collect();
        let ys: Vec<u64> = points.iter().map(|p| u64::from(p.1) % P).collect();
        Ok(Self {
            modulus,
            coeffs: interpolate(&xs, &ys),
        })
    }

    /// The index modulus `m`.
    pub fn modulus(&self) -> u16 {
        self.modulus
    }

    /// The coefficients, ascending (`c_0` first); one per point.
    pub fn coeffs(&self) -> &[u16] {
        &self.coeffs
    }

    /// `P(index mod m) mod 65497` by Horner's rule with `u64` accumulators: the bf16 bits the
    /// prover committed to at `index` (meaningless where it committed nothing).
    pub fn eval(&self, index: u64) -> u16 {
        let x = index % u64::from(self.modulus.max(1));
        let mut acc = 0u64;
        for &c in self.coeffs.iter().rev() {
            acc = (acc * x + u64::from(c)) % P;
        }
        acc as u16
    }

    /// The wire format: `[m: u16 BE][c_0: u16 BE]..[c_{n-1}: u16 BE]`, 2 + 2n bytes (258 at
    /// n = 128), byte-compatible with upstream TOPLOC's `ProofPoly::to_bytes`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 2 * self.coeffs.len());
        out.extend_from_slice(&self.modulus.to_be_bytes());
        for c in &self.coeffs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out
    }

    /// Decodes untrusted bytes: at most [`MAX_CHUNK_BYTES`], an even length, at least one
    /// coefficient, a modulus in `n..=65497` (an injective modulus is never below the number of
    /// points) and every coefficient below 65497, so what decodes re-encodes to the same bytes.
    /// Upstream's "null proof" (modulus 0) is rejected here.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkDecodeError> {
        let len = bytes.len();
        if !(4..=MAX_CHUNK_BYTES).contains(&len) || !len.is_multiple_of(2) {
            return Err(ChunkDecodeError::Length { len });
        }
        let word = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        let modulus = word(0);
        let points = len / 2 - 1;
        if modulus > PRIME || usize::from(modulus) < points {
            return Err(ChunkDecodeError::Modulus { modulus, points });
        }
        let mut coeffs = Vec::with_capacity(points);
        for index in 0..points {
            let value = word(index + 1);
            if value >= PRIME {
                return Err(ChunkDecodeError::Coefficient { index, value });
            }
            coeffs.push(value);
        }
        Ok(Self { modulus, coeffs })
    }
}

/// The first `m` from 65497 downward for which the indices are distinct modulo `m` (upstream's
/// search; its Python version stops at 2^15 + 1, its C++ one at 1, ours at the number of points,
/// below which no modulus can be injective; they agree whenever one above 2^15 exists, which for
/// 128 points is always in practice). With every index below 65497 this is 65497 at once.
fn injective_modulus(idx: &[u64]) -> Option<u16> {
    let n = idx.len();
    // One bit per residue, cleared after each try through the residues that were set.
    let mut seen = vec![0u64; usize::from(PRIME).div_ceil(64)];
    let mut residues = Vec::with_capacity(n);
    for m in (n.max(1)..=usize::from(PRIME)).rev() {
        let m64 = m as u64;
        residues.clear();
        let mut injective = true;
        for &i in idx {
            let r = (i % m64) as usize;
            let (word, bit) = (r / 64, 1u64 << (r % 64));
            if seen[word] & bit != 0 {
                injective = false;
                break;
            }
            seen[word] |= bit;
            residues.push(r);
        }
        for &r in &residues {
            seen[r / 64] &= !(1u64 << (r % 64));
        }
        if injective {
            return u16::try_from(m).ok();
        }
    }
    None
}

/// `a^(p-2) mod p`, the inverse of a nonzero `a` (Fermat).
fn inverse(a: u64) -> u64 {
    let (mut base, mut exp, mut acc) = (a % P, P - 2, 1u64);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % P;
        }
        base = base * base % P;
        exp >>= 1;
    }
    acc
}

/// Replaces each (nonzero) value by its inverse mod 65497 with one [`inverse`] (Montgomery's
/// trick: invert the product, then peel the prefix products off it).
fn invert_all(values: &mut [u64]) {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = 1u64;
    for &v in values.iter() {
        prefix.push(acc);
        acc = acc * v % P;
    }
    let mut inv = inverse(acc);
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let this = inv * before % P;
        inv = inv * *v % P;
        *v = this;
    }
}

/// The coefficients (ascending) of the polynomial of degree < n through `(xs[i], ys[i])` mod
/// 65497: Newton divided differences in place, then expansion of the Newton form with a running
/// product `(x - x_0)..(x - x_{i-1})`. `xs` must be distinct and below 65497 (residues of an
/// injective modulus are), so no divisor is zero.
fn interpolate(xs: &[u64], ys: &[u64]) -> Vec<u16> {
    let n = xs.len();
    let mut dd: Vec<u64> = ys.iter().map(|y| y % P).collect();
    let mut inv = Vec::with_capacity(n);
    for k in 1..n {
        // All of this round's divisors inverted at once: one exponentiation per round instead
        // of one per point (the proof is computed for every response).
        inv.clear();
        inv.extend((k..n).map(|i| (xs[i] + P - xs[i - k]) % P));
        invert_all(&mut inv);
        for i in (k..n).rev() {
            let num = (dd[i] + P - dd[i - 1]) % P;
            dd[i] = num * inv[i - k] % P;
        }
    }
    let mut coeffs = vec![0u64; n];
    let mut factor = vec![0u64; n];
    factor[0] = 1;
    for i in 0..n {
        for j in 0..=i {
            coeffs[j] = (coeffs[j] + dd[i] * factor[j]) % P;
        }
        if i + 1 < n {
            // factor *= (x - x_i)
            let neg = (P - xs[i] % P) % P;
            for j in (1..=i + 1).rev() {
                factor[j] = (factor[j - 1] + factor[j] * neg) % P;
            }
            factor[0] = factor[0] * neg % P;
        }
    }
    coeffs.into_iter().map(|c| c as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_passes_through_every_point() {
        let pts: Vec<(u64, u16)> = (0..128u64)
            .map(|i| (i * 977 % 200_003, (i * 40_503 % 65_497) as u16))
            .collect();
        let p = ChunkProof::from_points(&pts).unwrap();
        assert_eq!(p.coeffs().len(), 128);
        for &(i, y) in &pts {
            assert_eq!(p.eval(i), y, "index {i}");
        }
    }

    #[test]
    fn inverting_all_at_once_gives_each_inverse() {
        let mut values: Vec<u64> = (1..300u64).map(|i| i * 7919 % P).collect();
        let want: Vec<u64> = values.iter().map(|&v| inverse(v)).collect();
        invert_all(&mut values);
        assert_eq!(values, want);
        for (v, i) in (1..300u64).map(|i| i * 7919 % P).zip(&values) {
            assert_eq!(v * i % P, 1);
        }
    }

    #[test]
    fn modulus_search_skips_colliding_moduli() {
        // 10 and 10 + 65497 collide modulo 65497; 65496 separates them.
        assert_eq!(injective_modulus(&[10, 10 + 65_497, 3]), Some(65_496));
        assert_eq!(injective_modulus(&[1, 2, 3]), Some(PRIME));
        // Indices that collide modulo every m >= 2 (equal) have no injective modulus.
        assert_eq!(injective_modulus(&[5, 5]), None);
        assert_eq!(inverse(2) * 2 % P, 1);
    }

    #[test]
    fn wire_format_round_trips_and_rejects_bad_bytes() {
        let p = ChunkProof::from_points(&[(0, 0x3F80), (70_000, 0xBF80)]).unwrap();
        let b = p.to_bytes();
        assert_eq!(b.len(), 6);
        assert_eq!(u16::from_be_bytes([b[0], b[1]]), p.modulus());
        assert_eq!(ChunkProof::from_bytes(&b).unwrap(), p);
        for len in [0, 1, 2, 3, 5, MAX_CHUNK_BYTES + 2] {
            assert!(matches!(
                ChunkProof::from_bytes(&vec![0u8; len]),
                Err(ChunkDecodeError::Length { .. })
            ));
        }
        // Modulus 0 (upstream's null proof), above the prime, below the point count.
        assert!(ChunkProof::from_bytes(&[0, 0, 0, 1]).is_err());
        assert!(ChunkProof::from_bytes(&[0xFF, 0xDA, 0, 1]).is_err());
        assert!(ChunkProof::from_bytes(&[0, 1, 0, 1, 0, 1]).is_err());
        // A coefficient at the prime.
        assert!(ChunkProof::from_bytes(&[0xFF, 0xD9, 0xFF, 0xD9]).is_err());
        assert!(ChunkProof::from_bytes(&[0xFF, 0xD9, 0xFF, 0xD8]).is_ok());
    }
}
