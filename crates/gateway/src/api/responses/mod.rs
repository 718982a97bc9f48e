//! `POST /v1/responses` (OpenAI's Responses API), `GET` and `DELETE /v1/responses/{id}`: text
//! input and output, `instructions`, multi-turn through `previous_response_id`, function tools
//! and structured output (`text.format`), whole or as the API's typed server-sent events.
//!
//! ```text
//! input items + the stored conversation of previous_response_id ──► chat turns (ChatMessage)
//!     + instructions as the system turn, tools as chat's Tools, text.format as response_format
//!  ──► the same CompletionJob, relay, payment and receipts as /v1/chat/completions
//!  ──► output items: a `message` with `output_text`, or `function_call`s (api::tool_calls)
//!  ──► kept in `store::ResponseStore` (unless `store: false`) for the next turn
//! ```

pub mod store;

use std::collections::BTreeSet;

use agora_types::{ChatMessage, ToolCall};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::chat::{InFunction, InTool, bind_tools, chat_model, output_format, tools};
use super::generate::{REQUEST_ID_HEADER, ReceiverStream, agora_summary, collect_choice, event};
use super::request::{AgoraOptions, SamplingFields, constraints, parse_body, read_body};
use super::tool_calls::{Added, ToolOutput, assemble};
use super::{ApiError, DEFAULT_MAX_TOKENS, Shared, answer, auth, now_secs};
use crate::customers::KeyHash;
use crate::relay::{CompletionJob, RelayEvent, Summary, new_request_id};
use agora_market::protocol::Work;
use store::Stored;

const RESPONSE_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "metadata",
    "user",
    "service_tier",
    "agora",
];

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// A function tool as the Responses API writes it (flat, no `function` wrapper).
#[derive(Deserialize)]
struct FlatTool {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct TextConfig {
    format: Option<Format>,
}

/// `text.format`: `{"type": "text" | "json_object" | "json_schema", "name", "schema", ...}`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Format {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct ResponsesRequest {
    model: String,
    input: Input,
    instructions: Option<String>,
    previous_response_id: Option<String>,
    tools: Option<Vec<FlatTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    text: Option<TextConfig>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    store: Option<bool>,
    metadata: Option<Value>,
    agora: Option<AgoraOptions>,
}

pub(super) async fn create(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    s.metrics.request("responses");
    answer(&s, create_inner(&s, &headers, body).await)
}

pub(super) async fn get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let found = auth(&s, &headers).and_then(|key| {
        s.responses
            .get(&id, &key)
            .ok_or_else(|| ApiError::response_not_found(&id))
    });
    answer(&s, found.map(|r| Json(r.body).into_response()))
}

pub(super) async fn delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let gone = auth(&s, &headers).and_then(|key| {
        if s.responses.delete(&id, &key) {
            Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
        } else {
            Err(ApiError::response_not_found(&id))
        }
    });
    answer(&s, gone)
}

/// What the response object repeats of its request.
struct Echo {
    id: String,
    model: String,
    created_at: u64,
    previous_response_id: Option<String>,
    instructions: Option<String>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    temperature: f32,
    top_p: f32,
    max_output_tokens: Option<u32>,
    text: Value,
    metadata: Value,
    store: bool,
}

