//! The inference benchmark without the CLI (same code as `agora bench inference`):
//! `cargo run -p agora-inference --example bench_inference -- MODEL.gguf [THREADS]`
//! (env: REPS, STREAMS, SKIP_CANDLE).

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let cfg = agora_inference::bench::BenchConfig {
        name: model.clone(),
        model: model.into(),
        threads,
        prompt_tokens: 512,
        gen_tokens: 128,
        streams: env_or("STREAMS", 8),
        reps: env_or("REPS", 3) as usize,
        temperature: 0.8,
        candle: std::env::var_os("SKIP_CANDLE").is_none(),
    };
    if let Err(e) = agora_inference::bench::run(&cfg, &mut |line| println!("{line}")) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
