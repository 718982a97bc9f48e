//! `agora bench ledger`: see `agora_node::bench`.

use agora_node::bench::{LedgerBenchConfig, run_ledger_bench};
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchLedgerArgs {
    /// Transfers to apply.
    #[arg(long, default_value_t = 40_000)]
    txs: usize,
    /// Transactions per block.
    #[arg(long, default_value_t = 2_000)]
    block: usize,
    /// Distinct accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Vouchers to verify.
    #[arg(long, default_value_t = 40_000)]
    vouchers: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchLedgerArgs) -> eyre::Result<()> {
    let report = run_ledger_bench(&LedgerBenchConfig {
        txs: args.txs,
        block: args.block,
        accounts: args.accounts,
        vouchers: args.vouchers,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(())
}
