//! `agora bench proofs`: what proofs of inference cost, measured beside the same work without
//! them, in one run, alternating so load drifts hit every variant:
//!
//! * the provider: one response generated on a context without hidden states (the baseline),
//!   then on a context with them, keeping the sampled positions' rows and building the TOPLOC
//!   proof (`agora_verify::toploc::prove`, timed with the generation);
//! * the auditor: one prefill over prompt ++ output with every row kept (`Task::Score`) plus
//!   `toploc::verify`, as a fraction of generating the response.

use std::path::PathBuf;
use std::time::Instant;

use agora_types::Encode;
use agora_verify::toploc::{self, Proof, Thresholds};
use agora_verify::{Rows, flatten};

use crate::backends::llama_cpp;
use crate::bench::BenchError;
use crate::{Prompt, Request, SamplingParams, Scheduler, SchedulerConfig, TokenId};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProofBenchConfig {
    pub model: PathBuf,
    pub name: String,
    pub threads: u32,
    pub gen_tokens: u32,
    pub reps: usize,
}

/// Medians over the repetitions, in seconds unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProofBenchReport {
    /// One response on a context without hidden states.
    pub plain_secs: f64,
    /// One response on a context with hidden states, rows kept, proof built.
    pub proved_secs: f64,
    /// Building the proof alone.
    pub prove_secs: f64,
    /// `proved_secs / plain_secs - 1`.
    pub overhead: f64,
    pub proof_bytes: usize,
    /// The auditor's prefill with every row kept.
    pub audit_prefill_secs: f64,
    /// `toploc::verify`.
    pub audit_check_secs: f64,
    /// `(audit_prefill_secs + audit_check_secs) / plain_secs`.
    pub audit_fraction: f64,
    /// Whether every audit of the honest responses passed.
    pub audits_passed: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn params(n: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        seed: 7,
        ignore_eos: true,
        ..SamplingParams::greedy(n)
    }
}

const PROMPT: &str = "Write a long story about a lighthouse keeper and the ships she saw.";

/// One timed response.
struct Response {
    secs: f64,
    prompt: Vec<TokenId>,
    tokens: Vec<TokenId>,
    /// The sampled positions' rows, when asked.
    rows: Option<Vec<Vec<f32>>>,
}

fn respond(sched: &Scheduler, n: u32, rows: bool) -> Result<Response, BenchError> {
    let mut req = Request::generate(Prompt::Text(PROMPT.into()), params(n));
    req.reuse_prefix = false;
    req.capture_sampled = rows;
    let t0 = Instant::now();
    let out = sched.generate_blocking(req)?;
    let secs = t0.elapsed().as_secs_f64();
    let c = out.completion;
    Ok(Response {
        secs,
        prompt: c.prompt,
        tokens: c.tokens,
        rows: c.hidden,
    })
}

fn prove(rows: &[Vec<f32>]) -> Result<Proof, BenchError> {
    let (flat, width) = flatten(rows).map_err(|e| BenchError::Other(e.to_string()))?;
    let rows = Rows::new(&flat, width).map_err(|e| BenchError::Other(e.to_string()))?;
    toploc::prove(rows, 1).map_err(|e| BenchError::Other(e.to_string()))
}

