//! `POST /v1/chat/completions`: messages in, a `chat.completion` or its chunks out.

use agora_market::protocol::{SamplingParams, Work};
use agora_types::{ChatMessage, Tool, ToolCall, ToolChoice, Tools};
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
    tool_calls: Option<Vec<InToolCall>>,
    tool_call_id: Option<String>,
    /// OpenAI's optional participant name; accepted, not shown to the model.
    #[allow(dead_code)]
    name: Option<String>,
}

/// A call in an assistant message of the history, as the client got it from us.
#[derive(Deserialize)]
struct InToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    function: InFunctionCall,
}

#[derive(Deserialize)]
struct InFunctionCall {
    name: String,
    arguments: String,
}

/// One entry of `tools`.
#[derive(Deserialize)]
pub(super) struct InTool {
    #[serde(rename = "type")]
    kind: String,
    function: InFunction,
}

/// A function's definition; `strict` is accepted and always true here (arguments follow the
/// schema by construction).
#[derive(Deserialize)]
#[allow(dead_code)]
pub(super) struct InFunction {
    name: String,
    description: Option<String>,
    parameters: Option<serde_json::Value>,
    strict: Option<bool>,
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
    "tools",
    "tool_choice",
    "parallel_tool_calls",
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
    tools: Option<Vec<InTool>>,
    tool_choice: Option<serde_json::Value>,
    parallel_tool_calls: Option<bool>,
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
    let messages = messages(req.messages)?;
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
    let content_schema = match &req.response_format {
        None => None,
        Some(rf) => output_format(
            &mut sampling,
            &rf.kind,
            rf.json_schema.as_ref().and_then(|j| j.schema.as_ref()),
            "response_format",
            "response_format.json_schema.schema",
        )?,
    };
    let model = chat_model(s, &req.model)?;
    let c = constraints(req.agora, headers)?;
    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let tools = tools(req.tools, req.tool_choice, req.parallel_tool_calls)?;
    let envelope = bind_tools(&mut sampling, tools.as_ref(), content_schema.as_ref())?;
    let work = Work::Chat { messages, tools };
    let mut shape = Shape::new(&model, true, &sampling);
    shape.tools = envelope;
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

impl InTool {
    /// A tool of `kind` (only `function` is accepted) defining `function`.
    pub(super) fn function(kind: String, function: InFunction) -> Self {
        Self { kind, function }
    }
}

impl InFunction {
    pub(super) fn new(
        name: String,
        description: Option<String>,
        parameters: Option<serde_json::Value>,
    ) -> Self {
        Self {
            name,
            description,
            parameters,
            strict: None,
        }
    }
}

/// A model that renders chats, by name (base and embedding models are refused with the endpoint
/// to use instead).
pub(super) fn chat_model(s: &Shared, name: &str) -> Result<crate::market::ModelView, ApiError> {
    let model = find_model(s, name)?;
    match model.kind {
        ModelKind::Chat => Ok(model),
        ModelKind::Completion => Err(ApiError::invalid(
            format!(
                "{} is a base model without a chat template; use /v1/completions",
                model.name
            ),
            Some("model"),
        )),
        ModelKind::Embedding => Err(ApiError::invalid(
            format!("{} is an embedding model; use /v1/embeddings", model.name),
            Some("model"),
        )),
    }
}

/// Binds the output to a format (`text`, `json_object`, `json_schema` with its `schema`; `param`
/// names the request field, `schema_param` the schema's); returns the schema a text answer must
/// follow, if any.
pub(super) fn output_format(
    sampling: &mut SamplingParams,
    kind: &str,
    schema: Option<&serde_json::Value>,
    param: &str,
    schema_param: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    match kind {
        "text" => Ok(None),
        "json_object" => {
            sampling.json = true;
            Ok(Some(serde_json::json!({"type": "object"})))
        }
        "json_schema" => {
            let at = schema_param;
            let Some(schema) = schema else {
                return Err(ApiError::invalid(
                    format!("{param} json_schema needs a schema"),
                    Some(at),
                ));
            };
            // Refused here with the reason, before any provider is paid to refuse it.
            agora_json::Schema::from_value(schema)
                .map_err(|e| ApiError::invalid(e.to_string(), Some(at)))?;
            sampling.json = true;
            sampling.json_schema = Some(schema.to_string());
            Ok(Some(schema.clone()))
        }
        other => Err(ApiError::invalid(
            format!("{param} type {other:?} is not supported (text, json_object, json_schema)"),
            Some(param),
        )),
    }
}

/// Binds the output to the tools' envelope (a text answer, when allowed, follows
/// `content_schema`); returns the compiled envelope the answer is read through.
pub(super) fn bind_tools(
    sampling: &mut SamplingParams,
    tools: Option<&Tools>,
    content_schema: Option<&serde_json::Value>,
) -> Result<Option<agora_json::Schema>, ApiError> {
    let Some(t) = tools else { return Ok(None) };
    let (schema, envelope) = agora_json::tools::output_schema(t, content_schema)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("tools")))?;
    sampling.json = true;
    sampling.json_schema = Some(schema.to_string());
    Ok(Some(envelope))
}

