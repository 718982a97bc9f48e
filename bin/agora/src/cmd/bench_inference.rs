//! `agora bench inference`: our engine path (scheduler, sampler, streaming) against llama.cpp's
//! raw API on the same GGUF file, same threads, same run; aggregate throughput of concurrent
//! streams; peak RSS; candle's quantized llama on the same file. The measuring code is
//! `agora_inference::bench`.

use agora_inference::bench::{self, BenchConfig};
use clap::Args;

use super::generate::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchInferenceArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt length for the prefill figure.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Generated tokens for the decode figure.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Concurrent streams for the aggregate figure.
    #[arg(long, default_value_t = 8)]
    streams: u32,
    /// Repetitions of the single-stream pair (the best is kept).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Sampling temperature of our path (0 = greedy; >0 runs the full Gumbel sampler).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Skip the (slow) candle figures.
    #[arg(long)]
    skip_candle: bool,
}

pub fn run(args: BenchInferenceArgs) -> eyre::Result<()> {
    let path = args.model.path()?;
    println!(
        "model {} ({}), threads {}",
        args.model.model,
        path.display(),
        args.model.threads
    );
    let cfg = BenchConfig {
        model: path,
        name: args.model.model.clone(),
        threads: args.model.threads,
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        streams: args.streams,
        reps: args.reps,
        temperature: args.temperature,
        candle: !args.skip_candle,
    };
    bench::run(&cfg, &mut |line| println!("{line}"))?;
    Ok(())
}