/// Runs the measurement, printing a line per repetition and the summary.
pub fn run(
    cfg: &ProofBenchConfig,
    say: &mut dyn FnMut(String),
) -> Result<ProofBenchReport, BenchError> {
    let n_ctx = Some(cfg.gen_tokens + 256);
    let base = llama_cpp::LlamaConfig {
        n_seq: 1,
        n_ctx_seq: n_ctx,
        threads: cfg.threads,
        ..llama_cpp::LlamaConfig::default()
    };
    let plain = llama_cpp::serve(
        &cfg.model,
        &cfg.name,
        base.clone(),
        SchedulerConfig::default(),
    )?;
    let proving = llama_cpp::serve(
        &cfg.model,
        &cfg.name,
        llama_cpp::LlamaConfig {
            hidden_states: true,
            ..base
        },
        SchedulerConfig::default(),
    )?;
    let n = cfg.gen_tokens;
    let (mut t_plain, mut t_proved, mut t_prove, mut t_prefill, mut t_check) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut proof_bytes = 0;
    let mut all_passed = true;
    // One warm-up of each, not counted.
    respond(&plain, n, false)?;
    respond(&proving, n, true)?;
    for rep in 0..cfg.reps.max(1) {
        let base = respond(&plain, n, false)?;
        let (a, plain_tokens) = (base.secs, base.tokens);
        let proved = respond(&proving, n, true)?;
        let (b, prompt, toks) = (proved.secs, proved.prompt, proved.tokens);
        let rows = proved
            .rows
            .ok_or_else(|| BenchError::Other("no rows captured".into()))?;
        let t0 = Instant::now();
        let proof = prove(&rows[..toks.len()])?;
        let p = t0.elapsed().as_secs_f64();
        proof_bytes = proof.encode().len();
        // The auditor: one prefill over prompt ++ output but the last token, every row kept.
        let mut fed = prompt.clone();
        fed.extend_from_slice(&toks[..toks.len().saturating_sub(1)]);
        let t0 = Instant::now();
        let scored = proving.generate_blocking(Request::score(fed, true))?;
        let prefill = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let audit_rows = scored
            .completion
            .hidden
            .ok_or_else(|| BenchError::Other("no rows scored".into()))?;
        let sampled = &audit_rows[prompt.len() - 1..];
        let (flat, width) = flatten(sampled).map_err(|e| BenchError::Other(e.to_string()))?;
        let verdict = toploc::verify(
            &proof,
            Rows::new(&flat, width).map_err(|e| BenchError::Other(e.to_string()))?,
            1,
            &Thresholds::default(),
        )
        .map_err(|e| BenchError::Other(e.to_string()))?;
        let check = t0.elapsed().as_secs_f64();
        all_passed &= verdict.pass;
        say(format!(
            "rep {rep}: plain {:.1} ms ({} tokens) | with proof {:.1} ms (prove {:.3} ms, {} tokens) | audit prefill {:.1} ms + checks {:.3} ms, {}",
            a * 1e3,
            plain_tokens.len(),
            b * 1e3 + p * 1e3,
            p * 1e3,
            toks.len(),
            prefill * 1e3,
            check * 1e3,
            if verdict.pass { "pass" } else { "FAIL" },
        ));
        t_plain.push(a);
        t_proved.push(b + p);
        t_prove.push(p);
        t_prefill.push(prefill);
        t_check.push(check);
    }
    let plain_secs = median(&mut t_plain);
    let proved_secs = median(&mut t_proved);
    let audit_prefill_secs = median(&mut t_prefill);
    let audit_check_secs = median(&mut t_check);
    let report = ProofBenchReport {
        plain_secs,
        proved_secs,
        prove_secs: median(&mut t_prove),
        overhead: proved_secs / plain_secs - 1.0,
        proof_bytes,
        audit_prefill_secs,
        audit_check_secs,
        audit_fraction: (audit_prefill_secs + audit_check_secs) / plain_secs,
        audits_passed: all_passed,
    };
    say(format!(
        "{n} tokens: without proofs {:.1} ms, with proofs {:.1} ms: overhead {:+.2}% (proof building {:.3} ms); proof {} bytes ({:.2} per token)",
        report.plain_secs * 1e3,
        report.proved_secs * 1e3,
        report.overhead * 100.0,
        report.prove_secs * 1e3,
        report.proof_bytes,
        report.proof_bytes as f64 / f64::from(n),
    ));
    say(format!(
        "one audit: prefill {:.1} ms + checks {:.3} ms = {:.3} of generating the response; honest audits {}",
        report.audit_prefill_secs * 1e3,
        report.audit_check_secs * 1e3,
        report.audit_fraction,
        if report.audits_passed {
            "all passed"
        } else {
            "NOT all passed"
        },
    ));
    Ok(report)
}
