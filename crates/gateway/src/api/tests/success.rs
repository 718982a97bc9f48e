//! A good answer from every endpoint, whole and streamed, with the fields OpenAI's SDKs read.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::fake::{BASE, CHAT, EMBED, Script};
use super::*;
use agora_market::protocol::Work;

fn agora_summary() -> Value {
    json!({"charged": "42", "request_id": "07".repeat(32), "segments": [{"charged": "42", "completion_tokens": 2,
        "prompt_tokens": 3, "provider": agora_types::PublicKey([9; 32]).to_string(), "receipt_ok": true}]})
}

#[tokio::test]
async fn chat_completion_whole() {
    let (app, fake) = setup(Script::Tokens(vec!["He", "llo"]));
    let (status, body) = post_json(
        &app,
        "/v1/chat/completions",
        json!({"model": CHAT, "messages": [{"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "seed": 7, "n": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], CHAT);
    assert_eq!(body["system_fingerprint"], Value::Null);
    assert!(body["created"].as_u64().unwrap() > 0);
    for (i, c) in body["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            c,
            &json!({"index": i, "message": {"role": "assistant", "content": "Hello", "refusal": null},
                "logprobs": null, "finish_reason": "stop", "agora": agora_summary()})
        );
    }
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
    );
    // n choices with seeds seed + i; developer is system; parts are joined.
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 2);
    assert_eq!((jobs[0].sampling.seed, jobs[1].sampling.seed), (7, 8));
    let Work::Chat { messages, .. } = &jobs[0].work else {
        panic!("chat work");
    };
    assert_eq!(
        (messages[0].role.as_str(), messages[1].content.as_str()),
        ("system", "hi")
    );
    assert_eq!(jobs[0].sampling.max_tokens, crate::api::DEFAULT_MAX_TOKENS);
}

#[tokio::test]
async fn chat_completion_with_logprobs() {
    let (app, _) = setup(Script::Tokens(vec!["He"]));
    let (status, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}],
                "logprobs": true, "top_logprobs": 2})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // f32 log-probabilities are written as the f64 they widen to, as always.
    assert!(text.contains("\"logprob\":-0.10000000149011612"), "{text}");
    let body = json_exact(&text);
    assert_eq!(
        body["choices"][0]["logprobs"],
        json!({"content": [{"token": "He", "logprob": -0.1f32, "bytes": [72, 101],
            "top_logprobs": [{"token": "He", "logprob": -0.1f32, "bytes": [72, 101]},
                {"token": "<token 999>", "logprob": -2.5, "bytes": b"<token 999>".to_vec()}]}]})
    );
}

#[tokio::test]
async fn chat_completion_streamed_with_usage() {
    let (app, _) = setup(Script::Tokens(vec!["He", "", "llo"]));
    let (status, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}],
                "stream": true, "stream_options": {"include_usage": true}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let evs = events(&text);
    assert_eq!(evs.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = evs[..evs.len() - 1].iter().map(|e| json_exact(e)).collect();
    // role, "He", "llo" (the empty token is skipped), finish, usage.
    assert_eq!(chunks.len(), 5, "{text}");
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(
            (c["id"].as_str(), &c["object"]),
            (Some(id), &json!("chat.completion.chunk"))
        );
        assert_eq!(c["model"], CHAT);
    }
    let choice = |c: &Value| c["choices"][0].clone();
    assert_eq!(
        choice(&chunks[0]),
        json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})
    );
    assert_eq!(
        choice(&chunks[1]),
        json!({"index": 0, "delta": {"content": "He"}, "logprobs": null, "finish_reason": null})
    );
    assert_eq!(choice(&chunks[2])["delta"], json!({"content": "llo"}));
    assert_eq!(
        choice(&chunks[3]),
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop",
            "agora": {"charged": "42", "request_id": "07".repeat(32), "segments": [{"charged": "42", "completion_tokens": 3,
                "prompt_tokens": 3, "provider": agora_types::PublicKey([9; 32]).to_string(), "receipt_ok": true}]}})
    );
    for c in &chunks[..4] {
        assert_eq!(
            c.get("usage"),
            Some(&Value::Null),
            "usage is null until the last chunk"
        );
    }
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );
}

