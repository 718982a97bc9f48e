//! `agora node --config FILE`: run a node from a config file. With a `validator.toml` next to
//! the config (as `agora testnet` writes), the node joins the validator network and finalizes
//! blocks with simplex BFT; without one, it runs a one-validator chain (the same simplex engine,
//! quorum of one; the genesis must name this node as its only validator).
//!
//! `--provider` and `--gateway` add the market services (see `serve.rs`); with `--chain-rpc`
//! they run without a local ledger node, against any node's RPC.

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
    #[command(flatten)]
    serve: super::serve::ServeArgs,
}

/// `agora node --provider/--gateway [--chain-rpc URL]`.
fn run_services(args: NodeArgs) -> eyre::Result<()> {
    let serve = &args.serve;
    let cfg = match (&args.config, &serve.chain_rpc) {
        (None, None) => eyre::bail!(
            "--provider/--gateway need --chain-rpc URL or --config FILE (to run a local node)"
        ),
        (Some(_), _) => Some(NodeConfig::load(args.config.as_deref())?),
        (None, Some(_)) => None,
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| cfg.as_ref().map(|c| c.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("agora-data"));
    let services_dir = super::serve::data_dir_for(&data_dir);
    std::fs::create_dir_all(&services_dir)?;
    let key_path = |explicit: &Option<PathBuf>| -> eyre::Result<PathBuf> {
        explicit
            .clone()
            .or_else(|| cfg.as_ref().map(|c| c.key_file.clone()))
            .ok_or_else(|| {
                eyre::eyre!("name the account's key file with --provider-key / --gateway-key")
            })
    };
    let provider_key = if serve.provider {
        Some(super::serve::load_key(&key_path(&serve.provider_key)?)?)
    } else {
        None
    };
    let gateway_key = if serve.gateway {
        Some(super::serve::load_key(&key_path(&serve.gateway_key)?)?)
    } else {
        None
    };
    if let (Some(p), Some(g)) = (&provider_key, &gateway_key)
        && p.public() == g.public()
    {
        eyre::bail!(
            "the provider and the gateway need different accounts (--provider-key, --gateway-key)"
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut local = None;
        if let Some(mut cfg) = cfg {
            if let Some(a) = args.rpc_addr {
                cfg.rpc_addr = a;
            }
            cfg.data_dir = data_dir.clone();
            let password = std::env::var("AGORA_PASSWORD")
                .or_else(|_| rpassword::prompt_password("Node key password: "))?;
            let key = keystore::load(&cfg.key_file, &password)?;
            local = Some(
                agora_node::start(&cfg, agora_types::SecretKey::from_bytes(key.to_bytes())).await?,
            );
        }
        let chain_url = serve
            .chain_rpc
            .clone()
            .or_else(|| local.as_ref().map(|n| n.rpc_url()))
            .unwrap_or_default();
        let services =
            super::serve::start(serve, &chain_url, provider_key, gateway_key, &services_dir)
                .await?;
        if let Some(p) = &services.provider {
            println!("provider {} serving on the overlay", p.sender.address());
        }
        if let Some(g) = &services.gateway {
            println!("gateway {} at {}", g.payer.address(), g.base_url());
        }
        if let Some(a) = &services.p2p_addr {
            println!("overlay address {a}");
        }
        wait_for_shutdown().await;
        // The gateway first: a provider in this process is still up to acknowledge vouchers.
        if let Some(g) = services.gateway {
            g.shutdown().await;
        }
        if let Some(p) = services.provider {
            p.shutdown().await;
        }
        if let Some(n) = local {
            n.shutdown();
        }
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub fn run(args: NodeArgs) -> eyre::Result<()> {
    if args.serve.provider || args.serve.gateway {
        return run_services(args);
    }
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
        let node =
            agora_node::start(&cfg, agora_types::SecretKey::from_bytes(key.to_bytes())).await?;
        println!("node {} serving RPC at {}", key.public(), node.rpc_url());
        tokio::signal::ctrl_c().await?;
        node.shutdown();
        Ok(())
    })
}
