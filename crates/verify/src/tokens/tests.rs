use super::*;

const VOCAB: usize = 300;
const EOG: u32 = 299;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Model-like logits: a spread of values with a few strong candidates per row; EOG weak.
fn logits(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut v = Vec::with_capacity(n * VOCAB);
    for _ in 0..n {
        for t in 0..VOCAB {
            let x = (rng.unit() * 8.0 - 4.0) as f32;
            let strong = rng.next().is_multiple_of(40);
            v.push(if t as u32 == EOG {
                -10.0
            } else if strong {
                x + 6.0
            } else {
                x
            });
        }
    }
    v
}

/// The auditor's view: the same logits with a small disagreement (|noise| <= amp).
fn perturbed(v: &[f32], seed: u64, amp: f64) -> Vec<f32> {
    let mut rng = Rng(seed);
    v.iter()
        .map(|&x| x + ((rng.unit() * 2.0 - 1.0) * amp) as f32)
        .collect()
}

/// What an honest provider generates: our sampler at each position over `rows`.
fn provider(
    params: &SamplingParams,
    prompt: &[u32],
    rows: &[f32],
    n: usize,
    mut mask: Option<&mut dyn TokenMask>,
) -> Vec<u32> {
    let mut s = Sampler::new(params.clone(), prompt);
    let mut out = Vec::new();
    for i in 0..n {
        let row = &rows[i * VOCAB..(i + 1) * VOCAB];
        let pos = (prompt.len() + i) as u64;
        let t = match mask.as_deref_mut() {
            Some(m) => {
                let mut ok = |t: u32| m.allows(t);
                s.sample(row, pos, Some(&mut ok)).unwrap().token
            }
            None => s.sample(row, pos, None).unwrap().token,
        };
        s.accept(t);
        if let Some(m) = mask.as_deref_mut() {
            m.push(t);
        }
        out.push(t);
    }
    out
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        seed,
        ..SamplingParams::default()
    }
}

fn run(
    params: &SamplingParams,
    prompt: &[u32],
    continuation: &[u32],
    generated: &[u32],
    rows: &[f32],
    tolerance: &Tolerance,
) -> TokenReport {
    let claim = Claim {
        params,
        prompt,
        continuation,
        generated,
    };
    check(
        &claim,
        Rows::new(rows, VOCAB).unwrap(),
        &[EOG],
        tolerance,
        None,
    )
    .unwrap()
}

const PROMPT: &[u32] = &[5, 17, 42, 17];

#[test]
fn honest_replay_passes_exactly() {
    let n = 40;
    let rows = logits(1, n);
    let penalised = SamplingParams {
        repetition_penalty: 1.3,
        frequency_penalty: 0.5,
        presence_penalty: 0.3,
        logit_bias: vec![(7, 2.0)],
        ..sampled(3)
    };
    for params in [
        SamplingParams::greedy(256),
        sampled(1),
        penalised,
        SamplingParams {
            min_p: 0.05,
            ..sampled(2)
        },
        SamplingParams {
            seed: 4,
            ..SamplingParams::default()
        },
    ] {
        let toks = provider(&params, PROMPT, &rows, n, None);
        let r = run(&params, PROMPT, &[], &toks, &rows, &Tolerance::default());
        assert!(r.pass, "{params:?}: {r:?}");
        assert_eq!(r.exact, n);
        assert_eq!(r.max_margin, 0.0);
        // Exact replay also passes with no tolerance at all.
        let exact = Tolerance {
            margin: 0.0,
            max_flagged: 0,
            near_margin: 0.0,
            near_per_tokens: 0,
        };
        assert!(run(&params, PROMPT, &[], &toks, &rows, &exact).pass);
    }
}

