//! The OpenAI-compatible HTTP surface: request shapes, validation, responses, server-sent event
//! streams and errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).
//!
//! Unknown top-level fields are refused with 400 like OpenAI does ("Unrecognized request
//! argument"), except a list of known fields that change nothing here (`user`, `metadata`, ...).
//! Agora's own options travel in an `agora` object (ignored by stock SDKs) or in `x-agora-*`
//! headers: `max_price_per_mtok`, `min_trust`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_market::protocol::{Sampling, Tok, Work};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::customers::{AuthError, Customers, KeyHash};
use crate::market::{Constraints, Market, ModelKind, ModelView};
use crate::metrics::Metrics;
use crate::relay::{CompletionJob, Relay, RelayError, RelayEvent, Summary};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// How much of an oversized body is read (and discarded) before answering 413.
pub const MAX_DRAIN_BYTES: usize = 64 << 20;
/// Largest `max_tokens` accepted before asking a provider (which checks its context length).
pub const MAX_TOKENS_LIMIT: u32 = 1 << 20;
/// Most choices per request.
pub const MAX_N: u32 = 8;
/// Default `max_tokens` when the request names none.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// Everything the handlers share.
pub struct ApiState {
    pub relay: Arc<Relay>,
    pub market: Arc<Market>,
    pub customers: Arc<Customers>,
    pub metrics: Metrics,
}

/// An error in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: param.map(str::to_string),
            message: message.into(),
        }
    }
    fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
    fn from_relay(e: RelayError) -> Self {
        if e.client_error {
            ApiError::invalid(e.message, None).with_code(&e.code)
        } else {
            Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "server_error",
                code: Some(e.code),
                param: None,
                message: e.message,
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub fn router(state: Arc<ApiState>, body_timeout: std::time::Duration) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                code: Some("unknown_url".into()),
                param: None,
                message: "Unknown request URL. See docs/gateway.md for the endpoints.".into(),
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A client that trickles its request body is cut off instead of holding a task forever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .with_state(state)
}

/// The response, or the error counted in the metrics and in OpenAI's shape.
fn answer(s: &ApiState, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        s.metrics.error(e.status.as_u16());
        e.into_response()
    })
}

async fn metrics(State(s): State<Arc<ApiState>>) -> String {
    s.metrics.render()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn auth(s: &ApiState, headers: &HeaderMap) -> Result<KeyHash, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match s.customers.authorize(token) {
        Ok((h, _)) => Ok(h),
        Err(AuthError::Missing) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: Some("invalid_api_key".into()),
            param: None,
            message: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
                .into(),
        }),
        Err(AuthError::Unknown) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: Some("invalid_api_key".into()),
            param: None,
            message: "Incorrect API key provided.".into(),
        }),
        Err(AuthError::NoCredit { .. }) => Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "insufficient_quota",
            code: Some("insufficient_quota".into()),
            param: None,
            message: "You exceeded your current quota: this key has no credit left.".into(),
        }),
    }
}

/// Parses a JSON object body, refusing unknown top-level fields.
/// Reads a request body of at most `MAX_BODY_BYTES`. The rest of a larger one is read and
/// discarded, up to `MAX_DRAIN_BYTES`, so a client still sending gets the 413 rather than a
/// reset connection; memory stays bounded by `MAX_BODY_BYTES` either way. A body that stops
/// arriving is cut off by the router's body timeout and answered with 408.
async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let timed_out = std::error::Error::source(&e)
                .is_some_and(|c| c.is::<tower_http::timeout::TimeoutError>());
            if timed_out {
                ApiError {
                    status: StatusCode::REQUEST_TIMEOUT,
                    kind: "invalid_request_error",
                    code: Some("request_timeout".into()),
                    param: None,
                    message: "The request body stopped arriving.".into(),
                }
            } else {
                ApiError::invalid(format!("Could not read the request body: {e}"), None)
            }
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if seen > MAX_DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            code: Some("request_too_large".into()),
            param: None,
            message: format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        });
    }
    Ok(Bytes::from(buf))
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, ApiError>,
    known: &[&str],
) -> Result<T, ApiError> {
    let body = body?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let Value::Object(map) = &v else {
        return Err(ApiError::invalid(
            "The request body must be a JSON object.",
            None,
        ));
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("Unrecognized request argument supplied: {k}"),
            Some(k),
        ));
    }
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("Invalid request: {e}"), None))
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct AgoraOptions {
    max_price_per_mtok: Option<u128>,
    min_trust: Option<u8>,
}

