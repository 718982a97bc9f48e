//! Untrusted bytes: decoding never panics, never accepts garbage as a passing proof, and what
//! decodes re-encodes to the same bytes.

use agora_types::Encode;
use agora_verify::Rows;
use agora_verify::toploc::{ChunkProof, Proof, Thresholds, prove, verify};
use proptest::prelude::*;

fn rows(seed: u32, n: usize, width: usize) -> Vec<f32> {
    (0..n * width)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(0x9E37_79B9).rotate_left(13);
            (h % 2001) as f32 / 100.0 - 10.0 + if i % width == 3 { 40.0 } else { 0.0 }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn chunk_decoding_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(c) = ChunkProof::from_bytes(&bytes) {
            prop_assert_eq!(c.to_bytes(), bytes);
        }
    }

    #[test]
    fn proof_decoding_never_panics_and_round_trips(
        bytes in proptest::collection::vec(any::<u8>(), 0..1200),
        max in 0usize..8,
    ) {
        if let Ok(p) = Proof::decode(&bytes, max) {
            prop_assert!(p.decode.len() <= max);
            prop_assert_eq!(p.encode(), bytes);
        }
    }

    /// Random chunk bytes in a well-formed envelope decode, but never verify.
    #[test]
    fn random_proofs_fail(words in proptest::collection::vec(0u16..65497, 3 * 129)) {
        let w = 32;
        let v = rows(1, 4 + 64, w);
        let chunk = |ws: &[u16]| {
            let mut b = Vec::new();
            b.extend_from_slice(&65497u16.to_be_bytes());
            for c in &ws[1..] {
                b.extend_from_slice(&c.to_be_bytes());
            }
            ChunkProof::from_bytes(&b).unwrap()
        };
        let proof = Proof {
            prefill: chunk(&words[..129]),
            decode: vec![chunk(&words[129..258]), chunk(&words[258..])],
        };
        let verdict = verify(&proof, Rows::new(&v, w).unwrap(), 4, &Thresholds::default()).unwrap();
        prop_assert!(!verdict.pass);
        prop_assert!(verdict.chunks.iter().all(|c| !c.pass && c.exp_mismatches > 64));
    }
}

/// Flipping any bit of an encoded proof is caught, except where the flip does not change what
/// the proof claims beyond the tolerance: a modulus above every index of its chunk (same
/// residues), or a low bit of `c_0` (every committed value moves by the same few bf16 ULPs, which
/// TOPLOC tolerates by design). Every other coefficient moves the polynomial off the points.
#[test]
fn flipping_any_bit_of_an_encoded_proof_is_caught() {
    let w = 16;
    let v = rows(2, 3 + 40, w);
    let proof = prove(Rows::new(&v, w).unwrap(), 3).unwrap();
    let bytes = proof.encode();
    // Byte ranges of each chunk's modulus and c_0 in the encoding.
    let mut lenient = Vec::new();
    let mut at = 1;
    for (i, c) in std::iter::once(&proof.prefill)
        .chain(&proof.decode)
        .enumerate()
    {
        at += 4; // the chunk's length
        lenient.push(at..at + 4);
        at += c.to_bytes().len();
        if i == 0 {
            at += 4; // the decode chunk count
        }
    }
    assert_eq!(at, bytes.len());
    let t = Thresholds::default();
    let mut caught = 0;
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let passes = Proof::decode(&b, 2)
                .is_ok_and(|p| verify(&p, Rows::new(&v, w).unwrap(), 3, &t).unwrap().pass);
            if passes {
                assert!(
                    lenient.iter().any(|r| r.contains(&i)),
                    "byte {i} bit {bit} still verifies"
                );
            } else {
                caught += 1;
            }
        }
    }
    assert!(caught >= 8 * (bytes.len() - 4 * lenient.len()));
}
