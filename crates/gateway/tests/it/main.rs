//! Gateway integration tests on an in-process network (ledger node, providers on the test engine,
//! gateway), over real loopback sockets.

mod agent;
mod channels;
mod chaos_regressions;
mod dashboard;
mod hostile;
mod money;
mod net;
mod proofs;

use std::time::Duration;

use agora_gateway::RelaySettings;
use agora_types::Amount;
use net::{API_KEY, MODEL, ROYALTY_BPS, TestNet, price, treasury};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn post(url: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = client().post(url).json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The `data:` payloads of a server-sent event stream.
fn sse_events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Concatenated content of a chat stream, and its usage chunk if any.
fn stream_text(events: &[String]) -> (String, Option<Value>, Option<String>) {
    let mut text = String::new();
    let mut usage = None;
    let mut finish = None;
    for e in events {
        if e == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v.get("error").is_none(), "stream carried an error: {v}");
        if let Some(c) = v["choices"].get(0) {
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(t) = c["text"].as_str() {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        if !v["usage"].is_null() && v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, usage, finish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_shapes_and_errors() {
    let net = TestNet::start(
        &[price(1_000_000, 2_000_000)],
        Duration::ZERO,
        RelaySettings::default(),
    )
    .await;
    let chat = net.url("/v1/chat/completions");
    let msgs = json!([{"role": "user", "content": "hello there"}]);

    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 12, "seed": 5}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!text.is_empty());
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 12);

    // Streaming with the same seed gives the same text, and a usage chunk when asked.
    let body = client()
        .post(&chat)
        .bearer_auth(API_KEY)
        .json(&json!({"model": MODEL, "messages": msgs, "max_tokens": 12, "seed": 5, "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let (stext, susage, finish) = stream_text(&events);
    assert_eq!(stext, text);
    assert_eq!(
        susage.unwrap()["completion_tokens"],
        usage["completion_tokens"]
    );
    assert!(finish.is_some());

    // n = 2: two choices with different seeds.
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 8, "n": 2, "temperature": 1.0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);

    // Completions and logprobs.
    let (s, v) = post(
        &net.url("/v1/completions"),
        Some(API_KEY),
        &json!({"model": MODEL, "prompt": "once upon", "max_tokens": 5, "logprobs": 2}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .is_some()
    );

    // Chat logprobs: every alternative comes with its text, the sampled token among them.
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        for alt in top {
            let text = alt["token"].as_str().unwrap();
            assert!(!text.starts_with("<token"), "{t}");
        }
        assert!(top.iter().any(|a| a["token"] == t["token"]), "{t}");
    }

    // Models list carries the price range.
    let v: Value = client()
        .get(net.url("/v1/models"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(
        v["data"][0]["agora"]["price_per_mtok"]["output"]["min"],
        "2000000"
    );

    // Errors in OpenAI's shape.
    let (s, v) = post(
        &chat,
        Some("sk-wrong"),
        &json!({"model": MODEL, "messages": msgs}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (s, v) = post(&chat, None, &json!({"model": MODEL, "messages": msgs})).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": "no-such-model", "messages": msgs}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 0}),
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("max_tokens")));
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 4_000_000_000u64}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "frobnicate": true}),
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("frobnicate")));
    // A prompt over the provider's context: the provider's limit comes back as a 400.
    let long = "word ".repeat(5000);
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{v}"
    );
    // Malformed JSON and a 10 MB body.
    let resp = client()
        .post(&chat)
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("parse"));
    let resp = client()
        .post(&chat)
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 10 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    // response_format json_schema: the output follows the schema (several seeds); a schema
    // using an unsupported keyword is a 400 naming the place, before any provider is asked.
    // (No free-text strings: the test engine is not a language model and would never close one.)
    let schema = json!({"type": "object", "properties": {"level": {"enum": ["low", "high", 3]},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "ok": {"type": "boolean"}}, "required": ["level", "ok"], "additionalProperties": false});
    let checker = agora_json::Schema::from_value(&schema).unwrap();
    for seed in 0..4 {
        let (s, v) = post(
            &chat,
            Some(API_KEY),
            &json!({"model": MODEL, "messages": msgs, "max_tokens": 400, "temperature": 1.0, "seed": seed,
                "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": true}}}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        let out: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(
            checker.validate(&out),
            "seed {seed}: {out} breaks the schema"
        );
    }
    for (format, needle) in [
        (
            json!({"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "string", "pattern": "^a"}}}),
            "pattern",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "t"}}),
            "schema",
        ),
        (json!({"type": "xml"}), "not supported"),
    ] {
        let (s, v) = post(
            &chat,
            Some(API_KEY),
            &json!({"model": MODEL, "messages": msgs, "response_format": format}),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m}");
    }
    // The network still serves after all that.
    let (s, _) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": msgs, "max_tokens": 3}),
    )
    .await;
    assert_eq!(s, 200);
}