fn constraints(opts: Option<AgoraOptions>, headers: &HeaderMap) -> Result<Constraints, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut c = Constraints::default();
    if let Some(o) = opts {
        c.max_price_per_mtok = o.max_price_per_mtok;
        c.min_trust = o.min_trust.unwrap_or(0);
    }
    if let Some(v) = header("x-agora-max-price-per-mtok") {
        c.max_price_per_mtok = Some(v.parse().map_err(|_| {
            ApiError::invalid("x-agora-max-price-per-mtok must be an integer", None)
        })?);
    }
    if let Some(v) = header("x-agora-min-trust") {
        c.min_trust = v
            .parse()
            .map_err(|_| ApiError::invalid("x-agora-min-trust must be 0, 1 or 2", None))?;
    }
    if c.min_trust > 2 {
        return Err(ApiError::invalid(
            "min_trust must be 0, 1 or 2",
            Some("agora"),
        ));
    }
    Ok(c)
}

fn find_model(s: &ApiState, name: &str) -> Result<ModelView, ApiError> {
    s.market.model(name).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: Some("model_not_found".into()),
        param: Some("model".into()),
        message: format!(
            "The model `{name}` does not exist or no provider on the network serves it now."
        ),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchemaFormat>,
}

/// OpenAI's `response_format.json_schema`; `name`, `description` and `strict` are accepted and
/// not needed (the output always follows the schema).
#[derive(Deserialize)]
#[allow(dead_code)]
struct JsonSchemaFormat {
    name: Option<String>,
    description: Option<String>,
    schema: Option<serde_json::Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Sampling fields common to chat and completions.
#[derive(Deserialize, Default)]
struct SamplingFields {
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<StopField>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<BTreeMap<String, f32>>,
    n: Option<u32>,
}

impl SamplingFields {
    fn to_sampling(&self, default_max: u32) -> Result<(Sampling, u32), ApiError> {
        let max_tokens = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(default_max);
        let param = if self.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        if max_tokens == 0 {
            return Err(ApiError::invalid(
                format!("{param} must be at least 1"),
                Some(param),
            ));
        }
        if max_tokens > MAX_TOKENS_LIMIT {
            return Err(ApiError::invalid(
                format!(
                    "{param} is {max_tokens}; the most this gateway accepts is {MAX_TOKENS_LIMIT} (providers also enforce their context length)"
                ),
                Some(param),
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                format!("temperature must be between 0 and 2, got {temperature}"),
                Some("temperature"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                format!("top_p must be in (0, 1], got {top_p}"),
                Some("top_p"),
            ));
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if let Some(v) = v
                && !(-2.0..=2.0).contains(&v)
            {
                return Err(ApiError::invalid(
                    format!("{name} must be between -2 and 2, got {v}"),
                    Some(name),
                ));
            }
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(ApiError::invalid(
                "stop must be up to 4 non-empty sequences of at most 256 bytes",
                Some("stop"),
            ));
        }
        let mut logit_bias = Vec::new();
        if let Some(b) = &self.logit_bias {
            if b.len() > 300 {
                return Err(ApiError::invalid(
                    "logit_bias has more than 300 entries",
                    Some("logit_bias"),
                ));
            }
            for (k, v) in b {
                let id: u32 = k.parse().map_err(|_| {
                    ApiError::invalid(
                        format!("logit_bias key {k:?} is not a token id"),
                        Some("logit_bias"),
                    )
                })?;
                if !(-100.0..=100.0).contains(v) {
                    return Err(ApiError::invalid(
                        "logit_bias values must be between -100 and 100",
                        Some("logit_bias"),
                    ));
                }
                logit_bias.push((id, *v));
            }
        }
        let n = self.n.unwrap_or(1);
        if n == 0 || n > MAX_N {
            return Err(ApiError::invalid(
                format!("n must be between 1 and {MAX_N}"),
                Some("n"),
            ));
        }
        // Without a client seed the gateway picks one, so a failover continues the same text.
        let seed = self.seed.map_or_else(rand::random::<u64>, |s| s as u64);
        Ok((
            Sampling {
                temperature,
                top_p,
                frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
                presence_penalty: self.presence_penalty.unwrap_or(0.0),
                stop,
                max_tokens,
                seed,
                logit_bias,
                ..Sampling::default()
            },
            n,
        ))
    }
}

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "logprobs",
    "top_logprobs",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "metadata",
    "store",
    "service_tier",
    "agora",
];

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    logprobs: Option<bool>,
    top_logprobs: Option<u8>,
    response_format: Option<ResponseFormat>,
    agora: Option<AgoraOptions>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

async fn chat_completions(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("chat");
    answer(&s, chat_inner(&s, &headers, body).await)
}

async fn chat_inner(
    s: &Arc<ApiState>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let customer = auth(s, headers)?;
    let req: ChatRequest = parse_body(read_body(body).await, CHAT_FIELDS)?;
    let (mut sampling, n) = req.sampling.to_sampling(DEFAULT_MAX_TOKENS)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(ApiError::invalid(
                format!(
                    "messages[{i}].role {:?} is not supported (system, developer, user, assistant)",
                    m.role
                ),
                Some("messages"),
            ));
        }
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut t = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::invalid(
                            format!(
                                "messages[{i}] has a {:?} part; only text is supported",
                                p.kind
                            ),
                            Some("messages"),
                        ));
                    }
                    t.push_str(&p.text.unwrap_or_default());
                }
                t
            }
        };
        let role = if m.role == "developer" {
            "system".into()
        } else {
            m.role
        };
        messages.push(agora_market::protocol::ChatMessage { role, content });
    }
    if req.logprobs == Some(true) {
        let top = req.top_logprobs.unwrap_or(0);
        if top > 20 {
            return Err(ApiError::invalid(
                "top_logprobs must be between 0 and 20",
                Some("top_logprobs"),
            ));
        }
        sampling.logprobs = Some(top);
    } else if req.top_logprobs.is_some() {
        return Err(ApiError::invalid(
            "top_logprobs requires logprobs: true",
            Some("top_logprobs"),
        ));
    }
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "text" => {}
            "json_object" => sampling.json = true,
            "json_schema" => {
                let param = Some("response_format.json_schema.schema");
                let Some(schema) = rf.json_schema.as_ref().and_then(|j| j.schema.as_ref()) else {
                    return Err(ApiError::invalid(
                        "response_format json_schema needs json_schema.schema",
                        param,
                    ));
                };
                // Refused here with the reason, before any provider is paid to refuse it.
                agora_json::Schema::from_value(schema)
                    .map_err(|e| ApiError::invalid(e.to_string(), param))?;
                sampling.json = true;
                sampling.json_schema = Some(schema.to_string());
            }
            other => {
                return Err(ApiError::invalid(
                    format!(
                        "response_format type {other:?} is not supported (text, json_object, json_schema)"
                    ),
                    Some("response_format"),
                ));
            }
        }
    }
    let model = find_model(s, &req.model)?;
    match model.kind {
        ModelKind::Chat => {}
        ModelKind::Completion => {
            return Err(ApiError::invalid(
                format!(
                    "{} is a base model without a chat template; use /v1/completions",
                    model.name
                ),
                Some("model"),
            ));
        }
        ModelKind::Embedding => {
            return Err(ApiError::invalid(
                format!("{} is an embedding model; use /v1/embeddings", model.name),
                Some("model"),
            ));
        }
    }
    let c = constraints(req.agora, headers)?;
    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let work = Work::Chat { messages };
    let shape = Shape::new(&model, true, &sampling);
    let n_jobs = NChoices {
        n,
        constraints: c,
        customer,
    };
    respond(
        s,
        &model,
        work,
        sampling,
        n_jobs,
        shape,
        req.stream,
        include_usage,
    )
    .await
}

