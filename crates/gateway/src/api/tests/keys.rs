//! `POST /v1/keys` played by liars: a replayed request, a forged signature, a request signed
//! for another gateway, a stale one; and the honest path (a key, funded by a deposit, rotated).

use std::sync::Arc;
use std::time::Duration;

use agora_market::keys::{KeyRequest, SignedKeyRequest};
use agora_types::{Amount, SecretKey};
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::fake::{CHAT, Fake, Script};
use super::{assert_error, gateway_account, get, json_exact, post, send, state_with};
use crate::api::app;
use crate::customers::Customers;

fn setup() -> (Router, Arc<Customers>) {
    let state = state_with(
        Arc::new(Fake::new(Script::Tokens(vec!["ok"]))),
        Duration::from_secs(30),
    );
    let customers = state.customers.clone();
    (app(state), customers)
}

fn now_ms() -> u64 {
    crate::api::now_ms()
}

/// The API key `agent` chose for its request at `at_ms`.
fn chosen(agent: &SecretKey, at_ms: u64) -> String {
    format!("sk-agora-{}-{at_ms}", agent.public())
}

fn request(agent: &SecretKey, at_ms: u64) -> KeyRequest {
    KeyRequest {
        account: agent.public(),
        gateway: gateway_account(),
        name: "scout".into(),
        key_sha256: agora_market::keys::key_digest(&chosen(agent, at_ms)),
        per_request_cap: Some(Amount(5_000)),
        expires_at: Some(at_ms / 1000 + 3600),
        at_ms,
    }
}

async fn ask(app: &Router, signed: &SignedKeyRequest) -> (StatusCode, Value) {
    let body = serde_json::to_string(signed).unwrap();
    let (status, text) = send(app, post("/v1/keys", None, body)).await;
    (status, json_exact(&text))
}

async fn chat(app: &Router, key: &str) -> (StatusCode, Value) {
    let body = json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = send(
        app,
        post("/v1/chat/completions", Some(key), body.to_string()),
    )
    .await;
    (status, json_exact(&text))
}

#[tokio::test]
async fn an_account_gets_a_key_by_its_signature_and_a_replay_gets_nothing() {
    let (app, customers) = setup();
    let agent = SecretKey::from_test_seed("agent");

    let (status, terms) = send(&app, get("/v1/keys", None)).await;
    assert_eq!(status, StatusCode::OK);
    let terms = json_exact(&terms);
    assert_eq!(terms["gateway"], gateway_account().to_string());

    let at = now_ms();
    let signed = request(&agent, at).sign(&agent);
    let (status, issued) = ask(&app, &signed).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert!(
        issued.get("api_key").is_none(),
        "the key never travels: {issued}"
    );
    let key = chosen(&agent, at);
    assert_eq!(issued["account"], agent.public().to_string());
    assert_eq!(issued["deposit_to"], gateway_account().to_string());
    assert_eq!(issued["per_request_cap"], "5000");
    assert_eq!(issued["credit"], "0");

    // No credit until the account deposits.
    let (status, body) = chat(&app, &key).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(
        &body,
        "insufficient_quota",
        Some("insufficient_quota"),
        None,
    );
    let unclaimed = customers.deposit_block(1, &[(agent.public(), Amount(100_000))]);
    assert!(unclaimed.is_empty());
    let (status, body) = chat(&app, &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = customers.get(&crate::customers::key_hash(&key)).unwrap();
    assert_eq!(c.limits.per_request, Some(Amount(5_000)));

    // The same signed request again (captured on the way): refused, and had it been sent first
    // by whoever captured it, it would only have made the agent's own key good.
    let (status, body) = ask(&app, &signed).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(
        &body,
        "invalid_request_error",
        Some("replayed_request"),
        None,
    );
    assert_eq!(
        chat(&app, &key).await.0,
        StatusCode::OK,
        "the key still works"
    );
}

#[tokio::test]
async fn a_newer_request_rotates_the_key_and_keeps_its_credit() {
    let (app, customers) = setup();
    let agent = SecretKey::from_test_seed("agent");
    let at = now_ms();
    let (status, _) = ask(&app, &request(&agent, at).sign(&agent)).await;
    assert_eq!(status, StatusCode::OK);
    let old = chosen(&agent, at);
    customers.deposit_block(1, &[(agent.public(), Amount(100_000))]);

    let mut newer = request(&agent, at + 1);
    newer.per_request_cap = Some(Amount(7_000));
    let (status, second) = ask(&app, &newer.sign(&agent)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = &chosen(&agent, at + 1);
    assert_ne!(new, &old);
    assert_eq!(
        second["credit"], "100000",
        "the old key's credit moves to the new one"
    );
    let (status, body) = chat(&app, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(
        &body,
        "invalid_request_error",
        Some("invalid_api_key"),
        None,
    );
    assert_eq!(chat(&app, new).await.0, StatusCode::OK);
    // A later deposit goes to the account's current key.
    customers.deposit_block(2, &[(agent.public(), Amount(1))]);
    let c = customers.get(&crate::customers::key_hash(new)).unwrap();
    assert_eq!(c.credit, Amount(100_001));
    assert_eq!(c.limits.per_request, Some(Amount(7_000)));
}

#[tokio::test]
async fn forged_misdirected_stale_and_malformed_requests_are_refused() {
    let (app, _) = setup();
    let agent = SecretKey::from_test_seed("agent");
    let thief = SecretKey::from_test_seed("thief");
    let at = now_ms();

    // The thief names the agent's account (whose deposits it wants) and signs with its own key.
    let (status, body) = ask(&app, &request(&agent, at).sign(&thief)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(
        &body,
        "invalid_request_error",
        Some("bad_signature"),
        Some("signature"),
    );

    // Signed for another gateway.
    let mut elsewhere = request(&agent, at);
    elsewhere.gateway = SecretKey::from_test_seed("other gateway").public();
    let (status, body) = ask(&app, &elsewhere.sign(&agent)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(
        &body,
        "invalid_request_error",
        Some("wrong_gateway"),
        Some("request.gateway"),
    );

    // Ten minutes old.
    let (status, body) = ask(&app, &request(&agent, at - 600_000).sign(&agent)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(
        &body,
        "invalid_request_error",
        Some("stale_request"),
        Some("request.at_ms"),
    );

    // Not a signed request at all, and one with a field the gateway does not know.
    let (status, text) = send(&app, post("/v1/keys", None, "{\"request\": 1}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let mut extra = serde_json::to_value(request(&agent, at).sign(&agent)).unwrap();
    extra["budget"] = json!("1");
    let (status, text) = send(&app, post("/v1/keys", None, extra.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(
        &json_exact(&text),
        "invalid_request_error",
        None,
        Some("budget"),
    );

    // A digest that is another customer's key: refused, that customer keeps its record.
    let mut taking = request(&thief, at);
    taking.key_sha256 = agora_market::keys::key_digest(super::KEY);
    let (status, body) = ask(&app, &taking.sign(&thief)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "invalid_request_error", Some("key_taken"), None);

    // After all that, the agent's own request still works (nothing was recorded for it).
    let (status, _) = ask(&app, &request(&agent, at).sign(&agent)).await;
    assert_eq!(status, StatusCode::OK);
}