#[test]
fn honest_replay_with_slightly_different_logits_passes() {
    let n = 64;
    for seed in 0..30u64 {
        let rows = logits(100 + seed, n);
        let auditor = perturbed(&rows, 7 + seed, 0.1);
        for params in [SamplingParams::greedy(256), sampled(seed)] {
            let toks = provider(&params, PROMPT, &rows, n, None);
            let r = run(&params, PROMPT, &[], &toks, &auditor, &Tolerance::default());
            assert!(r.pass, "seed {seed} {params:?}: {r:?}");
            assert!(r.max_margin <= 0.2 + 1e-6, "{}", r.max_margin);
        }
    }
}

/// The tolerance is sound: logits off by less than half of it never flag an honest token,
/// whatever the filters (top-k, min-p, top-p boundaries move with the logits).
#[test]
fn honest_replay_within_half_the_tolerance_is_never_flagged() {
    let n = 48;
    let amp = 0.29; // < 0.6 / 2
    for seed in 0..40u64 {
        let rows = logits(500 + seed, n);
        let auditor = perturbed(&rows, 900 + seed, amp);
        for params in [
            SamplingParams {
                top_p: 0.8,
                ..SamplingParams::default()
            },
            SamplingParams {
                top_k: 3,
                temperature: 1.5,
                ..SamplingParams::default()
            },
            SamplingParams {
                min_p: 0.1,
                temperature: 0.7,
                ..SamplingParams::default()
            },
            SamplingParams {
                top_k: 8,
                min_p: 0.02,
                top_p: 0.5,
                temperature: 0.5,
                ..SamplingParams::default()
            },
            SamplingParams::greedy(256),
        ] {
            let params = SamplingParams { seed, ..params };
            let toks = provider(&params, PROMPT, &rows, n, None);
            let r = run(&params, PROMPT, &[], &toks, &auditor, &Tolerance::default());
            assert!(
                r.pass,
                "seed {seed} {params:?}: {:?}",
                r.tokens.iter().find(|t| t.flag.is_some())
            );
        }
    }
}

#[test]
fn tokens_from_another_seed_or_temperature_are_flagged() {
    let n = 64;
    let rows = logits(2, n);
    let claimed = sampled(11);
    // Every token over the margin counts (no near misses), to see each cheat's flags.
    let tight = Tolerance {
        near_per_tokens: 0,
        ..Tolerance::default()
    };
    // (parameters the tokens were really drawn with, the least number of flags expected)
    for (other, min_flagged) in [
        (sampled(12), 10),
        (
            SamplingParams {
                temperature: 1.6,
                ..sampled(11)
            },
            5,
        ),
        (SamplingParams::greedy(256), 2),
    ] {
        let toks = provider(&other, PROMPT, &rows, n, None);
        let r = run(&claimed, PROMPT, &[], &toks, &rows, &tight);
        assert!(!r.pass, "{other:?}: {} flagged", r.flagged);
        assert!(r.flagged >= min_flagged, "{other:?}: {} flagged", r.flagged);
        assert!(r.max_margin > 0.6, "{other:?}: {}", r.max_margin);
        assert!(r.clipped_mean(3.0) > 0.0);
        // The default's one near miss per 64 tokens does not let any of them through.
        let d = run(&claimed, PROMPT, &[], &toks, &rows, &Tolerance::default());
        assert!(!d.pass, "{other:?}: {d:?}");
        assert!(d.near <= 1);
    }
}

