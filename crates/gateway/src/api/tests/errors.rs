//! Every documented error status, with OpenAI's body: 400 (bad JSON, not an object, unknown
//! parameter, out-of-range parameter, wrong kind of model, a provider refusing the request),
//! 401 (no key, unknown key), 404 (unknown model, unknown URL), 408 (body stopped arriving), 413
//! (body too large), 429 (no credit), 503 (no provider, providers failed, no result, a missing
//! vector), and an error after a stream started.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::fake::{BASE, CHAT, EMBED, Fake, Script};
use super::*;
use crate::api::MAX_BODY_BYTES;
use crate::relay::{Fault, RelayError};

const CHAT_URL: &str = "/v1/chat/completions";

fn chat_body() -> Value {
    json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}]})
}

fn relay_error(code: &str, client_error: bool) -> RelayError {
    RelayError {
        code: code.into(),
        message: format!("{code} happened"),
        fault: if client_error {
            Fault::Client
        } else {
            Fault::Network
        },
    }
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_401_invalid_api_key() {
    let (app, fake) = setup(Script::Tokens(vec!["a"]));
    for uri in [CHAT_URL, "/v1/completions", "/v1/embeddings"] {
        let (status, text) = send(&app, post(uri, None, chat_body().to_string())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let msg = assert_error(
            &json_exact(&text),
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
        );
        assert!(msg.contains("didn't provide an API key"), "{msg}");
    }
    let (status, text) = send(
        &app,
        post(CHAT_URL, Some("sk-nope"), chat_body().to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let msg = assert_error(
        &json_exact(&text),
        "invalid_request_error",
        Some("invalid_api_key"),
        None,
    );
    assert_eq!(msg, "Incorrect API key provided.");
    for uri in ["/v1/models", "/v1/models/chat-model"] {
        let (status, text) = send(&app, get(uri, Some("sk-nope"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_error(
            &json_exact(&text),
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
        );
    }
    assert!(fake.jobs().is_empty(), "nothing reached the network");
}

#[tokio::test]
async fn a_key_without_credit_is_429_insufficient_quota() {
    let (app, fake) = setup(Script::Tokens(vec!["a"]));
    let (status, text) = send(&app, post(CHAT_URL, Some(BROKE), chat_body().to_string())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let msg = assert_error(
        &json_exact(&text),
        "insufficient_quota",
        Some("insufficient_quota"),
        None,
    );
    assert!(msg.contains("no credit left"), "{msg}");
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn bad_json_and_non_objects_are_400() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let (status, text) = send(&app, post(CHAT_URL, Some(KEY), "{\"model\":")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&json_exact(&text), "invalid_request_error", None, None);
    assert!(msg.starts_with("We could not parse the JSON body"), "{msg}");
    let (status, text) = send(&app, post("/v1/embeddings", Some(KEY), "[1,2]")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&json_exact(&text), "invalid_request_error", None, None);
    assert_eq!(msg, "The request body must be a JSON object.");
    // Well-formed JSON of the wrong shape.
    let (status, body) = post_json(&app, CHAT_URL, json!({"model": CHAT, "messages": "hi"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_request_error", None, None);
    assert!(msg.starts_with("Invalid request:"), "{msg}");
}

#[tokio::test]
async fn an_unknown_parameter_is_400_naming_it() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let mut body = chat_body();
    body["bogus"] = json!(1);
    let (status, body) = post_json(&app, CHAT_URL, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_request_error", None, Some("bogus"));
    assert_eq!(msg, "Unrecognized request argument supplied: bogus");
    // Known and harmless fields pass.
    let mut ok = chat_body();
    ok["user"] = json!("u");
    ok["metadata"] = json!({"k": "v"});
    assert_eq!(post_json(&app, CHAT_URL, ok).await.0, StatusCode::OK);
}

#[tokio::test]
async fn out_of_range_parameters_are_400_with_their_param() {
    let (app, fake) = setup(Script::Tokens(vec!["a"]));
    let chat = |extra: Value| {
        let mut b = chat_body();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (CHAT_URL, chat(json!({"temperature": 3.0})), "temperature"),
        (CHAT_URL, chat(json!({"max_tokens": 0})), "max_tokens"),
        (CHAT_URL, chat(json!({"n": 9})), "n"),
        (CHAT_URL, chat(json!({"top_logprobs": 2})), "top_logprobs"),
        (CHAT_URL, chat(json!({"messages": []})), "messages"),
        (
            CHAT_URL,
            chat(json!({"messages": [{"role": "tool", "content": "x"}]})),
            "messages",
        ),
        (
            CHAT_URL,
            chat(json!({"response_format": {"type": "xml"}})),
            "response_format",
        ),
        (
            CHAT_URL,
            chat(json!({"response_format": {"type": "json_schema", "json_schema": {}}})),
            "response_format.json_schema.schema",
        ),
        (CHAT_URL, chat(json!({"agora": {"min_trust": 3}})), "agora"),
        (
            CHAT_URL,
            chat(json!({"agora": {"verification": "paranoid"}})),
            "agora",
        ),
        // The TEE tier is an extension point: refused until a provider can attest.
        (
            CHAT_URL,
            chat(json!({"agora": {"verification": "tee"}})),
            "agora",
        ),
        (
            CHAT_URL,
            chat(json!({"stream": true, "agora": {"verification": "redundant"}})),
            "stream",
        ),
        (
            "/v1/embeddings",
            json!({"model": EMBED, "input": "x", "agora": {"verification": "redundant"}}),
            "agora",
        ),
        (
            "/v1/completions",
            json!({"model": BASE, "prompt": ""}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": BASE, "prompt": "x", "echo": true}),
            "echo",
        ),
        (
            "/v1/embeddings",
            json!({"model": EMBED, "input": []}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": EMBED, "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
    ];
    for (uri, body, param) in cases {
        let (status, out) = post_json(&app, uri, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body}");
        assert_error(&out, "invalid_request_error", None, Some(param));
    }
    assert!(
        fake.jobs().is_empty(),
        "refused before any provider is asked"
    );
}

#[tokio::test]
async fn a_model_of_the_wrong_kind_is_400_on_param_model() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let cases = [
        (
            CHAT_URL,
            json!({"model": EMBED, "messages": [{"role": "user", "content": "x"}]}),
            "use /v1/embeddings",
        ),
        (
            CHAT_URL,
            json!({"model": BASE, "messages": [{"role": "user", "content": "x"}]}),
            "use /v1/completions",
        ),
        (
            "/v1/completions",
            json!({"model": EMBED, "prompt": "x"}),
            "use /v1/embeddings",
        ),
        (
            "/v1/embeddings",
            json!({"model": CHAT, "input": "x"}),
            "is not an embedding model",
        ),
    ];
    for (uri, body, says) in cases {
        let (status, out) = post_json(&app, uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let msg = assert_error(&out, "invalid_request_error", None, Some("model"));
        assert!(msg.contains(says), "{msg}");
    }
}

#[tokio::test]
async fn a_header_option_that_does_not_parse_is_400() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let mut req = post(CHAT_URL, Some(KEY), chat_body().to_string());
    req.headers_mut()
        .insert("x-agora-min-trust", "high".parse().unwrap());
    let (status, text) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&json_exact(&text), "invalid_request_error", None, None);
    assert_eq!(msg, "x-agora-min-trust must be 0, 1 or 2");
}

#[tokio::test]
async fn a_provider_refusing_the_request_is_400_with_its_code() {
    let (app, _) = setup(Script::FailAfter(
        vec![],
        relay_error("context_length_exceeded", true),
    ));
    let (status, body) = post_json(&app, CHAT_URL, chat_body()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(
        &body,
        "invalid_request_error",
        Some("context_length_exceeded"),
        None,
    );
    assert_eq!(msg, "context_length_exceeded happened");
}

#[tokio::test]
async fn an_unknown_model_is_404_model_not_found() {
    let (app, fake) = setup(Script::Tokens(vec!["a"]));
    let cases = [
        (
            CHAT_URL,
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ),
        ("/v1/completions", json!({"model": "nope", "prompt": "x"})),
        ("/v1/embeddings", json!({"model": "nope", "input": "x"})),
    ];
    for (uri, body) in cases {
        let (status, out) = post_json(&app, uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        let msg = assert_error(
            &out,
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
        );
        assert!(msg.contains("`nope` does not exist"), "{msg}");
    }
    let (status, text) = send(&app, get("/v1/models/nope", Some(KEY))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(
        &json_exact(&text),
        "invalid_request_error",
        Some("model_not_found"),
        Some("model"),
    );
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn an_unknown_url_is_404_unknown_url() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    for req in [get("/v1/nothing", Some(KEY)), post("/v2/chat", None, "{}")] {
        let (status, text) = send(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let msg = assert_error(
            &json_exact(&text),
            "invalid_request_error",
            Some("unknown_url"),
            None,
        );
        assert!(msg.starts_with("Unknown request URL"), "{msg}");
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_request_timeout() {
    let fake = Arc::new(Fake::new(Script::Tokens(vec!["a"])));
    let app = app(state_with(fake, Duration::from_millis(100)));
    let stalled = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let (status, text) = send(&app, post(CHAT_URL, Some(KEY), Body::from_stream(stalled))).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let msg = assert_error(
        &json_exact(&text),
        "invalid_request_error",
        Some("request_timeout"),
        None,
    );
    assert_eq!(msg, "The request body stopped arriving.");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_request_too_large() {
    let (app, fake) = setup(Script::Tokens(vec!["a"]));
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    for uri in [CHAT_URL, "/v1/completions", "/v1/embeddings"] {
        let (status, text) = send(&app, post(uri, Some(KEY), big.clone())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
        let msg = assert_error(
            &json_exact(&text),
            "invalid_request_error",
            Some("request_too_large"),
            None,
        );
        assert_eq!(
            msg,
            format!("The request body exceeds {MAX_BODY_BYTES} bytes.")
        );
    }
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn network_failures_are_503_server_error_with_the_relays_code() {
    for code in ["no_provider", "providers_failed"] {
        let (app, _) = setup(Script::FailAfter(vec!["a"], relay_error(code, false)));
        for (uri, body) in [
            (CHAT_URL, chat_body()),
            ("/v1/completions", json!({"model": BASE, "prompt": "x"})),
            ("/v1/embeddings", json!({"model": EMBED, "input": "x"})),
        ] {
            let (status, out) = post_json(&app, uri, body).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            let msg = assert_error(&out, "server_error", Some(code), None);
            assert_eq!(msg, format!("{code} happened"));
        }
        let (_, metrics) = send(&app, get("/metrics", None)).await;
        assert!(
            metrics.contains("gateway_errors_total{status=\"503\"} 3"),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_completion_that_ends_without_a_result_is_503_internal() {
    let (app, _) = setup(Script::Vanish);
    for (uri, body, says) in [
        (
            CHAT_URL,
            chat_body(),
            "the completion ended without a result",
        ),
        (
            "/v1/embeddings",
            json!({"model": EMBED, "input": "x"}),
            "the request ended without a result",
        ),
    ] {
        let (status, out) = post_json(&app, uri, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(
            assert_error(&out, "server_error", Some("internal"), None),
            says
        );
    }
}

#[tokio::test]
async fn a_missing_embedding_vector_is_503_bad_provider_answer() {
    let (app, _) = setup(Script::Embed { skip: Some(1) });
    let (status, out) = post_json(
        &app,
        "/v1/embeddings",
        json!({"model": EMBED, "input": ["a", "b", "c"]}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let msg = assert_error(&out, "server_error", Some("bad_provider_answer"), None);
    assert_eq!(msg, "the provider returned no vector for input 1");
}

#[tokio::test]
async fn an_error_after_the_stream_started_is_its_last_event() {
    for (client_error, kind, status) in [
        (false, "server_error", 503),
        (true, "invalid_request_error", 400),
    ] {
        let (app, _) = setup(Script::FailAfter(
            vec!["He", "llo"],
            relay_error("providers_failed", client_error),
        ));
        let mut body = chat_body();
        body["stream"] = json!(true);
        let (code, text) = send(&app, post(CHAT_URL, Some(KEY), body.to_string())).await;
        assert_eq!(code, StatusCode::OK, "the stream had started");
        let evs = events(&text);
        // role, "He", "llo", then the error, and no [DONE].
        assert_eq!(evs.len(), 4, "{text}");
        let last = json_exact(evs.last().unwrap());
        assert_error(&last, kind, Some("providers_failed"), None);
        assert!(!text.contains("[DONE]"));
        let (_, metrics) = send(&app, get("/metrics", None)).await;
        assert!(
            metrics.contains(&format!("gateway_errors_total{{status=\"{status}\"}} 1")),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn credit_that_cannot_cover_the_request_is_429_insufficient_quota() {
    let quota = RelayError {
        code: "insufficient_quota".into(),
        message: "this request may cost up to 310 base units at the provider's price; the key has 10 free".into(),
        fault: Fault::Quota,
    };
    let (app, _) = setup(Script::FailAfter(vec![], quota));
    let (status, text) = send(&app, post(CHAT_URL, Some(KEY), chat_body().to_string())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let msg = assert_error(
        &json_exact(&text),
        "insufficient_quota",
        Some("insufficient_quota"),
        None,
    );
    assert!(msg.contains("may cost up to 310"), "{msg}");
}

#[tokio::test]
async fn receipts_of_an_unknown_or_malformed_request_id_are_404_and_400() {
    let (app, _) = setup(Script::Tokens(vec!["a"]));
    let unknown = format!("/v1/receipts/{}", "ab".repeat(32));
    let (status, text) = send(&app, get(&unknown, Some(KEY))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(
        &json_exact(&text),
        "invalid_request_error",
        Some("receipts_not_found"),
        Some("request_id"),
    );
    let (status, text) = send(&app, get("/v1/receipts/not-hex", Some(KEY))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(
        &json_exact(&text),
        "invalid_request_error",
        None,
        Some("request_id"),
    );
    let (status, _) = send(&app, get(&unknown, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