/// Over a randomized run of many requests (streamed and not, several choices, clients that leave
/// mid-stream), what customers were charged equals what the ledger paid out: providers' shares +
/// the model owner's royalties + the protocol fee, to the base unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_pay_exactly_what_providers_owner_and_treasury_receive() {
    let prices = [price(3_000_000, 7_000_000), price(2_000_000, 11_000_000)];
    let net = TestNet::start(&prices, Duration::ZERO, RelaySettings::default()).await;
    let before_providers: Vec<(Amount, u64)> = {
        let mut v = Vec::new();
        for k in &net.provider_keys {
            v.push(net.holdings(&k.public()).await);
        }
        v
    };
    let (owner_before, _) = net.balance(&net.owner.public()).await;
    let (treasury_before, _) = net.balance(&treasury()).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261122);
    let chat = net.url("/v1/chat/completions");
    for i in 0..40 {
        let max_tokens = rng.gen_range(1..40);
        let n = rng.gen_range(1..=2);
        let words = rng.gen_range(1..30);
        let content = "tell me about the sea ".repeat(words);
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "n": n, "seed": i, "temperature": 0.9,
            "stream": rng.gen_bool(0.5)});
        match rng.gen_range(0..4) {
            0 => {
                // A client that leaves after the first chunks.
                let mut resp = client()
                    .post(&chat)
                    .bearer_auth(API_KEY)
                    .json(
                        &json!({"model": MODEL, "messages": [{"role": "user", "content": content}],
                        "max_tokens": 200, "stream": true, "seed": i}),
                    )
                    .send()
                    .await
                    .unwrap();
                let _ = resp.chunk().await;
                let _ = resp.chunk().await;
                drop(resp);
            }
            1 => {
                let (s, v) = post(&net.url("/v1/completions"), Some(API_KEY),
                    &json!({"model": MODEL, "prompt": content, "max_tokens": max_tokens, "seed": i})).await;
                assert_eq!(s, 200, "{v}");
            }
            _ => {
                let resp = client()
                    .post(&chat)
                    .bearer_auth(API_KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let _ = resp.text().await.unwrap();
            }
        }
    }
    // Let cancelled relays finish charging, then every voucher reach its provider.
    tokio::time::sleep(Duration::from_millis(500)).await;
    net.settle_vouchers().await;
    let charged = net.gateway.customers.total_spent();
    assert!(charged > Amount::ZERO);
    let channels = net.gateway.payer.channels().await;
    let signed: u128 = channels.iter().map(|c| c.cumulative().0).sum();
    assert_eq!(signed, charged.0, "vouchers signed = customer charges");

    for p in net.providers.iter().flatten() {
        p.provider.redeem_now(&p.sender).await;
    }
    let mut redeemed_on_chain = 0u128;
    for c in &channels {
        redeemed_on_chain += net.chain.channel(&c.id).await.unwrap().unwrap().redeemed.0;
    }
    assert_eq!(
        redeemed_on_chain, charged.0,
        "ledger paid out exactly the charges"
    );

    let min_fee = net.chain.info().await.unwrap().min_fee;
    let mut provider_shares = 0u128;
    for (k, (bal0, nonce0)) in net.provider_keys.iter().zip(&before_providers) {
        let (bal1, nonce1) = net.holdings(&k.public()).await;
        let fees = min_fee.0 * u128::from(nonce1 - nonce0);
        provider_shares += bal1.0 + fees - bal0.0;
    }
    let royalties = net.balance(&net.owner.public()).await.0.0 - owner_before.0;
    let protocol_fee = net.balance(&treasury()).await.0.0 - treasury_before.0;
    assert!(royalties > 0 && protocol_fee > 0 && provider_shares > 0);
    assert_eq!(provider_shares + royalties + protocol_fee, charged.0);
    // Royalties are the owner's share of each redeemed increase (rounded down per redeem).
    assert!(royalties <= charged.0 * u128::from(ROYALTY_BPS) / 10_000);
    assert!(
        royalties + channels.len() as u128 * 2 >= charged.0 * u128::from(ROYALTY_BPS) / 10_000 - 10
    );
}

