//! `POST /v1/chat/completions`: messages in, a `chat.completion` or its chunks out.

use agora_market::protocol::Work;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::generate::{NChoices, Shape, respond};
use super::request::{
    AgoraOptions, SamplingFields, StreamOptions, constraints, parse_body, read_body,
};
use super::{ApiError, DEFAULT_MAX_TOKENS, Shared, answer, auth, find_model};
use crate::market::ModelKind;

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

pub(super) async fn handle(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("chat");
    answer(&s, chat_inner(&s, &headers, body).await)
}

async fn chat_inner(
    s: &Shared,
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::StatusCode;

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
