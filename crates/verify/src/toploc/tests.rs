use super::*;

/// SplitMix64, the PRNG the golden vectors use too.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Roughly normal (sum of four uniforms, centred).
    fn normal(&mut self) -> f32 {
        let u: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        ((u - 2.0) * 1.7) as f32
    }
}

/// Hidden-state-like rows: mostly small values, a few large outlier dimensions shared by every
/// row (as real final-norm outputs have), so the top-k mixes outliers and ordinary entries.
fn model_rows(seed: u64, n: usize, width: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    let outliers: Vec<usize> = (0..6)
        .map(|_| (rng.next() % width as u64) as usize)
        .collect();
    let mut v = Vec::with_capacity(n * width);
    for _ in 0..n {
        for d in 0..width {
            let x = rng.normal();
            v.push(if outliers.contains(&d) {
                x * 8.0 + 20.0
            } else {
                x
            });
        }
    }
    v
}

fn rows(v: &[f32], width: usize) -> Rows<'_> {
    Rows::new(v, width).unwrap()
}

#[test]
fn bf16_rounds_to_nearest_even() {
    let b = |bits: u32| bf16_bits(f32::from_bits(bits));
    assert_eq!(bf16_bits(1.0), 0x3F80);
    assert_eq!(bf16_bits(-2.0), 0xC000);
    assert_eq!(bf16_bits(0.0), 0x0000);
    assert_eq!(bf16_bits(-0.0), 0x8000);
    // Exactly halfway: to the even neighbour (down from 0x3F80, up from 0x3F81).
    assert_eq!(b(0x3F80_8000), 0x3F80);
    assert_eq!(b(0x3F81_8000), 0x3F82);
    // Past halfway rounds up, where truncation (`bits >> 16`) would not.
    assert_eq!(b(0x3F80_8001), 0x3F81);
    assert_eq!(b(0x3F80_7FFF), 0x3F80);
    // Rounding carries into the exponent.
    assert_eq!(b(0x3FFF_FFFF), 0x4000);
    // Infinities stay; the largest f32 rounds to infinity, the largest bf16 stays.
    assert_eq!(bf16_bits(f32::INFINITY), 0x7F80);
    assert_eq!(bf16_bits(f32::NEG_INFINITY), 0xFF80);
    assert_eq!(bf16_bits(f32::MAX), 0x7F80);
    assert_eq!(b(0x7F7F_7FFF), 0x7F7F);
    // NaN stays NaN (quiet), sign kept.
    for bits in [0x7FC0_0000u32, 0x7F80_0001, 0xFFFF_FFFF, 0x7F81_0000] {
        let r = b(bits);
        assert!(r & 0x7FFF > 0x7F80, "{bits:#x} -> {r:#x}");
        assert_eq!(r & 0x8000, (bits >> 16) as u16 & 0x8000);
    }
    // Subnormals: the same rule below the normal range.
    assert_eq!(b(0x0000_0001), 0x0000);
    assert_eq!(b(0x0000_8000), 0x0000);
    assert_eq!(b(0x0001_8000), 0x0002);
    assert_eq!(b(0x0000_8001), 0x0001);
    assert_eq!(b(0x807F_FFFF), 0x8080);
}

#[test]
fn top_k_is_by_magnitude_with_lower_index_ties() {
    let v = [1.0, -5.0, 3.0, 5.0, -3.0, 0.5];
    assert_eq!(
        top_k_abs(&v, 3),
        vec![(1, 0xC0A0), (3, 0x40A0), (2, 0x4040)]
    );
    // Fewer values than k: all of them.
    assert_eq!(top_k_abs(&v, 100).len(), 6);
    assert!(top_k_abs(&v, 0).is_empty());
    // Ties after rounding to bf16: 1.0 and 1.001 are both 0x3F80; the lower index wins.
    assert_eq!(top_k_abs(&[1.001, 1.0], 1), vec![(0, 0x3F80)]);
    assert_eq!(top_k_abs(&[1.0, 1.001], 1), vec![(0, 0x3F80)]);
}

