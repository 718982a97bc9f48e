//! The node builder: one [`NodeConfig`] in, any set of roles assembled and launched under one
//! supervisor, [`RunningNode`] out, with one shutdown order for all of them.
//!
//! ```text
//!   NodeBuilder::new(config)            roles: .with_validator() .with_provider() .with_gateway()
//!        │ launch()
//!        ├─ 1. keys                     given, or the config's key files (one password)
//!        ├─ 2. models                   present and opened BEFORE any service starts
//!        ├─ 3. validator                one-validator chain in-process ([validator] has no
//!        │                              peers), or one of N over the validator network
//!        ├─ 4. hooks                    `on_chain_ready(|chain| ..)`: e.g. fund service accounts
//!        ├─ 5. gateway                  overlay node, OpenAI API ([gateway], [p2p])
//!        └─ 6. provider                 overlay node (bootstraps from the gateway's in the same
//!                                       process), ledger registration, offer ([provider])
//!
//!   RunningNode::shutdown(), in this order:
//!        gateway: stop accepting HTTP, drain streams, close its payment channels
//!        provider: withdraw the offer, final redeem of held vouchers, stop its overlay node
//!        the gateway's overlay node
//!        consensus, then the store (closed once consensus let go of it)
//! ```
//!
//! Tests and benchmarks reach past the file for what it does not hold: ready-made models
//! ([`NodeBuilder::provider_models`]), provider and gateway tunables, keys given directly.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agora_gateway::{Gateway, GatewayError};
use agora_p2p::{Multiaddr, NetConfig};
use agora_provider::launch::{Launch, RunningProvider, launch, listen_addr};
use agora_provider::register::ModelListing;
use agora_provider::{ChainClient, ChainError, Price, ProviderSettings, ServedModel, TxSender};
use agora_types::{Amount, SecretKey};

use crate::config::{NodeConfig, P2pConfig};
use crate::metrics::MetricsHub;
use crate::models::{self, ModelError, ServedInfo};
use crate::{NodeHandle, StartError, keystore};

/// A role a node can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Validator,
    Provider,
    Gateway,
}

/// What a launch hook may fail with.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;
type Hook = Box<
    dyn FnOnce(ChainClient) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>> + Send,
