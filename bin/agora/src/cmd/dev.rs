//! `agora dev`: a whole local network in one process: one validator producing blocks (the
//! ledger and its RPC), a provider serving the bundled SmolLM2 model on the overlay, and the
//! OpenAI-compatible gateway in front of it, with an API key ready to use.

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
    /// Only the ledger: no provider, no gateway.
    #[arg(long)]
    chain_only: bool,
    #[command(flatten)]
    serve: super::serve::ServeArgs,
}

/// Keys of the dev network's service accounts, created (and funded from the dev account) on
/// first use.
fn service_key(path: &std::path::Path) -> eyre::Result<SecretKey> {
    if !path.exists() {
        keystore::save_with_cost(path, &SecretKey::generate(), DEV_PASSWORD, 1024, 1)?;
    }
    Ok(keystore::load(path, DEV_PASSWORD)?)
}

/// Tops `who` up to `want` from the dev account.
async fn fund(
    dev: &agora_provider::TxSender,
    who: agora_types::Address,
    want: Amount,
) -> eyre::Result<()> {
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
        let node = agora_node::start(&cfg, SecretKey::from_bytes(validator.to_bytes())).await?;
        let height = node
            .shared
            .chain
            .lock()
            .map(|c| c.state().height())
            .unwrap_or(0);
        let mut services = None;
        let mut api_key = None;
        if !args.chain_only {
            let mut serve = args.serve.clone();
            if serve.p2p_listen.to_string() == "/ip4/0.0.0.0/tcp/4100" {
                serve.p2p_listen = "/ip4/127.0.0.1/tcp/4100".parse()?;
            }
            let provider = service_key(&args.dir.join("keys/provider.json"))?;
            let gateway = service_key(&args.dir.join("keys/gateway.json"))?;
            let dev = agora_provider::TxSender::new(
                keystore::load(&dev_path, DEV_PASSWORD)?,
                agora_provider::ChainClient::new(&node.rpc_url()),
            )
            .await?;
            fund(&dev, provider.public(), Amount::from_agr(1_000)).await?;
            fund(&dev, gateway.public(), Amount::from_agr(10_000)).await?;
            let services_dir = args.dir.join("services");
            std::fs::create_dir_all(&services_dir)?;
            let s = super::serve::start(
                &serve,
                &node.rpc_url(),
                Some(provider),
                Some(gateway),
                &services_dir,
            )
            .await?;
            // One API key for the dev account, kept in the dev directory.
            let key_file = args.dir.join("api-key.txt");
            let key = match std::fs::read_to_string(&key_file) {
                Ok(k) => k.trim().to_string(),
                Err(_) => {
                    let k = format!("sk-agora-dev-{}", hex::encode(rand_bytes()));
                    std::fs::write(&key_file, &k)?;
                    k
                }
            };
            if let Some(g) = &s.gateway
                && g.customers.get(&agora_gateway::customers::key_hash(&key)).is_none()
            {
                g.customers.insert(
                    &key,
                    agora_gateway::Customer {
                        name: "dev".into(),
                        account: dev_address,
                        credit: Amount::from_agr(1_000),
                        spent: Amount::ZERO,
                    },
                );
                let _ = g.customers.flush();
            }
            // Ready means the gateway routes to every model the provider serves: otherwise a
            // request sent right after the banner could find no provider yet.
            if let (Some(g), Some(p)) = (&s.gateway, &s.provider) {
                let want: Vec<String> = p.provider.models().map(|m| m.name.clone()).collect();
                for _ in 0..150 {
                    g.market.refresh().await;
                    let have = g.market.models();
                    if want.iter().all(|w| have.iter().any(|(m, _)| &m.name == w)) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            api_key = Some(key);
            services = Some(s);
        }
        println!("Agora dev network is running (chain agora-dev, height {height})");
        println!("  RPC          {}", node.rpc_url());
        println!("  dev account  {dev_address}");
        println!(
            "  keystore     {} (password \"{DEV_PASSWORD}\")",
            dev_path.display()
        );
        println!("  validator    {}", validator.public());
        if let Some(s) = &services {
            if let Some(g) = &s.gateway {
                println!("  OpenAI API   {}", g.base_url());
            }
            if let Some(k) = &api_key {
                println!("  API key      {k}");
            }
            if let Some(p) = &s.provider {
                for m in p.provider.models() {
                    println!("  model        {} (sha256 {})", m.name, m.sha256);
                }
            }
            if let Some(a) = &s.p2p_addr {
                println!("  overlay      {a}");
            }
        }
        println!();
        if let (Some(s), Some(k)) = (&services, &api_key)
            && let Some(g) = &s.gateway
        {
            let model = s.provider.as_ref().and_then(|p| p.provider.models().next().map(|m| m.name.clone())).unwrap_or_default();
            println!(
                "  try:  curl {}/chat/completions -H 'Authorization: Bearer {k}' -H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'",
                g.base_url()
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
        super::node::wait_for_shutdown().await;
        if let Some(s) = services {
            // The gateway first: its providers are still up to acknowledge the last vouchers.
            if let Some(g) = s.gateway {
                g.shutdown().await;
            }
            if let Some(p) = s.provider {
                p.shutdown().await;
            }
        }
        node.shutdown();
        Ok::<_, eyre::Report>(())
    })
}

fn rand_bytes() -> [u8; 16] {
    SecretKey::generate().to_bytes()[..16]
        .try_into()
        .unwrap_or([0; 16])
}
