//! `agora node --config FILE`: run a node from a config file (see config/agora.toml). With
//! peers in its `[validator]` section (or a `validator.toml` beside it, as `agora testnet`
//! writes), the node joins the validator network and finalizes blocks with simplex BFT;
//! without, it runs a one-validator chain (the same simplex engine, quorum of one; the genesis
//! must name this node as its only validator).
//!
//! `--provider` and `--gateway` add the market services; with `--chain-rpc` and no `--config`
//! they run without a local ledger node, against any node's RPC. Assembly and the shutdown
//! order are `agora_node::builder`'s.

use agora_node::{NodeBuilder, NodeConfig, Role, keystore};
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
    /// Also stop (cleanly, as on SIGTERM) when standard input closes: how `agora dev` runs its
    /// extra providers, so they end with it even when it is killed.
    #[arg(long, hide = true)]
    stop_on_stdin_eof: bool,
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

/// Waits until the process is asked to stop (Ctrl-C, SIGTERM, or `also`) or a role of `node`
/// stops on its own. In the second case returns the error to exit with once shut down:
/// fail-stop, so a supervisor (systemd, the chaos runner) restarts the node.
pub async fn serve(
    node: &mut agora_node::builder::RunningNode,
    also: impl std::future::Future<Output = ()>,
) -> Option<eyre::Report> {
    tokio::select! {
        _ = wait_for_shutdown() => None,
        _ = also => None,
        role = node.role_ended() => Some(eyre::eyre!(
            "the {role} stopped on its own (its error is logged above); exiting"
        )),
    }
}

/// Resolves when standard input reaches its end (or fails): its writer is gone.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread, not spawn_blocking: the runtime would wait for a blocked read at exit.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// The builder for these flags: a validator unless only services run against `--chain-rpc`.
fn builder(args: &NodeArgs) -> eyre::Result<NodeBuilder> {
    let serve = &args.serve;
    let services = serve.provider || serve.gateway;
    if services && args.config.is_none() && serve.chain_rpc.is_none() {
        eyre::bail!(
            "--provider/--gateway need --chain-rpc URL or --config FILE (to run a local node)"
        );
    }
    let mut cfg = NodeConfig::load(args.config.as_deref())?;
    if let Some(a) = args.rpc_addr {
        cfg.chain.rpc_addr = a;
    }
    if let Some(d) = &args.data_dir {
        cfg.chain.data_dir = d.clone();
    }
    serve.apply(&mut cfg);
    if args.config.is_none()
        && ((serve.provider && serve.provider_key.is_none())
            || (serve.gateway && serve.gateway_key.is_none()))
    {
        eyre::bail!("name the account's key file with --provider-key / --gateway-key");
    }
    let mut b = NodeBuilder::new(cfg);
    if !services || args.config.is_some() {
        b = b.with_validator();
    }
    if serve.provider {
        b = b.with_provider();
    }
    if serve.gateway {
        b = b.with_gateway();
    }
    Ok(b)
}

pub fn run(args: NodeArgs) -> eyre::Result<()> {
    let mut b = builder(&args)?;
    if b.needs_password() {
        b = b.password(super::serve::password()?);
    }
    let validator = b
        .has(Role::Validator)
        .then(|| keystore::address(&b.key_file(Role::Validator)))
        .transpose()?;
    let network = !b.config().validator.peers.is_empty();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut node = b.launch().await?;
        if let (Some(me), Some(url)) = (validator, node.rpc_url()) {
            if network {
                println!("validator {me} joined the validator network, RPC at {url}");
            } else {
                println!("node {me} serving RPC at {url}");
            }
        }
        if let Some(p) = &node.provider {
            println!("provider {} serving on the overlay", p.sender.address());
        }
        if let Some(g) = &node.gateway {
            println!("gateway {} at {}", g.payer.address(), g.base_url());
        }
        if let Some(a) = node.metrics_addr {
            println!("metrics at http://{a}/metrics");
        }
        if (node.gateway.is_some() || node.provider.is_some())
            && let Some(a) = &node.p2p_addr
        {
            println!("overlay address {a}");
        }
        let also = async {
            if args.stop_on_stdin_eof {
                stdin_closed().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let failed = serve(&mut node, also).await;
        node.shutdown().await;
        failed.map_or(Ok(()), Err)
    })
}