async fn create_inner(
    s: &Shared,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let customer = auth(s, headers)?;
    let req: ResponsesRequest = parse_body(read_body(body).await, RESPONSE_FIELDS)?;
    let fields = SamplingFields::from_limits(
        req.max_output_tokens,
        req.temperature,
        req.top_p,
        "max_output_tokens",
    );
    let (mut sampling, _) = fields.to_sampling(DEFAULT_MAX_TOKENS)?;
    let earlier = match &req.previous_response_id {
        None => Vec::new(),
        Some(id) => {
            s.responses
                .get(id, &customer)
                .ok_or_else(|| ApiError::response_not_found(id))?
                .conversation
        }
    };
    let input = turns(req.input, &earlier)?;
    let mut messages = Vec::with_capacity(earlier.len() + input.len() + 1);
    if let Some(i) = &req.instructions {
        messages.push(ChatMessage::new("system", i.clone()));
    }
    messages.extend(earlier.iter().cloned());
    messages.extend(input.iter().cloned());
    if messages.is_empty() {
        return Err(ApiError::invalid("input must not be empty", Some("input")));
    }
    let format = req.text.as_ref().and_then(|t| t.format.as_ref());
    let content_schema = match format {
        None => None,
        Some(f) => output_format(
            &mut sampling,
            &f.kind,
            f.schema.as_ref(),
            "text.format",
            "text.format.schema",
        )?,
    };
    let (chat_tools, echo_tools) = flat_tools(req.tools)?;
    let tool_choice = req.tool_choice.map(chat_tool_choice);
    let echo_choice = tool_choice_echo(tool_choice.as_ref());
    let tools = tools(chat_tools, tool_choice, req.parallel_tool_calls)?;
    let envelope = bind_tools(&mut sampling, tools.as_ref(), content_schema.as_ref())?;
    let model = chat_model(s, &req.model)?;
    let c = constraints(req.agora, headers)?;
    let echo = Echo {
        id: format!("resp_{}", hex::encode(rand::random::<[u8; 24]>())),
        model: model.name.clone(),
        created_at: now_secs(),
        previous_response_id: req.previous_response_id,
        instructions: req.instructions,
        tools: echo_tools,
        tool_choice: echo_choice,
        parallel_tool_calls: tools.as_ref().is_some_and(|t| t.parallel),
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        max_output_tokens: req.max_output_tokens,
        text: json!({"format": format.map_or(json!({"type": "text"}), |f| {
            let mut v = json!({"type": f.kind});
            if let Some(n) = &f.name { v["name"] = json!(n); }
            if let Some(sc) = &f.schema { v["schema"] = sc.clone(); }
            v
        })}),
        metadata: req.metadata.unwrap_or_else(|| json!({})),
        store: req.store.unwrap_or(true),
    };
    // The conversation a continuation of this response starts from (no instructions).
    let mut conversation = earlier;
    conversation.extend(input);
    let job = CompletionJob {
        request_id: new_request_id(),
        model: model.sha256,
        work: Work::Chat { messages, tools },
        sampling,
        constraints: c,
        customer,
    };
    let request_id = hex::encode(job.request_id.0);
    let mut rx = s.upstream.start(job);
    let reader = envelope.as_ref().map(ToolOutput::new);
    let turn = Turn {
        echo,
        conversation,
        owner: customer,
        reader,
    };
    let mut response = if req.stream {
        stream(s, rx, turn)
    } else {
        let run = collect_choice(&mut rx, false).await?;
        s.metrics
            .tokens(run.summary.completion_tokens, run.summary.segments.len());
        let mut out = Output::new(turn.reader);
        out.feed(&run.text)?;
        let body = finish(
            s,
            turn.echo,
            turn.conversation,
            turn.owner,
            out,
            &run.summary,
        )?;
        Json(body).into_response()
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Ok(response)
}

/// One response being made: what it echoes, the conversation so far, whose it is, and how its
/// output is read (through the tools' envelope when there are tools).
struct Turn {
    echo: Echo,
    conversation: Vec<ChatMessage>,
    owner: KeyHash,
    reader: Option<ToolOutput>,
}

/// Input items as chat turns. A `function_call_output` must answer a call made earlier, in this
/// input or in the conversation it continues.
fn turns(input: Input, earlier: &[ChatMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match input {
        Input::Text(t) => return Ok(vec![ChatMessage::new("user", t)]),
        Input::Items(items) => items,
    };
    let mut calls: BTreeSet<String> = earlier
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| c.id.clone()))
        .collect();
    let mut out: Vec<ChatMessage> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("input[{i}]");
        let bad = |why: &str| ApiError::invalid(format!("{at}: {why}"), Some(&at));
        let Value::Object(m) = item else {
            return Err(bad("an input item must be an object"));
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let kind = text("type").unwrap_or_else(|| "message".into());
        match kind.as_str() {
            "message" => {
                let role = text("role").ok_or_else(|| bad("a message needs a role"))?;
                let role = match role.as_str() {
                    "user" | "assistant" | "system" => role,
                    "developer" => "system".into(),
                    other => {
                        return Err(bad(&format!(
                            "role {other:?} is not supported (user, assistant, system, developer)"
                        )));
                    }
                };
                let content = match m.get("content") {
                    Some(Value::String(t)) => t.clone(),
                    Some(Value::Array(parts)) => {
                        let mut t = String::new();
                        for p in parts {
                            match (p.get("type").and_then(Value::as_str), p.get("text")) {
                                (
                                    Some("input_text" | "output_text" | "text"),
                                    Some(Value::String(s)),
                                ) => t.push_str(s),
                                (kind, _) => {
                                    return Err(bad(&format!(
                                        "content part {:?} is not supported (input_text, output_text)",
                                        kind.unwrap_or("?")
                                    )));
                                }
                            }
                        }
                        t
                    }
                    _ => return Err(bad("a message needs content (a string or text parts)")),
                };
                out.push(ChatMessage::new(role, content));
            }
            "function_call" => {
                let (Some(id), Some(name), Some(arguments)) =
                    (text("call_id"), text("name"), text("arguments"))
                else {
                    return Err(bad("a function_call needs call_id, name and arguments"));
                };
                calls.insert(id.clone());
                let call = ToolCall {
                    id,
                    name,
                    arguments,
                };
                // Calls in a row are one assistant turn that made several.
                match out.last_mut() {
                    Some(last) if last.role == "assistant" && !last.tool_calls.is_empty() => {
                        last.tool_calls.push(call);
                    }
                    _ => {
                        let mut turn = ChatMessage::new("assistant", "");
                        turn.tool_calls.push(call);
                        out.push(turn);
                    }
                }
            }
            "function_call_output" => {
                let Some(id) = text("call_id") else {
                    return Err(bad("a function_call_output needs call_id"));
                };
                if !calls.contains(&id) {
                    return Err(bad(&format!(
                        "answers call {id:?}, which no earlier function_call made"
                    )));
                }
                let output = match m.get("output") {
                    Some(Value::String(t)) => t.clone(),
                    Some(other) => other.to_string(),
                    None => return Err(bad("a function_call_output needs output")),
                };
                let mut turn = ChatMessage::new("tool", output);
                turn.tool_call_id = Some(id);
                out.push(turn);
            }
            other => {
                return Err(bad(&format!(
                    "input items of type {other:?} are not supported (message, function_call, \
                     function_call_output)"
                )));
            }
        }
    }
    Ok(out)
}

