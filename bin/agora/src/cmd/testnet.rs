//! `agora testnet --validators N --dir D [--start]`: write genesis, keys and configs for a local
//! validator network on loopback, and optionally start one `agora node` process per validator.
//! `agora testnet chaos --scenario FILE --seed N`: the chaos suite (`agora_chaos`) over a network
//! of separate processes in network namespaces.

use agora_node::testnet::{TestnetPorts, write};
use clap::{Args, Subcommand};
use eyre::WrapErr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TestnetArgs {
    #[command(subcommand)]
    action: Option<TestnetAction>,
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Directory for the network's files (genesis.json, node-<i>/...).
    #[arg(long, required = true)]
    dir: Option<PathBuf>,
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

#[derive(Subcommand, Debug)]
enum TestnetAction {
    /// Run a chaos scenario: validators, a gateway and providers as separate processes, each in
    /// its own network namespace (needs root, iproute2, iptables), under client load and a fault
    /// schedule; then check the recorded history. Exits 1 on any violation.
    Chaos(ChaosArgs),
}

#[derive(Args, Debug)]
struct ChaosArgs {
    /// The scenario file (see scenarios/).
    #[arg(long)]
    scenario: PathBuf,
    /// Fixes every random choice of the run (client calls, fault targets): replay a failing run
    /// with the same scenario and seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the run's history, facts, report and logs go [default: a new directory under the
    /// system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Judge an earlier run's directory again instead of running (its history.jsonl and
    /// facts.json).
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

fn chaos(args: ChaosArgs) -> eyre::Result<()> {
    let scenario = agora_chaos::scenario::Scenario::load(&args.scenario)?;
    let dir = match (&args.check, &args.dir) {
        (Some(d), _) | (None, Some(d)) => d.clone(),
        (None, None) => std::env::temp_dir().join(format!(
            "agora-chaos-{}-seed{}-{}",
            scenario.name,
            args.seed,
            std::process::id()
        )),
    };
    let cfg = agora_chaos::run::RunConfig {
        scenario,
        scenario_path: args.scenario.clone(),
        seed: args.seed,
        dir,
        bin: std::env::current_exe()?,
    };
    let outcome = if args.check.is_some() {
        let facts = agora_chaos::run::load_facts(&cfg.dir)?;
        agora_chaos::run::judge(&cfg, &facts)?
    } else {
        tokio::runtime::Runtime::new()?.block_on(agora_chaos::run::run(&cfg))?
    };
    println!("chaos: run directory {}", cfg.dir.display());
    if !outcome.violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

pub fn run(args: TestnetArgs) -> eyre::Result<()> {
    if let Some(TestnetAction::Chaos(c)) = args.action {
        return chaos(c);
    }
    let Some(dir) = args.dir else {
        eyre::bail!("--dir is required");
    };
    let password = std::env::var("AGORA_PASSWORD").unwrap_or_else(|_| "testnet".into());
    let net = if dir.join("genesis.json").exists() {
        None
    } else {
        let ports = TestnetPorts {
            rpc_base: args.rpc_base,
            p2p_base: args.p2p_base,
        };
        // Cheap key stretching: testnet keys guard play money.
        Some(write(&dir, args.validators, ports, &password, 1024)?)
    };
    if let Some(net) = &net {
        println!(
            "wrote {} validators under {}",
            net.nodes.len(),
            dir.display()
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
        let node = dir.join(format!("node-{i}"));
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