#[test]
fn honest_rows_pass_with_zero_error() {
    let (n, w, prompt) = (80, 96, 7);
    let v = model_rows(1, n, w);
    let proof = prove(rows(&v, w), prompt).unwrap();
    assert_eq!(proof.decode.len(), (n - prompt).div_ceil(DECODE_CHUNK));
    let verdict = verify(&proof, rows(&v, w), prompt, &Thresholds::default()).unwrap();
    assert!(verdict.pass, "{verdict:?}");
    for c in &verdict.chunks {
        assert_eq!((c.points, c.exp_mismatches, c.mant_sum), (128, 0, 0));
        assert_eq!(c.mant_median, Some(0));
    }
    let bytes = proof.encode();
    assert_eq!(bytes.len(), 1 + 4 + (1 + proof.decode.len()) * (4 + 258));
    assert_eq!(
        Proof::decode(&bytes, proof.decode.len()).unwrap(),
        proof,
        "round trip"
    );
}

#[test]
fn honest_perturbation_passes() {
    let (n, w, prompt) = (70, 128, 5);
    let v = model_rows(2, n, w);
    let proof = prove(rows(&v, w), prompt).unwrap();
    let scaled: Vec<f32> = v.iter().map(|x| x * 1.01).collect();
    let mut rng = Rng(99);
    let noisy: Vec<f32> = v.iter().map(|x| x * (1.0 + 1e-3 * rng.normal())).collect();
    for other in [scaled, noisy] {
        let verdict = verify(&proof, rows(&other, w), prompt, &Thresholds::default()).unwrap();
        assert!(verdict.pass, "{verdict:?}");
        for c in &verdict.chunks {
            assert!(c.exp_mismatches <= 8, "{c:?}");
            assert!(c.mant_median.unwrap() <= 2, "{c:?}");
            assert!(c.mant_sum <= 2 * u64::from(c.mant_count), "{c:?}");
        }
    }
}

#[test]
fn a_different_model_fails_with_nearly_every_exponent_wrong() {
    let (n, w, prompt) = (70, 128, 5);
    let v = model_rows(3, n, w);
    let proof = prove(rows(&v, w), prompt).unwrap();
    // Independent rows: different top-k sets, so the polynomial is evaluated where the prover
    // committed nothing.
    let mut rng = Rng(4);
    let other: Vec<f32> = (0..n * w).map(|_| rng.normal()).collect();
    let verdict = verify(&proof, rows(&other, w), prompt, &Thresholds::default()).unwrap();
    assert!(!verdict.pass);
    for c in &verdict.chunks {
        assert!(!c.pass);
        assert!(c.exp_mismatches >= 110, "{c:?}");
    }
}

#[test]
fn sign_flips_and_edits_fail() {
    let (n, w, prompt) = (40, 64, 4);
    let v = model_rows(5, n, w);
    let proof = prove(rows(&v, w), prompt).unwrap();
    let t = Thresholds::default();
    // Negated rows: same magnitudes, same top-k, every sign differs.
    let neg: Vec<f32> = v.iter().map(|x| -x).collect();
    let verdict = verify(&proof, rows(&neg, w), prompt, &t).unwrap();
    assert!(!verdict.pass);
    assert!(verdict.chunks.iter().all(|c| c.exp_mismatches == c.points));
    // One coefficient changed: the polynomial no longer passes through the points.
    let mut bytes = proof.prefill.to_bytes();
    let c = (proof.prefill.coeffs()[49] + 1) % PRIME;
    bytes[100..102].copy_from_slice(&c.to_be_bytes());
    let edited = Proof {
        prefill: ChunkProof::from_bytes(&bytes).unwrap(),
        decode: proof.decode.clone(),
    };
    let verdict = verify(&edited, rows(&v, w), prompt, &t).unwrap();
    assert!(!verdict.chunks[0].pass && verdict.chunks[1].pass && !verdict.pass);
    // A chunk dropped, a chunk added, chunks swapped.
    let mut short = proof.clone();
    short.decode.pop();
    let verdict = verify(&short, rows(&v, w), prompt, &t).unwrap();
    assert!(!verdict.pass && verdict.chunks.iter().all(|c| c.pass));
    assert_eq!(
        (verdict.proof_decode_chunks, verdict.expected_decode_chunks),
        (1, 2)
    );
    let mut long = proof.clone();
    long.decode.push(proof.prefill.clone());
    assert!(!verify(&long, rows(&v, w), prompt, &t).unwrap().pass);
    let mut swapped = proof.clone();
    swapped.decode.swap(0, 1);
    assert!(!verify(&swapped, rows(&v, w), prompt, &t).unwrap().pass);
    // The same rows claimed with a different prompt boundary.
    assert!(!verify(&proof, rows(&v, w), prompt + 1, &t).unwrap().pass);
}

