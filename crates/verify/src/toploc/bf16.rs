//! The values a proof commits to: f32 rounded to bf16 (round to nearest, ties to even), and the
//! top-k of a chunk by magnitude with a total, integer-only order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The bf16 bit pattern of `x`, rounded to nearest with ties to even (not truncated: a truncating
/// prover would disagree with a rounding auditor on about half of all values). NaN stays NaN
/// (quiet, sign and high payload bits kept); values past the largest finite bf16 round to
/// infinity; subnormals round like any other value.
pub fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// The magnitude order of bf16 bit patterns: for every non-NaN pattern, `bits & 0x7FFF` orders
/// like the absolute value; NaN patterns rank above infinity (as `torch.topk` ranks NaN).
fn magnitude(bits: u16) -> u16 {
    bits & 0x7FFF
}

/// Flat indices must fit in 48 bits; the selection packs `(magnitude, index)` into one `u64`.
pub(super) const MAX_CHUNK_VALUES: usize = 1 << 48;
const INDEX_MASK: u64 = (1 << 48) - 1;

/// The `k` entries of `values` (after rounding to bf16) with the largest magnitude, as
/// `(flat index, bf16 bits)` in decreasing magnitude; **ties go to the lower flat index**. All of
/// them when there are at most `k`. The order is total and integer-only, so a prover and an
/// auditor on any machine select the same set from the same values. `values.len()` must be below
/// 2^48 (the callers check it).
pub fn top_k_abs(values: &[f32], k: usize) -> Vec<(u64, u16)> {
    debug_assert!(values.len() < MAX_CHUNK_VALUES);
    if k == 0 {
        return Vec::new();
    }
    // Key: magnitude above, the index's complement below, so that a larger key is a larger
    // magnitude or, at equal magnitude, a lower index. Keys are distinct (indices are).
    let key = |i: usize, bits: u16| (u64::from(magnitude(bits)) << 48) | (INDEX_MASK - i as u64);
    let mut heap: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(k.min(values.len()) + 1);
    for (i, &v) in values.iter().enumerate() {
        let kv = key(i, bf16_bits(v));
        if heap.len() < k {
            heap.push(Reverse(kv));
        } else if heap.peek().is_some_and(|m| kv > m.0) {
            heap.pop();
            heap.push(Reverse(kv));
        }
    }
    let mut keys: Vec<u64> = heap.into_iter().map(|r| r.0).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.into_iter()
        .map(|kv| {
            let i = INDEX_MASK - (kv & INDEX_MASK);
            (i, bf16_bits(values[i as usize]))
        })
        .collect()
}