/// Near misses: one token per 64 over the margin but within `near_margin` is decode noise; a
/// second one, or one beyond `near_margin`, fails the response. Greedy, so that each margin is
/// exactly how far the auditor's rows put another token above the claimed one.
#[test]
fn one_near_miss_per_64_tokens_is_accepted_and_no_more() {
    let n = 64;
    let rows = logits(3, n);
    let params = SamplingParams::greedy(256);
    let honest = provider(&params, PROMPT, &rows, n, None);
    // In the auditor's rows, another token `by` above the claimed one at each index of `at`.
    let rival = |at: &[usize], by: f32| {
        let mut a = rows.clone();
        for &i in at {
            let claimed = honest[i] as usize;
            let other = if claimed + 1 == EOG as usize || claimed + 1 >= VOCAB {
                (claimed + 2) % VOCAB
            } else {
                claimed + 1
            };
            a[i * VOCAB + other] = a[i * VOCAB + claimed] + by;
        }
        a
    };
    let t = Tolerance::default();
    let one = run(&params, PROMPT, &[], &honest, &rival(&[10], 1.0), &t);
    assert!(one.pass, "{one:?}");
    assert_eq!((one.flagged, one.near), (1, 1));
    assert!((one.max_margin - 1.0).abs() < 1e-4, "{}", one.max_margin);
    let two = run(&params, PROMPT, &[], &honest, &rival(&[10, 40], 1.0), &t);
    assert!(!two.pass, "two near misses in 64 tokens: {two:?}");
    assert_eq!((two.flagged, two.near), (2, 1));
    let far = run(&params, PROMPT, &[], &honest, &rival(&[10], 2.0), &t);
    assert!(!far.pass, "{far:?}");
    assert_eq!((far.flagged, far.near), (1, 0));
    // One per 32 tokens: two in 64 pass.
    let per_32 = Tolerance {
        near_per_tokens: 32,
        ..Tolerance::default()
    };
    assert!(
        run(
            &params,
            PROMPT,
            &[],
            &honest,
            &rival(&[10, 40], 1.0),
            &per_32
        )
        .pass
    );
    // Off: the first one fails.
    let off = Tolerance {
        near_per_tokens: 0,
        ..Tolerance::default()
    };
    assert!(!run(&params, PROMPT, &[], &honest, &rival(&[10], 1.0), &off).pass);
}

#[test]
fn a_token_outside_top_k_is_flagged() {
    let n = 8;
    let rows = logits(3, n);
    let params = SamplingParams {
        top_k: 3,
        ..sampled(5)
    };
    let mut toks = provider(&params, PROMPT, &rows, n, None);
    // Position 4: the lowest-logit token, far outside the top 3.
    let row = &rows[4 * VOCAB..5 * VOCAB];
    let worst = (0..VOCAB as u32)
        .min_by(|&a, &b| row[a as usize].total_cmp(&row[b as usize]))
        .unwrap();
    toks[4] = worst;
    let r = run(&params, PROMPT, &[], &toks, &rows, &Tolerance::default());
    assert!(!r.pass);
    assert!(matches!(
        r.tokens[4].flag,
        Some(Flag::OutsideFilter { by }) if by > 1.0
    ));
}

#[test]
fn tokens_after_an_end_and_past_max_tokens_fail() {
    let n = 10;
    let rows = logits(4, n);
    let params = SamplingParams::greedy(256);
    let mut toks = provider(&params, PROMPT, &rows, n, None);
    toks[6] = EOG;
    let r = run(&params, PROMPT, &[], &toks, &rows, &Tolerance::default());
    assert!(!r.pass);
    assert_eq!(r.tokens[6].flag, Some(Flag::OverMargin), "EOG was unlikely");
    assert!(r.tokens[7..].iter().all(|t| t.flag == Some(Flag::AfterEnd)));
    assert_eq!(r.invalid, 3);
    // With ignore_eos the end token is an ordinary token.
    let ignore = SamplingParams {
        ignore_eos: true,
        ..params.clone()
    };
    let r = run(&ignore, PROMPT, &[], &toks, &rows, &Tolerance::default());
    assert_eq!(r.invalid, 0);
    // An end token the model did pick closes the run cleanly.
    let mut rows_eog = rows.clone();
    rows_eog[(n - 1) * VOCAB + EOG as usize] = 50.0;
    let mut toks = provider(&params, PROMPT, &rows_eog, n, None);
    assert_eq!(toks[n - 1], EOG);
    assert!(
        run(
            &params,
            PROMPT,
            &[],
            &toks,
            &rows_eog,
            &Tolerance::default()
        )
        .pass
    );
    // max_tokens counts the continuation and the generated tokens.
    let short = SamplingParams::greedy(9);
    let r = run(&short, PROMPT, &[], &toks, &rows_eog, &Tolerance::default());
    assert!(r.over_max_tokens && !r.pass);
    // A continuation that had already ended.
    toks.truncate(3);
    let r = run(
        &params,
        PROMPT,
        &[1, EOG, 2],
        &toks,
        &rows[..3 * VOCAB],
        &Tolerance::default(),
    );
    assert!(r.continuation_after_end && !r.pass);
    assert!(r.tokens.iter().all(|t| t.flag == Some(Flag::AfterEnd)));
}

