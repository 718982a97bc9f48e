//! `agora testnet --validators N --dir D [--start]`: write genesis, keys and configs for a local
//! validator network on loopback, and optionally start one `agora node` process per validator.

use agora_node::testnet::{TestnetPorts, write};
use clap::Args;
use eyre::WrapErr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Directory for the network's files (genesis.json, node-<i>/...).
    #[arg(long)]
    dir: PathBuf,
    /// First RPC port (validator i listens on base + i).
    #[arg(long, default_value_t = 18645)]
    rpc_base: u16,
    /// First validator p2p port (validator i listens on base + i).
    #[arg(long, default_value_t = 19645)]
    p2p_base: u16,
    /// Start every validator as a separate `agora node` process and wait for Ctrl-C.
    #[arg(long)]
    start: bool,
}

pub fn run(args: TestnetArgs) -> eyre::Result<()> {
    let password = std::env::var("AGORA_PASSWORD").unwrap_or_else(|_| "testnet".into());
    let net = if args.dir.join("genesis.json").exists() {
        None
    } else {
        let ports = TestnetPorts {
            rpc_base: args.rpc_base,
            p2p_base: args.p2p_base,
        };
        // Cheap key stretching: testnet keys guard play money.
        Some(write(&args.dir, args.validators, ports, &password, 1024)?)
    };
    if let Some(net) = &net {
        println!(
            "wrote {} validators under {}",
            net.nodes.len(),
            args.dir.display()
        );
        println!(
            "faucet key: {} (password from AGORA_PASSWORD, default `testnet`)",
            net.faucet_key.display()
        );
        for (node, rpc) in net.nodes.iter().zip(&net.rpc) {
            println!("  {}  rpc http://{rpc}", node.display());
        }
    }
    if !args.start {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    for i in 0..args.validators {
        let node = args.dir.join(format!("node-{i}"));
        let log =
            std::fs::File::create(node.join("node.log")).wrap_err("cannot create node.log")?;
        let child = Command::new(&exe)
            .args(["node", "--config"])
            .arg(node.join("agora.toml"))
            .env("AGORA_PASSWORD", &password)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .wrap_err("cannot start agora node")?;
        println!(
            "started validator {i} (pid {}), log {}",
            child.id(),
            node.join("node.log").display()
        );
        children.push(child);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(())
}
