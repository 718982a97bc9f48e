//! The one Agora binary: dev network, node, wallet, transactions, chat and benchmarks.
//!
//! `main` parses the command line, initialises telemetry and hands off to one module per
//! command family under `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "agora",
    version,
    about = "Agora: an open, decentralized AI network"
)]
struct Cli {
    /// Log filter, e.g. `info` or `agora_node=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "AGORA_LOG", default_value = "info")]
    log: String,
    /// Log lines as text for people or as one JSON object each for log collectors.
    #[arg(long, global = true, env = "AGORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // Each command family lives in its own module under `cmd/`; add a variant and a match arm.
    /// Start a whole local network in one process (validator, ledger, RPC).
    Dev(cmd::dev::DevArgs),
    /// Run a node from a config file.
    Node(cmd::node::NodeArgs),
    /// Write (and optionally start) a local multi-validator network on loopback.
    Testnet(cmd::testnet::TestnetArgs),
    /// Keys: create, import, show address and balance.
    Wallet(cmd::wallet::WalletArgs),
    /// Build, sign and submit a transaction.
    Tx(cmd::wallet::TxArgs),
    /// Agents: accounts with their own keys and spending limits, asking the network through
    /// their own payment channels.
    Agent(cmd::agent::AgentArgs),
    /// Ask a question about the chain: the network's own model, read-only tools over the RPC.
    Ask(cmd::ask::AskArgs),
    /// Markets: list them, show one with its members.
    Market(cmd::market::MarketArgs),
    /// Incentive epochs: what each account of a market was paid, and why.
    Epoch(cmd::market::EpochArgs),
    /// The local model store: pull, list, verify.
    Models(cmd::models::ModelsArgs),
    /// Check this machine for what a provider needs, and say what to fix.
    Doctor(cmd::doctor::DoctorArgs),
    /// Generate text from a local model (for scripts).
    #[cfg(feature = "llama-cpp")]
    Generate(cmd::generate::GenerateArgs),
    /// Chat with a local model in the terminal.
    #[cfg(feature = "llama-cpp")]
    Chat(cmd::chat::ChatArgs),
    /// Benchmarks, each against a named peer measured in the same run.
    Bench {
        #[command(subcommand)]
        command: cmd::bench::BenchCommand,
    },
    /// The overlay network: status view and loopback benchmark.
    Net {
        #[command(subcommand)]
        command: cmd::net::NetCommand,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(filter: &str, format: LogFormat) {
    // commonware's engines narrate every archive restore and view at info; keep them to
    // warnings unless the filter names them.
    let filter = if filter.contains("commonware") {
        filter.to_string()
    } else {
        format!("{filter},commonware_consensus=warn,commonware_p2p=warn,commonware_storage=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().init(),
    }
}

fn main() -> eyre::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_format);
    match cli.command {
        Command::Dev(args) => cmd::dev::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Testnet(args) => cmd::testnet::run(args),
        Command::Wallet(args) => cmd::wallet::run_wallet(args),
        Command::Tx(args) => cmd::wallet::run_tx(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Ask(args) => cmd::ask::run(args),
        Command::Market(args) => cmd::market::run_market(args),
        Command::Epoch(args) => cmd::market::run_epoch(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        #[cfg(feature = "llama-cpp")]
        Command::Generate(args) => cmd::generate::run(args),
        #[cfg(feature = "llama-cpp")]
        Command::Chat(args) => cmd::chat::run(args),
        Command::Bench { command } => cmd::bench::run(command),
        Command::Net { command } => cmd::net::run(command),
    }
}
