//! Provider and gateway services as `agora node --provider/--gateway` and `agora dev` start them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_gateway::{Gateway, GatewayConfig};
use agora_inference::SchedulerConfig;
use agora_inference::backends::test_engine::{TestEngine, TestEngineConfig};
use agora_inference::store::{self, ModelKind};
use agora_p2p::{Multiaddr, NetConfig};
use agora_provider::launch::{Launch, RunningProvider, launch, listen_addr};
use agora_provider::register::ModelListing;
use agora_provider::{ChainClient, ModelEngine, Price, ProviderSettings, ServedModel, TxSender};
use agora_types::{Amount, Hash, SecretKey};
use clap::Args;
use eyre::{WrapErr, bail};

use super::models::StoreArgs;

/// Flags of the provider and gateway services.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Serve models to the network as a provider.
    #[arg(long)]
    pub provider: bool,
    /// Run the OpenAI-compatible gateway.
    #[arg(long)]
    pub gateway: bool,
    /// The ledger RPC the services use (default: this node's own RPC).
    #[arg(long, env = "AGORA_CHAIN_RPC")]
    pub chain_rpc: Option<String>,
    /// Key file of the provider's account (default: the node key; password AGORA_PASSWORD).
    #[arg(long)]
    pub provider_key: Option<PathBuf>,
    /// Key file of the gateway's paying account (default: the node key).
    #[arg(long)]
    pub gateway_key: Option<PathBuf>,
    /// Overlay listen address of this process's first service.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4100")]
    pub p2p_listen: Multiaddr,
    /// Overlay peers to bootstrap from (`/ip4/.../tcp/.../p2p/<peer id>`).
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Models to serve (known names or GGUF paths), repeatable.
    #[arg(long = "serve-model", default_values_t = ["smollm2-135m-instruct".to_string(), "all-minilm-l6-v2".to_string()])]
    pub serve_models: Vec<String>,
    /// Serve the deterministic test engine instead of a model (tests and benchmarks only; it is
    /// not a language model). The value is its per-step delay in milliseconds.
    #[arg(long, value_name = "STEP_MS")]
    pub test_engine: Option<u64>,
    /// Price per million prompt tokens, in AGR.
    #[arg(long, default_value = "0.05")]
    pub input_price: String,
    /// Price per million generated tokens, in AGR.
    #[arg(long, default_value = "0.1")]
    pub output_price: String,
    /// Self-bonded provider stake to hold, in AGR.
    #[arg(long, default_value = "100")]
    pub stake: String,
    /// CPU threads per model.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Concurrent sequences per model.
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// Gateway HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8646")]
    pub gateway_listen: std::net::SocketAddr,
    /// The gateway's API-key book (JSON; created if missing).
    #[arg(long)]
    pub api_keys: Option<PathBuf>,
    /// How long the gateway waits for a provider's next frame before failing over, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub stall_ms: u64,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Services started in this process.
pub struct Services {
    pub provider: Option<RunningProvider>,
    pub gateway: Option<Gateway>,
    /// Overlay address others can bootstrap from.
    pub p2p_addr: Option<Multiaddr>,
}

fn agr(s: &str) -> eyre::Result<Amount> {
    Amount::parse_agr(s).map_err(|e| eyre::eyre!("bad AGR amount {s:?}: {e}"))
}

fn net_config(listen: &Multiaddr, bootstrap: &[Multiaddr]) -> NetConfig {
    let loopback = listen.to_string().starts_with("/ip4/127.");
    let mut cfg = NetConfig {
        listen: vec![listen.clone()],
        bootstrap: bootstrap.to_vec(),
        ..if loopback {
            NetConfig::local_test()
        } else {
            NetConfig::default()
        }
    };
    // Gateways send one stream per request and vouchers beside them: allow a busy gateway.
    cfg.limits.requests_per_sec = 5_000.0;
    cfg.limits.request_burst = 10_000.0;
    cfg.offer_validator = Some(agora_gateway::market::offer_validator());
    cfg
}