#[test]
fn near_ties_within_the_tolerance_pass() {
    let mut rows = vec![0.0f32; VOCAB];
    rows[10] = 5.0;
    rows[11] = 4.9;
    rows[12] = 3.0;
    let params = SamplingParams::greedy(256);
    let r = run(&params, PROMPT, &[], &[11], &rows, &Tolerance::default());
    assert!(r.pass, "{r:?}");
    assert_eq!(r.tokens[0].best, Some(10));
    assert!((r.tokens[0].margin - 0.1).abs() < 1e-6);
    let strict = Tolerance {
        margin: 0.05,
        max_flagged: 0,
        near_margin: 0.0,
        near_per_tokens: 0,
    };
    assert!(!run(&params, PROMPT, &[], &[11], &rows, &strict).pass);
    let lenient = Tolerance {
        margin: 0.05,
        max_flagged: 1,
        near_margin: 0.0,
        near_per_tokens: 0,
    };
    assert!(run(&params, PROMPT, &[], &[11], &rows, &lenient).pass);
    assert!(!run(&params, PROMPT, &[], &[12], &rows, &Tolerance::default()).pass);
    // Sampled: a near tie at the top-k boundary. The provider's top 2 are {10, 11}; in the
    // auditor's logits 11 sank a hair below 12, so its top 2 are {10, 12}. A seed where the
    // provider drew 11 and where 12's noise would beat 11's in the auditor's view: 11 must still
    // pass (12 was outside the provider's set, so it is not held against the claim).
    let mut provider_rows = vec![-5.0f32; VOCAB];
    provider_rows[10] = 2.0;
    provider_rows[11] = 1.04;
    provider_rows[12] = 1.0;
    let mut auditor_rows = provider_rows.clone();
    auditor_rows[11] = 1.0;
    auditor_rows[12] = 1.02;
    let pos = PROMPT.len() as u64;
    let seed = (0..10_000u64)
        .find(|&seed| {
            let p = SamplingParams {
                top_k: 2,
                ..sampled(seed)
            };
            let picked = Sampler::new(p.clone(), PROMPT).sample(&provider_rows, pos, None);
            let score = |t: u32| {
                f64::from(auditor_rows[t as usize]) / 0.9 + crate::sampler::gumbel(seed, pos, t)
            };
            picked.unwrap().token == 11 && score(12) > score(11)
        })
        .expect("some seed draws 11");
    let params = SamplingParams {
        top_k: 2,
        ..sampled(seed)
    };
    let r = run(
        &params,
        PROMPT,
        &[],
        &[11],
        &auditor_rows,
        &Tolerance::default(),
    );
    assert!(r.pass, "{r:?}");
    assert!(r.tokens[0].margin < 0.05, "{r:?}");
    let m = Sampler::new(params.clone(), PROMPT)
        .margin(&auditor_rows, pos, 11, 0.6, None)
        .unwrap();
    assert!(m.in_filter && m.best != 11, "{m:?}");
    // With no tolerance the auditor holds the replay to its own set: 11 is outside.
    let r = run(
        &params,
        PROMPT,
        &[],
        &[11],
        &auditor_rows,
        &Tolerance {
            margin: 0.0,
            max_flagged: 0,
            near_margin: 0.0,
            near_per_tokens: 0,
        },
    );
    assert!(matches!(r.tokens[0].flag, Some(Flag::OutsideFilter { .. })));
}