#[test]
fn a_replayed_proof_fails_for_other_rows() {
    let (n, w, prompt) = (50, 64, 6);
    let a = model_rows(6, n, w);
    let b = model_rows(7, n, w);
    let proof_a = prove(rows(&a, w), prompt).unwrap();
    let verdict = verify(&proof_a, rows(&b, w), prompt, &Thresholds::default()).unwrap();
    assert!(!verdict.pass);
    // The shared outlier dimensions differ per seed; the decode chunks fail outright.
    assert!(verdict.chunks.iter().all(|c| !c.pass), "{verdict:?}");
}

#[test]
fn short_chunks_use_every_value_and_scale_the_mismatch_limit() {
    // 3 prompt rows x 8 = 24 values, then 2 generated rows = 16 values: fewer than k.
    let w = 8;
    let v = model_rows(8, 5, w);
    let proof = prove(rows(&v, w), 3).unwrap();
    assert_eq!(proof.prefill.coeffs().len(), 24);
    assert_eq!(proof.decode[0].coeffs().len(), 16);
    assert_eq!(proof.prefill.to_bytes().len(), 2 + 48);
    let t = Thresholds::default();
    assert_eq!(t.allowed_exp_mismatches(128), 38);
    assert_eq!(t.allowed_exp_mismatches(24), 7);
    assert_eq!(t.allowed_exp_mismatches(1), 0);
    assert_eq!(t.allowed_exp_mismatches(1000), 38);
    let verdict = verify(&proof, rows(&v, w), 3, &t).unwrap();
    assert!(verdict.pass);
    assert_eq!(verdict.chunks[1].points, 16);
    // A proof with another point count for the same chunk fails even where it evaluates right.
    let other = prove(rows(&v[..4 * w], w), 3).unwrap();
    let mismatched = Proof {
        prefill: proof.prefill.clone(),
        decode: other.decode,
    };
    let verdict = verify(&mismatched, rows(&v, w), 3, &t).unwrap();
    assert_eq!(verdict.chunks[1].proof_points, 8);
    assert!(!verdict.chunks[1].pass);
}

#[test]
fn chunking_follows_the_row_alignment() {
    let w = 4;
    let v = model_rows(9, 10 + 64, w);
    // Exactly 64 generated rows: two full chunks; 65: a third with one row; none after the prompt.
    assert_eq!(prove(rows(&v, w), 10).unwrap().decode.len(), 2);
    assert_eq!(prove(rows(&v, w), 9).unwrap().decode.len(), 3);
    assert_eq!(prove(rows(&v, w), 74).unwrap().decode.len(), 0);
    assert_eq!(prove(rows(&v, w), 0).unwrap_err(), ProveError::EmptyPrompt);
    assert!(matches!(
        prove(rows(&v, w), 75),
        Err(ProveError::PromptPastRows { .. })
    ));
    let proof = prove(rows(&v, w), 9).unwrap();
    assert!(matches!(
        verify(&proof, rows(&v, w), 0, &Thresholds::default()),
        Err(VerifyError::EmptyPrompt)
    ));
    assert_eq!(Proof::max_decode_chunks(0), 0);
    assert_eq!(Proof::max_decode_chunks(1), 0);
    assert_eq!(Proof::max_decode_chunks(33), 1);
    assert_eq!(Proof::max_decode_chunks(34), 2);
}

#[test]
fn proof_decoding_is_bounded() {
    let w = 16;
    let v = model_rows(10, 4 + 70, w);
    let proof = prove(rows(&v, w), 4).unwrap();
    let bytes = proof.encode();
    assert_eq!(Proof::decode(&bytes, 3).unwrap(), proof);
    assert!(matches!(
        Proof::decode(&bytes, 2),
        Err(ProofDecodeError::Codec(DecodeError::TooLong { .. }))
    ));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert!(matches!(
        Proof::decode(&v2, 3),
        Err(ProofDecodeError::Version { version: 2 })
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Proof::decode(&trailing, 3).is_err());
    for cut in 0..bytes.len() {
        assert!(Proof::decode(&bytes[..cut], 3).is_err(), "cut at {cut}");
    }
    assert_ne!(proof.hash(), prove(rows(&v, w), 5).unwrap().hash());
}
