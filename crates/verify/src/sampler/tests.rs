use super::noise::mix64;
use super::*;

#[test]
fn portable_math_matches_libm_closely() {
    for &x in &[
        1e-300, 1e-10, 0.001, 0.5, 0.999, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300,
    ] {
        let (a, b) = (portable_ln(x), f64::ln(x));
        assert!(
            (a - b).abs() <= 1e-13 * b.abs().max(1.0),
            "ln({x}) {a} vs {b}"
        );
    }
    for &x in &[-700.0, -30.0, -1.0, -1e-9, 0.0, 0.3, 1.0, 5.5, 80.0, 700.0] {
        let (a, b) = (portable_exp(x), f64::exp(x));
        assert!((a - b).abs() <= 1e-13 * b.abs(), "exp({x}) {a} vs {b}");
    }
    assert_eq!(portable_exp(-1000.0), 0.0);
    assert_eq!(portable_exp(1000.0), f64::INFINITY);
}

#[test]
fn uniform_is_in_open_interval_and_roughly_uniform() {
    let mut sum = 0.0;
    for i in 0..10_000u32 {
        let u = uniform(7, 3, i);
        assert!(u > 0.0 && u < 1.0);
        sum += u;
    }
    let mean = sum / 10_000.0;
    assert!((mean - 0.5).abs() < 0.02, "{mean}");
    assert_ne!(prf(1, 2, 3), prf(1, 2, 4));
    assert_ne!(prf(1, 2, 3), prf(2, 2, 3));
    assert_ne!(prf(1, 2, 3), prf(1, 3, 3));
}

fn logits() -> Vec<f32> {
    (0..1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect()
}

#[test]
fn greedy_is_argmax_with_lowest_id_ties() {
    let s = Sampler::new(SamplingParams::greedy(1), &[]);
    let l = vec![1.0, 3.0, 3.0, 2.0];
    assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
    let l = logits();
    let best = (0..l.len())
        .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
        .unwrap();
    assert_eq!(s.sample(&l, 0, None).unwrap().token as usize, best);
}

#[test]
fn fast_path_equals_exhaustive_gumbel_max() {
    let l = logits();
    for seed in 0..50u64 {
        for &temp in &[0.3f32, 1.0, 2.0] {
            let p = SamplingParams {
                temperature: temp,
                seed,
                ..SamplingParams::greedy(256)
            };
            let s = Sampler::new(p, &[]);
            for pos in 0..5u64 {
                let got = s.sample(&l, pos, None).unwrap().token;
                let want = (0..l.len() as u32)
                    .max_by(|&a, &b| {
                        let sa = f64::from(l[a as usize]) / f64::from(temp) + gumbel(seed, pos, a);
                        let sb = f64::from(l[b as usize]) / f64::from(temp) + gumbel(seed, pos, b);
                        sa.total_cmp(&sb).then(b.cmp(&a))
                    })
                    .unwrap();
                assert_eq!(got, want, "seed {seed} temp {temp} pos {pos}");
            }
        }
    }
}

#[test]
fn sampling_follows_the_distribution() {
    // Two tokens with logits ln(3) and 0: token 0 should win about 75% of draws.
    let l = vec![3f32.ln(), 0.0];
    let mut wins = 0;
    for seed in 0..4000u64 {
        let s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                seed,
                ..SamplingParams::greedy(256)
            },
            &[],
        );
        if s.sample(&l, 0, None).unwrap().token == 0 {
            wins += 1;
        }
    }
    let f = f64::from(wins) / 4000.0;
    assert!((f - 0.75).abs() < 0.03, "{f}");
}