#[tokio::test]
async fn chat_completion_streamed_without_usage() {
    let (app, _) = setup(Script::Tokens(vec!["Hi"]));
    let (_, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "stream": true, "logprobs": true})
                .to_string(),
        ),
    )
    .await;
    let evs = events(&text);
    assert_eq!(evs.len(), 4, "role, Hi, finish, [DONE]: {text}");
    assert_eq!(evs[3], "[DONE]");
    let hi = json_exact(&evs[1]);
    assert!(hi.get("usage").is_none());
    assert_eq!(hi["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
}

#[tokio::test]
async fn text_completion_whole_with_logprobs() {
    let (app, fake) = setup(Script::Tokens(vec!["a", "b"]));
    let (status, body) = post_json(
        &app,
        "/v1/completions",
        json!({"model": BASE, "prompt": ["once"], "logprobs": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    let c = &body["choices"][0];
    assert_eq!(
        (&c["text"], &c["finish_reason"], &c["index"]),
        (&json!("ab"), &json!("stop"), &json!(0))
    );
    assert_eq!(
        c["logprobs"],
        json!({"tokens": ["a", "b"], "token_logprobs": [-0.1f32, -0.1f32],
            "top_logprobs": [{"a": -0.1f32, "<token 999>": -2.5}, {"b": -0.1f32, "<token 999>": -2.5}]})
    );
    assert_eq!(body["usage"]["total_tokens"], 5);
    // OpenAI's legacy default for completions.
    assert_eq!(fake.jobs()[0].sampling.max_tokens, 16);
}

#[tokio::test]
async fn text_completion_streamed() {
    let (app, _) = setup(Script::Tokens(vec!["a", "b"]));
    let (status, text) = send(
        &app,
        post(
            "/v1/completions",
            Some(KEY),
            json!({"model": CHAT, "prompt": "once", "stream": true}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let evs = events(&text);
    assert_eq!(evs.len(), 4, "a, b, finish, [DONE]: {text}");
    let a = json_exact(&evs[0]);
    assert_eq!(a["object"], "text_completion");
    assert_eq!(
        a["choices"],
        json!([{"index": 0, "text": "a", "logprobs": null, "finish_reason": null}])
    );
    let end = json_exact(&evs[2]);
    assert_eq!(end["choices"][0]["finish_reason"], "stop");
    assert_eq!(end["choices"][0]["text"], "");
    assert!(end["choices"][0]["agora"].is_object());
    assert_eq!(evs[3], "[DONE]");
}

#[tokio::test]
async fn embeddings_as_floats_and_base64() {
    let (app, _) = setup(Script::Embed { skip: None });
    let (status, body) = post_json(
        &app,
        "/v1/embeddings",
        json!({"model": EMBED, "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"object": "list", "model": EMBED,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.5, -1.0]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 0.5, -1.0]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    );
    let (_, body) = post_json(
        &app,
        "/v1/embeddings",
        json!({"model": EMBED, "input": "a", "encoding_format": "base64"}),
    )
    .await;
    let bytes: Vec<u8> = [0.0f32, 0.5, -1.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        body["data"][0]["embedding"],
        crate::api::embeddings::base64_encode(&bytes)
    );
}

#[tokio::test]
async fn models_are_listed_and_found_by_name_or_sha256() {
    let (app, fake) = setup(Script::Tokens(vec![]));
    let (status, text) = send(&app, get("/v1/models", Some(KEY))).await;
    assert_eq!(status, StatusCode::OK);
    let body = json_exact(&text);
    assert_eq!(
        *fake.refreshes.lock().unwrap(),
        1,
        "an empty list is refreshed first"
    );
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let chat = &data[0];
    let sha = hex::encode([1u8; 32]);
    assert_eq!(
        chat,
        &json!({"id": CHAT, "object": "model", "created": 0,
            "owned_by": agora_types::PublicKey([7; 32]).to_string(),
            "agora": {"sha256": sha, "family": "test", "license": "apache-2.0", "kind": "chat",
                "endpoints": ["/v1/chat/completions", "/v1/completions"], "royalty_bps": 250,
                "providers": 2, "price_per_mtok": {"input": {"min": "10", "max": "30"},
                    "output": {"min": "20", "max": "40"}, "unit": "base units (1 AGR = 10^9)"}}})
    );
    assert_eq!(data[1]["agora"]["kind"], "completion");
    assert_eq!(data[2]["agora"]["endpoints"], json!(["/v1/embeddings"]));
    for id in [CHAT.to_string(), sha] {
        let (status, text) = send(&app, get(&format!("/v1/models/{id}"), Some(KEY))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&json_exact(&text), chat);
    }
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let (status, text) = send(&app, get("/health", None)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
    post_json(
        &app,
        "/v1/chat/completions",
        json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (status, text) = send(&app, get("/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("gateway_requests_total{endpoint=\"chat\"} 1"),
        "{text}"
    );
    assert!(text.contains("gateway_completion_tokens_total 1"), "{text}");
}

#[tokio::test]
async fn redundant_verification_runs_the_request_again_on_another_provider_and_compares() {
    let (app, fake) = setup(Script::Tokens(vec!["He", "llo"]));
    let (status, body) = post_json(
        &app,
        "/v1/completions",
        json!({"model": BASE, "prompt": "hi", "seed": 5, "agora": {"verification": "redundant"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["text"], "Hello");
    let redundant = &body["choices"][0]["agora"]["redundant"];
    assert_eq!(redundant["agreed"], true, "{body}");
    assert_eq!(redundant["first_divergence"], Value::Null);
    assert_eq!(redundant["charged"], "42");
    // The second run: the same work and seed, its own request id, not the first's provider.
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1].sampling, jobs[0].sampling);
    assert_eq!(jobs[1].work, jobs[0].work);
    assert_ne!(jobs[1].request_id, jobs[0].request_id);
    assert_eq!(jobs[0].constraints.avoid, None);
    assert_eq!(
        jobs[1].constraints.avoid,
        Some(agora_types::PublicKey([9; 32]))
    );
    // The usage is the answer's; the second run's cost is reported beside it.
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn redundant_verification_with_one_admitted_provider_is_refused_before_anything_runs() {
    // Two providers serve the model, but the price cap admits only the cheaper one: the
    // first run would be served and charged with nothing to compare it with.
    let (app, fake) = setup(Script::Tokens(vec!["He"]));
    let (status, body) = post_json(
        &app,
        "/v1/chat/completions",
        json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}],
               "agora": {"verification": "redundant", "max_price_per_mtok": 25}}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "no_provider", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs two providers"),
        "{body}"
    );
    assert!(fake.jobs().is_empty(), "a run was started");
}

#[tokio::test]
async fn redundant_verification_reports_where_the_second_provider_disagrees() {
    let (app, _) = setup(Script::PerJob(vec![
        vec!["He", "llo", "!"],
        vec!["He", "y"],
    ]));
    let mut req = post(
        "/v1/chat/completions",
        Some(KEY),
        json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    req.headers_mut()
        .insert("x-agora-verification", "redundant".parse().unwrap());
    let (status, text) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json_exact(&text);
    assert_eq!(body["choices"][0]["message"]["content"], "Hello!");
    let redundant = &body["choices"][0]["agora"]["redundant"];
    assert_eq!(redundant["agreed"], false, "{body}");
    assert_eq!(redundant["first_divergence"], 1);
}

#[tokio::test]
async fn sampled_verification_runs_once() {
    let (app, fake) = setup(Script::Tokens(vec!["He"]));
    let (status, body) = post_json(
        &app,
        "/v1/completions",
        json!({"model": BASE, "prompt": "hi", "agora": {"verification": "sampled"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["choices"][0]["agora"].get("redundant"), None);
    assert_eq!(fake.jobs().len(), 1);
}