const COMPLETION_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "stream",
    "stream_options",
    "n",
    "stop",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "logprobs",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "echo",
    "suffix",
    "best_of",
    "agora",
];

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: PromptField,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    logprobs: Option<u8>,
    echo: Option<bool>,
    suffix: Option<String>,
    best_of: Option<u32>,
    agora: Option<AgoraOptions>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

async fn completions(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("completions");
    answer(&s, completions_inner(&s, &headers, body).await)
}

async fn completions_inner(
    s: &Arc<ApiState>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let customer = auth(s, headers)?;
    let req: CompletionRequest = parse_body(read_body(body).await, COMPLETION_FIELDS)?;
    // OpenAI's legacy default for completions.
    let (mut sampling, n) = req.sampling.to_sampling(16)?;
    let prompt = match req.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptField::Many(_) => {
            return Err(ApiError::invalid(
                "prompt must be one string (batched prompts are not supported)",
                Some("prompt"),
            ));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            "prompt must not be empty",
            Some("prompt"),
        ));
    }
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo is not supported", Some("echo")));
    }
    if req.suffix.is_some() {
        return Err(ApiError::invalid("suffix is not supported", Some("suffix")));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::invalid(
            "best_of is not supported",
            Some("best_of"),
        ));
    }
    if let Some(lp) = req.logprobs {
        if lp > 5 {
            return Err(ApiError::invalid(
                "logprobs must be between 0 and 5",
                Some("logprobs"),
            ));
        }
        sampling.logprobs = Some(lp);
    }
    let model = find_model(s, &req.model)?;
    if model.kind == ModelKind::Embedding {
        return Err(ApiError::invalid(
            format!("{} is an embedding model; use /v1/embeddings", model.name),
            Some("model"),
        ));
    }
    let c = constraints(req.agora, headers)?;
    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let work = Work::Text { prompt };
    let shape = Shape::new(&model, false, &sampling);
    let n_jobs = NChoices {
        n,
        constraints: c,
        customer,
    };
    respond(
        s,
        &model,
        work,
        sampling,
        n_jobs,
        shape,
        req.stream,
        include_usage,
    )
    .await
}