/// The request's messages as the job carries them: text contents, `developer` as `system`, an
/// assistant's tool calls, and `tool` results that answer a call made earlier in the chat.
fn messages(input: Vec<InMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::with_capacity(input.len());
    let mut calls_made = std::collections::BTreeSet::new();
    for (i, m) in input.into_iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(ApiError::invalid(
                format!(
                    "messages[{i}].role {:?} is not supported (system, developer, user, assistant, tool)",
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
        let mut msg = ChatMessage::new(role, content);
        if let Some(calls) = m.tool_calls {
            if msg.role != "assistant" {
                return Err(ApiError::invalid(
                    format!("messages[{i}]: only assistant messages have tool_calls"),
                    Some("messages"),
                ));
            }
            for (j, c) in calls.into_iter().enumerate() {
                if c.kind != "function" {
                    return Err(ApiError::invalid(
                        format!(
                            "messages[{i}].tool_calls[{j}].type {:?} is not supported (function)",
                            c.kind
                        ),
                        Some("messages"),
                    ));
                }
                calls_made.insert(c.id.clone());
                msg.tool_calls.push(ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                });
            }
        }
        match (msg.role.as_str(), m.tool_call_id) {
            ("tool", Some(id)) if calls_made.contains(&id) => msg.tool_call_id = Some(id),
            ("tool", Some(id)) => {
                return Err(ApiError::invalid(
                    format!(
                        "messages[{i}] answers tool call {id:?}, which no earlier assistant message made"
                    ),
                    Some("messages"),
                ));
            }
            ("tool", None) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}]: a tool message needs tool_call_id"),
                    Some("messages"),
                ));
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}]: only tool messages have tool_call_id"),
                    Some("messages"),
                ));
            }
            _ => {}
        }
        out.push(msg);
    }
    Ok(out)
}

/// `tools`, `tool_choice` and `parallel_tool_calls` as the job's [`Tools`]; `None` when no
/// function may be called (no tools, or `tool_choice: "none"`, which sends none to the model).
pub(super) fn tools(
    input: Option<Vec<InTool>>,
    choice: Option<serde_json::Value>,
    parallel: Option<bool>,
) -> Result<Option<Tools>, ApiError> {
    use serde_json::Value;
    let Some(input) = input else {
        if choice.is_some() {
            return Err(ApiError::invalid(
                "tool_choice is only allowed when tools are specified",
                Some("tool_choice"),
            ));
        }
        return Ok(None);
    };
    let max = agora_json::tools::MAX_TOOLS;
    if input.is_empty() || input.len() > max {
        return Err(ApiError::invalid(
            format!(
                "tools must list between 1 and {max} functions, got {}",
                input.len()
            ),
            Some("tools"),
        ));
    }
    let mut list: Vec<Tool> = Vec::with_capacity(input.len());
    for (i, t) in input.into_iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::invalid(
                format!("tools[{i}].type {:?} is not supported (function)", t.kind),
                Some(&format!("tools[{i}].type")),
            ));
        }
        let f = t.function;
        let parameters = f
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        let tool = Tool {
            name: f.name,
            description: f.description.unwrap_or_default(),
            parameters: parameters.to_string(),
        };
        agora_json::tools::check_tool(&tool).map_err(|e| {
            let at = format!("tools[{i}].{}", e.at);
            ApiError::invalid(format!("{at}: {}", e.reason), Some(&at))
        })?;
        if list.iter().any(|o| o.name == tool.name) {
            return Err(ApiError::invalid(
                format!(
                    "tools[{i}]: a function named {:?} is already listed",
                    tool.name
                ),
                Some(&format!("tools[{i}].function.name")),
            ));
        }
        list.push(tool);
    }
    let bad_choice = || {
        ApiError::invalid(
            "tool_choice must be \"none\", \"auto\", \"required\" or              {\"type\": \"function\", \"function\": {\"name\": ...}}",
            Some("tool_choice"),
        )
    };
    let choice = match choice {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => return Ok(None),
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(bad_choice()),
        },
        Some(Value::Object(o)) => {
            let name = match (o.get("type"), o.get("function").and_then(|f| f.get("name"))) {
                (Some(Value::String(t)), Some(Value::String(n))) if t == "function" => n.clone(),
                _ => return Err(bad_choice()),
            };
            if !list.iter().any(|t| t.name == name) {
                return Err(ApiError::invalid(
                    format!("tool_choice names function {name:?}, which is not in tools"),
                    Some("tool_choice"),
                ));
            }
            ToolChoice::Function(name)
        }
        Some(_) => return Err(bad_choice()),
    };
    Ok(Some(Tools {
        list,
        choice,
        // One call per answer unless the client asks for more: llama.cpp's server default, not
        // OpenAI's; small open models asked for an open list repeat the same call until
        // max_tokens (docs/design/gateway.md, "Function calling").
        parallel: parallel.unwrap_or(false),
    }))
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
