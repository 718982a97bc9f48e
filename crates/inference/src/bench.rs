//! `agora bench inference` as a library function: our engine path (scheduler, sampler, streaming)
//! against llama.cpp's raw API on the same GGUF file, same threads, same run; aggregate throughput
//! of concurrent streams; peak RSS; candle's quantized llama on the same file.

use std::path::PathBuf;
use std::time::Instant;

use crate::backends::{candle, llama_cpp};
use crate::{
    Event, LoadError, Prompt, Request, SamplingParams, Scheduler, SchedulerConfig, SubmitError,
    Task, TokenId,
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub model: PathBuf,
    pub name: String,
    pub threads: u32,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub streams: u32,
    pub reps: usize,
    /// Temperature of our path (0 = greedy; > 0 runs the full Gumbel sampler).
    pub temperature: f32,
    pub candle: bool,
}

/// The figures (tokens per wall-clock second; best of `reps` for the single-stream pair).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchReport {
    pub ours_prompt_tok_s: f64,
    pub raw_prompt_tok_s: f64,
    pub ours_gen_tok_s: f64,
    pub raw_gen_tok_s: f64,
    pub one_stream_tok_s: f64,
    pub many_streams_tok_s: f64,
    pub peak_rss_mb: Option<f64>,
    pub candle: Option<candle::CandleLlamaBench>,
}

/// The benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Generate(#[from] crate::GenerateError),
    #[error("{0}")]
    Other(String),
}

