//! Bad input over RPC gets a clear error and leaves state untouched; good input is finalized.

use agora_node::{NodeConfig, Shared};
use agora_testkit::{TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::{Amount, Encode, SecretKey, Tx, TxBody};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

async fn node() -> (tempfile::TempDir, agora_node::NodeHandle, Vec<SecretKey>) {
    // No empty blocks: the tests that use it count heights.
    node_with(agora_ledger::Params::default(), 3_600_000).await
}

/// A one-validator node over `test_genesis` with `params`, an empty block every `idle_block_ms`.
async fn node_with(
    params: agora_ledger::Params,
    idle_block_ms: u64,
) -> (tempfile::TempDir, agora_node::NodeHandle, Vec<SecretKey>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(3);
    let genesis = test_genesis(&keys, Amount::from_agr(100), params);
    std::fs::write(
        dir.path().join("genesis.json"),
        serde_json::to_string(&genesis).unwrap(),
    )
    .unwrap();
    let mut cfg = NodeConfig::default();
    cfg.chain.data_dir = dir.path().join("data");
    cfg.chain.genesis = dir.path().join("genesis.json");
    cfg.chain.rpc_addr = "127.0.0.1:0".parse().unwrap();
    cfg.validator.idle_block_ms = idle_block_ms;
    let handle = agora_node::start(&cfg, SecretKey::from_test_seed("validator-0"))
        .await
        .unwrap();
    (dir, handle, keys)
}

async fn call(shared: &Arc<Shared>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = agora_node::rpc::app(shared.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(body: impl Into<Body>, content_type: &str) -> Request<Body> {
    Request::post("/v1/txs")
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

fn root(shared: &Arc<Shared>) -> (u64, agora_types::Hash) {
    let c = shared.chain.lock().unwrap();
    (c.state().height(), c.state().root())
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_leaves_state_untouched() {
    let (_dir, node, keys) = node().await;
    let shared = node.shared.clone();
    let before = root(&shared);
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    let transfer = |f: &mut TxFactory, k: &SecretKey| {
        f.sign(
            k,
            TxBody::Transfer {
                to: keys[1].public(),
                amount: Amount(5),
            },
        )
    };

    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post(vec![0xde, 0xad, 0xbe, 0xef], "application/octet-stream"),
            StatusCode::BAD_REQUEST,
            "bad_encoding",
        ),
        (
            post("{not json", "application/json"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post(r#"{"tx":"zz"}"#, "application/json"),
            StatusCode::BAD_REQUEST,
            "bad_hex",
        ),
        (
            post(vec![b'a'; 10 * 1024 * 1024], "application/json"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            post(
                Tx {
                    chain_id: "other-chain".into(),
                    signer: keys[0].public(),
                    nonce: 0,
                    fee: Amount(1_000),
                    body: TxBody::Withdraw,
                }
                .sign(&keys[0])
                .encode(),
                "application/octet-stream",
            ),
            StatusCode::BAD_REQUEST,
            "wrong_chain",
        ),
        (
            {
                let mut stx = transfer(&mut TxFactory::new(TEST_CHAIN, Amount(1_000)), &keys[0]);
                stx.signature.0[5] ^= 0x40;
                post(stx.encode(), "application/octet-stream")
            },
            StatusCode::BAD_REQUEST,
            "bad_signature",
        ),
        (
            post(
                transfer(&mut TxFactory::new(TEST_CHAIN, Amount(1)), &keys[0]).encode(),
                "application/octet-stream",
            ),
            StatusCode::BAD_REQUEST,
            "fee_too_low",
        ),
        (
            post(
                transfer(
                    &mut TxFactory::new(TEST_CHAIN, Amount::from_agr(1_000)),
                    &keys[0],
                )
                .encode(),
                "application/octet-stream",
            ),
            StatusCode::BAD_REQUEST,
            "insufficient_funds",
        ),
        (
            Request::get("/v1/accounts/agora1notanaddress")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            Request::get("/v1/blocks/999").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (req, status, code) in cases {
        let (got, body) = call(&shared, req).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(root(&shared), before, "rejected input changed state");
    assert_eq!(shared.chain.lock().unwrap().mempool().len(), 0);

    // A good tx is accepted, finalized, and a replay of it is rejected.
    let good = transfer(&mut f, &keys[0]);
    let body = serde_json::json!({"tx": hex::encode(good.encode())}).to_string();
    let (status, resp) = call(&shared, post(body.clone(), "application/json")).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let id = resp["id"].as_str().unwrap().to_string();
    let (status, dup) = call(&shared, post(body.clone(), "application/json")).await;
    assert_eq!(
        (status, dup["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate"))
    );
    let mut final_ = Value::Null;
    for _ in 0..200 {
        let (_, v) = call(
            &shared,
            Request::get(format!("/v1/txs/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if v["status"] == "final" {
            final_ = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        final_["receipt"]["outcome"]["status"], "success",
        "{final_}"
    );
    let after_good = root(&shared);
    assert_eq!(
        after_good.0,
        before.0 + 1,
        "before {before:?} after {after_good:?} {final_}"
    );
    let (status, replay) = call(&shared, post(body, "application/json")).await;
    assert_eq!(
        (status, replay["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("bad_nonce")),
        "{replay}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(root(&shared), after_good, "a replayed tx changed state");
    let (_, acct) = call(
        &shared,
        Request::get(format!("/v1/accounts/{}", keys[1].public()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(acct["balance"], (Amount::from_agr(100).0 + 5).to_string());
    node.shutdown();
}

/// A batch gets one result per transaction, in order: good ones pending then final, each bad one
/// its own error, and the bad ones change nothing. An oversized batch is refused whole.
#[tokio::test]
async fn batch_submission_answers_each_transaction_and_admits_only_the_good_ones() {
    let (_dir, node, keys) = node().await;
    let shared = node.shared.clone();
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    let transfer = |f: &mut TxFactory, k: &SecretKey, amount: u128| {
        f.sign(
            k,
            TxBody::Transfer {
                to: keys[2].public(),
                amount: Amount(amount),
            },
        )
    };
    let good_a = transfer(&mut f, &keys[0], 7);
    let good_b = transfer(&mut f, &keys[0], 11);
    let mut forged = transfer(&mut f, &keys[1], 13);
    forged.tx.fee = Amount(2_000); // the signature no longer covers the body
    let hex_of = |stx: &agora_types::SignedTx| hex::encode(stx.encode());
    let body = serde_json::json!({"txs": [
        hex_of(&good_a),
        hex_of(&good_b),
        hex_of(&forged),
        "zz",
        hex::encode([1u8, 2, 3]),
        hex_of(&good_a),
    ]})
    .to_string();
    let req = Request::post("/v1/txs/batch")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, resp) = call(&shared, req).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let results = resp["results"].as_array().expect("results");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| {
            r["status"]
                .as_str()
                .or_else(|| r["error"]["code"].as_str())
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(
        codes,
        [
            "pending",
            "pending",
            "bad_signature",
            "bad_hex",
            "bad_encoding",
            "duplicate"
        ],
        "{resp}"
    );
    assert_eq!(results[0]["id"], good_a.id().to_string());
    assert_eq!(results[1]["id"], good_b.id().to_string());

    // Both good transfers become final; the forged one moved nothing.
    for _ in 0..200 {
        let (_, v) = call(
            &shared,
            Request::get(format!("/v1/txs/{}", good_b.id()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if v["status"] == "final" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let balance = |who: usize| {
        let c = shared.chain.lock().unwrap();
        c.state().account(&keys[who].public())
    };
    assert_eq!(balance(2).balance, Amount(Amount::from_agr(100).0 + 18));
    assert_eq!(
        balance(1).balance,
        Amount::from_agr(100),
        "the forged transfer moved funds"
    );
    assert_eq!(balance(1).nonce, 0);

    // Over the per-batch limit: refused whole, before any transaction is looked at.
    let many = vec![hex_of(&good_a); agora_node::rpc::MAX_BATCH_TXS + 1];
    let req = Request::post("/v1/txs/batch")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::json!({ "txs": many }).to_string()))
        .unwrap();
    let (status, resp) = call(&shared, req).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("batch_too_large")),
        "{resp}"
    );
    node.shutdown();
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A market created over RPC is listed and shown, and the node keeps each of its epochs'
/// reports: every line with its reason (here no paid work, so nothing minted and every line
/// says so), one account's lines with `?account=`, 404 for an epoch it has no report of and 400
/// for a malformed id.
#[tokio::test]
async fn markets_and_their_epoch_reports_are_served() {
    let mut params = agora_ledger::Params::default();
    params.incentives.epoch_blocks = 4;
    params.incentives.market_deposit = Amount::from_agr(1);
    let (_dir, node, keys) = node_with(params, 20).await;
    let shared = node.shared.clone();
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    let model = agora_types::Hash([4; 32]);
    let txs = [
        f.sign(
            &keys[0],
            TxBody::RegisterModel(agora_types::ModelRegistration {
                sha256: model,
                name: "m".into(),
                family: "llama".into(),
                kind: agora_types::ModelKind::Chat,
                license: "apache-2.0".into(),
                royalty_bps: 0,
            }),
        ),
        f.sign(
            &keys[0],
            TxBody::CreateMarket(agora_types::MarketSpec {
                name: "chat/rpc".into(),
                models: vec![model],
            }),
        ),
    ];
    for stx in &txs {
        let (status, _) = call(&shared, post(stx.encode(), "application/octet-stream")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let id = agora_types::market_id("chat/rpc");
    // Wait for the market and then for two of its epochs to end.
    let mut listed = Value::Null;
    for _ in 0..500 {
        let (_, v) = call(&shared, get("/v1/markets")).await;
        if v["markets"][0]["epochs_run"].as_u64().unwrap_or(0) >= 2 {
            listed = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(listed["markets"][0]["name"], "chat/rpc", "{listed}");
    assert_eq!(listed["markets"][0]["id"], id.to_hex());
    assert_eq!(listed["epoch_blocks"], 4);
    let (status, m) = call(&shared, get(&format!("/v1/markets/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["record"]["owner"], keys[0].public().to_string());
    assert_eq!(m["next_epoch_height"].as_u64().unwrap() % 4, 3);
    // The first epoch that ran after the market was created.
    let created_epoch = (0..100u64)
        .find(|e| {
            let c = shared.chain.lock().unwrap();
            c.store().epoch_report(&id, *e).unwrap().is_some()
        })
        .expect("a stored report");
    let (status, r) = call(
        &shared,
        get(&format!("/v1/markets/{id}/epochs/{created_epoch}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["report"]["name"], "chat/rpc");
    assert_eq!(r["report"]["emission"], "0");
    let validators = r["report"]["validators"].as_array().unwrap();
    assert_eq!(validators.len(), 1, "the one validator has a line");
    assert!(
        validators[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no paid usage"),
        "{r}"
    );
    let (_, only) = call(
        &shared,
        get(&format!(
            "/v1/markets/{id}/epochs/{created_epoch}?account={}",
            keys[1].public()
        )),
    )
    .await;
    assert_eq!(only["report"]["validators"].as_array().unwrap().len(), 0);
    let (status, e) = call(&shared, get(&format!("/v1/markets/{id}/epochs/999999"))).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, e) = call(&shared, get("/v1/markets/nothex/epochs/1")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_hash"))
    );
    let (status, _) = call(&shared, get(&format!("/v1/markets/{id}/epochs/x"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    node.shutdown();
}

/// `GET /v1/supply` reads what the state must add up to and what it does add up to at one height;
/// on an honest ledger they are equal, before and after fees are burned.
#[tokio::test]
async fn supply_reports_the_expected_and_the_circulating_total_at_one_height() {
    let (_dir, node, _keys) = node_with(agora_ledger::Params::default(), 20).await;
    let shared = node.shared.clone();
    let (status, v) = call(&shared, get("/v1/supply")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let expected = v["expected_total"].as_str().unwrap().to_string();
    assert_eq!(v["circulating"].as_str(), Some(expected.as_str()), "{v}");
    let genesis: u128 = v["supply"]["genesis"].as_str().unwrap().parse().unwrap();
    assert!(genesis >= Amount::from_agr(300).0, "{v}");
    assert!(
        v["height"].as_u64().is_some() && v["state_root"].as_str().is_some(),
        "{v}"
    );
    node.shutdown();
}
