//! `GET /v1/receipts/{request_id}`: the signed receipts of one completion, one per provider that
//! served part of it, as the gateway checked and kept them, with their proofs. The request id is
//! in the response's `agora.request_id` (and, for streams, the `x-agora-request-id` header).
//!
//! Receipts and proofs carry hashes and counts only. The replay an auditor needs (the prompt and
//! the generated tokens) is left out: any key may ask for any request id, and the dashboard's
//! feed shows request ids to everyone, so this must not hand one customer another's text.
//! Auditors get the replay from the audit case endpoint, which only active validators may call.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::wire::ReceiptList;
use super::{ApiError, Shared, answer, auth};

pub(super) async fn get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(request_id): Path<String>,
) -> Response {
    let result = (|| {
        auth(&s, &headers)?;
        let id = agora_types::Hash::from_hex(&request_id).map_err(|_| {
            ApiError::invalid("request_id must be 64 hex digits", Some("request_id"))
        })?;
        let mut data = s.upstream.receipts(&id);
        for kept in &mut data {
            kept.replay = None;
        }
        if data.is_empty() {
            return Err(ApiError::receipts_not_found(&request_id));
        }
        Ok(Json(ReceiptList {
            data,
            object: "list",
            request_id,
        })
        .into_response())
    })();
    answer(&s, result)
}
