//! The handlers through `app(state)` with `tower::ServiceExt::oneshot`: an in-memory upstream,
//! no socket. `errors` covers every error status the API documents, `success` a good answer
//! of every endpoint, streamed and whole.

pub(crate) mod fake;

mod errors;
mod keys;
mod responses;
mod success;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use agora_types::{Amount, PublicKey};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::{AppState, app};
use crate::customers::{Customer, Customers};
use crate::metrics::Metrics;
use fake::{Fake, Script};

pub(crate) const KEY: &str = "sk-test";
/// A key whose credit is spent.
pub(crate) const BROKE: &str = "sk-broke";
/// Another customer with credit.
pub(crate) const OTHER: &str = "sk-other";

/// The gateway's own ledger account in these tests.
pub(crate) fn gateway_account() -> PublicKey {
    agora_types::SecretKey::from_test_seed("gateway").public()
}

pub(crate) fn state_with(fake: Arc<Fake>, body_timeout: Duration) -> AppState {
    let customers = Customers::open(None).unwrap();
    for (key, credit) in [
        (KEY, Amount::from_agr(1000)),
        (BROKE, Amount::ZERO),
        (OTHER, Amount::from_agr(1000)),
    ] {
        customers.insert(
            key,
            Customer {
                name: key.into(),
                account: PublicKey([1; 32]),
                credit,
                spent: Amount::ZERO,
                limits: Default::default(),
            },
        );
    }
    AppState {
        upstream: fake,
        customers: Arc::new(customers),
        account: gateway_account(),
        metrics: Metrics::new(),
        audit: None,
        body_timeout,
        responses: Default::default(),
    }
}

/// The app over a fake that plays `script`, and the fake.
fn setup(script: Script) -> (Router, Arc<Fake>) {
    let fake = Arc::new(Fake::new(script));
    (app(state_with(fake.clone(), Duration::from_secs(30))), fake)
}

/// One request through the router; the status and the body as text.
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn post(uri: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(body.into()).unwrap()
}

fn get(uri: &str, key: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Body::empty()).unwrap()
}

/// POSTs `body` as JSON with the good key; status and parsed body.
async fn post_json(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = send(app, post(uri, Some(KEY), body.to_string())).await;
    (status, json_exact(&text))
}

/// Parses a response body and checks it is byte for byte what `serde_json::Value` writes for
/// it: keys in sorted order, numbers as `Value` renders them (the gateway's wire format).
fn json_exact(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v.to_string(), text, "the wire bytes are Value's rendering");
    v
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Asserts OpenAI's error shape and its fields; returns the message.
#[track_caller]
fn assert_error(body: &Value, kind: &str, code: Option<&str>, param: Option<&str>) -> String {
    let e = &body["error"];
    let keys: Vec<_> = e.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    e["message"].as_str().unwrap().to_string()
}