/// A mask allowing even tokens only (and the end token), standing in for a JSON constraint.
struct Even(usize);

impl TokenMask for Even {
    fn allows(&mut self, token: u32) -> bool {
        token.is_multiple_of(2) || token == EOG
    }
    fn push(&mut self, _token: u32) {
        self.0 += 1;
    }
}

#[test]
fn the_mask_is_replayed_and_refused_tokens_flagged() {
    let n = 30;
    let rows = logits(5, n);
    let params = sampled(8);
    let toks = provider(&params, PROMPT, &rows, n, Some(&mut Even(0)));
    assert!(toks.iter().all(|t| t % 2 == 0));
    let claim = Claim {
        params: &params,
        prompt: PROMPT,
        continuation: &[],
        generated: &toks,
    };
    let rows_v = Rows::new(&rows, VOCAB).unwrap();
    let t = Tolerance::default();
    let mut mask = Even(0);
    let r = check(&claim, rows_v, &[EOG], &t, Some(&mut mask)).unwrap();
    assert!(r.pass && r.exact == n, "{r:?}");
    assert_eq!(mask.0, n, "pushed every token");
    // Without the mask the same tokens are mostly not the sampler's choice.
    assert!(!check(&claim, rows_v, &[EOG], &t, None).unwrap().pass);
    let mut odd = toks.clone();
    odd[3] += 1;
    let claim = Claim {
        generated: &odd,
        ..claim
    };
    let r = check(&claim, rows_v, &[EOG], &t, Some(&mut Even(0))).unwrap();
    assert_eq!(r.tokens[3].flag, Some(Flag::NotAllowed));
}

#[test]
fn a_resumed_run_is_checked_from_its_absolute_positions() {
    let n = 24;
    let rows = logits(6, n);
    let params = SamplingParams {
        frequency_penalty: 0.8,
        ..sampled(21)
    };
    let toks = provider(&params, PROMPT, &rows, n, None);
    let (cont, rest) = toks.split_at(9);
    let tail = &rows[9 * VOCAB..];
    let r = run(&params, PROMPT, cont, rest, tail, &Tolerance::default());
    assert!(r.pass && r.exact == rest.len(), "{r:?}");
    assert_eq!(r.tokens[0].position, (PROMPT.len() + 9) as u64);
    // Ignoring the continuation shifts positions and penalties: the replay no longer matches.
    let r = run(&params, PROMPT, &[], rest, tail, &Tolerance::default());
    assert!(!r.pass);
}

#[test]
fn malformed_input_is_an_error_and_bad_ids_are_flagged() {
    let rows = logits(7, 2);
    let params = SamplingParams::greedy(256);
    let claim = Claim {
        params: &params,
        prompt: PROMPT,
        continuation: &[],
        generated: &[1, 2, 3],
    };
    let err = check(
        &claim,
        Rows::new(&rows, VOCAB).unwrap(),
        &[EOG],
        &Tolerance::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(err, TokenCheckError::LogitRows { rows: 2, tokens: 3 });
    let bad = SamplingParams {
        temperature: f32::NAN,
        ..params.clone()
    };
    assert!(matches!(
        check(
            &Claim {
                params: &bad,
                generated: &[1, 2],
                ..claim
            },
            Rows::new(&rows, VOCAB).unwrap(),
            &[EOG],
            &Tolerance::default(),
            None,
        ),
        Err(TokenCheckError::Params(_))
    ));
    let mut nan = rows.clone();
    nan[VOCAB + 2] = f32::NAN;
    let r = run(
        &params,
        PROMPT,
        &[],
        &[1_000_000, 2],
        &nan,
        &Tolerance::default(),
    );
    assert_eq!(r.tokens[0].flag, Some(Flag::OutOfVocab));
    assert_eq!(r.tokens[1].flag, Some(Flag::OutOfVocab));
    assert!(!r.pass);
}