/// The Responses API's flat function tools as chat's, and as the response echoes them.
fn flat_tools(input: Option<Vec<FlatTool>>) -> Result<(Option<Vec<InTool>>, Vec<Value>), ApiError> {
    let Some(input) = input else {
        return Ok((None, Vec::new()));
    };
    let mut chat = Vec::with_capacity(input.len());
    let mut echo = Vec::with_capacity(input.len());
    for (i, t) in input.into_iter().enumerate() {
        let Some(name) = t.name else {
            let at = format!("tools[{i}].name");
            return Err(ApiError::invalid(format!("{at} is missing"), Some(&at)));
        };
        echo.push(
            json!({"type": t.kind, "name": name, "description": t.description,
            "parameters": t.parameters, "strict": t.strict.unwrap_or(true)}),
        );
        chat.push(InTool::function(
            t.kind,
            InFunction::new(name, t.description, t.parameters),
        ));
    }
    Ok((Some(chat), echo))
}

/// `{"type": "function", "name": N}` (the Responses API's form) as chat's
/// `{"type": "function", "function": {"name": N}}`; strings pass as they are.
fn chat_tool_choice(v: Value) -> Value {
    match &v {
        Value::Object(o) if o.get("function").is_none() => match o.get("name") {
            Some(name) => json!({"type": o.get("type").cloned().unwrap_or(json!("function")),
                "function": {"name": name}}),
            None => v,
        },
        _ => v,
    }
}