/// Peak resident set size of this process (Linux), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A deterministic prompt of exactly `n` tokens.
fn prompt_tokens(sched: &Scheduler, n: usize) -> Result<Vec<TokenId>, BenchError> {
    let text = "The history of the printing press is a story of many hands. ".repeat(n / 8 + 8);
    let out = sched.generate_blocking(Request {
        prompt: Prompt::Text(text),
        task: Task::Score,
        capture_hidden: false,
        reuse_prefix: false,
        continuation: Vec::new(),
    });
    let mut t = match out {
        Ok(o) => o.completion.prompt,
        Err(crate::GenerateError::ContextLength { .. }) => {
            return Err(BenchError::Other("context too small for the prompt".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if t.len() < n {
        return Err(BenchError::Other(format!(
            "prompt text too short: {}",
            t.len()
        )));
    }
    t.truncate(n);
    Ok(t)
}

fn ours(
    sched: &Scheduler,
    prompt: &[TokenId],
    n_gen: usize,
    temperature: f32,
) -> Result<(f64, f64), BenchError> {
    let params = SamplingParams {
        temperature,
        seed: 1,
        max_tokens: n_gen as u32 + 1,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let mut req = Request::generate(Prompt::Tokens(prompt.to_vec()), params);
    req.reuse_prefix = false;
    let t0 = Instant::now();
    let mut s = sched.submit(req)?;
    let mut first = None;
    let mut n = 0usize;
    while let Some(ev) = s.blocking_next() {
        match ev {
            Event::Token(_) => {
                n += 1;
                if first.is_none() {
                    first = Some(Instant::now());
                }
            }
            Event::Done(_) => break,
            Event::Error(e) => return Err(e.into()),
            _ => {}
        }
    }
    let end = Instant::now();
    if n != n_gen + 1 {
        return Err(BenchError::Other(format!(
            "expected {} tokens, got {n}",
            n_gen + 1
        )));
    }
    let first = first.unwrap_or(end);
    Ok((
        prompt.len() as f64 / (first - t0).as_secs_f64(),
        n_gen as f64 / (end - first).as_secs_f64(),
    ))
}

fn aggregate(sched: &Scheduler, prompts: &[Vec<TokenId>], n_gen: usize) -> Result<f64, BenchError> {
    let t0 = Instant::now();
    let mut streams = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let params = SamplingParams {
            temperature: 0.8,
            seed: i as u64,
            max_tokens: n_gen as u32,
            ignore_eos: true,
            ..SamplingParams::default()
        };
        let mut r = Request::generate(Prompt::Tokens(p.clone()), params);
        r.reuse_prefix = false;
        streams.push(sched.submit(r)?);
    }
    let mut total = 0usize;
    for s in streams {
        total += s.collect_blocking()?.completion.tokens.len();
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

/// Run the benchmark; `say` receives progress lines.
pub fn run(cfg: &BenchConfig, say: &mut dyn FnMut(String)) -> Result<BenchReport, BenchError> {
    let mut report = BenchReport::default();
    let n_ctx = (cfg.prompt_tokens + cfg.gen_tokens + 16) as u32;
    let config = llama_cpp::LlamaConfig {
        n_seq: 1,
        n_ctx_seq: Some(n_ctx.max(1024)),
        n_batch: cfg.prompt_tokens.max(64) as u32,
        threads: cfg.threads,
        ..llama_cpp::LlamaConfig::default()
    };
    let sched = llama_cpp::serve(&cfg.model, &cfg.name, config, SchedulerConfig::default())?;
    let prompt = prompt_tokens(&sched, cfg.prompt_tokens)?;
    // The raw peer has its own model instance; the two alternate so load drifts hit both.
    let model = llama_cpp::load_model(&cfg.model, 0, None)?;
    for rep in 0..cfg.reps.max(1) {
        let raw = llama_cpp::raw_bench(&model, &prompt, cfg.gen_tokens, cfg.threads)?;
        let (pp, tg) = ours(&sched, &prompt, cfg.gen_tokens, cfg.temperature)?;
        say(format!(
            "rep {rep}: llama.cpp raw pp {:.1} tg {:.1} | ours pp {pp:.1} tg {tg:.1} tok/s",
            raw.prompt_tok_s, raw.gen_tok_s
        ));
        report.raw_prompt_tok_s = report.raw_prompt_tok_s.max(raw.prompt_tok_s);
        report.raw_gen_tok_s = report.raw_gen_tok_s.max(raw.gen_tok_s);
        report.ours_prompt_tok_s = report.ours_prompt_tok_s.max(pp);
        report.ours_gen_tok_s = report.ours_gen_tok_s.max(tg);
    }
    drop(model);
    drop(sched);
    say(format!(
        "prompt tokens/s (pp{}): ours {:.1}  llama.cpp raw {:.1}  ratio {:.3}",
        cfg.prompt_tokens,
        report.ours_prompt_tok_s,
        report.raw_prompt_tok_s,
        report.ours_prompt_tok_s / report.raw_prompt_tok_s
    ));
    say(format!(
        "generated tokens/s (tg{}): ours {:.1}  llama.cpp raw {:.1}  ratio {:.3}",
        cfg.gen_tokens,
        report.ours_gen_tok_s,
        report.raw_gen_tok_s,
        report.ours_gen_tok_s / report.raw_gen_tok_s
    ));

    // Aggregate throughput: N concurrent streams vs 1, on a scheduler with N slots.
    let short = cfg.gen_tokens.min(64);
    let config = llama_cpp::LlamaConfig {
        n_seq: cfg.streams.max(1),
        n_ctx_seq: Some(256),
        n_batch: 512,
        threads: cfg.threads,
        ..llama_cpp::LlamaConfig::default()
    };
    let sched = llama_cpp::serve(&cfg.model, &cfg.name, config, SchedulerConfig::default())?;
    let prompts: Vec<Vec<TokenId>> = (0..cfg.streams.max(1) as usize)
        .map(|i| {
            let start = (i * 8) % prompt.len().saturating_sub(64).max(1);
            prompt[start..(start + 64).min(prompt.len())].to_vec()
        })
        .collect();
    report.one_stream_tok_s = aggregate(&sched, &prompts[..1], short)?;
    report.many_streams_tok_s = aggregate(&sched, &prompts, short)?;
    drop(sched);
    say(format!(
        "aggregate generated tokens/s (tg{short}): 1 stream {:.1}  {} streams {:.1}  ratio {:.2}",
        report.one_stream_tok_s,
        cfg.streams,
        report.many_streams_tok_s,
        report.many_streams_tok_s / report.one_stream_tok_s
    ));
    report.peak_rss_mb = peak_rss_mb();
    if let Some(rss) = report.peak_rss_mb {
        say(format!("peak RSS (llama.cpp paths): {rss:.0} MB"));
    }
    if cfg.candle {
        match candle::bench_quantized_llama(&cfg.model, &prompt, cfg.gen_tokens) {
            Ok(c) => {
                say(format!(
                    "candle quantized_llama: load {:.1}s  pp{} {:.1} tok/s  tg{} {:.1} tok/s  (llama.cpp raw / candle: pp {:.1}x, tg {:.1}x)",
                    c.load_secs,
                    c.prompt_tokens,
                    c.prompt_tok_s,
                    c.gen_tokens,
                    c.gen_tok_s,
                    report.raw_prompt_tok_s / c.prompt_tok_s,
                    report.raw_gen_tok_s / c.gen_tok_s
                ));
                report.candle = Some(c);
                if let Some(rss) = peak_rss_mb() {
                    say(format!("peak RSS (after candle): {rss:.0} MB"));
                }
            }
            Err(e) => say(format!("candle quantized_llama cannot run this file: {e}")),
        }
    }
    Ok(report)
}
