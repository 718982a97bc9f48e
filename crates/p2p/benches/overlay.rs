//! `cargo bench -p agora-p2p --bench overlay`: the loopback overlay benchmark (same code as
//! `agora net bench`), printed as JSON. Optional args: `rounds tokens token_bytes`.

use agora_p2p::bench::{BenchConfig, run};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let cfg = BenchConfig {
        rpc_rounds: num(0, 2000) as usize,
        rpc_bytes: 64,
        tokens: num(1, 20_000) as u32,
        token_bytes: num(2, 16) as u32,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cfg)) {
        Ok(r) => println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("serialisable")
        ),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