/// Who asks for how many choices, under which routing constraints.
struct NChoices {
    n: u32,
    constraints: Constraints,
    customer: KeyHash,
}

/// Runs `n` choices of one request (seeds `seed + i`) and answers streamed or whole.
#[allow(clippy::too_many_arguments)]
async fn respond(
    s: &Arc<ApiState>,
    model: &ModelView,
    work: Work,
    sampling: Sampling,
    choices: NChoices,
    shape: Shape,
    stream: bool,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let jobs = (0..choices.n)
        .map(|i| CompletionJob {
            model: model.sha256,
            work: work.clone(),
            sampling: Sampling {
                seed: sampling.seed.wrapping_add(u64::from(i)),
                ..sampling.clone()
            },
            constraints: choices.constraints,
            customer: choices.customer,
        })
        .collect();
    if stream {
        Ok(stream_response(s, jobs, shape, include_usage))
    } else {
        collect_response(s, jobs, shape).await
    }
}

/// How responses of one request look.
#[derive(Clone)]
struct Shape {
    id: String,
    model: String,
    chat: bool,
    logprobs: bool,
}

impl Shape {
    fn new(model: &ModelView, chat: bool, sampling: &Sampling) -> Self {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            id: format!("{prefix}-{}", hex::encode(rand::random::<[u8; 12]>())),
            model: model.name.clone(),
            chat,
            logprobs: sampling.logprobs.is_some(),
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, true) => "chat.completion.chunk",
            (true, false) => "chat.completion",
            (false, _) => "text_completion",
        }
    }
}

fn token_logprob(t: &Tok) -> Value {
    let top: Vec<Value> = t
        .top
        .iter()
        .enumerate()
        .map(|(i, (id, lp))| {
            // The provider's text for each alternative; an id for one it did not name.
            let token = match t.top_text.get(i) {
                Some(text) => text.clone(),
                None if *id == t.id => t.text.clone(),
                None => format!("<token {id}>"),
            };
            json!({"token": token, "logprob": lp, "bytes": token.as_bytes()})
        })
        .collect();
    json!({"token": t.text, "logprob": t.logprob.unwrap_or(0.0), "bytes": t.text.as_bytes(), "top_logprobs": top})
}

