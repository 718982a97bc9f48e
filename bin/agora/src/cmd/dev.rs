//! `agora dev`: a whole local network: one validator producing blocks (the ledger and its RPC)
//! and auditing one receipt in four of the served generative models, a provider serving the
//! bundled models on the overlay, the OpenAI-compatible gateway in front of it with its
//! dashboard, and an API key ready to use, all in this process; `--providers N`
//! adds N-1 providers as child processes (`agora node --provider`, files in `<dir>/providers`,
//! logs in `<dir>/logs`), each
//! with its own funded account, so routing, payments, failover and audits can be watched live.
//! Each child runs with `--stop-on-stdin-eof` and its stdin a pipe from this process: Ctrl-C
//! closes the pipes (the children shut down cleanly, as on SIGTERM) before this process's roles
//! stop, and a crashed `agora dev` closes them too, so no provider is left behind.

use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_node::config::ChainConfig;
use agora_node::{NodeBuilder, NodeConfig, Role, keystore};
use agora_types::{Address, Amount, SecretKey};
use clap::Args;
use eyre::WrapErr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEV_PASSWORD: &str = "dev";
/// The dev chain's audit probability (basis points).
const DEV_AUDIT_BPS: u16 = 2_500;
/// Blocks per incentive epoch on the dev chain (the default is 360): about a minute of idle dev
/// blocks, so the dashboard's market charts move while one watches.
const DEV_EPOCH_BLOCKS: u64 = 60;

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
    /// Only the ledger: no provider, no gateway.
    #[arg(long)]
    chain_only: bool,
    /// Providers to run: this process's own, plus N-1 child processes serving the same models.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    providers: u32,
    /// Leave this node's auditor off (benchmarks of the request path: on the real network audits
    /// run on validators' machines, not beside the provider).
    #[arg(long)]
    no_audit: bool,
    #[command(flatten)]
    serve: super::serve::ServeArgs,
}

/// Keys of the dev network's service accounts, created (and funded from the dev account) on
/// first use.
fn service_key(path: &Path) -> eyre::Result<SecretKey> {
    if !path.exists() {
        keystore::save_with_cost(path, &SecretKey::generate(), DEV_PASSWORD, 1024, 1)?;
    }
    Ok(keystore::load(path, DEV_PASSWORD)?)
}

/// Tops `who` up to `want` from the dev account.
async fn fund(dev: &agora_provider::TxSender, who: Address, want: Amount) -> eyre::Result<()> {
    let have = dev.chain().account(&who).await?.balance;
    if have < want {
        dev.send(agora_types::TxBody::Transfer {
            to: who,
            amount: want.saturating_sub(have),
        })
        .await?;
    }
    Ok(())
}

