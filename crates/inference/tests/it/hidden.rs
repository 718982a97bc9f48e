//! Hidden-state capture: decode-time vectors vs one prefill over prompt + output.

use agora_inference::backends::candle::cosine;
use agora_inference::{GenerateError, Request, SamplingParams};

use crate::common::*;

/// Documented tolerance (docs/design/inference.md): decode-time and prefill-time final-norm
/// vectors of SmolLM2 Q4_1 agree to at least this cosine.
const MIN_COSINE: f32 = 0.99;

#[test]
fn decode_and_prefill_hidden_states_agree_within_tolerance() {
    let mut cfg = config(1, 1);
    cfg.hidden_states = true;
    let s = serve(SMOLLM, cfg);
    let mut r = Request::generate(text("The capital of France is"), SamplingParams::greedy(12));
    r.capture_hidden = true;
    let out = s.generate_blocking(r).unwrap();
    let c = &out.completion;
    let h = c.hidden.as_ref().unwrap();
    let fed = c.prompt.len() + c.tokens.len() - 1;
    assert_eq!(h.len(), fed);
    assert!(h.iter().all(|row| row.len() == s.info().n_embd as usize));
    let all: Vec<u32> = c
        .prompt
        .iter()
        .chain(&c.tokens[..c.tokens.len() - 1])
        .copied()
        .collect();
    let scored = s
        .generate_blocking(Request::score(all.clone(), true))
        .unwrap();
    let hp = scored.completion.hidden.unwrap();
    assert_eq!(hp.len(), all.len());
    let mut min_cos = 1.0f32;
    let mut max_abs = 0.0f32;
    for (a, b) in h.iter().zip(&hp) {
        min_cos = min_cos.min(cosine(a, b));
        for (x, y) in a.iter().zip(b) {
            max_abs = max_abs.max((x - y).abs());
        }
    }
    eprintln!("hidden states: min cosine {min_cos}, max |diff| {max_abs}");
    assert!(
        min_cos >= MIN_COSINE,
        "min cosine {min_cos}, max abs diff {max_abs}"
    );
    // The verifier's log-probabilities of the generated (greedy) tokens are the top ones.
    assert_eq!(scored.completion.score_logprobs.len(), all.len() - 1);
    assert!(scored.completion.score_logprobs.iter().all(|lp| *lp <= 0.0));
}

#[test]
fn capture_needs_an_engine_built_for_it() {
    let s = serve(SMOLLM, config(1, 1));
    let mut r = Request::generate(text("hi"), SamplingParams::greedy(2));
    r.capture_hidden = true;
    let err = s.generate_blocking(r).unwrap_err();
    assert!(matches!(err, GenerateError::Engine(_)), "{err}");
}
