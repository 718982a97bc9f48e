//! The OpenAI-compatible HTTP surface: request shapes, validation, responses, server-sent event
//! streams and errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).
//!
//! Unknown top-level fields are refused with 400 like OpenAI does ("Unrecognized request
//! argument"), except a list of known fields that change nothing here (`user`, `metadata`, ...).
//! Agora's own options travel in an `agora` object (ignored by stock SDKs) or in `x-agora-*`
//! headers: `max_price_per_mtok`, `min_trust`, `verification` (the trust tier).
//!
//! One module per endpoint (`chat`, `completions`, `embeddings`, `responses`, `models`, `keys`
//! for keys on an account's signed request, `ops` for health and metrics); `generate` runs and shapes the choices chat and completions share; `request` reads
//! and checks bodies; `wire` holds the response types; `error` the one error mapping;
//! `upstream` the network the handlers talk to, behind a trait so they run against a fake.

mod audit;
mod chat;
mod completions;
mod embeddings;
pub mod error;
mod generate;
mod keys;
mod models;
mod ops;
mod receipts;
mod request;
pub mod responses;
mod tool_calls;
pub mod upstream;
pub mod wire;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::customers::{Customers, KeyHash};
use crate::market::ModelView;
use crate::metrics::Metrics;

pub use error::ApiError;
pub use upstream::{RelayUpstream, Upstream};

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
pub struct AppState {
    /// Where completions run and which models exist.
    pub upstream: Arc<dyn Upstream>,
    pub customers: Arc<Customers>,
    /// The gateway's ledger account: what key requests name and where deposits go.
    pub account: agora_types::Address,
    pub metrics: Metrics,
    /// Batches, cases and verdicts for auditors (`None`: the audit endpoints answer 404).
    pub audit: Option<Arc<crate::audit::AuditDesk>>,
    /// Longest wait for the next piece of a request body (then 408).
    pub body_timeout: Duration,
    /// Responses kept for `previous_response_id` (`POST /v1/responses`).
    pub responses: Arc<responses::store::ResponseStore>,
}

type Shared = Arc<AppState>;

/// The whole HTTP API, ready to serve.
pub fn app(state: AppState) -> Router {
    let body_timeout = state.body_timeout;
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/receipts/{request_id}", get(receipts::get))
        .route(
            agora_market::keys::paths::KEYS,
            get(keys::terms).post(keys::issue),
        )
        .route(agora_market::audit::paths::BATCH, get(audit::batch))
        .route(agora_market::audit::paths::CASE, get(audit::case))
        .route(
            agora_market::audit::paths::VERDICTS,
            post(audit::post_verdict),
        )
        .route(
            agora_market::audit::paths::RECEIPT_VERDICTS,
            get(audit::verdicts),
        )
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::unknown_url() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A client that trickles its request body is cut off instead of holding a task forever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .with_state(Arc::new(state))
}

/// The response, or the error counted in the metrics and in OpenAI's shape.
fn answer(s: &AppState, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        s.metrics.error(e.status.as_u16());
        e.into_response()
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The API key in the request's `Authorization: Bearer` header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The customer behind the request's bearer token.
fn auth(s: &AppState, headers: &HeaderMap) -> Result<KeyHash, ApiError> {
    s.customers
        .authorize(bearer(headers))
        .map(|(h, _)| h)
        .map_err(ApiError::auth)
}

fn find_model(s: &AppState, name: &str) -> Result<ModelView, ApiError> {
    s.upstream
        .model(name)
        .ok_or_else(|| ApiError::model_not_found(name))
}
