//! Checking one chunk proof against the auditor's own values of that chunk: integer statistics
//! and the acceptance thresholds.

use super::K;
use super::bf16::top_k_abs;
use super::poly::ChunkProof;

/// Acceptance thresholds for one chunk, stated **per 128 compared values**. The defaults are the
/// TOPLOC paper's bf16 limits (also its experiment code's): at most 38 sign/exponent mismatches,
/// mantissa error mean at most 10 and upper median at most 8 bf16 ULPs. Calibrate them down from
/// honest runs (`docs/design/verification.md`).
///
/// A chunk with `n < 128` values compares all of them; the mismatch limit then scales to
/// `floor(exp_mismatches * n / 128)` (the same fraction, rounded strict), while the mean and
/// median limits, being per-value averages, stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub exp_mismatches: u32,
    pub mant_mean: u32,
    pub mant_median: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            exp_mismatches: 38,
            mant_mean: 10,
            mant_median: 8,
        }
    }
}

impl Thresholds {
    /// The sign/exponent mismatches allowed among `points` compared values.
    pub fn allowed_exp_mismatches(&self, points: u32) -> u32 {
        let scaled = u64::from(self.exp_mismatches) * u64::from(points.min(K as u32)) / K as u64;
        u32::try_from(scaled).unwrap_or(u32::MAX)
    }
}

/// The statistics of one chunk: what the auditor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkVerdict {
    /// Values compared: the auditor's top-k of the chunk (`min(128, chunk length)`).
    pub points: u32,
    /// Points the proof commits to (its coefficient count); must equal `points`.
    pub proof_points: u32,
    /// Compared values whose bf16 sign or exponent (bits 7..=15) differ. Upstream TOPLOC ignores
    /// the sign; we count a flip as a mismatch, since honest noise never flips the sign of a
    /// top-magnitude value.
    pub exp_mismatches: u32,
    /// Values whose sign and exponent match; the mantissa statistics are over these.
    pub mant_count: u32,
    /// Sum of `|mantissa difference|` in bf16 ULPs (each 0..=127) over the matching values.
    pub mant_sum: u64,
    /// The upper median (`sorted[n / 2]`, as upstream's C++) of the mantissa differences; `None`
    /// when no value matched.
    pub mant_median: Option<u8>,
    pub pass: bool,
}

impl ChunkVerdict {
    /// The mean mantissa difference in thousandths of a ULP (rounded down), for reports; `None`
    /// when no value matched. The pass decision compares `mant_sum <= mean * mant_count` instead.
    pub fn mant_mean_milli(&self) -> Option<u64> {
        (self.mant_count > 0).then(|| self.mant_sum * 1000 / u64::from(self.mant_count))
    }
}

/// Compares `proof` with the auditor's `values` of the same chunk. The auditor takes **its own**
/// top-k; at each of those indices the proof's polynomial gives the prover's bf16 bits, which
/// are compared field by field. An index the prover did not select gives a pseudo-random value,
/// so a different top-k set shows up as exponent mismatches. Empty `values` compare nothing and
/// fail.
pub fn check_chunk(proof: &ChunkProof, values: &[f32], thresholds: &Thresholds) -> ChunkVerdict {
    let top = top_k_abs(values, K);
    let points = top.len() as u32;
    let mut exp_mismatches = 0u32;
    let mut diffs: Vec<u8> = Vec::with_capacity(top.len());
    for &(index, ours) in &top {
        let theirs = proof.eval(index);
        if theirs >> 7 != ours >> 7 {
            exp_mismatches += 1;
        } else {
            diffs.push(((theirs & 0x7F) as u8).abs_diff((ours & 0x7F) as u8));
        }
    }
    let mant_count = diffs.len() as u32;
    let mant_sum: u64 = diffs.iter().map(|&d| u64::from(d)).sum();
    diffs.sort_unstable();
    let mant_median = diffs.get(diffs.len() / 2).copied();
    let proof_points = proof.coeffs().len() as u32;
    let pass = points > 0
        && proof_points == points
        && exp_mismatches <= thresholds.allowed_exp_mismatches(points)
        && mant_count > 0
        && mant_sum <= u64::from(thresholds.mant_mean) * u64::from(mant_count)
        && mant_median.is_some_and(|m| u32::from(m) <= thresholds.mant_median);
    ChunkVerdict {
        points,
        proof_points,
        exp_mismatches,
        mant_count,
        mant_sum,
        mant_median,
        pass,
    }
}
