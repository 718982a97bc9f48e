//! `GET /v1/keys` and `POST /v1/keys`: an API key on its account's own signed request
//! (`agora_market::keys`), so a customer with a wallet or an agent needs no operator. The
//! customer chose the key and sends only its digest; the request is checked (signature, this
//! gateway, time) and the book refuses replays and digests already in use; the key starts with
//! no credit (or the credit of the key it replaces) and is funded by transfers from the account
//! to the gateway's account.

use agora_market::keys::{IssuedKey, KeyTerms, MAX_SKEW_MS, SignedKeyRequest};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::request::{parse_body, read_body};
use super::{ApiError, Shared, answer};

pub(super) async fn terms(State(s): State<Shared>) -> Response {
    Json(KeyTerms {
        gateway: s.account,
        max_skew_ms: MAX_SKEW_MS,
    })
    .into_response()
}

pub(super) async fn issue(State(s): State<Shared>, body: axum::body::Body) -> Response {
    s.metrics.request("keys");
    answer(&s, issue_inner(&s, body).await)
}

async fn issue_inner(s: &Shared, body: axum::body::Body) -> Result<Response, ApiError> {
    let signed: SignedKeyRequest = parse_body(read_body(body).await, &["request", "signature"])?;
    let now_ms = super::now_ms();
    signed
        .check(&s.account, now_ms)
        .map_err(|e| ApiError::key_request(&e))?;
    let request = &signed.request;
    let customer = s
        .customers
        .issue(request, now_ms)
        .map_err(|e| ApiError::key_issue(&e))?;
    tracing::info!(target: "agora::gateway", account = %request.account, name = %request.name, "API key issued on the account's request");
    Ok(Json(IssuedKey {
        credit: customer.remaining(),
        name: customer.name,
        account: customer.account,
        per_request_cap: customer.limits.per_request,
        expires_at: customer.limits.expires_at,
        deposit_to: s.account,
    })
    .into_response())
}