/// The served models with their ledger listings.
fn load_models(args: &ServeArgs, price: Price) -> eyre::Result<Vec<(ServedModel, ModelListing)>> {
    let mut out = Vec::new();
    if let Some(step_ms) = args.test_engine {
        let scheduler = TestEngine::spawn(
            TestEngineConfig {
                step_delay: Duration::from_millis(step_ms),
                n_seq: args.slots,
                ..TestEngineConfig::default()
            },
            SchedulerConfig::default(),
        )?;
        let sha = Hash::of(agora_types::HashDomain::Request, b"agora test engine v1");
        let name = "agora-test-engine-instruct".to_string();
        out.push((
            ServedModel {
                sha256: sha,
                name: name.clone(),
                price,
                engine: ModelEngine::Generate(Arc::new(scheduler)),
            },
            ModelListing {
                sha256: sha,
                name,
                family: "test-engine".into(),
                kind: ModelKind::Chat,
                license: "Apache-2.0".into(),
                royalty_bps: 0,
                price,
            },
        ));
        return Ok(out);
    }
    let store = args.store.store();
    for name in &args.serve_models {
        let known = store::known(name);
        let path = store.resolve(name).filter(|p| p.exists()).ok_or_else(|| {
            eyre::eyre!(
                "model {name:?} is not in {}; run `agora models pull {name}`",
                store.dir().display()
            )
        })?;
        let pinned = known
            .and_then(|k| k.files.first())
            .map(|f| f.sha256.to_string());
        let kind = known.map_or(ModelKind::Chat, |k| k.kind);
        let licence = known.map_or("unknown", |k| k.licence).to_string();
        match kind {
            ModelKind::Embedding => {
                let dir = if path.is_dir() {
                    path.clone()
                } else {
                    path.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                let embedder = agora_inference::backends::candle::BertEmbedder::load(&dir)?;
                let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
                    .map_err(|e| eyre::eyre!("{}: {e}", dir.join("tokenizer.json").display()))?;
                let weights = dir.join("model.safetensors");
                let sha = sha_of(&weights, None)?;
                let count: Arc<dyn Fn(&str) -> usize + Send + Sync> = Arc::new(move |s: &str| {
                    tokenizer
                        .encode(s, true)
                        .map_or(s.len() / 4 + 1, |e| e.len())
                });
                out.push((
                    ServedModel {
                        sha256: sha,
                        name: name.clone(),
                        price,
                        engine: ModelEngine::Embed {
                            embedder: Arc::new(embedder),
                            count_tokens: count,
                        },
                    },
                    listing(sha, name, "bert-embedding", kind, &licence, price),
                ));
            }
            ModelKind::Chat | ModelKind::Completion => {
                let sha = sha_of(&path, pinned)?;
                let scheduler = open_gguf(&path, name, args)?;
                let family = if kind == ModelKind::Chat {
                    "chat"
                } else {
                    "base"
                };
                out.push((
                    ServedModel {
                        sha256: sha,
                        name: name.clone(),
                        price,
                        engine: ModelEngine::Generate(Arc::new(scheduler)),
                    },
                    listing(sha, name, family, kind, &licence, price),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(feature = "llama-cpp")]
fn open_gguf(
    path: &Path,
    name: &str,
    args: &ServeArgs,
) -> eyre::Result<agora_inference::Scheduler> {
    use agora_inference::backends::llama_cpp::{self, LlamaConfig};
    Ok(llama_cpp::serve(
        path,
        name,
        LlamaConfig {
            n_seq: args.slots,
            threads: args.threads,
            ..LlamaConfig::default()
        },
        SchedulerConfig::default(),
    )?)
}

#[cfg(not(feature = "llama-cpp"))]
fn open_gguf(_: &Path, name: &str, _: &ServeArgs) -> eyre::Result<agora_inference::Scheduler> {
    bail!("{name}: this binary was built without the llama-cpp feature")
}

fn listing(
    sha: Hash,
    name: &str,
    family: &str,
    kind: ModelKind,
    licence: &str,
    price: Price,
) -> ModelListing {
    ModelListing {
        sha256: sha,
        name: name.to_string(),
        family: family.into(),
        kind,
        license: licence.into(),
        royalty_bps: 0,
        price,
    }
}

/// The pinned sha256 (checked by `agora models verify`), or the file's own.
fn sha_of(path: &Path, pinned: Option<String>) -> eyre::Result<Hash> {
    let hex = match pinned {
        Some(h) => h,
        None => store::sha256_file(path, &mut store::NoProgress)
            .wrap_err_with(|| format!("cannot hash {}", path.display()))?,
    };
    hex.parse()
        .map_err(|e| eyre::eyre!("bad sha256 {hex}: {e}"))
}

/// Starts the requested services against the ledger at `chain_url`.
pub async fn start(
    args: &ServeArgs,
    chain_url: &str,
    provider_key: Option<SecretKey>,
    gateway_key: Option<SecretKey>,
    data_dir: &Path,
) -> eyre::Result<Services> {
    let chain = ChainClient::new(chain_url);
    let mut services = Services {
        provider: None,
        gateway: None,
        p2p_addr: None,
    };
    let mut bootstrap = args.bootstrap.clone();
    let mut listen = args.p2p_listen.clone();
    if let Some(key) = gateway_key {
        let (net, _inbound) =
            agora_p2p::spawn(key.to_bytes(), net_config(&listen, &bootstrap), None)
                .await
                .map_err(|e| eyre::eyre!("overlay: {e}"))?;
        let addr = listen_addr(&net).await;
        let sender = Arc::new(TxSender::new(key, chain.clone()).await?);
        let gw = Gateway::start(
            GatewayConfig {
                listen: args.gateway_listen,
                customers_path: Some(
                    args.api_keys
                        .clone()
                        .unwrap_or_else(|| data_dir.join("api-keys.json")),
                ),
                relay: agora_gateway::RelaySettings {
                    stall_timeout: Duration::from_millis(args.stall_ms),
                    ..Default::default()
                },
                payer: agora_gateway::PayerSettings {
                    journal: Some(data_dir.join("channels.json")),
                    ..Default::default()
                },
                ..GatewayConfig::default()
            },
            net,
            sender,
        )
        .await?;
        // A provider in the same process joins through the gateway's overlay node.
        if let Some(a) = &addr {
            bootstrap.push(a.clone());
            listen = with_port_zero(&listen);
        }
        services.p2p_addr = addr;
        services.gateway = Some(gw);
    }
    if let Some(key) = provider_key {
        let price = Price {
            input_per_million: agr(&args.input_price)?,
            output_per_million: agr(&args.output_price)?,
        };
        let models = load_models(args, price)?;
        if models.is_empty() {
            bail!("no model to serve");
        }
        let rp = launch(Launch {
            key,
            chain: chain.clone(),
            net: net_config(&listen, &bootstrap),
            models,
            stake: agr(&args.stake)?,
            settings: ProviderSettings::default(),
            voucher_file: Some(data_dir.join("vouchers.json")),
            slots: args.slots,
        })
        .await?;
        if services.p2p_addr.is_none() {
            services.p2p_addr = rp.p2p_addr().await;
        }
        services.provider = Some(rp);
    }
    Ok(services)
}

fn with_port_zero(a: &Multiaddr) -> Multiaddr {
    let s = a.to_string();
    let mut parts: Vec<&str> = s.split('/').collect();
    if let Some(i) = parts.iter().position(|p| *p == "tcp" || *p == "udp")
        && i + 1 < parts.len()
    {
        parts[i + 1] = "0";
    }
    parts.join("/").parse().unwrap_or_else(|_| a.clone())
}

/// Loads a key file with AGORA_PASSWORD (or a prompt).
pub fn load_key(path: &Path) -> eyre::Result<SecretKey> {
    let password = std::env::var("AGORA_PASSWORD")
        .or_else(|_| rpassword::prompt_password(format!("Password for {}: ", path.display())))?;
    Ok(agora_node::keystore::load(path, &password)?)
}

/// Default place for service state next to a node's data.
pub fn data_dir_for(base: &Path) -> PathBuf {
    base.join("services")
}
