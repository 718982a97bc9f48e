//! `agora dev`: a whole local network in one process (today: one validator producing blocks,
//! the ledger and its RPC; providers and the gateway join with their issues).

use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_node::{NodeConfig, keystore};
use agora_types::{Amount, SecretKey};
use clap::Args;
use eyre::WrapErr;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEV_PASSWORD: &str = "dev";

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for the dev chain's keys, genesis and data (kept between runs).
    #[arg(long, default_value = ".agora-dev")]
    dir: PathBuf,
    /// RPC listen address.
    #[arg(long, default_value = "127.0.0.1:8645")]
    rpc: SocketAddr,
    /// Delete the dev chain and start from a new genesis.
    #[arg(long)]
    reset: bool,
}

pub fn run(args: DevArgs) -> eyre::Result<()> {
    if args.reset && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).wrap_err("cannot delete the old dev chain")?;
    }
    std::fs::create_dir_all(args.dir.join("keys"))?;
    let validator_path = args.dir.join("keys/validator.json");
    let dev_path = args.dir.join("keys/dev.json");
    let genesis_path = args.dir.join("genesis.json");
    if !genesis_path.exists() {
        let validator = SecretKey::generate();
        let dev = SecretKey::generate();
        // Cheap key stretching: these keys guard play money on a local chain.
        keystore::save_with_cost(&validator_path, &validator, DEV_PASSWORD, 1024, 1)?;
        keystore::save_with_cost(&dev_path, &dev, DEV_PASSWORD, 1024, 1)?;
        let genesis = Genesis {
            chain_id: "agora-dev".into(),
            timestamp_ms: 0,
            params: Params::default(),
            accounts: vec![
                GenesisAccount {
                    address: dev.public(),
                    balance: Amount::from_agr(1_000_000),
                },
                GenesisAccount {
                    address: validator.public(),
                    balance: Amount::from_agr(1_000),
                },
            ],
            validators: vec![GenesisValidator {
                address: validator.public(),
                stake: Amount::from_agr(10_000),
            }],
        };
        std::fs::write(&genesis_path, serde_json::to_string_pretty(&genesis)?)?;
    }
    let validator = keystore::load(&validator_path, DEV_PASSWORD)?;
    let dev_address = keystore::address(&dev_path)?;
    let cfg = NodeConfig {
        data_dir: args.dir.join("data"),
        genesis: genesis_path,
        key_file: validator_path,
        rpc_addr: args.rpc,
        ..NodeConfig::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let node = agora_node::start(&cfg, validator.public()).await?;
        let height = node
            .shared
            .chain
            .lock()
            .map(|c| c.state().height())
            .unwrap_or(0);
        println!("Agora dev network is running (chain agora-dev, height {height})");
        println!("  RPC          {}", node.rpc_url());
        println!("  dev account  {dev_address}");
        println!(
            "  keystore     {} (password \"{DEV_PASSWORD}\")",
            dev_path.display()
        );
        println!("  validator    {}", validator.public());
        println!();
        println!(
            "  try:  AGORA_KEYSTORE={} AGORA_PASSWORD={DEV_PASSWORD} agora wallet balance",
            dev_path.display()
        );
        println!(
            "Press Ctrl-C to stop; the chain is kept in {}.",
            args.dir.display()
        );
        tokio::signal::ctrl_c().await?;
        node.shutdown();
        Ok::<_, eyre::Report>(())
    })
}