/// Who served a completion and what each was paid (an extension stock SDKs ignore).
fn agora_json(sm: &Summary) -> Value {
    let segments: Vec<Value> = sm
        .segments
        .iter()
        .map(|g| json!({"provider": g.provider.to_string(), "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens, "charged": g.charged, "receipt_ok": g.receipt_ok}))
        .collect();
    json!({"charged": sm.charged, "segments": segments})
}

fn usage_json(prompt: u32, completion: u32) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Runs every choice to the end and answers with one JSON body.
async fn collect_response(
    s: &Arc<ApiState>,
    jobs: Vec<CompletionJob>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let mut rxs: Vec<_> = jobs.into_iter().map(|j| s.relay.start(j)).collect();
    let mut choices = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0u32, 0u32);
    for (index, rx) in rxs.iter_mut().enumerate() {
        let mut text = String::new();
        let mut lps = Vec::new();
        let summary: Summary = loop {
            match rx.recv().await {
                Some(RelayEvent::Token(t)) => {
                    text.push_str(&t.text);
                    if shape.logprobs {
                        lps.push(token_logprob(&t));
                    }
                }
                Some(RelayEvent::Text(t)) => text.push_str(&t),
                Some(RelayEvent::Embeddings { .. }) => {}
                Some(RelayEvent::Done(sm)) => break sm,
                Some(RelayEvent::Error(e)) => return Err(ApiError::from_relay(e)),
                None => {
                    return Err(ApiError::from_relay(RelayError {
                        code: "internal".into(),
                        message: "the completion ended without a result".into(),
                        client_error: false,
                    }));
                }
            }
        };
        prompt_tokens += summary.prompt_tokens;
        completion_tokens += summary.completion_tokens;
        s.metrics
            .tokens(summary.completion_tokens, summary.segments.len());
        let logprobs = if shape.logprobs {
            if shape.chat {
                json!({"content": lps})
            } else {
                json!({
                    "tokens": lps.iter().map(|l| l["token"].clone()).collect::<Vec<_>>(),
                    "token_logprobs": lps.iter().map(|l| l["logprob"].clone()).collect::<Vec<_>>(),
                    "top_logprobs": lps.iter().map(|l| {
                        let m: serde_json::Map<String, Value> = l["top_logprobs"].as_array().into_iter().flatten()
                            .map(|t| (t["token"].as_str().unwrap_or_default().to_string(), t["logprob"].clone())).collect();
                        Value::Object(m)
                    }).collect::<Vec<_>>(),
                })
            }
        } else {
            Value::Null
        };
        choices.push(if shape.chat {
            json!({"index": index, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": logprobs, "finish_reason": summary.finish_reason, "agora": agora_json(&summary)})
        } else {
            json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": summary.finish_reason, "agora": agora_json(&summary)})
        });
    }
    let body = json!({
        "id": shape.id,
        "object": shape.object(false),
        "created": now_secs(),
        "model": shape.model,
        "system_fingerprint": null,
        "choices": choices,
        "usage": usage_json(prompt_tokens, completion_tokens),
    });
    Ok(Json(body).into_response())
}

/// Streams every choice as server-sent events, ending with `[DONE]`.
fn stream_response(
    s: &Arc<ApiState>,
    jobs: Vec<CompletionJob>,
    shape: Shape,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    let n = jobs.len();
    let mut merged = {
        let (mtx, mrx) = mpsc::channel::<(usize, RelayEvent)>(64);
        for (i, j) in jobs.into_iter().enumerate() {
            let mut r = s.relay.start(j);
            let mtx = mtx.clone();
            tokio::spawn(async move {
                while let Some(ev) = r.recv().await {
                    if mtx.send((i, ev)).await.is_err() {
                        return;
                    }
                }
            });
        }
        mrx
    };
    let metrics = s.metrics.clone();
    tokio::spawn(async move {
        let created = now_secs();
        let chunk = |choices: Value, usage: Option<Value>| -> SseEvent {
            let mut v = json!({
                "id": shape.id, "object": shape.object(true), "created": created,
                "model": shape.model, "system_fingerprint": null, "choices": choices,
            });
            if include_usage {
                v["usage"] = usage.unwrap_or(Value::Null);
            }
            SseEvent::default().data(v.to_string())
        };
        if shape.chat {
            for i in 0..n {
                let c = json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
                if tx.send(chunk(c, None)).await.is_err() {
                    return;
                }
            }
        }
        let delta = |i: usize, text: &str, lp: Option<Value>, finish: Option<&str>| -> Value {
            if shape.chat {
                let d = if finish.is_some() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                json!([{"index": i, "delta": d, "logprobs": lp.map(|l| json!({"content": [l]})), "finish_reason": finish}])
            } else {
                json!([{"index": i, "text": text, "logprobs": lp, "finish_reason": finish}])
            }
        };
        let (mut prompt_tokens, mut completion_tokens, mut done) = (0u32, 0u32, 0usize);
        while let Some((i, ev)) = merged.recv().await {
            let out = match ev {
                RelayEvent::Token(t) => {
                    let lp = shape.logprobs.then(|| token_logprob(&t));
                    if t.text.is_empty() && lp.is_none() {
                        continue;
                    }
                    chunk(delta(i, &t.text, lp, None), None)
                }
                RelayEvent::Text(t) => chunk(delta(i, &t, None, None), None),
                RelayEvent::Embeddings { .. } => continue,
                RelayEvent::Done(sm) => {
                    prompt_tokens += sm.prompt_tokens;
                    completion_tokens += sm.completion_tokens;
                    metrics.tokens(sm.completion_tokens, sm.segments.len());
                    done += 1;
                    let mut c = delta(i, "", None, Some(&sm.finish_reason));
                    c[0]["agora"] = agora_json(&sm);
                    chunk(c, None)
                }
                RelayEvent::Error(e) => {
                    metrics.error(if e.client_error { 400 } else { 503 });
                    let body = ApiError::from_relay(e).body();
                    let _ = tx.send(SseEvent::default().data(body.to_string())).await;
                    return;
                }
            };
            if tx.send(out).await.is_err() {
                return; // the client left: dropping `merged` cancels the relays
            }
            if done == n {
                break;
            }
        }
        if include_usage {
            let u = usage_json(prompt_tokens, completion_tokens);
            let mut v = json!({
                "id": shape.id, "object": shape.object(true), "created": created,
                "model": shape.model, "system_fingerprint": null, "choices": [], "usage": u,
            });
            v["usage"] = usage_json(prompt_tokens, completion_tokens);
            let _ = tx.send(SseEvent::default().data(v.to_string())).await;
        }
        let _ = tx.send(SseEvent::default().data("[DONE]")).await;
    });
    Sse::new(ReceiverStream(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

struct ReceiverStream(mpsc::Receiver<SseEvent>);

impl Stream for ReceiverStream {
    type Item = Result<SseEvent, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

const EMBEDDING_FIELDS: &[&str] = &[
    "model",
    "input",
    "encoding_format",
    "dimensions",
    "user",
    "agora",
];

#[derive(Deserialize)]
#[serde(untagged)]
enum InputField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: InputField,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
    agora: Option<AgoraOptions>,
}

async fn embeddings(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("embeddings");
    answer(&s, embeddings_inner(&s, &headers, body).await)
}

async fn embeddings_inner(
    s: &Arc<ApiState>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let customer = auth(s, headers)?;
    let req: EmbeddingRequest = parse_body(read_body(body).await, EMBEDDING_FIELDS)?;
    let inputs = match req.input {
        InputField::One(t) => vec![t],
        InputField::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > 256 {
        return Err(ApiError::invalid(
            "input must hold 1 to 256 strings",
            Some("input"),
        ));
    }
    if inputs.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "input strings must not be empty",
            Some("input"),
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format {other:?} is not supported (float, base64)"),
                Some("encoding_format"),
            ));
        }
    };
    if req.dimensions.is_some() {
        return Err(ApiError::invalid(
            "dimensions is not supported by this model",
            Some("dimensions"),
        ));
    }
    let model = find_model(s, &req.model)?;
    if model.kind != ModelKind::Embedding {
        return Err(ApiError::invalid(
            format!("{} is not an embedding model", model.name),
            Some("model"),
        ));
    }
    let count = inputs.len();
    let job = CompletionJob {
        model: model.sha256,
        work: Work::Embed { inputs },
        sampling: Sampling::default(),
        constraints: constraints(req.agora, headers)?,
        customer,
    };
    let mut rx = s.relay.start(job);
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
    let summary = loop {
        match rx.recv().await {
            Some(RelayEvent::Embeddings {
                first_index,
                vectors: vs,
            }) => {
                for (k, v) in vs.into_iter().enumerate() {
                    if let Some(slot) = vectors.get_mut(first_index as usize + k) {
                        *slot = Some(v);
                    }
                }
            }
            Some(RelayEvent::Done(sm)) => break sm,
            Some(RelayEvent::Error(e)) => return Err(ApiError::from_relay(e)),
            Some(_) => {}
            None => {
                return Err(ApiError::from_relay(RelayError {
                    code: "internal".into(),
                    message: "the request ended without a result".into(),
                    client_error: false,
                }));
            }
        }
    };
    let mut data = Vec::with_capacity(count);
    for (i, v) in vectors.into_iter().enumerate() {
        let Some(v) = v else {
            return Err(ApiError::from_relay(RelayError {
                code: "bad_provider_answer".into(),
                message: format!("the provider returned no vector for input {i}"),
                client_error: false,
            }));
        };
        let embedding = if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64_encode(&bytes))
        } else {
            json!(v)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": summary.prompt_tokens, "total_tokens": summary.prompt_tokens},
    }))
    .into_response())
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn model_json(m: &ModelView, prices: &[agora_market::Price]) -> Value {
    let min_in = prices
        .iter()
        .map(|p| p.input_per_million.0)
        .min()
        .unwrap_or(0);
    let max_in = prices
        .iter()
        .map(|p| p.input_per_million.0)
        .max()
        .unwrap_or(0);
    let min_out = prices
        .iter()
        .map(|p| p.output_per_million.0)
        .min()
        .unwrap_or(0);
    let max_out = prices
        .iter()
        .map(|p| p.output_per_million.0)
        .max()
        .unwrap_or(0);
    let kind = match m.kind {
        ModelKind::Chat => "chat",
        ModelKind::Completion => "completion",
        ModelKind::Embedding => "embedding",
    };
    json!({
        "id": m.name,
        "object": "model",
        "created": 0,
        "owned_by": m.owner.to_string(),
        "agora": {
            "sha256": m.sha256,
            "family": m.family,
            "license": m.license,
            "kind": kind,
            "endpoints": match m.kind {
                ModelKind::Chat => json!(["/v1/chat/completions", "/v1/completions"]),
                ModelKind::Completion => json!(["/v1/completions"]),
                ModelKind::Embedding => json!(["/v1/embeddings"]),
            },
            "royalty_bps": m.royalty_bps,
            "providers": prices.len(),
            "price_per_mtok": {
                "input": {"min": min_in.to_string(), "max": max_in.to_string()},
                "output": {"min": min_out.to_string(), "max": max_out.to_string()},
                "unit": "base units (1 AGR = 10^9)",
            },
        },
    })
}

async fn list_models(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth(&s, &headers) {
        return e.into_response();
    }
    if s.market.models().is_empty() {
        s.market.refresh().await;
    }
    let data: Vec<Value> = s
        .market
        .models()
        .iter()
        .map(|(m, p)| model_json(m, p))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_model(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = auth(&s, &headers) {
        return e.into_response();
    }
    match s
        .market
        .models()
        .iter()
        .find(|(m, _)| m.name == id || m.sha256.to_hex() == id)
    {
        Some((m, p)) => Json(model_json(m, p)).into_response(),
        None => find_model(&s, &id).map(|_| ()).err().map_or_else(
            || StatusCode::NOT_FOUND.into_response(),
            IntoResponse::into_response,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn sampling_fields_are_validated_with_the_offending_param() {
        let f = |v: Value| {
            serde_json::from_value::<SamplingFields>(v)
                .unwrap()
                .to_sampling(16)
        };
        assert_eq!(
            f(json!({"max_tokens": 0})).unwrap_err().param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            f(json!({"max_completion_tokens": 2_000_000}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_completion_tokens")
        );
        assert_eq!(
            f(json!({"temperature": 3.0})).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(f(json!({"n": 9})).unwrap_err().param.as_deref(), Some("n"));
        assert_eq!(
            f(json!({"stop": ["a","b","c","d","e"]}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("stop")
        );
        assert_eq!(
            f(json!({"stop": [""]})).unwrap_err().param.as_deref(),
            Some("stop")
        );
        assert_eq!(
            f(json!({"logit_bias": {"x": 1}}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("logit_bias")
        );
        let (s, n) = f(json!({"max_tokens": 5, "seed": 3, "stop": "x", "n": 2})).unwrap();
        assert_eq!(
            (s.max_tokens, s.seed, s.stop, n),
            (5, 3, vec!["x".to_string()], 2)
        );
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused() {
        let r: Result<ChatRequest, _> = parse_body(
            Ok(Bytes::from_static(
                b"{\"model\":\"m\",\"messages\":[],\"bogus\":1}",
            )),
            CHAT_FIELDS,
        );
        let e = r.err().unwrap();
        assert_eq!(e.param.as_deref(), Some("bogus"));
        let r: Result<ChatRequest, _> =
            parse_body(Ok(Bytes::from_static(b"{\"model\":")), CHAT_FIELDS);
        assert_eq!(r.err().unwrap().status, StatusCode::BAD_REQUEST);
        let r: Result<ChatRequest, _> = parse_body(Ok(Bytes::from_static(b"[1,2]")), CHAT_FIELDS);
        assert!(r.err().unwrap().message.contains("JSON object"));
    }
}
