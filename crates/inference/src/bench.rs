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
    /// N streams vs 1 through our scheduler: generated tokens over the whole run, prefill of the
    /// N prompts included (what a client waiting for all N sees).
    pub one_stream_tok_s: f64,
    pub many_streams_tok_s: f64,
    /// The same runs, counting only the decode phase: tokens generated while every stream is
    /// decoding, over that window.
    pub one_stream_decode_tok_s: f64,
    pub many_streams_decode_tok_s: f64,
    /// llama.cpp's raw API decoding 1 and N sequences per batch (decode phase only; the peer).
    pub raw_one_stream_tok_s: f64,
    pub raw_many_streams_tok_s: f64,
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
        capture_sampled: false,
        score_last_logits: 0,
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
        ..SamplingParams::greedy(256)
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

/// Generated tokens/s of `prompts` run concurrently: (whole run, decode phase only).
fn aggregate(
    sched: &Scheduler,
    prompts: &[Vec<TokenId>],
    n_gen: usize,
) -> Result<(f64, f64), BenchError> {
    let t0 = Instant::now();
    let mut streams = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let params = SamplingParams {
            temperature: 0.8,
            seed: i as u64,
            max_tokens: n_gen as u32,
            ignore_eos: true,
            ..SamplingParams::greedy(256)
        };
        let mut r = Request::generate(Prompt::Tokens(p.clone()), params);
        r.reuse_prefix = false;
        streams.push(sched.submit(r)?);
    }
    // One reader thread per stream, so every token is timestamped when it arrives.
    let times: Vec<Result<Vec<Instant>, BenchError>> = std::thread::scope(|scope| {
        let readers: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                scope.spawn(move || {
                    let mut at = Vec::with_capacity(n_gen);
                    while let Some(ev) = s.blocking_next() {
                        match ev {
                            Event::Token(_) => at.push(Instant::now()),
                            Event::Error(e) => return Err(BenchError::Generate(e)),
                            Event::Done(_) => break,
                            _ => {}
                        }
                    }
                    Ok(at)
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Other("reader panicked".into())))
            })
            .collect()
    });
    let times = times.into_iter().collect::<Result<Vec<_>, _>>()?;
    if times.iter().any(|t| t.len() < 2) {
        return Err(BenchError::Other(
            "a stream produced fewer than 2 tokens".into(),
        ));
    }
    let total: usize = times.iter().map(Vec::len).sum();
    let last = times
        .iter()
        .filter_map(|t| t.last())
        .max()
        .copied()
        .unwrap_or(t0);
    // Decode window: from the moment every stream has its first token to the first stream's end.
    let from = times.iter().map(|t| t[0]).max().unwrap_or(t0);
    let to = times
        .iter()
        .filter_map(|t| t.last())
        .min()
        .copied()
        .unwrap_or(last);
    let in_window: usize = times
        .iter()
        .map(|t| t.iter().filter(|&&x| x > from && x <= to).count())
        .sum();
    let window = (to - from).as_secs_f64();
    let decode = if window > 0.0 {
        in_window as f64 / window
    } else {
        0.0
    };
    Ok((total as f64 / (last - t0).as_secs_f64(), decode))
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
    let model = llama_cpp::load_model(&cfg.model, 0, None)?;
    for rep in 0..cfg.reps.max(1) {
        let (one, one_dec) = aggregate(&sched, &prompts[..1], short)?;
        let (many, many_dec) = aggregate(&sched, &prompts, short)?;
        let raw_one = llama_cpp::raw_batched_bench(&model, &prompts[..1], short, cfg.threads)?;
        let raw_many = llama_cpp::raw_batched_bench(&model, &prompts, short, cfg.threads)?;
        say(format!(
            "rep {rep}: 1 vs {} streams: ours whole run {one:.1} / {many:.1}, decode {one_dec:.1} / {many_dec:.1}; llama.cpp raw decode {raw_one:.1} / {raw_many:.1} tok/s",
            cfg.streams
        ));
        report.one_stream_tok_s = report.one_stream_tok_s.max(one);
        report.many_streams_tok_s = report.many_streams_tok_s.max(many);
        report.one_stream_decode_tok_s = report.one_stream_decode_tok_s.max(one_dec);
        report.many_streams_decode_tok_s = report.many_streams_decode_tok_s.max(many_dec);
        report.raw_one_stream_tok_s = report.raw_one_stream_tok_s.max(raw_one);
        report.raw_many_streams_tok_s = report.raw_many_streams_tok_s.max(raw_many);
    }
    drop(model);
    drop(sched);
    let n = cfg.streams;
    say(format!(
        "aggregate generated tokens/s, {n} streams vs 1 (tg{short} each, {} prompt tokens each):",
        prompts[0].len()
    ));
    say(format!(
        "  ours, decode phase: 1 stream {:.1}  {n} streams {:.1}  ratio {:.2}",
        report.one_stream_decode_tok_s,
        report.many_streams_decode_tok_s,
        report.many_streams_decode_tok_s / report.one_stream_decode_tok_s
    ));
    say(format!(
        "  llama.cpp raw, decode phase: 1 sequence {:.1}  {n} sequences {:.1}  ratio {:.2}",
        report.raw_one_stream_tok_s,
        report.raw_many_streams_tok_s,
        report.raw_many_streams_tok_s / report.raw_one_stream_tok_s
    ));
    say(format!(
        "  ours, whole run incl. prefill: 1 stream {:.1}  {n} streams {:.1}  ratio {:.2}",
        report.one_stream_tok_s,
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
