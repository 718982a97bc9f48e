//! A whole network in one process: a ledger node (single producer), providers on the test engine,
//! a gateway, all talking over real loopback sockets (HTTP RPC, libp2p).

use std::sync::Arc;
use std::time::Duration;

use agora_gateway::{Customer, Gateway, GatewayConfig, HttpLimits, RelaySettings};
use agora_inference::SchedulerConfig;
use agora_inference::backends::test_engine::{TestEngine, TestEngineConfig};
use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_node::{NodeConfig, NodeHandle};
use agora_p2p::{Multiaddr, NetConfig};
use agora_provider::launch::{Launch, RunningProvider, launch, listen_addr};
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
    /// Kept so the ledger node lives as long as the network.
    pub _node: NodeHandle,
    pub chain: ChainClient,
    pub gateway: Gateway,
    pub providers: Vec<Option<RunningProvider>>,
    pub provider_keys: Vec<SecretKey>,
    pub owner: SecretKey,
    pub boot: Multiaddr,
    _dir: tempfile::TempDir,
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
        let cfg = NodeConfig {
            data_dir: dir.path().join("data"),
            genesis: genesis_path,
            rpc_addr: "127.0.0.1:0".parse().unwrap(),
            idle_block_ms: 200,
            ..NodeConfig::default()
        };
        let node = agora_node::start(&cfg, SecretKey::from_bytes(validator.to_bytes()))
            .await
            .unwrap();
        let chain = ChainClient::new(&node.rpc_url());
        // The model's owner publishes it (royalties go to the owner on every redeem).
        let owner_tx = TxSender::new(owner.clone(), chain.clone()).await.unwrap();
        owner_tx
            .send(TxBody::RegisterModel(ModelRegistration {
                sha256: model_sha(),
                name: MODEL.into(),
                family: "test".into(),
                kind: agora_types::ModelKind::Chat,
                license: "test".into(),
                royalty_bps: ROYALTY_BPS,
            }))
            .await
            .unwrap();

        // Gateway first: providers bootstrap from its overlay address.
        let (gw_net, _inbound) = agora_p2p::spawn(
            gateway_key.to_bytes(),
            NetConfig {
                offer_validator: Some(agora_gateway::market::offer_validator()),
                ..NetConfig::local_test()
            },
            None,
        )
        .await
        .unwrap();
        let boot = listen_addr(&gw_net).await.unwrap();
        let sender = Arc::new(
            TxSender::new(gateway_key.clone(), chain.clone())
                .await
                .unwrap(),
        );
        let gateway = Gateway::start(
            GatewayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                relay,
                refresh_every: Duration::from_millis(200),
                deposits_every: Duration::from_millis(100),
                http,
                ..GatewayConfig::default()
            },
            gw_net,
            sender,
        )
        .await
        .unwrap();
        gateway.customers.insert(
            API_KEY,
            Customer {
                name: "test".into(),
                account: owner.public(),
                credit: Amount::from_agr(100),
                spent: Amount::ZERO,
            },
        );
        let mut net = TestNet {
            _node: node,
            chain,
            gateway,
            providers: Vec::new(),
            provider_keys: provider_keys.clone(),
            owner,
            boot,
            _dir: dir,
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
        let mut net_cfg = NetConfig {
            bootstrap: vec![self.boot.clone()],
            ..NetConfig::local_test()
        };
        net_cfg.limits.requests_per_sec = 10_000.0;
        net_cfg.limits.request_burst = 10_000.0;
        launch(Launch {
            key,
            chain: self.chain.clone(),
            net: net_cfg,
            models: vec![(served, listing)],
            stake: Amount::from_agr(200),
            settings: ProviderSettings {
                redeem_every: Duration::from_secs(3600),
                ..ProviderSettings::default()
            },
            voucher_file: None,
            slots: 8,
        })
        .await
        .unwrap()
    }

    /// Waits until the gateway's market lists `n` providers.
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
}
