//! `cargo bench -p agora-node --bench ledger`: the same benchmark as `agora bench ledger`.

fn main() {
    match agora_node::bench::run_ledger_bench(&agora_node::bench::LedgerBenchConfig::default()) {
        Ok(report) => report.print(),
        Err(e) => {
            eprintln!("ledger benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