/// A provider that dies mid-stream: the client's stream completes without a gap or a repeat (the
/// text equals an uninterrupted run with the same seed), and each provider is paid only for
/// what it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_stream_is_replaced_without_a_seam() {
    let relay = RelaySettings {
        stall_timeout: Duration::from_secs(2),
        ..RelaySettings::default()
    };
    // Provider 0 is cheapest: it is chosen first, then killed.
    let prices = [price(1_000_000, 1_000_000), price(2_000_000, 2_000_000)];
    let mut net = TestNet::start(&prices, Duration::from_millis(15), relay).await;
    let chat = net.url("/v1/chat/completions");
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "a long story please"}],
        "max_tokens": 120, "seed": 42, "temperature": 0.8, "stream": true,
        "stream_options": {"include_usage": true}});
    let mut resp = client()
        .post(&chat)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut raw = String::new();
    let mut chunks = 0;
    while chunks < 20 {
        let c = resp
            .chunk()
            .await
            .unwrap()
            .expect("stream ended before the kill");
        raw.push_str(std::str::from_utf8(&c).unwrap());
        chunks += 1;
    }
    let victim = net.providers[0].take().unwrap();
    victim.kill().await;
    while let Some(c) = resp.chunk().await.unwrap() {
        raw.push_str(std::str::from_utf8(&c).unwrap());
    }
    let (failover_text, usage, finish) = stream_text(&sse_events(&raw));
    assert!(finish.is_some(), "the stream completed");
    let usage = usage.unwrap();

    // The same request on the surviving provider alone.
    let (s, v) = post(
        &chat,
        Some(API_KEY),
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "a long story please"}],
        "max_tokens": 120, "seed": 42, "temperature": 0.8}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let reference = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        failover_text, reference,
        "no token lost or repeated across the failover"
    );
    assert_eq!(usage["completion_tokens"], v["usage"]["completion_tokens"]);

    // Each provider's channel holds exactly what it delivered: the killed one got vouchers
    // only for frames the gateway received.
    let stats = net.gateway.market.stats();
    assert!(
        stats.values().any(|s| s.failures >= 1),
        "the failure was recorded"
    );
    let charged = net.gateway.customers.total_spent();
    let signed: u128 = net
        .gateway
        .payer
        .channels()
        .await
        .iter()
        .map(|c| c.cumulative().0)
        .sum();
    assert_eq!(charged.0, signed);
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > v["usage"]["prompt_tokens"].as_u64().unwrap(),
        "the failover re-read the prompt and the delivered tokens, and billed it"
    );
}