fn tool_choice_echo(chat: Option<&Value>) -> Value {
    match chat {
        None => json!("auto"),
        Some(Value::Object(o)) => json!({"type": "function",
            "name": o.get("function").and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null)}),
        Some(v) => v.clone(),
    }
}

/// The output of one response read as it arrives: plain text, or (with tools) the envelope
/// read into text and function calls.
struct Output {
    reader: Option<ToolOutput>,
    parts: Vec<Added>,
}

impl Output {
    fn new(reader: Option<ToolOutput>) -> Self {
        Self {
            reader,
            parts: Vec::new(),
        }
    }

    /// What `text` adds (kept for the whole, returned for the stream).
    fn feed(&mut self, text: &str) -> Result<Added, ApiError> {
        let added = match &mut self.reader {
            None => Added {
                content: Some(text.to_owned()),
                tool_calls: Vec::new(),
            },
            Some(r) => r
                .feed(text)
                .map_err(|e| ApiError::bad_output(e.to_string()))?,
        };
        self.parts.push(added.clone());
        Ok(added)
    }

    fn end(&mut self) -> Result<Added, ApiError> {
        let added = match &mut self.reader {
            None => Added::default(),
            Some(r) => r
                .finish()
                .map_err(|e| ApiError::bad_output(e.to_string()))?,
        };
        self.parts.push(added.clone());
        Ok(added)
    }

    /// The output items: a message with the text, then the function calls.
    fn items(&self) -> (Vec<Value>, Option<String>, Vec<ToolCall>) {
        let (content, calls) = assemble(self.parts.iter().cloned());
        let mut items = Vec::new();
        if let Some(t) = &content
            && (!t.is_empty() || calls.is_empty())
        {
            items.push(message_item(&new_id("msg"), t, "completed"));
        }
        let mut tool_calls = Vec::new();
        for c in calls {
            items.push(call_item(
                &c.id,
                &c.function.name,
                &c.function.arguments,
                "completed",
            ));
            tool_calls.push(ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            });
        }
        (items, content, tool_calls)
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 16]>()))
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A function call item; its id is `fc_` + the call id's hex (one call, one item, both stable).
fn call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{}", call_id.trim_start_matches("call_")),
        "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// The response object.
fn body(echo: &Echo, status: &str, output: Vec<Value>, summary: Option<&Summary>) -> Value {
    let usage = summary.map(|sm| {
        json!({"input_tokens": sm.prompt_tokens, "output_tokens": sm.completion_tokens,
            "total_tokens": sm.prompt_tokens.saturating_add(sm.completion_tokens),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}})
    });
    let incomplete = summary
        .filter(|sm| sm.finish_reason == "length")
        .map(|_| json!({"reason": "max_output_tokens"}));
    let mut v = json!({
        "id": echo.id, "object": "response", "created_at": echo.created_at, "status": status,
        "model": echo.model, "output": output, "error": null, "incomplete_details": incomplete,
        "instructions": echo.instructions, "previous_response_id": echo.previous_response_id,
        "tools": echo.tools, "tool_choice": echo.tool_choice,
        "parallel_tool_calls": echo.parallel_tool_calls, "temperature": echo.temperature,
        "top_p": echo.top_p, "max_output_tokens": echo.max_output_tokens, "text": echo.text,
        "metadata": echo.metadata, "store": echo.store, "truncation": "disabled",
        "reasoning": {"effort": null, "summary": null}, "usage": usage, "user": null,
    });
    if let Some(sm) = summary {
        v["agora"] = serde_json::to_value(agora_summary(sm)).unwrap_or(Value::Null);
    }
    v
}

/// Ends a response: its body, kept (with the conversation it continues) unless `store: false`.
fn finish(
    s: &Shared,
    echo: Echo,
    conversation: Vec<ChatMessage>,
    owner: KeyHash,
    mut out: Output,
    summary: &Summary,
) -> Result<Value, ApiError> {
    out.end()?;
    Ok(close(s, &echo, conversation, owner, &out, None, summary))
}

