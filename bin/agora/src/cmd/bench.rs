//! `agora bench ...`: benchmarks that print ratios against a named peer measured in the same run.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Signed transfers applied per second and vouchers verified per second, one core.
    Ledger(super::bench_ledger::BenchLedgerArgs),
    #[cfg(feature = "llama-cpp")]
    /// Our inference path vs llama.cpp's raw API (and candle) on the same GGUF file.
    Inference(super::bench_inference::BenchInferenceArgs),
    #[cfg(feature = "llama-cpp")]
    /// What proofs of inference cost a provider and an auditor, beside the same work without.
    Proofs(super::bench_proofs::BenchProofsArgs),
}

pub fn run(command: BenchCommand) -> eyre::Result<()> {
    match command {
        BenchCommand::Ledger(args) => super::bench_ledger::run(args),
        #[cfg(feature = "llama-cpp")]
        BenchCommand::Inference(args) => super::bench_inference::run(args),
        #[cfg(feature = "llama-cpp")]
        BenchCommand::Proofs(args) => super::bench_proofs::run(args),
    }
}
