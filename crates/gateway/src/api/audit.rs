//! The auditors' endpoints (`agora_market::audit`): committed batches (open: receipts carry
//! hashes only), a job's replay (only to an active validator, by a signed request), and the
//! verdict board.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use agora_market::audit::{fill, paths, verify_fetch};
use agora_types::{Hash, SignedVerdict};

use super::{ApiError, Shared, answer};
use crate::audit::AuditDesk;

fn desk(s: &Shared) -> Result<&AuditDesk, ApiError> {
    s.audit.as_deref().ok_or_else(ApiError::no_audits)
}

fn hash(v: &str, param: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(v)
        .map_err(|_| ApiError::invalid(format!("{param} must be 64 hex digits"), Some(param)))
}

pub(super) async fn batch(State(s): State<Shared>, Path(root): Path<String>) -> Response {
    let result = (|| {
        let root = hash(&root, "root")?;
        let view = desk(&s)?.batch(&root).map_err(|e| ApiError::audit(&e))?;
        Ok(Json(view).into_response())
    })();
    answer(&s, result)
}

pub(super) async fn case(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(receipt_id): Path<String>,
) -> Response {
    let result = async {
        let rid = hash(&receipt_id, "receipt_id")?;
        let desk = desk(&s)?;
        let path = fill(paths::CASE, "{receipt_id}", &receipt_id);
        let auditor = verify_fetch(
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            "GET",
            &path,
            crate::feed::now_ms(),
        )
        .map_err(|e| ApiError::audit_auth(&e))?;
        desk.check_validator(&auditor)
            .await
            .map_err(|e| ApiError::audit(&e))?;
        let case = desk.case(&rid).map_err(|e| ApiError::audit(&e))?;
        Ok(Json(case).into_response())
    }
    .await;
    answer(&s, result)
}

pub(super) async fn post_verdict(State(s): State<Shared>, body: Bytes) -> Response {
    let result = async {
        let desk = desk(&s)?;
        let v: SignedVerdict = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("expected a signed verdict: {e}"), None))?;
        desk.post(v).await.map_err(|e| ApiError::audit(&e))?;
        Ok(Json(serde_json::json!({ "accepted": true })).into_response())
    }
    .await;
    answer(&s, result)
}

pub(super) async fn verdicts(State(s): State<Shared>, Path(receipt_id): Path<String>) -> Response {
    let result = (|| {
        let rid = hash(&receipt_id, "receipt_id")?;
        Ok(Json(desk(&s)?.verdicts(&rid)).into_response())
    })();
    answer(&s, result)
}
