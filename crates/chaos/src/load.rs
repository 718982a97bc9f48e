//! The clients: each gateway client has its own API key and picks its next call from the
//! scenario's mix with its own seeded generator, so a seed replays the same sequence of calls.
//! They speak the OpenAI wire format over plain HTTP, as the official SDKs do (the SDK suite in
//! `tests/openai/` checks that those SDKs work; here what matters is every outcome, recorded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_rpc::{ChainError, TxSender};
use agora_types::{Address, Amount, TxBody};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::history::{Body, Call, ClientError, HistoryWriter, Outcome, Usage};
use crate::scenario::{Load, Mix};

/// The model every provider of the lab serves (the deterministic test engine).
pub const MODEL: &str = "agora-test-engine-instruct";

/// A client's pause after a failed call.
const FAILURE_BACKOFF_MS: u64 = 500;

/// One gateway client.
pub struct GatewayClient {
    pub name: String,
    pub customer: String,
    pub api_key: String,
    pub base: String,
    pub seed: u64,
}

fn pick(mix: &Mix, rng: &mut StdRng) -> (bool, bool) {
    // (chat, stream)
    let mut x = rng.gen_range(0..mix.total());
    for (w, choice) in [
        (mix.chat_stream, (true, true)),
        (mix.chat, (true, false)),
        (mix.completion_stream, (false, true)),
        (mix.completion, (false, false)),
    ] {
        let w = u64::from(w);
        if x < w {
            return choice;
        }
        x -= w;
    }
    (true, true)
}

impl GatewayClient {
    /// Runs calls until `until`, recording each.
    pub async fn run(self, load: Load, until: Instant, history: Arc<HistoryWriter>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(load.timeout_s))
            .build()
            .expect("an HTTP client");
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut n = 0u64;
        while Instant::now() < until {
            let (chat, stream) = pick(&load.mix, &mut rng);
            let call_seed: u32 = rng.r#gen();
            let call = if chat {
                Call::Chat {
                    customer: self.customer.clone(),
                    stream,
                    max_tokens: load.max_tokens,
                }
            } else {
                Call::Completion {
                    customer: self.customer.clone(),
                    stream,
                    max_tokens: load.max_tokens,
                }
            };
            let op = history.op();
            history.record(
                op,
                &self.name,
                Body::Invoke {
                    call,
                    timeout_ms: load.timeout_s.saturating_mul(1000),
                },
            );
            let body = request_body(chat, stream, load.max_tokens, call_seed, n);
            let path = if chat {
                "chat/completions"
            } else {
                "completions"
            };
            let end = self.call(&http, path, &body, stream).await;
            let failed = matches!(end, Body::Fail { .. });
            history.record(op, &self.name, end);
            n += 1;
            // After a failure a client backs off, as the OpenAI SDKs do between retries.
            let pause = if failed {
                load.think_ms.max(FAILURE_BACKOFF_MS)
            } else {
                load.think_ms
            };
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }

