//! Shared helpers: locating model files and starting engines.

use std::path::PathBuf;

use agora_inference::backends::llama_cpp::{self, LlamaConfig};
use agora_inference::{Output, Prompt, Request, SamplingParams, Scheduler, SchedulerConfig};

/// The package's directory as the test runner gives it when the test runs (cargo and nextest set
/// it), not as it was when the binary was built: a warm build cache may hold a binary built in
/// another checkout.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
pub const MINILM: &str = "all-minilm-l6-v2";

/// The model directory: `$AGORA_MODELS_DIR`, else `<workspace>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(manifest_dir()).join("../../models"),
        PathBuf::from,
    )
}

/// Path of a model file; panics with instructions when it is missing.
pub fn model(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.exists(),
        "model file {} is missing: run `bash scripts/fetch-models.sh {}` (or set AGORA_MODELS_DIR)",
        p.display(),
        models_dir().display()
    );
    p
}

pub fn config(n_seq: u32, threads: u32) -> LlamaConfig {
    LlamaConfig {
        n_seq,
        n_ctx_seq: Some(512),
        n_batch: 256,
        threads,
        hidden_states: false,
        gpu_layers: 0,
    }
}

pub fn serve(file: &str, config: LlamaConfig) -> Scheduler {
    llama_cpp::serve(&model(file), file, config, SchedulerConfig::default())
        .unwrap_or_else(|e| panic!("cannot serve {file}: {e}"))
}

pub fn run(s: &Scheduler, prompt: Prompt, params: SamplingParams) -> Output {
    let mut r = Request::generate(prompt, params);
    r.reuse_prefix = false;
    s.generate_blocking(r).expect("generation failed")
}

pub fn text(s: &str) -> Prompt {
    Prompt::Text(s.to_string())
}

pub fn sampled(seed: u64, max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed,
        max_tokens,
        ..SamplingParams::greedy(256)
    }
}
