//! `agora bench proofs`: what proofs of inference cost the provider (generation with the TOPLOC
//! proof beside the same generation without it) and the auditor (one prefill and the checks, as
//! a fraction of generating the response), in one run. The measuring code is
//! `agora_inference::proof_bench`.

use agora_inference::proof_bench::{self, ProofBenchConfig};
use clap::Args;

use super::generate::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchProofsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Generated tokens per response.
    #[arg(long, default_value_t = 128)]
    gen_tokens: u32,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 9)]
    reps: usize,
}

pub fn run(args: BenchProofsArgs) -> eyre::Result<()> {
    let path = args.model.path()?;
    println!(
        "model {} ({}), threads {}",
        args.model.model,
        path.display(),
        args.model.threads
    );
    let cfg = ProofBenchConfig {
        model: path,
        name: args.model.model.clone(),
        threads: args.model.threads,
        gen_tokens: args.gen_tokens,
        reps: args.reps,
    };
    proof_bench::run(&cfg, &mut |line| println!("{line}"))?;
    Ok(())
}