/// A fresh dev chain: the validator and the dev account, play money.
fn write_genesis(dir: &Path, genesis_path: &Path) -> eyre::Result<()> {
    let validator = SecretKey::generate();
    let dev = SecretKey::generate();
    // Cheap key stretching: these keys guard play money on a local chain.
    keystore::save_with_cost(
        &dir.join("keys/validator.json"),
        &validator,
        DEV_PASSWORD,
        1024,
        1,
    )?;
    keystore::save_with_cost(&dir.join("keys/dev.json"), &dev, DEV_PASSWORD, 1024, 1)?;
    let genesis = Genesis {
        chain_id: "agora-dev".into(),
        timestamp_ms: 0,
        // One receipt in four audited (the default is 3%), so a dev network shows audits soon.
        params: Params {
            audit_bps: DEV_AUDIT_BPS,
            incentives: agora_ledger::incentives::IncentiveParams {
                epoch_blocks: DEV_EPOCH_BLOCKS,
                ..Default::default()
            },
            ..Params::default()
        },
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
    std::fs::write(genesis_path, serde_json::to_string_pretty(&genesis)?)?;
    Ok(())
}

/// The dev network's config: everything under `dir`, the overlay on loopback.
fn config(args: &DevArgs) -> eyre::Result<NodeConfig> {
    let dir = &args.dir;
    let mut cfg = NodeConfig {
        chain: ChainConfig {
            data_dir: dir.join("data"),
            genesis: dir.join("genesis.json"),
            key_file: dir.join("keys/validator.json"),
            rpc_addr: args.rpc,
            ..ChainConfig::default()
        },
        ..NodeConfig::default()
    };
    cfg.p2p.listen = "/ip4/127.0.0.1/tcp/4100".parse()?;
    cfg.provider.key = Some(dir.join("keys/provider.json"));
    cfg.provider.state_dir = Some(dir.join("services"));
    cfg.gateway.key = Some(dir.join("keys/gateway.json"));
    cfg.gateway.state_dir = Some(dir.join("services"));
    args.serve.apply(&mut cfg);
    // The validator audits the dev gateway's receipts of the served generative models (known
    // by name: a GGUF path's kind is not known before it is opened), so audits show up on the
    // dashboard. Not with the test engine, which has no model file to replay.
    if !args.chain_only && !args.no_audit && cfg.provider.test_engine.is_none() {
        cfg.audit.models = cfg
            .provider
            .models
            .iter()
            .filter(|m| {
                agora_inference::store::known(m).is_some_and(|k| {
                    matches!(
                        k.kind,
                        agora_types::ModelKind::Chat | agora_types::ModelKind::Completion
                    )
                })
            })
            .cloned()
            .collect();
        cfg.audit.models_dir = cfg.provider.models_dir.clone();
        cfg.audit.threads = 1;
        cfg.audit.gateways = vec![format!("http://{}", cfg.gateway.listen)];
        // Receipts committed for audit every 2 s instead of 10: verdicts follow answers closely.
        cfg.gateway.commit_ms = 2_000;
    }
    Ok(cfg)
}

pub fn run(args: DevArgs) -> eyre::Result<()> {
    let cfg = config(&args)?;
    // Before anything starts (or is written): the models this network will serve.
    if !args.chain_only {
        agora_node::models::check_present(&cfg.provider)?;
    }
    if args.reset && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).wrap_err("cannot delete the old dev chain")?;
    }
    std::fs::create_dir_all(args.dir.join("keys"))?;
    if !cfg.chain.genesis.exists() {
        write_genesis(&args.dir, &cfg.chain.genesis)?;
    }
    let dev_path = args.dir.join("keys/dev.json");
    let dev_address = keystore::address(&dev_path)?;
    let validator = keystore::address(&cfg.chain.key_file)?;
    let mut builder = NodeBuilder::new(cfg.clone())
        .password(DEV_PASSWORD)
        .with_validator();
    let extra_keys: Vec<PathBuf> = (1..args.providers)
        .map(|i| args.dir.join(format!("keys/provider-{i}.json")))
        .collect();
    if !args.chain_only {
        let provider = service_key(&args.dir.join("keys/provider.json"))?;
        let gateway = service_key(&args.dir.join("keys/gateway.json"))?;
        let mut providers = vec![provider.public()];
        for k in &extra_keys {
            providers.push(service_key(k)?.public());
        }
        let g = gateway.public();
        let dev = keystore::load(&dev_path, DEV_PASSWORD)?;
        builder = builder
            .with_provider()
            .with_gateway()
            .key(Role::Provider, provider)
            .key(Role::Gateway, gateway)
            .on_chain_ready(move |chain| async move {
                let dev = agora_provider::TxSender::new(dev, chain).await?;
                for p in providers {
                    fund(&dev, p, Amount::from_agr(1_000)).await?;
                }
                fund(&dev, g, Amount::from_agr(10_000)).await?;
                Ok(())
            });
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut node = builder.launch().await?;
        let api_key = match &node.gateway {
            Some(g) => Some(dev_api_key(&args.dir, g, dev_address)?),
            None => None,
        };
        // Ready means the gateway routes to every model the provider serves: otherwise a
        // request sent right after the banner could find no provider yet.
        node.wait_until_routable(Duration::from_secs(15)).await;
        let mut children = Vec::new();
        if !args.chain_only && !extra_keys.is_empty() {
            children = spawn_providers(&args, &cfg, &node, &extra_keys)?;
            if let Some(g) = &node.gateway {
                wait_for_providers(g, args.providers as usize, Duration::from_secs(120)).await;
            }
        }
        if !args.chain_only
            && let Err(e) = open_market(&args.dir, &node, &extra_keys).await
        {
            eprintln!("agora dev: the dev market could not be opened: {e}");
        }
        banner(
            &args,
            &node,
            dev_address,
            validator,
            &dev_path,
            api_key.as_deref(),
        );
        let failed = super::node::serve(&mut node, std::future::pending()).await;
        stop_children(children).await;
        node.shutdown().await;
        failed.map_or(Ok::<_, eyre::Report>(()), Err)
    })
}

