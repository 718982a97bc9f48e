//! `POST /v1/completions`: one prompt in, a `text_completion` or its chunks out.

use agora_market::protocol::Work;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::generate::{NChoices, Shape, respond};
use super::request::{
    AgoraOptions, SamplingFields, StreamOptions, constraints, parse_body, read_body,
};
use super::{ApiError, Shared, answer, auth, find_model};
use crate::market::ModelKind;

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

pub(super) async fn handle(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("completions");
    answer(&s, completions_inner(&s, &headers, body).await)
}

async fn completions_inner(
    s: &Shared,
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