/// The final response object of `out` (with `streamed`, the items as a stream sent them, so
/// their ids match its events), kept unless `store: false`.
fn close(
    s: &Shared,
    echo: &Echo,
    mut conversation: Vec<ChatMessage>,
    owner: KeyHash,
    out: &Output,
    streamed: Option<Vec<Value>>,
    summary: &Summary,
) -> Value {
    let (items, content, calls) = out.items();
    let status = if summary.finish_reason == "length" {
        "incomplete"
    } else {
        "completed"
    };
    let response = body(echo, status, streamed.unwrap_or(items), Some(summary));
    if echo.store {
        let mut turn = ChatMessage::new("assistant", content.unwrap_or_default());
        turn.tool_calls = calls;
        conversation.push(turn);
        s.responses.put(
            echo.id.clone(),
            Stored {
                owner,
                conversation,
                body: response.clone(),
            },
        );
    }
    response
}

/// The Responses API's events for one response, each `event: <type>` with its JSON.
struct Events {
    tx: mpsc::Sender<SseEvent>,
    seq: u64,
}

impl Events {
    async fn send(&mut self, kind: &str, mut data: Value) -> bool {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.tx.send(event(&data).event(kind)).await.is_ok()
    }
}

/// Streams one response: created, then its items as they grow (text deltas, function-call
/// argument deltas), then completed (or an error event).
fn stream(s: &Shared, mut rx: mpsc::Receiver<RelayEvent>, turn: Turn) -> Response {
    let (tx, out_rx) = mpsc::channel::<SseEvent>(64);
    let shared = s.clone();
    tokio::spawn(async move {
        let Turn {
            echo,
            conversation,
            owner,
            reader,
        } = turn;
        let mut ev = Events { tx, seq: 0 };
        let shell = body(&echo, "in_progress", Vec::new(), None);
        if !ev
            .send("response.created", json!({"response": shell}))
            .await
            || !ev
                .send("response.in_progress", json!({"response": shell}))
                .await
        {
            return;
        }
        let mut out = Output::new(reader);
        let mut items = StreamItems::default();
        let summary = loop {
            let text = match rx.recv().await {
                Some(RelayEvent::Token(t)) => t.text,
                Some(RelayEvent::Text(t)) => t,
                Some(RelayEvent::Embeddings { .. }) => continue,
                Some(RelayEvent::Done(sm)) => break sm,
                Some(RelayEvent::Error(e)) => {
                    let e = ApiError::from_relay(e);
                    shared.metrics.error(e.status.as_u16());
                    let _ = ev.send("error", error_data(&e)).await;
                    return;
                }
                None => return,
            };
            let added = match out.feed(&text) {
                Ok(a) => a,
                Err(e) => {
                    shared.metrics.error(e.status.as_u16());
                    let _ = ev.send("error", error_data(&e)).await;
                    return;
                }
            };
            if !items.send(&mut ev, added).await {
                return; // the client left: dropping `rx` ends the relay
            }
        };
        shared
            .metrics
            .tokens(summary.completion_tokens, summary.segments.len());
        let rest = match out.end() {
            Ok(a) => a,
            Err(e) => {
                let _ = ev.send("error", error_data(&e)).await;
                return;
            }
        };
        if !items.send(&mut ev, rest).await || !items.close(&mut ev).await {
            return;
        }
        let response = close(
            &shared,
            &echo,
            conversation,
            owner,
            &out,
            Some(items.done),
            &summary,
        );
        let kind = if response["status"] == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let _ = ev.send(kind, json!({"response": response})).await;
    });
    Sse::new(ReceiverStream(out_rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn error_data(e: &ApiError) -> Value {
    let b = serde_json::to_value(e.body()).unwrap_or(Value::Null);
    let d = &b["error"];
    json!({"code": d["code"], "message": d["message"], "param": d["param"]})
}

/// The output items a stream has opened, in order: a message whose text grows, function calls
/// whose arguments grow.
#[derive(Default)]
struct StreamItems {
    /// The open item: its index, id, and the text or arguments so far.
    open: Option<OpenItem>,
    done: Vec<Value>,
}

enum OpenItem {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        name: String,
        arguments: String,
        call: usize,
    },
}

impl StreamItems {
    async fn send(&mut self, ev: &mut Events, added: Added) -> bool {
        if let Some(t) = added.content.filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(OpenItem::Message { .. })) {
                if !self.close(ev).await {
                    return false;
                }
                let id = new_id("msg");
                let index = self.done.len();
                let item = json!({"type": "message", "id": id, "status": "in_progress",
                    "role": "assistant", "content": []});
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                if !ev
                    .send(
                        "response.output_item.added",
                        json!({"output_index": index, "item": item}),
                    )
                    .await
                    || !ev
                        .send(
                            "response.content_part.added",
                            json!({"item_id": id,
                        "output_index": index, "content_index": 0, "part": part}),
                        )
                        .await
                {
                    return false;
                }
                self.open = Some(OpenItem::Message {
                    id,
                    text: String::new(),
                });
            }
            if let Some(OpenItem::Message { id, text }) = &mut self.open {
                text.push_str(&t);
                let data = json!({"item_id": id, "output_index": self.done.len(),
                    "content_index": 0, "delta": t, "logprobs": []});
                if !ev.send("response.output_text.delta", data).await {
                    return false;
                }
            }
        }
        for d in added.tool_calls {
            if let (Some(call_id), Some(name)) = (d.id, d.function.name) {
                if !self.close(ev).await {
                    return false;
                }
                let item = call_item(&call_id, &name, "", "in_progress");
                let id = item["id"].as_str().unwrap_or_default().to_owned();
                if !ev
                    .send(
                        "response.output_item.added",
                        json!({"output_index": self.done.len(), "item": item}),
                    )
                    .await
                {
                    return false;
                }
                self.open = Some(OpenItem::Call {
                    id,
                    name,
                    arguments: String::new(),
                    call: d.index,
                });
            }
            if d.function.arguments.is_empty() {
                continue;
            }
            if let Some(OpenItem::Call {
                id,
                arguments,
                call,
                ..
            }) = &mut self.open
                && *call == d.index
            {
                arguments.push_str(&d.function.arguments);
                let data = json!({"item_id": id, "output_index": self.done.len(),
                    "delta": d.function.arguments});
                if !ev
                    .send("response.function_call_arguments.delta", data)
                    .await
                {
                    return false;
                }
            }
        }
        true
    }

    /// Ends the open item with its done events.
    async fn close(&mut self, ev: &mut Events) -> bool {
        let index = self.done.len();
        match self.open.take() {
            None => true,
            Some(OpenItem::Message { id, text }) => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let item = message_item(&id, &text, "completed");
                let ok = ev
                    .send(
                        "response.output_text.done",
                        json!({"item_id": id,
                        "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                    )
                    .await
                    && ev
                        .send(
                            "response.content_part.done",
                            json!({"item_id": id,
                        "output_index": index, "content_index": 0, "part": part}),
                        )
                        .await
                    && ev
                        .send(
                            "response.output_item.done",
                            json!({"output_index": index, "item": item}),
                        )
                        .await;
                self.done.push(item);
                ok
            }
            Some(OpenItem::Call {
                id,
                name,
                arguments,
                ..
            }) => {
                let call_id = format!("call_{}", id.trim_start_matches("fc_"));
                let item = call_item(&call_id, &name, &arguments, "completed");
                let ok = ev
                    .send(
                        "response.function_call_arguments.done",
                        json!({"item_id": id,
                        "output_index": index, "arguments": arguments}),
                    )
                    .await
                    && ev
                        .send(
                            "response.output_item.done",
                            json!({"output_index": index, "item": item}),
                        )
                        .await;
                self.done.push(item);
                ok
            }
        }
    }
}
