//! The dashboard's endpoints on a live network: the embedded page, the snapshot, the wallet
//! behind a key, and the event stream carrying a finished request with its provider, payment
//! and receipt.

use std::time::Duration;

use agora_gateway::RelaySettings;
use serde_json::{Value, json};

use super::net::{API_KEY, MODEL, TestNet, price};
use super::{client, post};

/// Reads server-sent events from `resp` until one named `name` satisfies `want`.
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    name: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = "";
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = d;
                }
            }
            if event == name {
                let v: Value = serde_json::from_str(data).unwrap();
                if want(&v) {
                    return v;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within 20 s"))
            .unwrap()
            .expect("the event stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn get_json(net: &TestNet, path: &str) -> Value {
    client()
        .get(net.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_providers_and_streams_each_request_with_its_payment_and_receipt() {
    let net = TestNet::start(
        &[price(1_000_000, 2_000_000), price(1_000_000, 2_000_000)],
        Duration::ZERO,
        RelaySettings::default(),
    )
    .await;
    let c = client();

    // The page and its assets come from the binary, with their types.
    for (path, kind, has) in [
        ("/dashboard", "text/html", "Agora dashboard"),
        ("/dashboard/app.js", "text/javascript", "EventSource"),
        ("/dashboard/style.css", "text/css", "font"),
    ] {
        let r = c.get(net.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(r.text().await.unwrap().contains(has), "{path}");
    }

    // The snapshot: the chain, both providers with the model's price, the model.
    let o: Value = get_json(&net, "/dashboard/api/overview").await;
    assert!(o["chain"]["height"].as_u64().unwrap() > 0, "{o}");
    assert_eq!(o["providers"].as_array().unwrap().len(), 2, "{o}");
    assert!(
        o["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == MODEL),
        "{o}"
    );

    // Markets: none on this chain yet, but the epoch length the page times its refresh by.
    let m: Value = get_json(&net, "/dashboard/api/markets").await;
    assert!(m["epoch_blocks"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(m["markets"], json!([]), "{m}");

    // Subscribe, then ask: the request arrives as an event naming who served and what it cost,
    // exactly what the answer says.
    let mut events = c.get(net.url("/dashboard/events")).send().await.unwrap();
    assert_eq!(
        events.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (status, answer) = post(
        &net.url("/v1/chat/completions"),
        Some(API_KEY),
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let agora = &answer["choices"][0]["agora"];
    let id = agora["request_id"].as_str().unwrap().to_string();
    let mut buf = String::new();
    let e = next_event(&mut events, &mut buf, "request", |v| v["request_id"] == id).await;
    assert_eq!(e["error"], Value::Null, "{e}");
    assert_eq!(e["charged"], agora["charged"], "{e}");
    assert_ne!(e["charged"], "0", "{e}");
    let seg = &e["segments"][0];
    assert_eq!(seg["provider"], agora["segments"][0]["provider"], "{e}");
    assert_eq!(seg["receipt_ok"], true, "{e}");
    assert!(seg["receipt_id"].is_string(), "{e}");
    assert_eq!(
        seg["channel"], agora["segments"][0]["receipt"]["receipt"]["channel"],
        "{e}"
    );
    assert_eq!(e["completion_tokens"], answer["usage"]["completion_tokens"]);

    // A page opened later gets it from the history, and in the snapshot.
    let mut late = c.get(net.url("/dashboard/events")).send().await.unwrap();
    let mut buf = String::new();
    next_event(&mut late, &mut buf, "request", |v| v["request_id"] == id).await;
    let o: Value = get_json(&net, "/dashboard/api/overview").await;
    assert!(
        o["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["request_id"] == id),
        "{o}"
    );

    // The wallet: only with a key (OpenAI's error shape without), and it shows the spending.
    let r = c.get(net.url("/dashboard/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let r = c
        .get(net.url("/dashboard/api/me"))
        .bearer_auth("sk-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let w: Value = client()
        .get(net.url("/dashboard/api/me"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["spent"], agora["charged"], "{w}");
    assert!(w["balance"].is_string(), "{w}");
    // The gateway's own account, as the spend view's first address: it opened a channel.
    let gw = w["gateway_account"].as_str().unwrap();
    assert_eq!(gw, net.gateway.payer.address().to_string());
    let v = get_json(&net, &format!("/dashboard/api/spend/{gw}")).await;
    assert!(v["channel_count"].as_u64().unwrap() >= 1, "{v}");
    let r = c
        .get(net.url("/dashboard/api/spend/not-an-address"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