/// Starts the extra providers: `agora node --provider` against this network's RPC and overlay,
/// serving the same models, each on its own overlay port, logging to `<dir>/logs`.
fn spawn_providers(
    args: &DevArgs,
    cfg: &NodeConfig,
    node: &agora_node::RunningNode,
    keys: &[PathBuf],
) -> eyre::Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().wrap_err("cannot find the agora binary to run providers")?;
    let rpc = node
        .rpc_url()
        .ok_or_else(|| eyre::eyre!("the dev network has no RPC"))?;
    let overlay = node
        .p2p_addr
        .clone()
        .ok_or_else(|| eyre::eyre!("the dev provider has no overlay address"))?;
    let logs = args.dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // The children listen on the ports after this process's own.
    let listen = cfg.p2p.listen.to_string();
    let base_port: u32 = listen
        .split("/tcp/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(4100);
    let mut children = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let n = i + 1;
        let log = std::fs::File::create(logs.join(format!("provider-{n}.log")))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("node")
            .arg("--provider")
            // Its vouchers and receipts are kept with the dev chain, not in the working directory.
            .arg("--data-dir")
            .arg(args.dir.join(format!("providers/provider-{n}")))
            .arg("--chain-rpc")
            .arg(&rpc)
            .arg("--provider-key")
            .arg(key)
            .arg("--p2p-listen")
            .arg(format!("/ip4/127.0.0.1/tcp/{}", base_port + n as u32))
            .arg("--bootstrap")
            .arg(overlay.to_string())
            .arg("--models-dir")
            .arg(&cfg.provider.models_dir);
        for m in &cfg.provider.models {
            cmd.arg("--serve-model").arg(m);
        }
        if let Some(ms) = args.serve.test_engine {
            cmd.arg("--test-engine").arg(ms.to_string());
        }
        // With a metrics endpoint here, each child has one on the next ports.
        if let Some(m) = cfg.metrics.listen {
            let port = u32::from(m.port()) + n as u32;
            if let Ok(port) = u16::try_from(port) {
                cmd.arg("--metrics-listen")
                    .arg(std::net::SocketAddr::new(m.ip(), port).to_string());
            }
        }
        cmd.arg("--threads")
            .arg(cfg.provider.threads.to_string())
            .arg("--stop-on-stdin-eof")
            .env("AGORA_PASSWORD", DEV_PASSWORD)
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .wrap_err_with(|| format!("cannot start provider {n}"))?;
        children.push(child);
    }
    Ok(children)
}

/// A market over the first chat model ("chat/<name>", opened by the dev account) with every dev
/// provider a member, so the validator's scores, Yuma and emission run each incentive epoch and
/// the dashboard charts them. Kept when the chain is resumed.
async fn open_market(
    dir: &Path,
    node: &agora_node::RunningNode,
    extra_keys: &[PathBuf],
) -> eyre::Result<()> {
    let (Some(chain), Some(model)) = (
        &node.chain,
        agora_node::models::first_chat_model(&node.models),
    ) else {
        return Ok(());
    };
    let name = format!("chat/{}", model.name);
    let id = agora_types::market_id(&name);
    if chain.market(&id).await?.is_none() {
        let dev = keystore::load(&dir.join("keys/dev.json"), DEV_PASSWORD)?;
        agora_provider::TxSender::new(dev, chain.clone())
            .await?
            .send(agora_types::TxBody::CreateMarket(agora_types::MarketSpec {
                name,
                models: vec![model.sha256],
            }))
            .await?;
    }
    let members: Vec<Address> = chain
        .market(&id)
        .await?
        .map(|m| m.record.members.iter().map(|m| m.provider).collect())
        .unwrap_or_default();
    let keys = std::iter::once(dir.join("keys/provider.json")).chain(extra_keys.iter().cloned());
    for path in keys {
        let key = keystore::load(&path, DEV_PASSWORD)?;
        if members.contains(&key.public()) {
            continue;
        }
        agora_provider::TxSender::new(key, chain.clone())
            .await?
            .send(agora_types::TxBody::JoinMarket { market: id })
            .await?;
    }
    Ok(())
}

