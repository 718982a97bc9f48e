//! The provider and gateway flags that `agora node` and `agora dev` share: each one, when given,
//! overrides its `[p2p]`, `[provider]` or `[gateway]` key (config/agora.toml has the defaults).

use std::net::SocketAddr;
use std::path::PathBuf;

use agora_node::NodeConfig;
use agora_p2p::Multiaddr;
use clap::Args;

/// Flags of the provider and gateway services.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Serve models to the network as a provider.
    #[arg(long)]
    pub provider: bool,
    /// Run the OpenAI-compatible gateway.
    #[arg(long)]
    pub gateway: bool,
    /// The ledger RPC the services use (default: this node's own RPC) [chain.rpc_url].
    #[arg(long, env = "AGORA_CHAIN_RPC")]
    pub chain_rpc: Option<String>,
    /// Key file of the provider's account (default: the node key; password AGORA_PASSWORD).
    #[arg(long)]
    pub provider_key: Option<PathBuf>,
    /// Key file of the gateway's paying account (default: the node key).
    #[arg(long)]
    pub gateway_key: Option<PathBuf>,
    /// Overlay listen address of this process's first service [p2p.listen, default
    /// /ip4/0.0.0.0/tcp/4100].
    #[arg(long)]
    pub p2p_listen: Option<Multiaddr>,
    /// Overlay peers to bootstrap from (`/ip4/.../tcp/.../p2p/<peer id>`), repeatable.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Models to serve (known names or GGUF paths), repeatable [provider.models, default
    /// smollm2-135m-instruct and all-minilm-l6-v2].
    #[arg(long = "serve-model")]
    pub serve_models: Vec<String>,
    /// Serve the deterministic test engine instead of a model (tests and benchmarks only; it is
    /// not a language model). The value is its per-step delay in milliseconds.
    #[arg(long, value_name = "STEP_MS")]
    pub test_engine: Option<u64>,
    /// Price per million prompt tokens, in AGR [default 0.05].
    #[arg(long)]
    pub input_price: Option<String>,
    /// Price per million generated tokens, in AGR [default 0.1].
    #[arg(long)]
    pub output_price: Option<String>,
    /// Self-bonded provider stake to hold, in AGR [default 100].
    #[arg(long)]
    pub stake: Option<String>,
    /// CPU threads per model [default 2].
    #[arg(long)]
    pub threads: Option<u32>,
    /// Concurrent sequences per model [default 4].
    #[arg(long)]
    pub slots: Option<u32>,
    /// Gateway HTTP listen address [default 127.0.0.1:8646].
    #[arg(long)]
    pub gateway_listen: Option<SocketAddr>,
    /// The gateway's API-key book (JSON; created if missing).
    #[arg(long)]
    pub api_keys: Option<PathBuf>,
    /// How long the gateway waits for a provider's next frame before failing over, in ms
    /// [default 10000].
    #[arg(long)]
    pub stall_ms: Option<u64>,
    /// Prometheus endpoint (GET /metrics) with every role's metrics in this process
    /// [metrics.listen, default off].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Model directory [provider.models_dir, default models].
    #[arg(long, env = "AGORA_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
}

/// `Some` flags over the config's values.
fn set<T: Clone>(slot: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *slot = v.clone();
    }
}

impl ServeArgs {
    /// Applies the flags that were given over `cfg` (flags outrank file and environment).
    pub fn apply(&self, cfg: &mut NodeConfig) {
        if self.chain_rpc.is_some() {
            cfg.chain.rpc_url = self.chain_rpc.clone();
        }
        let (p2p, provider, gateway) = (&mut cfg.p2p, &mut cfg.provider, &mut cfg.gateway);
        set(&mut p2p.listen, &self.p2p_listen);
        if !self.bootstrap.is_empty() {
            p2p.bootstrap = self.bootstrap.clone();
        }
        if self.provider_key.is_some() {
            provider.key = self.provider_key.clone();
        }
        if !self.serve_models.is_empty() {
            provider.models = self.serve_models.clone();
        }
        if self.test_engine.is_some() {
            provider.test_engine = self.test_engine;
        }
        set(&mut provider.input_price, &self.input_price);
        set(&mut provider.output_price, &self.output_price);
        set(&mut provider.stake, &self.stake);
        set(&mut provider.threads, &self.threads);
        set(&mut provider.slots, &self.slots);
        set(&mut provider.models_dir, &self.models_dir);
        if self.gateway_key.is_some() {
            gateway.key = self.gateway_key.clone();
        }
        set(&mut gateway.listen, &self.gateway_listen);
        if self.api_keys.is_some() {
            gateway.api_keys = self.api_keys.clone();
        }
        set(&mut gateway.stall_ms, &self.stall_ms);
        if self.metrics_listen.is_some() {
            cfg.metrics.listen = self.metrics_listen;
        }
    }
}

/// The key files' password: AGORA_PASSWORD, or a prompt.
pub fn password() -> eyre::Result<String> {
    Ok(std::env::var("AGORA_PASSWORD")
        .or_else(|_| rpassword::prompt_password("Node key password: "))?)
}