/// Submits a transfer so the single-producer ledger makes another block.
async fn next_block(net: &TestNet, from: &agora_provider::TxSender) {
    from.send(agora_types::TxBody::Transfer {
        to: net.owner.public(),
        amount: Amount(1),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_channels_refund_the_unspent_deposit_and_a_crashed_runs_channels_are_recovered() {
    use std::sync::Arc;
    let net = TestNet::start(
        &[price(40_000, 80_000)],
        Duration::ZERO,
        RelaySettings::default(),
    )
    .await;
    let url = net.url("/v1/chat/completions");
    for i in 0..3 {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 12});
        let (code, v) = post(&url, Some(API_KEY), &body).await;
        assert_eq!(code, 200, "{v}");
    }
    net.settle_vouchers().await;
    let payer = &net.gateway.payer;
    let gw = payer.address();
    let chan = payer.channels().await[0].clone();
    let signed = chan.cumulative();
    assert!(signed > Amount::ZERO);
    let (bal0, nonce0) = net.balance(&gw).await;

    // Close: the ledger starts the challenge period; nothing can be settled before its end.
    assert_eq!(payer.close_all(Duration::from_secs(3)).await, 1);
    assert!(payer.channels().await.is_empty());
    let on_chain = net.chain.channel(&chan.id).await.unwrap().unwrap();
    let deadline = on_chain.close_deadline.expect("closing on the ledger");
    assert!(payer.settle_due().await.is_empty());
    assert_eq!(payer.closing().await.len(), 1);

    // The provider sees the close and redeems at once, inside the window; blocks go by until
    // the deadline; then the refund.
    for _ in 0..100 {
        if net.chain.channel(&chan.id).await.unwrap().unwrap().redeemed == signed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spare = agora_provider::TxSender::new(net::spare_keys()[0].clone(), net.chain.clone())
        .await
        .unwrap();
    let mut refunds = Vec::new();
    for _ in 0..200 {
        refunds = payer.settle_due().await;
        if !refunds.is_empty() {
            break;
        }
        next_block(&net, &spare).await;
    }
    assert!(net.chain.info().await.unwrap().height >= deadline);
    let settled = net.chain.channel(&chan.id).await.unwrap().unwrap();
    assert!(settled.settled);
    assert_eq!(
        settled.redeemed, signed,
        "the provider was paid every voucher"
    );
    assert_eq!(
        refunds,
        vec![(chan.id, settled.deposit.saturating_sub(signed))]
    );
    assert!(payer.closing().await.is_empty());
    // The gateway got the unspent deposit back, less the fees of its close and settle.
    let (bal1, nonce1) = net.balance(&gw).await;
    let fee = net.chain.info().await.unwrap().min_fee;
    assert_eq!(nonce1 - nonce0, 2);
    assert_eq!(bal1.0 + 2 * fee.0, bal0.0 + refunds[0].1.0);

    // A gateway that crashes with an open channel: the next run finds it in the journal and
    // closes it; a corrupt journal is an error, not a silent loss of deposits.
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("channels.json");
    let settings = agora_gateway::PayerSettings {
        journal: Some(journal.clone()),
        ..Default::default()
    };
    let key = net::spare_keys()[1].clone();
    let sender = Arc::new(
        agora_provider::TxSender::new(key.clone(), net.chain.clone())
            .await
            .unwrap(),
    );
    let provider = net.gateway.market.providers()[0].clone();
    let crashed = agora_gateway::Payer::new(
        sender.clone(),
        net.gateway.relay.net.clone(),
        settings.clone(),
    );
    let lost = crashed
        .channel_to(provider.address, provider.peer)
        .await
        .unwrap()
        .id;
    drop(crashed);
    assert!(
        net.chain
            .channel(&lost)
            .await
            .unwrap()
            .unwrap()
            .close_deadline
            .is_none()
    );
    let next = agora_gateway::Payer::new(sender, net.gateway.relay.net.clone(), settings.clone());
    assert_eq!(next.recover().await.unwrap(), 1);
    assert!(
        net.chain
            .channel(&lost)
            .await
            .unwrap()
            .unwrap()
            .close_deadline
            .is_some()
    );
    assert_eq!(next.closing().await.len(), 1);
    // The journal now lists it as closing, so a third run would settle rather than re-close.
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains(&lost.to_string()), "{text}");
    std::fs::write(&journal, b"{not json").unwrap();
    let third = agora_gateway::Payer::new(
        Arc::new(
            agora_provider::TxSender::new(key, net.chain.clone())
                .await
                .unwrap(),
        ),
        net.gateway.relay.net.clone(),
        settings,
    );
    let err = third.recover().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_hold_up_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let second = Duration::from_secs(1);
    let net = TestNet::start_with(
        &[price(1, 1)],
        Duration::ZERO,
        RelaySettings {
            client_stall_timeout: second,
            ..RelaySettings::default()
        },
        agora_gateway::HttpLimits {
            header_timeout: second,
            body_timeout: second,
            max_connections: 64,
        },
    )
    .await;
    let addr = net.gateway.addr;
    // Slowloris: a request head that never ends, one byte at a time.
    let mut heads = Vec::new();
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        heads.push(c);
    }
    // A body that trickles: 10 bytes of a promised 200, then nothing.
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"model\":"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        bodies.push(c);
    }
    // A client that asks for a large stream and never reads it, with a tiny receive window.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut sleeper = sock.connect(addr).await.unwrap();
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "tell me everything"}],
        "max_tokens": 2000, "n": 8, "logprobs": true, "top_logprobs": 20, "stream": true})
        .to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sleeper.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    sleeper.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the stream started");
    let mut busy = false;
    for _ in 0..50 {
        if net.gateway.market.stats().values().any(|s| s.in_flight > 0) {
            busy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(busy, "the long stream never reached the provider");

    // Meanwhile everyone else is served.
    let url = net.url("/v1/chat/completions");
    let mut ok = Vec::new();
    for i in 0..10 {
        let url = url.clone();
        ok.push(tokio::spawn(async move {
            let body = json!({"model": MODEL, "messages": [{"role": "user", "content": format!("q{i}")}], "max_tokens": 8});
            post(&url, Some(API_KEY), &body).await.0
        }));
    }
    for t in ok {
        assert_eq!(t.await.unwrap(), 200);
    }

    // The trickling heads are closed by the server (EOF, or a 408 then EOF) within a few seconds.
    for mut c in heads {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "a slow request head was not cut off");
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // The trickling bodies get an OpenAI-shaped error.
    for mut c in bodies {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("a slow body was not cut off")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
        assert!(text.contains("invalid_request_error"), "{text}");
    }
    // The non-reader's completion is ended while its connection is still open: the provider's
    // slot is free again.
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = net.gateway.market.stats();
        if stats.values().all(|s| s.in_flight == 0) {
            freed = true;
            break;
        }
    }
    assert!(
        freed,
        "a client that stopped reading still holds a provider slot"
    );
    drop(sleeper);
    // And the gateway still serves.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "after"}], "max_tokens": 4});
    assert_eq!(post(&url, Some(API_KEY), &body).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_to_the_gateway_credit_the_senders_api_key() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, RelaySettings::default()).await;
    let key = agora_gateway::customers::key_hash(API_KEY);
    let before = net.gateway.customers.get(&key).unwrap().credit;
    // Wait for the watcher's first pass (it starts at the tip), so both transfers are new.
    for _ in 0..100 {
        if net.gateway.customers.deposits_scanned().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(net.gateway.customers.deposits_scanned().is_some());
    let gw = net.gateway.payer.address();
    // The customer's account (the model owner's here) deposits; a stranger's transfer credits
    // nobody; a transfer elsewhere is not a deposit.
    let owner = agora_provider::TxSender::new(net.owner.clone(), net.chain.clone())
        .await
        .unwrap();
    let stranger = agora_provider::TxSender::new(net::spare_keys()[0].clone(), net.chain.clone())
        .await
        .unwrap();
    let deposit = Amount::from_agr(2);
    owner
        .send(agora_types::TxBody::Transfer {
            to: gw,
            amount: deposit,
        })
        .await
        .unwrap();
    stranger
        .send(agora_types::TxBody::Transfer {
            to: gw,
            amount: deposit,
        })
        .await
        .unwrap();
    owner
        .send(agora_types::TxBody::Transfer {
            to: stranger.address(),
            amount: deposit,
        })
        .await
        .unwrap();
    let tip = net.chain.info().await.unwrap().height;
    for _ in 0..200 {
        if net.gateway.customers.deposits_scanned() >= Some(tip) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(net.gateway.customers.deposits_scanned() >= Some(tip));
    let after = net.gateway.customers.get(&key).unwrap().credit;
    assert_eq!(after.0 - before.0, deposit.0);
}