/// The candidate set of `filtered` equals a plain reference: sort everything, cut top-k, min-p,
/// then the shortest sorted prefix whose mass (normaliser summed in token-id order) reaches
/// top-p.
#[test]
fn filtered_set_equals_the_full_sort_reference() {
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng = mix64(rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    for case in 0..300 {
        let n = 50 + (next() * 3000.0) as usize;
        // Coarse values so that ties occur.
        let l: Vec<f32> = (0..n)
            .map(|_| ((next() * 40.0).floor() - 20.0) as f32 * 0.5)
            .collect();
        let params = SamplingParams {
            temperature: [0.3, 0.8, 1.0, 2.0][case % 4],
            top_k: [0, 0, 5, 1000][(case / 4) % 4],
            min_p: [0.0, 0.0, 0.05][case % 3],
            top_p: [0.5, 0.9, 0.95, 0.999, 1.0][case % 5],
            ..SamplingParams::greedy(256)
        };
        let s = Sampler::new(params.clone(), &[]);
        let Some(mut got) = s.filtered(&l) else {
            assert!(params.top_k == 0 && params.min_p == 0.0 && params.top_p == 1.0);
            continue;
        };
        let t = f64::from(params.temperature);
        let mut c: Vec<(u32, f64)> = l
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, f64::from(v) / t))
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if params.top_k > 0 {
            c.truncate(params.top_k as usize);
        }
        let zmax = c[0].1;
        if params.min_p > 0.0 {
            let cut = zmax + portable_ln(f64::from(params.min_p));
            c.retain(|x| x.1 >= cut);
        }
        if params.top_p < 1.0 {
            let w = |z: f64| {
                if z < zmax - 60.0 {
                    0.0
                } else {
                    portable_exp(z - zmax)
                }
            };
            let mut by_id = c.clone();
            by_id.sort_by_key(|x| x.0);
            let total: f64 = by_id.iter().map(|x| w(x.1)).sum();
            let mut acc = 0.0;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                acc += w(x.1) / total;
                if acc >= f64::from(params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        got.sort_by_key(|x| x.0);
        c.sort_by_key(|x| x.0);
        assert_eq!(got, c, "case {case}: {params:?}");
    }
}

#[test]
fn filters_restrict_the_choice() {
    let l = logits();
    let mut order: Vec<u32> = (0..l.len() as u32).collect();
    order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
    for seed in 0..100 {
        let s = Sampler::new(
            SamplingParams {
                temperature: 5.0,
                top_k: 3,
                seed,
                ..SamplingParams::greedy(256)
            },
            &[],
        );
        let t = s.sample(&l, 1, None).unwrap().token;
        assert!(order[..3].contains(&t));
        let s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1e-6,
                seed,
                ..SamplingParams::greedy(256)
            },
            &[],
        );
        assert_eq!(s.sample(&l, 1, None).unwrap().token, order[0]);
        let s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                min_p: 0.999,
                seed,
                ..SamplingParams::greedy(256)
            },
            &[],
        );
        assert_eq!(s.sample(&l, 1, None).unwrap().token, order[0]);
    }
}

#[test]
fn bias_and_penalties_change_the_choice() {
    let l = vec![2.0, 1.0, 0.0];
    let s = Sampler::new(
        SamplingParams {
            logit_bias: vec![(2, 5.0)],
            ..SamplingParams::greedy(1)
        },
        &[],
    );
    assert_eq!(s.sample(&l, 0, None).unwrap().token, 2);
    let mut s = Sampler::new(
        SamplingParams {
            presence_penalty: 1.5,
            ..SamplingParams::greedy(1)
        },
        &[],
    );
    s.accept(0);
    assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
    let s = Sampler::new(
        SamplingParams {
            repetition_penalty: 4.0,
            ..SamplingParams::greedy(1)
        },
        &[0],
    );
    assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
}

#[test]
fn constrained_pick_is_gumbel_max_over_the_allowed_set() {
    let l = logits();
    let p = SamplingParams {
        temperature: 1.0,
        seed: 9,
        ..SamplingParams::greedy(256)
    };
    let s = Sampler::new(p, &[]);
    let mut allow_even = |t: u32| t.is_multiple_of(2);
    let got = s.sample(&l, 4, Some(&mut allow_even)).unwrap().token;
    let want = (0..l.len() as u32)
        .filter(|t| t % 2 == 0)
        .max_by(|&a, &b| {
            let sa = f64::from(l[a as usize]) + gumbel(9, 4, a);
            let sb = f64::from(l[b as usize]) + gumbel(9, 4, b);
            sa.total_cmp(&sb)
        })
        .unwrap();
    assert_eq!(got, want);
    let mut none = |_t: u32| false;
    assert!(s.sample(&l, 4, Some(&mut none)).is_none());
}

#[test]
fn logprobs_are_normalised() {
    let l = vec![0.0f32, 1.0, 2.0];
    let (lp, top) = logprobs(&l, 2, 2);
    let total: f64 = l.iter().map(|&v| (f64::from(v) - 2.0).exp()).sum();
    assert!((f64::from(lp) - (-(total.ln()))).abs() < 1e-6);
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].token, 2);
    assert_eq!(top[1].token, 1);
}

#[test]
fn validation_rejects_bad_values() {
    let ok = SamplingParams::greedy(256);
    assert!(validate(&ok, 10).is_ok());
    let bad = [
        SamplingParams {
            temperature: -1.0,
            ..ok.clone()
        },
        SamplingParams {
            temperature: f32::NAN,
            ..ok.clone()
        },
        SamplingParams {
            top_p: 0.0,
            ..ok.clone()
        },
        SamplingParams {
            max_tokens: 0,
            ..ok.clone()
        },
        SamplingParams {
            stop: vec![String::new()],
            ..ok.clone()
        },
        SamplingParams {
            stop: vec!["x".repeat(300)],
            ..ok.clone()
        },
        SamplingParams {
            stop: vec!["a".into(); 17],
            ..ok.clone()
        },
        SamplingParams {
            logit_bias: vec![(10, 1.0)],
            ..ok.clone()
        },
        SamplingParams {
            logit_bias: vec![(1, 1000.0)],
            ..ok.clone()
        },
        SamplingParams {
            logprobs: Some(21),
            ..ok.clone()
        },
        SamplingParams {
            penalty_last_n: 1 << 20,
            ..ok.clone()
        },
    ];
    for b in bad {
        assert!(validate(&b, 10).is_err(), "{b:?}");
    }
}
