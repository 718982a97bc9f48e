//! `POST /v1/embeddings`: strings in, an embedding list (floats or base64) out.

use agora_market::protocol::{SamplingParams, Work};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::request::{AgoraOptions, constraints, parse_body, read_body};
use super::wire::{Embedding, EmbeddingList, EmbeddingObject, EmbeddingUsage};
use super::{ApiError, Shared, answer, auth, find_model};
use crate::market::{ModelKind, Verification};
use crate::relay::{CompletionJob, RelayEvent};

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

pub(super) async fn handle(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("embeddings");
    answer(&s, embeddings_inner(&s, &headers, body).await)
}

async fn embeddings_inner(
    s: &Shared,
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
    let c = constraints(req.agora, headers)?;
    if c.verification == Verification::Redundant {
        return Err(ApiError::invalid(
            "verification \"redundant\" is for completions: embeddings are floats two providers \
             need not reproduce bit for bit",
            Some("agora"),
        ));
    }
    let count = inputs.len();
    let job = CompletionJob {
        request_id: crate::relay::new_request_id(),
        model: model.sha256,
        work: Work::Embed { inputs },
        sampling: SamplingParams::default(),
        constraints: c,
        customer,
    };
    let mut rx = s.upstream.start(job);
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
    let summary = loop {
        match rx.recv().await {
            Some(RelayEvent::Embeddings {
                first_index,
                vectors: vs,
            }) => {
                for (k, v) in vs.into_iter().enumerate() {
                    if let Some(slot) = vectors.get_mut((first_index as usize).saturating_add(k)) {
                        *slot = Some(v);
                    }
                }
            }
            Some(RelayEvent::Done(sm)) => break sm,
            Some(RelayEvent::Error(e)) => return Err(ApiError::from_relay(e)),
            Some(_) => {}
            None => {
                return Err(ApiError::upstream(
                    "internal",
                    "the request ended without a result",
                ));
            }
        }
    };
    let mut data = Vec::with_capacity(count);
    for (i, v) in vectors.into_iter().enumerate() {
        let Some(v) = v else {
            return Err(ApiError::upstream(
                "bad_provider_answer",
                format!("the provider returned no vector for input {i}"),
            ));
        };
        let embedding = if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Embedding::Base64(base64_encode(&bytes))
        } else {
            Embedding::Float(v)
        };
        data.push(EmbeddingObject {
            embedding,
            index: i,
            object: "embedding",
        });
    }
    Ok(Json(EmbeddingList {
        data,
        model: model.name,
        object: "list",
        usage: EmbeddingUsage {
            prompt_tokens: summary.prompt_tokens,
            total_tokens: summary.prompt_tokens,
        },
    })
    .into_response())
}

pub(super) fn base64_encode(bytes: &[u8]) -> String {
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
}