/// Waits until the gateway routes to `want` providers (the children load their models first).
async fn wait_for_providers(g: &agora_gateway::Gateway, want: usize, timeout: Duration) {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        g.market.refresh().await;
        let have = g.market.providers().len();
        if have >= want {
            return;
        }
        if tokio::time::Instant::now() >= until {
            eprintln!(
                "agora dev: only {have} of {want} providers joined within {}s; see the logs in the dev directory",
                timeout.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Closes each child's stdin (they shut down as on SIGTERM), then waits up to 10 s for each.
async fn stop_children(mut children: Vec<std::process::Child>) {
    for c in &mut children {
        drop(c.stdin.take());
    }
    for mut c in children {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() >= until => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// One API key for the dev account, kept in the dev directory.
fn dev_api_key(dir: &Path, g: &agora_gateway::Gateway, dev: Address) -> eyre::Result<String> {
    let key_file = dir.join("api-key.txt");
    let key = match std::fs::read_to_string(&key_file) {
        Ok(k) => k.trim().to_string(),
        Err(_) => {
            let k = format!("sk-agora-dev-{}", hex::encode(rand_bytes()));
            std::fs::write(&key_file, &k)?;
            k
        }
    };
    if g.customers
        .get(&agora_gateway::customers::key_hash(&key))
        .is_none()
    {
        g.customers.insert(
            &key,
            agora_gateway::Customer {
                name: "dev".into(),
                account: dev,
                credit: Amount::from_agr(1_000),
                spent: Amount::ZERO,
                limits: Default::default(),
            },
        );
        let _ = g.customers.flush();
    }
    Ok(key)
}

fn banner(
    args: &DevArgs,
    node: &agora_node::RunningNode,
    dev_address: Address,
    validator: Address,
    dev_path: &Path,
    api_key: Option<&str>,
) {
    let height = node
        .validator
        .as_ref()
        .and_then(|v| v.shared.chain.lock().ok().map(|c| c.state().height()))
        .unwrap_or(0);
    println!("Agora dev network is running (chain agora-dev, height {height})");
    println!("  RPC          {}", node.rpc_url().unwrap_or_default());
    println!("  dev account  {dev_address}");
    println!(
        "  keystore     {} (password \"{DEV_PASSWORD}\")",
        dev_path.display()
    );
    println!("  validator    {validator}");
    if let Some(g) = &node.gateway {
        println!("  OpenAI API   {}", g.base_url());
        // The key rides in the fragment, which the browser keeps to itself.
        match api_key {
            Some(k) => println!("  dashboard    {}#key={k}", g.dashboard_url()),
            None => println!("  dashboard    {}", g.dashboard_url()),
        }
        println!(
            "  providers    {} (this process{})",
            g.market.providers().len(),
            if args.providers > 1 {
                format!(
                    " and {} in child processes; logs in {}",
                    args.providers - 1,
                    args.dir.join("logs").display()
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(a) = node.metrics_addr {
        println!("  metrics      http://{a}/metrics");
    }
    if let Some(k) = api_key {
        println!("  API key      {k}");
    }
    for m in &node.models {
        println!("  model        {} (sha256 {})", m.name, m.sha256);
    }
    if node.gateway.is_some()
        && let Some(a) = &node.p2p_addr
    {
        println!("  overlay      {a}");
    }
    println!();
    // The example must work as printed: a chat request to a chat model.
    if let (Some(g), Some(k), Some(m)) = (
        &node.gateway,
        api_key,
        agora_node::models::first_chat_model(&node.models),
    ) {
        println!(
            "  try:  curl {}/chat/completions -H 'Authorization: Bearer {k}' -H 'Content-Type: application/json' -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'",
            g.base_url(),
            m.name
        );
        println!(
            "  python (pip install openai):  python3 -c 'from openai import OpenAI; c = OpenAI(base_url=\"{}\", api_key=\"{k}\"); print(c.chat.completions.create(model=\"{}\", messages=[{{\"role\": \"user\", \"content\": \"Hello!\"}}]).choices[0].message.content)'",
            g.base_url(),
            m.name
        );
    }
    println!(
        "  try:  AGORA_KEYSTORE={} AGORA_PASSWORD={DEV_PASSWORD} agora wallet balance",
        dev_path.display()
    );
    println!(
        "Press Ctrl-C to stop; the chain is kept in {}.",
        args.dir.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn rand_bytes() -> [u8; 16] {
    SecretKey::generate().to_bytes()[..16]
        .try_into()
        .unwrap_or([0; 16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    fn dev_config(args: &[&str]) -> NodeConfig {
        let cli = Cli::try_parse_from(std::iter::once("dev").chain(args.iter().copied()))
            .expect("arguments parse");
        config(&cli.dev).expect("config builds")
    }

    #[test]
    fn the_dev_validator_audits_the_served_chat_model_unless_told_not_to() {
        let on = dev_config(&["--serve-model", "smollm2-135m-instruct"]);
        assert_eq!(on.audit.models, vec!["smollm2-135m-instruct".to_string()]);
        assert_eq!(on.gateway.commit_ms, 2_000);
        let off = dev_config(&["--serve-model", "smollm2-135m-instruct", "--no-audit"]);
        assert!(off.audit.models.is_empty(), "{:?}", off.audit.models);
        // The auditor is off while its model list is empty (config/agora.toml, [audit]).
        assert_eq!(off.audit.models, NodeConfig::default().audit.models);
    }
}
