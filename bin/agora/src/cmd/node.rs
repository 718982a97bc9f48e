//! `agora node --config FILE`: run a node from a config file. With a `validator.toml` next to
//! the config (as `agora testnet` writes), the node joins the validator network and finalizes
//! blocks with simplex BFT; without one, it is a single in-process block producer.

use agora_node::{NodeConfig, keystore};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's TOML config (see config/agora.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the RPC listen address.
    #[arg(long)]
    rpc_addr: Option<SocketAddr>,
    /// Override the data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: NodeArgs) -> eyre::Result<()> {
    let mut cfg = NodeConfig::load(args.config.as_deref())?;
    if let Some(a) = args.rpc_addr {
        cfg.rpc_addr = a;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    let password = std::env::var("AGORA_PASSWORD")
        .or_else(|_| rpassword::prompt_password("Node key password: "))?;
    let key = keystore::load(&cfg.key_file, &password)?;
    let validator_toml = args
        .config
        .as_deref()
        .and_then(|c| c.parent())
        .map(|d| d.join("validator.toml"))
        .filter(|p| p.exists());
    if let Some(path) = validator_toml {
        let vcfg = agora_node::validator::ValidatorConfig::load(&path)?;
        println!(
            "validator {} joining the network ({})",
            key.public(),
            path.display()
        );
        agora_node::validator::run(cfg, vcfg, key)?;
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let node = agora_node::start(&cfg, key.public()).await?;
        println!("node {} serving RPC at {}", key.public(), node.rpc_url());
        tokio::signal::ctrl_c().await?;
        node.shutdown();
        Ok(())
    })
}