>;
type GatewayTweak = Box<dyn FnOnce(&mut agora_gateway::GatewayConfig) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
    #[error("the provider and the gateway need different accounts ([provider] key, [gateway] key)")]
    SameAccount,
    #[error("a provider or gateway without a validator needs the ledger's RPC ([chain] rpc_url)")]
    NoChain,
    #[error("[{section}] {key} = {value:?}: {message}")]
    Setting {
        section: &'static str,
        key: &'static str,
        value: String,
        message: String,
    },
    #[error(transparent)]
    Models(#[from] ModelError),
    #[error(transparent)]
    Validator(#[from] StartError),
    #[error("ledger: {0}")]
    Chain(#[from] ChainError),
    #[error("overlay: {0}")]
    Overlay(String),
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    #[error("provider: {0}")]
    Provider(#[from] agora_provider::launch::LaunchError),
    #[error("{0}")]
    Hook(HookError),
}

/// Assembles a node from its config; see the module docs for the order.
pub struct NodeBuilder {
    config: NodeConfig,
    roles: Vec<Role>,
    password: Option<String>,
    keys: BTreeMap<Role, SecretKey>,
    models: Option<Vec<(ServedModel, ModelListing)>>,
    provider_settings: ProviderSettings,
    gateway_tweak: Option<GatewayTweak>,
    hooks: Vec<Hook>,
}

impl NodeBuilder {
    pub fn new(config: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            config,
            roles: Vec::new(),
            password: None,
            keys: BTreeMap::new(),
            models: None,
            provider_settings: ProviderSettings::default(),
            gateway_tweak: None,
            hooks: Vec::new(),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    fn with(mut self, role: Role) -> Self {
        if !self.roles.contains(&role) {
            self.roles.push(role);
        }
        self
    }

    /// Validate the chain (`[chain]`, `[validator]`), serving its RPC.
    pub fn with_validator(self) -> Self {
        self.with(Role::Validator)
    }

    /// Serve models to the network (`[provider]`, `[p2p]`).
    pub fn with_provider(self) -> Self {
        self.with(Role::Provider)
    }

    /// Run the OpenAI-compatible gateway (`[gateway]`, `[p2p]`).
    pub fn with_gateway(self) -> Self {
        self.with(Role::Gateway)
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The password of the key files named by the config.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A role's key, given instead of read from its key file.
    pub fn key(mut self, role: Role, key: SecretKey) -> Self {
        self.keys.insert(role, key);
        self
    }

    /// Models to serve, opened by the caller, instead of the `[provider]` section's.
    pub fn provider_models(mut self, models: Vec<(ServedModel, ModelListing)>) -> Self {
        self.models = Some(models);
        self
    }

    pub fn provider_settings(mut self, settings: ProviderSettings) -> Self {
        self.provider_settings = settings;
        self
    }

    /// Adjusts the gateway's settings after they are made from the `[gateway]` section.
    pub fn gateway_settings(
        mut self,
        tweak: impl FnOnce(&mut agora_gateway::GatewayConfig) + Send + 'static,
    ) -> Self {
        self.gateway_tweak = Some(Box::new(tweak));
        self
    }

    /// Runs once the ledger answers, before the gateway and the provider start.
    pub fn on_chain_ready<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(ChainClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        self.hooks
            .push(Box::new(move |chain| Box::pin(hook(chain))));
        self
    }

    /// The key file a role signs with.
    pub fn key_file(&self, role: Role) -> PathBuf {
        let c = &self.config;
        match role {
            Role::Validator => None,
            Role::Provider => c.provider.key.clone(),
            Role::Gateway => c.gateway.key.clone(),
        }
        .unwrap_or_else(|| c.chain.key_file.clone())
    }

    /// Whether launching needs the key-file password (some role's key is not given).
    pub fn needs_password(&self) -> bool {
        self.roles.iter().any(|r| !self.keys.contains_key(r))
    }

    fn take_key(&mut self, role: Role) -> Result<Option<SecretKey>, LaunchError> {
        if !self.has(role) {
            return Ok(None);
        }
        if let Some(k) = self.keys.remove(&role) {
            return Ok(Some(k));
        }
        let path = self.key_file(role);
        let err = |message: String| LaunchError::Key {
            path: path.display().to_string(),
            message,
        };
        let password = self
            .password
            .as_deref()
            .ok_or_else(|| err("no password given for the key file".into()))?;
        keystore::load(&path, password)
            .map(Some)
            .map_err(|e| err(e.to_string()))
    }

    /// Starts the roles in order; on a failure, stops what already started.
    pub async fn launch(mut self) -> Result<RunningNode, LaunchError> {
        let validator_key = self.take_key(Role::Validator)?;
        let provider_key = self.take_key(Role::Provider)?;
        let gateway_key = self.take_key(Role::Gateway)?;
        if let (Some(p), Some(g)) = (&provider_key, &gateway_key)
            && p.public() == g.public()
        {
            return Err(LaunchError::SameAccount);
        }
        let cfg = self.config.clone();
        let provider = match provider_key {
            Some(key) => Some(self.provider_plan(key)?),
            None => None,
        };
        let mut node = RunningNode {
            validator: None,
            gateway: None,
            provider: None,
            chain: None,
            p2p_addr: None,
            models: Vec::new(),
            overlays: Vec::new(),
            tasks: Vec::new(),
            metrics: Arc::new(MetricsHub::default()),
            metrics_addr: None,
        };
        let auditor_key = validator_key
            .as_ref()
            .filter(|_| !cfg.audit.models.is_empty())
            .map(|k| SecretKey::from_bytes(k.to_bytes()));
        if let Some(key) = validator_key {
            node.validator = Some(start_validator(&cfg, key).await?);
        }
        // A ledger named in the config is the one the services use, even beside a validator.
        let chain_url = cfg.chain.rpc_url.clone().or_else(|| node.rpc_url());
        node.chain = chain_url.map(|url| ChainClient::new(&url));
        if node.chain.is_none() && (provider.is_some() || gateway_key.is_some()) {
            return Err(LaunchError::NoChain);
        }
        let started = match auditor_key {
            Some(key) => start_auditor(&mut node, &cfg, key).await,
            None => Ok(()),
        };
        let started = match started {
            Ok(()) => {
                self.start_services(&mut node, &cfg, provider, gateway_key)
                    .await
            }
            Err(e) => Err(e),
        };
        let started = match started {
            Ok(()) => serve_metrics(&mut node, &cfg).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => Ok(node),
            Err(e) => {
                node.shutdown().await;
                Err(e)
            }
        }
    }

    /// The provider's key, models, stake and price: everything checked before a service starts.
    fn provider_plan(&mut self, key: SecretKey) -> Result<ProviderPlan, LaunchError> {
        let p = &self.config.provider;
        let price = Price {
            input_per_million: agr("input_price", &p.input_price)?,
            output_per_million: agr("output_price", &p.output_price)?,
        };
        let stake = agr("stake", &p.stake)?;
        let models = match self.models.take() {
            Some(m) => m,
            None => models::load(p, price)?,
        };
        if models.is_empty() {
            return Err(ModelError::NoModel.into());
        }
        Ok(ProviderPlan { key, models, stake })
    }

    async fn start_services(
        &mut self,
        node: &mut RunningNode,
        cfg: &NodeConfig,
        provider: Option<ProviderPlan>,
        gateway_key: Option<SecretKey>,
    ) -> Result<(), LaunchError> {
        let Some(chain) = node.chain.clone() else {
            return Ok(());
        };
        for hook in std::mem::take(&mut self.hooks) {
            hook(chain.clone()).await.map_err(LaunchError::Hook)?;
        }
        let mut listen = cfg.p2p.listen.clone();
        let mut bootstrap = cfg.p2p.bootstrap.clone();
        if let Some(key) = gateway_key {
            let state = cfg
                .gateway
                .state_dir
                .clone()
                .unwrap_or_else(|| cfg.chain.services_dir());
            create_dir(&state)?;
            let (net, _inbound) = agora_p2p::spawn(
                key.to_bytes(),
                net_config(&listen, &bootstrap, &cfg.p2p),
                None,
            )
            .await
            .map_err(|e| LaunchError::Overlay(e.to_string()))?;
            node.overlays.push(net.clone());
            let addr = listen_addr(&net).await;
            let sender = Arc::new(TxSender::new(key, chain.clone()).await?);
            let mut settings = agora_gateway::GatewayConfig {
                listen: cfg.gateway.listen,
                customers_path: Some(
                    cfg.gateway
                        .api_keys
                        .clone()
                        .unwrap_or_else(|| state.join("api-keys.json")),
                ),
                receipts_path: Some(state.join("receipts.jsonl")),
                audit_batches_path: Some(state.join("audit-batches.jsonl")),
                commit_every: Duration::from_millis(cfg.gateway.commit_ms.max(100)),
                relay: agora_gateway::RelaySettings {
                    stall_timeout: Duration::from_millis(cfg.gateway.stall_ms),
                    ..Default::default()
                },
                payer: agora_gateway::PayerSettings {
                    journal: Some(state.join("channels.json")),
                    ..Default::default()
                },
                ..agora_gateway::GatewayConfig::default()
            };
            if let Some(tweak) = self.gateway_tweak.take() {
                tweak(&mut settings);
            }
            node.gateway = Some(Gateway::start(settings, net, sender).await?);
            // A provider in the same process joins through the gateway's overlay node.
            if let Some(a) = &addr {
                bootstrap.push(a.clone());
                listen = with_port_zero(&listen);
            }
            node.p2p_addr = addr;
        }
        if let Some(plan) = provider {
            let state = cfg
                .provider
                .state_dir
                .clone()
                .unwrap_or_else(|| cfg.chain.services_dir());
            create_dir(&state)?;
            node.models = plan.models.iter().map(|(m, _)| ServedInfo::of(m)).collect();
            let rp = launch(Launch {
                key: plan.key,
                chain,
                net: net_config(&listen, &bootstrap, &cfg.p2p),
                models: plan.models,
                stake: plan.stake,
                settings: self.provider_settings.clone(),
                voucher_file: Some(state.join("vouchers.json")),
                slots: cfg.provider.slots,
            })
            .await?;
            if node.p2p_addr.is_none() {
                node.p2p_addr = rp.p2p_addr().await;
            }
            node.provider = Some(rp);
        }
        Ok(())
    }
}

/// The validator's auditor ([audit]): its models opened, following the ledger from its tip.
async fn start_auditor(
    node: &mut RunningNode,
    cfg: &NodeConfig,
    key: SecretKey,
) -> Result<(), LaunchError> {
    let Some(url) = node.rpc_url() else {
        return Ok(());
    };
    let score_dir = cfg.audit.score.then(|| cfg.chain.data_dir.join("scorer"));
    let probe = (!cfg.audit.probe_gateway.is_empty()).then(|| agora_audit::scorer::ProbeSettings {
        gateway: cfg.audit.probe_gateway.clone(),
        api_key: cfg.audit.probe_api_key.clone(),
        per_epoch: cfg.audit.probes_per_epoch,
    });
    let cfg = cfg.audit.clone();
    let models = tokio::task::spawn_blocking(move || {
        models::load_auditors(&cfg).map(|m| (m, cfg.gateways.clone()))
    })
    .await
    .map_err(|e| LaunchError::Overlay(e.to_string()))?;
    let (models, gateways) = models?;
    let chain = ChainClient::new(&url);
    let sender = Arc::new(TxSender::new(key, chain.clone()).await?);
    let tip = chain.info().await?.height;
    let auditors = models
        .into_iter()
        .map(|(sha, scheduler)| (sha, agora_audit::Auditor::new(scheduler, sha)))
        .collect();
    let role = agora_audit::role::AuditRole::new(
        sender,
        auditors,
        agora_audit::role::RoleSettings {
            gateways,
            score_dir,
            probe,
            ..Default::default()
        },
    );
    node.metrics.add(role.metrics().registry().clone());
    tracing::info!(target: "agora::node", from = tip, "auditor following receipt commitments");
    node.tasks.push(tokio::spawn(role.run(tip)));
    Ok(())
}

/// Gathers every started role's metrics and, with `[metrics] listen`, serves them.
async fn serve_metrics(node: &mut RunningNode, cfg: &NodeConfig) -> Result<(), LaunchError> {
    let hub = node.metrics.clone();
    if let Some(v) = &node.validator {
        hub.add_ledger(v.shared.clone());
    }
    for o in &node.overlays {
        hub.add_labelled(
            o.metrics().registry().clone(),
            "peer",
            &o.peer_id().to_string(),
        );
    }
    if let Some(g) = &node.gateway {
        hub.add(g.metrics.registry().clone());
    }
    if let Some(p) = &node.provider {
        hub.add_labelled(
            p.net.metrics().registry().clone(),
            "peer",
            &p.net.peer_id().to_string(),
        );
        hub.add(p.provider.metrics().registry().clone());
    }
    let Some(listen) = cfg.metrics.listen else {
        return Ok(());
    };
    let (addr, task) =
        crate::metrics::serve(listen, hub)
            .await
            .map_err(|e| LaunchError::Setting {
                section: "metrics",
                key: "listen",
                value: listen.to_string(),
                message: e.to_string(),
            })?;
    tracing::info!(target: "agora::node", %addr, "metrics at /metrics");
    node.metrics_addr = Some(addr);
    node.tasks.push(task);
    Ok(())
}

struct ProviderPlan {
    key: SecretKey,
    models: Vec<(ServedModel, ModelListing)>,
    stake: Amount,
}

fn agr(key: &'static str, value: &str) -> Result<Amount, LaunchError> {
    Amount::parse_agr(value).map_err(|e| LaunchError::Setting {
        section: "provider",
        key,
        value: value.to_string(),
        message: e.to_string(),
    })
}

fn create_dir(dir: &Path) -> Result<(), LaunchError> {
    std::fs::create_dir_all(dir).map_err(|e| LaunchError::Setting {
        section: "chain",
        key: "state_dir",
        value: dir.display().to_string(),
        message: e.to_string(),
    })
}

/// A one-validator chain in-process when `[validator]` names no peers, else one validator of
/// the network it names.
async fn start_validator(cfg: &NodeConfig, key: SecretKey) -> Result<NodeHandle, StartError> {
    if cfg.validator.peers.is_empty() {
        return crate::start(cfg, key).await;
    }
    let running = crate::validator::spawn(cfg.chain.clone(), cfg.validator.clone(), key).await?;
    Ok(NodeHandle {
        rpc_addr: running.rpc_addr,
        shared: running.shared.clone(),
        validator: running,
    })
}

/// The overlay settings of one node: loopback listeners get the local-test profile.
fn net_config(listen: &Multiaddr, bootstrap: &[Multiaddr], p2p: &P2pConfig) -> NetConfig {
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
    cfg.limits.requests_per_sec = p2p.requests_per_sec;
    cfg.limits.request_burst = p2p.request_burst;
    // Offers are the market's type: the overlay checks them with the market's decoder.
    cfg.offer_validator = Some(agora_gateway::market::offer_validator());
    cfg
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

/// The roles of a node, running.
pub struct RunningNode {
    pub validator: Option<NodeHandle>,
    pub gateway: Option<Gateway>,
    pub provider: Option<RunningProvider>,
    /// The ledger the provider and gateway use.
    pub chain: Option<ChainClient>,
    /// An overlay address others can bootstrap from.
    pub p2p_addr: Option<Multiaddr>,
    /// What the provider serves.
    pub models: Vec<ServedInfo>,
    overlays: Vec<agora_p2p::Handle>,
    /// Background roles (the auditor) and the metrics server, stopped first.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Every role's metrics in this process.
    pub metrics: Arc<MetricsHub>,
    /// Where `GET /metrics` answers (`[metrics] listen`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// What a shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Payment channels the gateway closed.
    pub channels_closed: usize,
    /// The validator's finalized height when its store closed.
    pub final_height: Option<u64>,
}

impl RunningNode {
    /// This node's own RPC, when it runs a validator.
    pub fn rpc_url(&self) -> Option<String> {
        self.validator.as_ref().map(NodeHandle::rpc_url)
    }

    /// Waits (up to `timeout`) until this node's gateway routes to every model this node's
    /// provider serves, so a request sent right after start finds a provider.
    pub async fn wait_until_routable(&self, timeout: Duration) -> bool {
        let (Some(g), Some(p)) = (&self.gateway, &self.provider) else {
            return true;
        };
        let want: Vec<String> = p.provider.models().map(|m| m.name.clone()).collect();
        let until = tokio::time::Instant::now() + timeout;
        loop {
            g.market.refresh().await;
            let have = g.market.models();
            if want.iter().all(|w| have.iter().any(|(m, _)| &m.name == w)) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every role in the one order (module docs): the gateway's channels close and the
    /// provider redeems while the ledger still runs; the store closes last.
    /// Resolves with the role's name when a role this process cannot do without stops on its
    /// own (today the validator: without consensus its RPC is gone too); never otherwise.
    pub async fn role_ended(&mut self) -> &'static str {
        match self.validator.as_mut() {
            Some(v) => {
                v.ended().await;
                "validator"
            }
            None => std::future::pending().await,
        }
    }

    pub async fn shutdown(self) -> Stopped {
        let mut stopped = Stopped::default();
        for t in &self.tasks {
            t.abort();
        }
        if let Some(g) = self.gateway {
            stopped.channels_closed = g.shutdown().await;
        }
        if let Some(p) = self.provider {
            p.shutdown().await;
        }
        for net in self.overlays {
            net.shutdown().await;
        }
        if let Some(v) = self.validator {
            let shared = v.shared.clone();
            // Joins the consensus thread: off the async workers.
            let _ = tokio::task::spawn_blocking(move || v.shutdown()).await;
            stopped.final_height = shared.chain.lock().ok().map(|c| c.state().height());
            // The last reference: the store closes here.
            drop(shared);
        }
        tracing::info!(target: "agora::node", ?stopped, "node stopped");
        stopped
    }
}