    async fn call(&self, http: &reqwest::Client, path: &str, body: &Value, stream: bool) -> Body {
        let resp = http
            .post(format!("{}/{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return fail(None, transport_code(&e), e.to_string(), Outcome::default()),
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let (code, message) = openai_error(&v);
            return fail(Some(status), code, message, Outcome::default());
        }
        if stream {
            read_stream(resp, status).await
        } else {
            match resp.json::<Value>().await {
                Ok(v) => Body::Ok {
                    outcome: whole_outcome(&v),
                },
                Err(e) => fail(None, transport_code(&e), e.to_string(), Outcome::default()),
            }
        }
    }
}

fn request_body(chat: bool, stream: bool, max_tokens: u32, seed: u32, n: u64) -> Value {
    let text = format!("Request {n}: say something about the number {seed}.");
    let mut body = if chat {
        json!({"model": MODEL, "messages": [{"role": "user", "content": text}]})
    } else {
        json!({"model": MODEL, "prompt": text})
    };
    body["max_tokens"] = json!(max_tokens);
    body["seed"] = json!(seed);
    body["temperature"] = json!(0.7);
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn fail(status: Option<u16>, code: String, message: String, partial: Outcome) -> Body {
    Body::Fail {
        error: ClientError {
            status,
            code,
            message,
        },
        partial,
    }
}

fn transport_code(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "body"
    }
    .to_string()
}

/// OpenAI's error shape: `error.code`, else `error.type`; empty when the body is not one.
fn openai_error(v: &Value) -> (String, String) {
    let e = &v["error"];
    let code = e["code"]
        .as_str()
        .or_else(|| e["type"].as_str())
        .unwrap_or("")
        .to_string();
    (code, e["message"].as_str().unwrap_or("").to_string())
}

/// Reads `agora` of a choice (whole or final chunk) into `out`.
fn read_agora(agora: &Value, out: &mut Outcome) {
    if let Some(c) = agora["charged"]
        .as_str()
        .and_then(|s| s.parse::<u128>().ok())
    {
        out.charged = Some(Amount(c));
    }
    if let Some(id) = agora["request_id"].as_str() {
        out.request_id = Some(id.to_string());
    }
    if let Some(s) = agora["segments"].as_array() {
        out.segments = u32::try_from(s.len()).unwrap_or(u32::MAX);
    }
}

fn read_usage(v: &Value) -> Option<Usage> {
    let u = &v["usage"];
    Some(Usage {
        prompt_tokens: u32::try_from(u["prompt_tokens"].as_u64()?).ok()?,
        completion_tokens: u32::try_from(u["completion_tokens"].as_u64()?).ok()?,
    })
}

fn whole_outcome(v: &Value) -> Outcome {
    let mut out = Outcome {
        usage: read_usage(v),
        ..Outcome::default()
    };
    out.tokens_received = out.usage.map_or(0, |u| u.completion_tokens);
    read_agora(&v["choices"][0]["agora"], &mut out);
    out
}

/// Reads server-sent events until `[DONE]`; an `error` event or a cut stream is a failure that
/// keeps what arrived.
async fn read_stream(resp: reqwest::Response, status: u16) -> Body {
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut bytes = resp.bytes_stream();
    loop {
        let chunk = match bytes.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                let code = if e.is_timeout() {
                    "timeout"
                } else {
                    "stream_cut"
                };
                return fail(None, code.into(), e.to_string(), out);
            }
            None => {
                return fail(
                    None,
                    "stream_cut".into(),
                    "the stream ended without [DONE]".into(),
                    out,
                );
            }
        };
        buf.extend_from_slice(&chunk);
        while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..at + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    return Body::Ok { outcome: out };
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    return fail(
                        Some(status),
                        "bad_event".into(),
                        data.chars().take(200).collect(),
                        out,
                    );
                };
                if v.get("error").is_some() {
                    let (code, message) = openai_error(&v);
                    return fail(Some(status), code, message, out);
                }
                if let Some(u) = read_usage(&v) {
                    out.usage = Some(u);
                }
                if let Some(choice) = v["choices"].get(0) {
                    let piece = choice["delta"]["content"]
                        .as_str()
                        .or_else(|| choice["text"].as_str())
                        .unwrap_or("");
                    if !piece.is_empty() {
                        out.tokens_received = out.tokens_received.saturating_add(1);
                    }
                    if !choice["agora"].is_null() {
                        read_agora(&choice["agora"], &mut out);
                    }
                }
            }
        }
    }
}

/// One wallet client: transfers between its two accounts through one validator's RPC (each
/// account's nonces kept by its sender), each waited on until final.
pub struct TransferClient {
    pub name: String,
    /// Both bound to the RPC of `node`.
    pub senders: [Arc<TxSender>; 2],
    pub node: String,
    pub seed: u64,
}

impl TransferClient {
    pub async fn run(self, load: Load, until: Instant, history: Arc<HistoryWriter>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let timeout = Duration::from_secs(load.timeout_s);
        while Instant::now() < until {
            let from = rng.gen_range(0..2usize);
            let amount = Amount(rng.gen_range(1..1_000_000u128));
            let sender = &self.senders[from];
            let to: Address = self.senders[1 - from].address();
            let op = history.op();
            history.record(
                op,
                &self.name,
                Body::Invoke {
                    call: Call::Transfer {
                        from: sender.address().to_string(),
                        to: to.to_string(),
                        amount,
                        node: self.node.clone(),
                    },
                    timeout_ms: load.timeout_s.saturating_mul(1000),
                },
            );
            let end = match tokio::time::timeout(timeout, transfer(sender, to, amount)).await {
                Ok(b) => b,
                Err(_) => fail(
                    None,
                    "timeout".into(),
                    format!("not final within {timeout:?}"),
                    Outcome::default(),
                ),
            };
            history.record(op, &self.name, end);
            tokio::time::sleep(Duration::from_millis(load.think_ms.max(200))).await;
        }
    }
}

async fn transfer(sender: &TxSender, to: Address, amount: Amount) -> Body {
    let (id, _) = match sender.submit(TxBody::Transfer { to, amount }).await {
        Ok(x) => x,
        Err(e) => return chain_fail(e, Outcome::default()),
    };
    let partial = Outcome {
        tx: Some(id),
        ..Outcome::default()
    };
    match sender
        .chain()
        .wait_final(&id, Duration::from_secs(3600))
        .await
    {
        Ok(r) => match r.outcome {
            agora_types::Outcome::Success => Body::Ok { outcome: partial },
            agora_types::Outcome::Failed { code, message } => {
                fail(None, format!("ledger_{code}"), message, partial)
            }
        },
        Err(e) => chain_fail(e, partial),
    }
}

fn chain_fail(e: ChainError, partial: Outcome) -> Body {
    let (status, code) = match &e {
        ChainError::Unreachable { .. } => (None, "connect".to_string()),
        ChainError::Refused { status, code, .. } => (Some(*status), code.clone()),
        ChainError::TxFailed { code, .. } => (None, format!("ledger_{code}")),
        ChainError::NotFinal(..) => (None, "timeout".to_string()),
        _ => (None, "body".to_string()),
    };
    fail(status, code, e.to_string(), partial)
}
