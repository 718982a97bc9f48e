//! Bugs the chaos suite (`agora testnet chaos`, `agora-chaos`) found, each pinned by a test named
//! after the scenario and seed that found it.

use std::time::Duration;

use agora_provider::TxSender;
use agora_provider::register::{ModelListing, ensure_registered};
use agora_types::tx::HardwareSummary;
use agora_types::{Amount, Hash, HashDomain};

use crate::net::{TestNet, price, spare_keys};

/// `scenarios/short.toml`, seed 1: the two providers started together, both read the model as
/// unregistered, both sent `RegisterModel`, and the second stopped with "register: already
/// registered" before serving anything. Both must come up, the model registered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seed_1_two_providers_registering_one_new_model_together_both_come_up() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, Default::default()).await;
    let sha = Hash::of(
        HashDomain::Request,
        b"chaos short seed 1: a model nobody registered",
    );
    assert!(net.chain.model(&sha).await.unwrap().is_none());
    let register = |i: usize| {
        let key = spare_keys()[i].clone();
        let chain = net.chain.clone();
        async move {
            let sender = TxSender::new(key, chain).await.unwrap();
            let listing = ModelListing {
                sha256: sha,
                name: "chaos-new-model".into(),
                family: "test".into(),
                kind: agora_types::ModelKind::Chat,
                license: "test".into(),
                royalty_bps: 0,
                price: price(1, 1),
            };
            ensure_registered(
                &sender,
                &[listing],
                Amount::from_agr(200),
                vec![i as u8; 4],
                vec![],
                HardwareSummary {
                    accelerator: "cpu".into(),
                    memory_mib: 0,
                    cpu_cores: 1,
                },
            )
            .await
        }
    };
    let (a, b) = tokio::join!(register(0), register(1));
    let (a, b) = (
        a.expect("provider 0 registers"),
        b.expect("provider 1 registers"),
    );
    // Exactly one of them published the model; both are providers now.
    assert_eq!(a.models_registered + b.models_registered, 1, "{a:?} {b:?}");
    assert!(a.provider_updated && b.provider_updated);
    assert!(net.chain.model(&sha).await.unwrap().is_some());
}

/// `scenarios/short.toml`, seed 1: after the gateway was SIGKILLed and restarted, each of the
/// four customers was billed less than its responses' `agora.charged` added up to (by about two
/// requests each): the customer book was written once a second, so the charges of the last
/// second before the kill were lost. A response now ends only once its charge is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seed_1_a_charge_is_on_disk_before_its_response_ends() {
    let net = TestNet::start(
        &[price(1_000_000, 1_000_000)],
        Duration::ZERO,
        Default::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let mut told = 0u128;
    for i in 0..3 {
        let v: serde_json::Value = client
            .post(net.url("/v1/chat/completions"))
            .bearer_auth(crate::net::API_KEY)
            .json(&serde_json::json!({"model": crate::net::MODEL,
                "messages": [{"role": "user", "content": format!("hello {i}")}], "max_tokens": 8}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let charged: u128 = v["choices"][0]["agora"]["charged"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no charge in {v}"));
        assert!(charged > 0, "{v}");
        told += charged;
        // Read at once, as a crash right now would leave it.
        let book: serde_json::Value = serde_json::from_slice(
            &std::fs::read(net.customer_book())
                .unwrap_or_else(|e| panic!("{}: {e}", net.customer_book().display())),
        )
        .unwrap();
        let on_disk: u128 = book["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[1]["spent"].as_str().unwrap().parse::<u128>().unwrap())
            .sum();
        assert_eq!(on_disk, told, "the book on disk after response {i}: {book}");
    }
}
