//! The one Agora binary: dev network, node, wallet, transactions, chat and benchmarks.
//!
//! `main` parses the command line, initialises telemetry and hands off to one module per
//! command family under `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "agora", version, about = "Agora: an open, decentralized AI network")]
struct Cli {
    /// Log filter, e.g. `info` or `agora_node=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "AGORA_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // Each command family lives in its own module under `cmd/`; add a variant and a match arm.
    /// The overlay network: status view and loopback benchmark.
    Net {
        #[command(subcommand)]
        command: cmd::net::NetCommand,
    },
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> eyre::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    match cli.command {
        Command::Net { command } => cmd::net::run(command),
    }
}
