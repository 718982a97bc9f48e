//! `agora node --config FILE`: run a validator node from a config file.

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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let node = agora_node::start(&cfg, key.public()).await?;
        println!("node {} serving RPC at {}", key.public(), node.rpc_url());
        tokio::signal::ctrl_c().await?;
        node.shutdown();
        Ok(())
    })
}
