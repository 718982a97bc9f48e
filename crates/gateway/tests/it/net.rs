//! A whole network in one process: a ledger node (single producer), providers on the test engine,
//! a gateway, all talking over real loopback sockets (HTTP RPC, libp2p).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agora_gateway::{Customer, Gateway, GatewayConfig, HttpLimits, RelaySettings};
use agora_inference::SchedulerConfig;
use agora_inference::backends::test_engine::{TestEngine, TestEngineConfig};
use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_node::config::ChainConfig;
use agora_node::{NodeBuilder, NodeConfig, Role, RunningNode};
use agora_p2p::Multiaddr;
use agora_provider::launch::RunningProvider;
use agora_provider::register::ModelListing;
use agora_provider::{ChainClient, ModelEngine, Price, ProviderSettings, ServedModel, TxSender};
use agora_types::tx::ModelRegistration;
use agora_types::{Address, Amount, Hash, HashDomain, SecretKey, TxBody};

pub const API_KEY: &str = "sk-agora-test";
pub const MODEL: &str = "test-chat-instruct";
pub const ROYALTY_BPS: u16 = 300;

pub fn model_sha() -> Hash {
    Hash::of(HashDomain::Request, b"test engine model")
}

/// Funded keys no test provider uses (for extra providers a test starts itself).
pub fn spare_keys() -> Vec<SecretKey> {
    (0..2)
        .map(|i| SecretKey::from_test_seed(&format!("spare-{i}")))
        .collect()
}

pub fn treasury() -> Address {
    Params::default().treasury
}

pub struct TestNet {
    /// The validator and the gateway's overlay node, kept as long as the network.
    pub node: RunningNode,
    pub chain: ChainClient,
    pub gateway: Gateway,
    pub providers: Vec<Option<RunningProvider>>,
    pub provider_keys: Vec<SecretKey>,
    pub owner: SecretKey,
    pub boot: Multiaddr,
    dir: tempfile::TempDir,
    started: AtomicUsize,
}

pub fn price(i: u128, o: u128) -> Price {
    Price {
        input_per_million: Amount(i),
        output_per_million: Amount(o),
    }
}

impl TestNet {
    /// Starts the chain, one provider per price (test engine with `step_delay`), and a gateway
    /// that sees them all.
    pub async fn start(prices: &[Price], step_delay: Duration, relay: RelaySettings) -> TestNet {
        Self::start_with(prices, step_delay, relay, HttpLimits::default()).await
    }

