//! `cargo run -p agora-consensus --example bench -- [validators] [rate] [seconds] [accounts] [max block txs]`
//!
//! N validators in one process (tokio runtime, authenticated p2p over loopback TCP, storage in a
//! temp dir); a steady stream of transfers, each submitted to one validator and spread by
//! transaction gossip; prints finalized tx/s and finality latency p50/p99.

use agora_consensus::bench::{BenchConfig, run};
use std::time::Duration;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let d = BenchConfig::default();
    let cfg = BenchConfig {
        validators: args.first().map_or(d.validators, |v| *v as usize),
        rate: args.get(1).copied().unwrap_or(d.rate),
        duration: Duration::from_secs(args.get(2).copied().unwrap_or(d.duration.as_secs())),
        accounts: args.get(3).map_or(d.accounts, |v| *v as usize),
        max_block_txs: args.get(4).map_or(d.max_block_txs, |v| *v as usize),
        ..d
    };
    let dir = std::env::temp_dir().join(format!("agora-consensus-bench-{}", std::process::id()));
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = load();
    let report = run(&cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{cfg:?}\n{report}");
    // The machine's share matters: the four validators split its cores.
    println!(
        "machine: {cores} cores; load average before {} after {}",
        load_before.trim(),
        load().trim()
    );
    let met = |ok: bool| if ok { "met" } else { "not met" };
    println!(
        "target >= 5,000 tx/s finalized: {}; target p50 finality < 1,000 ms: {}",
        met(report.tx_per_s >= 5_000.0),
        met(report.p50 < Duration::from_secs(1))
    );
}
