//! One config file, three roles through the builder: a validator, a provider (test engine) and a
//! gateway in one process serve a chat completion over HTTP, then shut down in the one order.
//! The ledger, reopened from the store, shows the order worked: the gateway's channel closed,
//! the provider's last voucher redeemed, the store flushed at the height it stopped at.

use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_node::models::TEST_ENGINE_MODEL;
use agora_node::store::Store;
use agora_node::{NodeBuilder, NodeConfig, keystore};
use agora_types::{Amount, SecretKey};
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = r#"
[chain]
data_dir = "data"
genesis = "genesis.json"
key_file = "validator-key.json"
rpc_addr = "127.0.0.1:0"

[validator]
# No empty blocks: the height moves only with transactions.
idle_block_ms = 3600000

[p2p]
listen = "/ip4/127.0.0.1/tcp/0"

[provider]
key = "provider-key.json"
test_engine = 1
input_price = "1"
output_price = "3"
stake = "200"

[gateway]
key = "gateway-key.json"
listen = "127.0.0.1:0"
api_keys = "api-keys.json"
"#;

const API_KEY: &str = "sk-agora-builder-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_provider_and_gateway_from_one_config_serve_and_stop_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let validator = SecretKey::from_test_seed("builder-validator");
    let provider = SecretKey::from_test_seed("builder-provider");
    let gateway = SecretKey::from_test_seed("builder-gateway");
    let customer = SecretKey::from_test_seed("builder-customer");
    for (name, key) in [
        ("validator-key.json", &validator),
        ("provider-key.json", &provider),
        ("gateway-key.json", &gateway),
    ] {
        keystore::save_with_cost(&dir.path().join(name), key, "pw", 8, 1).unwrap();
    }
    let genesis = Genesis {
        chain_id: "agora-builder-test".into(),
        timestamp_ms: 0,
        params: Params::default(),
        accounts: [&provider, &gateway]
            .iter()
            .map(|k| GenesisAccount {
                address: k.public(),
                balance: Amount::from_agr(1_000),
            })
            .collect(),
        validators: vec![GenesisValidator {
            address: validator.public(),
            stake: Amount::from_agr(10_000),
        }],
    };
    std::fs::write(
        dir.path().join("genesis.json"),
        serde_json::to_vec(&genesis).unwrap(),
    )
    .unwrap();
    let path = dir.path().join("agora.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let cfg = NodeConfig::load_with_env(Some(&path), Vec::new()).unwrap();

    let node = NodeBuilder::new(cfg.clone())
        .password("pw")
        .with_validator()
        .with_provider()
        .with_gateway()
        .launch()
        .await
        .unwrap();
    assert!(node.wait_until_routable(Duration::from_secs(30)).await);
    let chain = node.chain.clone().unwrap();
    let gw = node.gateway.as_ref().unwrap();
    gw.customers.insert(
        API_KEY,
        agora_gateway::Customer {
            name: "test".into(),
            account: customer.public(),
            credit: Amount::from_agr(100),
            spent: Amount::ZERO,
            limits: Default::default(),
        },
    );
    let before = chain.account(&provider.public()).await.unwrap();

    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", gw.base_url()))
        .bearer_auth(API_KEY)
        .json(&json!({"model": TEST_ENGINE_MODEL, "max_tokens": 12,
            "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    let charged: u128 = v["choices"][0]["agora"]["charged"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no charge in {v}"));
    assert!(charged > 0);
    assert_eq!(gw.customers.total_spent(), Amount(charged));
    let channels = gw.payer.channels().await;
    assert_eq!(channels.len(), 1);
    let channel = channels[0].id;

    let stopped = node.shutdown().await;
    assert_eq!(stopped.channels_closed, 1);
    let height = stopped.final_height.expect("the validator ran");

    // The store reopens where the node stopped.
    let store = Store::open(&cfg.chain.data_dir.join("chain.redb")).unwrap();
    let state = store.load_or_init(&genesis).unwrap();
    assert_eq!(state.height(), height);
    // The gateway closed its channel; the provider redeemed all of it before the ledger stopped.
    let c = state
        .channel(&channel)
        .expect("the channel is on the ledger");
    assert!(c.close_deadline.is_some(), "the channel was closed");
    assert_eq!(c.redeemed, Amount(charged), "the last voucher was redeemed");
    let after = state.account(&provider.public());
    let params = Params::default();
    let fees = params.min_fee.0 * u128::from(after.nonce - before.nonce);
    let share = charged - Amount(charged).mul_bps(params.protocol_fee_bps).0;
    // The provider's share is locked for `earnings_lock_blocks` (a failed audit could still
    // take it back), so it shows as locked earnings, not yet as balance.
    let locked = state.locked_total(&provider.public());
    assert_eq!(locked.0, share, "the whole share is locked");
    assert_eq!(after.balance.0 + fees, before.balance.0);
}