    /// `start` with the gateway's HTTP client limits.
    pub async fn start_with(
        prices: &[Price],
        step_delay: Duration,
        relay: RelaySettings,
        http: HttpLimits,
    ) -> TestNet {
        let dir = tempfile::tempdir().unwrap();
        let validator = SecretKey::from_test_seed("validator");
        let owner = SecretKey::from_test_seed("model-owner");
        let gateway_key = SecretKey::from_test_seed("gateway");
        let provider_keys: Vec<SecretKey> = (0..prices.len())
            .map(|i| SecretKey::from_test_seed(&format!("provider-{i}")))
            .collect();
        let mut accounts = vec![
            GenesisAccount {
                address: owner.public(),
                balance: Amount::from_agr(10),
            },
            GenesisAccount {
                address: gateway_key.public(),
                balance: Amount::from_agr(1_000),
            },
        ];
        for k in provider_keys.iter().chain(&spare_keys()) {
            accounts.push(GenesisAccount {
                address: k.public(),
                balance: Amount::from_agr(1_000),
            });
        }
        let genesis = Genesis {
            chain_id: "agora-gateway-test".into(),
            timestamp_ms: 0,
            params: Params::default(),
            accounts,
            validators: vec![GenesisValidator {
                address: validator.public(),
                stake: Amount::from_agr(10_000),
            }],
        };
        let genesis_path = dir.path().join("genesis.json");
        std::fs::write(&genesis_path, serde_json::to_vec(&genesis).unwrap()).unwrap();
        let mut cfg = NodeConfig {
            chain: ChainConfig {
                data_dir: dir.path().join("data"),
                genesis: genesis_path,
                rpc_addr: "127.0.0.1:0".parse().unwrap(),
                ..ChainConfig::default()
            },
            p2p: local_p2p(Vec::new()),
            ..NodeConfig::default()
        };
        cfg.validator.idle_block_ms = 200;
        let owner_key = owner.clone();
        let book = dir.path().join("api-keys.json");
        // One process: the validator, then the gateway; providers bootstrap from its overlay
        // address.
        let mut node = NodeBuilder::new(cfg)
            .with_validator()
            .with_gateway()
            .key(Role::Validator, validator)
            .key(Role::Gateway, gateway_key)
            // The model's owner publishes it (royalties go to the owner on every redeem).
            .on_chain_ready(move |chain| async move {
                let owner_tx = TxSender::new(owner_key, chain).await?;
                owner_tx
                    .send(TxBody::RegisterModel(ModelRegistration {
                        sha256: model_sha(),
                        name: MODEL.into(),
                        family: "test".into(),
                        kind: agora_types::ModelKind::Chat,
                        license: "test".into(),
                        royalty_bps: ROYALTY_BPS,
                    }))
                    .await?;
                Ok(())
            })
            .gateway_settings(move |g| {
                // The API-key book on disk, as a node keeps it (a charge is durable before its
                // response ends); no channel journal.
                *g = GatewayConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    customers_path: Some(book),
                    relay,
                    refresh_every: Duration::from_millis(200),
                    deposits_every: Duration::from_millis(100),
                    http,
                    ..GatewayConfig::default()
                };
            })
            .launch()
            .await
            .unwrap();
        let chain = node.chain.clone().unwrap();
        let boot = node.p2p_addr.clone().unwrap();
        let gateway: Gateway = node.gateway.take().unwrap();
        gateway.customers.insert(
            API_KEY,
            Customer {
                name: "test".into(),
                account: owner.public(),
                credit: Amount::from_agr(100),
                spent: Amount::ZERO,
                limits: Default::default(),
            },
        );
        let mut net = TestNet {
            node,
            chain,
            gateway,
            providers: Vec::new(),
            provider_keys: provider_keys.clone(),
            owner,
            boot,
            dir,
            started: AtomicUsize::new(0),
        };
        for (k, p) in provider_keys.iter().zip(prices) {
            let rp = net.start_provider(k.clone(), *p, step_delay).await;
            net.providers.push(Some(rp));
        }
        net.wait_for_providers(prices.len()).await;
        net
    }

    pub async fn start_provider(
        &self,
        key: SecretKey,
        price: Price,
        step_delay: Duration,
    ) -> RunningProvider {
        let scheduler = TestEngine::spawn(
            TestEngineConfig {
                step_delay,
                ..TestEngineConfig::default()
            },
            SchedulerConfig::default(),
        )
        .unwrap();
        let served = ServedModel {
            sha256: model_sha(),
            name: MODEL.into(),
            price,
            engine: ModelEngine::Generate(Arc::new(scheduler)),
        };
        let listing = ModelListing {
            sha256: model_sha(),
            name: MODEL.into(),
            family: "test".into(),
            kind: agora_types::ModelKind::Chat,
            license: "test".into(),
            royalty_bps: ROYALTY_BPS,
            price,
        };
        self.start_provider_with(key, served, listing).await
    }

    /// A provider serving `served`, registered under `listing`.
    pub async fn start_provider_with(
        &self,
        key: SecretKey,
        served: ServedModel,
        listing: ModelListing,
    ) -> RunningProvider {
        // Each provider its own state directory, so none finds another's vouchers.
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let mut cfg = NodeConfig::default();
        cfg.chain.rpc_url = self.node.rpc_url();
        cfg.p2p = local_p2p(vec![self.boot.clone()]);
        cfg.provider.stake = "200".into();
        cfg.provider.slots = 8;
        cfg.provider.state_dir = Some(self.dir.path().join(format!("provider-{n}")));
        let mut node = NodeBuilder::new(cfg)
            .with_provider()
            .key(Role::Provider, key)
            .provider_models(vec![(served, listing)])
            .provider_settings(ProviderSettings {
                redeem_every: Duration::from_secs(3600),
                ..ProviderSettings::default()
            })
            .launch()
            .await
            .unwrap();
        node.provider.take().unwrap()
    }

    /// Waits until the gateway's market lists `n` providers.
    /// The gateway's customer book on disk.
    pub fn customer_book(&self) -> std::path::PathBuf {
        self.dir.path().join("api-keys.json")
    }

    pub async fn wait_for_providers(&self, n: usize) {
        for _ in 0..200 {
            self.gateway.market.refresh().await;
            if self.gateway.market.providers().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "gateway sees {} providers, expected {n}",
            self.gateway.market.providers().len()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    /// Waits until every channel's latest voucher was acknowledged by its provider.
    pub async fn settle_vouchers(&self) {
        for _ in 0..200 {
            let chans = self.gateway.payer.channels().await;
            if chans.iter().all(|c| c.acked() >= c.cumulative()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("vouchers were not all acknowledged");
    }

    pub async fn balance(&self, a: &Address) -> (Amount, u64) {
        let v = self.chain.account(a).await.unwrap();
        (v.balance, v.nonce)
    }

    /// What `a` holds in all: its balance and its locked earnings (a provider's channel
    /// earnings stay locked for the ledger's `earnings_lock_blocks`).
    pub async fn holdings(&self, a: &Address) -> (Amount, u64) {
        let v = self.chain.account(a).await.unwrap();
        let locked = v.locked.iter().map(|l| l.amount.0).sum::<u128>();
        (Amount(v.balance.0 + locked), v.nonce)
    }
}

/// The overlay on loopback, with room for a busy gateway's requests.
fn local_p2p(bootstrap: Vec<Multiaddr>) -> agora_node::config::P2pConfig {
    agora_node::config::P2pConfig {
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        bootstrap,
        requests_per_sec: 10_000.0,
        request_burst: 10_000.0,
    }
}
