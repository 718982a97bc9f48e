//! Every byte and statistic of `tests/data/toploc_golden.json`, produced by the independent
//! pure-Python reference `tests/data/toploc_reference.py`, reproduced from the same inputs.

use agora_types::Encode;
use agora_verify::Rows;
use agora_verify::toploc::{Proof, Thresholds, prove, verify};
use serde_json::Value;

/// SplitMix64, as the reference implements it.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The reference's `random_f32_bits`: heavy-tailed finite f32 bit patterns.
    fn f32_bits(&mut self, coarse: bool) -> u32 {
        let r = self.next();
        let sign = (r >> 63) as u32;
        let high = ((r >> 31) & 0xFFFF_FFFF) as u32;
        let zeros = high.trailing_zeros().min(12);
        let mut mantissa = (r & 0x7F_FFFF) as u32;
        if coarse {
            mantissa &= 0x70_0000;
        }
        (sign << 31) | ((120 + zeros) << 23) | mantissa
    }

    /// The reference's `perturb`: up to one bf16 ULP either way.
    fn perturb(&mut self, bits: u32) -> u32 {
        let delta = (self.next() % (1 << 17)) as i64 - (1 << 16);
        let magnitude = i64::from(bits & 0x7FFF_FFFF) + delta;
        (bits & 0x8000_0000) | magnitude as u32
    }
}

fn floats(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/toploc_golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn golden_vectors_match_the_python_reference_byte_for_byte() {
    let g = golden();
    assert_eq!(g["k"], 128);
    assert_eq!(g["decode_chunk"], 32);
    assert_eq!(g["prime"], 65497);
    let t = &g["thresholds"];
    let thresholds = Thresholds {
        exp_mismatches: t["exp_mismatches"].as_u64().unwrap() as u32,
        mant_mean: t["mant_mean"].as_u64().unwrap() as u32,
        mant_median: t["mant_median"].as_u64().unwrap() as u32,
    };
    assert_eq!(thresholds, Thresholds::default());
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let field = |k: &str| c[k].as_u64().unwrap() as usize;
        let (n, width, prompt_len) = (field("rows"), field("width"), field("prompt_len"));
        let seed = c["seed"].as_u64().unwrap();
        let coarse = c["coarse"].as_bool().unwrap();
        let mut rng = SplitMix64(seed);
        let mut bits: Vec<u32> = (0..n * width).map(|_| rng.f32_bits(coarse)).collect();
        for pair in c["inject"].as_array().unwrap() {
            bits[pair[0].as_u64().unwrap() as usize] = pair[1].as_u64().unwrap() as u32;
        }
        let mut noise = SplitMix64(seed ^ 0xA5A5);
        let perturbed: Vec<u32> = bits.iter().map(|&b| noise.perturb(b)).collect();
        let mut other_rng = SplitMix64(seed + 1);
        let other: Vec<u32> = (0..n * width).map(|_| other_rng.f32_bits(coarse)).collect();

        let values = floats(&bits);
        let proof = prove(Rows::new(&values, width).unwrap(), prompt_len).unwrap();
        let chunks: Vec<_> = std::iter::once(&proof.prefill)
            .chain(&proof.decode)
            .collect();
        let want_chunks = c["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), want_chunks.len(), "{name}");
        for (i, (got, want)) in chunks.iter().zip(want_chunks).enumerate() {
            assert_eq!(
                hex(&got.to_bytes()),
                want.as_str().unwrap(),
                "{name}: chunk {i}"
            );
            assert_eq!(
                u64::from(got.modulus()),
                c["moduli"][i].as_u64().unwrap(),
                "{name}: modulus {i}"
            );
        }
        let bytes = proof.encode();
        assert_eq!(hex(&bytes), c["proof"].as_str().unwrap(), "{name}: proof");
        assert_eq!(Proof::decode(&bytes, proof.decode.len()).unwrap(), proof);

        for (label, rows) in [
            ("identical", &bits),
            ("perturbed", &perturbed),
            ("other", &other),
        ] {
            let vals = floats(rows);
            let verdict = verify(
                &proof,
                Rows::new(&vals, width).unwrap(),
                prompt_len,
                &thresholds,
            )
            .unwrap();
            let want = c["verify"][label].as_array().unwrap();
            assert_eq!(verdict.chunks.len(), want.len());
            for (i, (got, w)) in verdict.chunks.iter().zip(want).enumerate() {
                let ctx = format!("{name}: {label} chunk {i}");
                assert_eq!(
                    u64::from(got.points),
                    w["points"].as_u64().unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    u64::from(got.exp_mismatches),
                    w["exp_mismatches"].as_u64().unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    u64::from(got.mant_count),
                    w["mant_count"].as_u64().unwrap(),
                    "{ctx}"
                );
                assert_eq!(got.mant_sum, w["mant_sum"].as_u64().unwrap(), "{ctx}");
                assert_eq!(
                    got.mant_median.map(u64::from),
                    w["mant_median"].as_u64(),
                    "{ctx}"
                );
                assert_eq!(got.pass, w["pass"].as_bool().unwrap(), "{ctx}");
            }
            let all = want.iter().all(|w| w["pass"].as_bool().unwrap());
            assert_eq!(verdict.pass, all, "{name}: {label}");
        }
    }
}

#[test]
fn the_golden_vectors_cover_what_they_claim() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    // Fewer than k values: the short chunk proofs.
    assert_eq!(
        cases[0]["chunks"][0].as_str().unwrap().len(),
        2 * (2 + 2 * 24)
    );
    // The modulus search went below both forced collisions (65497 and 65496).
    assert!(cases[2]["moduli"][0].as_u64().unwrap() < 65496);
    // Honest noise passes everywhere, other rows fail everywhere.
    for c in cases {
        assert!(
            c["verify"]["perturbed"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["pass"] == true)
        );
        assert!(
            c["verify"]["other"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["pass"] == false)
        );
    }
}
