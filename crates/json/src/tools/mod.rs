//! Function calling in one format every chat model can follow: Agora's tool-call envelope.
//!
//! ```text
//! gateway: tools + tool_choice ──output_schema──► sampling.json_schema (the constraint)
//! provider/auditor: messages + tools ──prompt_messages──► plain system/user/assistant turns
//!                                                          (the model's own chat template)
//! model output (constrained):  {"tool_calls": [{"name": "f", "arguments": {...}}, ...]}
//!                          or  {"content": "the answer"}          (tool_choice auto only)
//! gateway: output text ──EnvelopeReader──► OpenAI `tool_calls` / `content` (streamed or whole)
//! ```
//!
//! The model writes its calls as JSON under the JSON-Schema constraint, so the name is always one
//! of the offered functions and the arguments always follow that function's parameters schema.
//! The prompt describes the functions and the envelope in a system message
//! ([`instruction`]), shows earlier calls as the envelope the model would have written, and each
//! tool result as a user turn `{"tool_result": {...}}` ([`prompt_messages`]), so templates
//! without a tools section (SmolLM2's, most small models') need nothing of their own. The same
//! function turns a job into its prompt at the provider and at an auditor, and into its token
//! bound at the gateway, so all three agree.
//!
//! A template that lays tools out itself (Qwen 2.5's, Hermes', Llama 3.x's: the engine probes it
//! when it loads the model) renders the chat natively instead: the tools, the assistant's calls
//! and the `tool` messages go to the template as they are, and [`native_messages`] only states
//! the envelope in one line of the system turn ([`format_line`]), since the template's own tool
//! section asks for its own call syntax. The output is Agora's envelope either way: the
//! constraint ([`output_schema`]) enforces it. A native rendering longer than [`native_limit`]
//! falls back, so the gateway's token bound holds for any template.

use std::borrow::Cow;
use std::collections::BTreeMap;

use agora_types::{ChatMessage, Tool, ToolChoice, Tools};
use serde_json::{Map, Value, json};

use crate::schema::{Schema, SchemaError};

mod reader;

pub use reader::{EnvelopeError, EnvelopeReader, ToolEvent};

/// Most functions one request may offer (each is an `anyOf` branch the constraint tracks).
pub const MAX_TOOLS: usize = 32;
/// Longest function name (OpenAI's limit).
pub const MAX_NAME: usize = 64;

/// Why a set of tools cannot be offered; `at` names the request field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct ToolsError {
    pub at: String,
    pub reason: String,
}

fn tools_error(at: impl Into<String>, reason: impl Into<String>) -> ToolsError {
    ToolsError {
        at: at.into(),
        reason: reason.into(),
    }
}

/// Checks one function: its name (`a-z A-Z 0-9 _ -`, at most [`MAX_NAME`]) and that its
/// parameters are a JSON Schema the constraint supports (errors name the schema's place).
pub fn check_tool(tool: &Tool) -> Result<(), ToolsError> {
    let name_ok = !tool.name.is_empty()
        && tool.name.len() <= MAX_NAME
        && tool
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(tools_error(
            "function.name",
            format!(
                "{:?} is not a function name (1 to {MAX_NAME} of a-z, A-Z, 0-9, _ and -)",
                tool.name
            ),
        ));
    }
    Schema::parse(&tool.parameters)
        .map(|_| ())
        .map_err(|e| tools_error("function.parameters", e.to_string()))
}

/// The JSON Schema every output must follow for `tools`: the envelope, with each call's
/// `arguments` under its function's parameters, as JSON (for the job) and compiled (to check
/// the output against). `content`, the schema of a text answer when the model may answer
/// instead of calling (`auto`), defaults to a string.
pub fn output_schema(
    tools: &Tools,
    content: Option<&Value>,
) -> Result<(Value, Schema), ToolsError> {
    if tools.list.is_empty() || tools.list.len() > MAX_TOOLS {
        return Err(tools_error(
            "tools",
            format!(
                "between 1 and {MAX_TOOLS} functions, got {}",
                tools.list.len()
            ),
        ));
    }
    let mut defs = Map::new();
    let mut calls = Vec::new();
    for (i, tool) in tools.list.iter().enumerate() {
        if let ToolChoice::Function(name) = &tools.choice
            && *name != tool.name
        {
            continue;
        }
        let params: Value = serde_json::from_str(&tool.parameters)
            .map_err(|e| tools_error(format!("tools[{i}].function.parameters"), e.to_string()))?;
        let root = format!("t{i}");
        let mut params = params;
        declared_keys_only(&mut params);
        let arguments = hoist(params, &root, &mut defs);
        defs.insert(root.clone(), arguments);
        calls.push(json!({
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                "arguments": {"$ref": format!("#/$defs/{root}")},
            },
            "required": ["name", "arguments"],
            "additionalProperties": false,
        }));
    }
    let call = match calls.len() {
        0 => {
            return Err(tools_error(
                "tool_choice",
                "names a function that is not in tools",
            ));
        }
        1 => calls.remove(0),
        _ => json!({"anyOf": chunks(calls)}),
    };
    let single = !tools.parallel || matches!(tools.choice, ToolChoice::Function(_));
    let mut array = json!({"type": "array", "items": call, "minItems": 1});
    if single {
        array["maxItems"] = json!(1);
    }
    let tool_calls = json!({
        "type": "object",
        "properties": {"tool_calls": array},
        "required": ["tool_calls"],
        "additionalProperties": false,
    });
    let mut envelope = match tools.choice {
        ToolChoice::Auto => json!({"anyOf": [tool_calls, {
            "type": "object",
            "properties": {"content": content.cloned().unwrap_or(json!({"type": "string"}))},
            "required": ["content"],
            "additionalProperties": false,
        }]}),
        _ => tool_calls,
    };
    envelope["$defs"] = Value::Object(defs);
    let compiled = Schema::from_value(&envelope)
        .map_err(|e: SchemaError| tools_error("tools", e.to_string()))?;
    Ok((envelope, compiled))
}

/// `anyOf` allows a bounded number of branches: more calls nest in groups.
fn chunks(mut branches: Vec<Value>) -> Vec<Value> {
    const MAX: usize = crate::schema::MAX_ANY_OF;
    while branches.len() > MAX {
        branches = branches
            .chunks(MAX)
            .map(|c| match c {
                [one] => one.clone(),
                _ => json!({"anyOf": c}),
            })
            .collect();
    }
    branches
}

/// Arguments use the properties their schema declares and no others, unless it says
/// `additionalProperties` itself: OpenAI's strict mode, and what llama.cpp's grammars generate.
/// Without it a small model invents keys (a `"type": "function"` inside the arguments, or one
/// long made-up key until `max_tokens`). The output still validates against the client's schema.
fn declared_keys_only(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    if m.get("properties").is_some_and(Value::is_object) && !m.contains_key("additionalProperties")
    {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = m.get_mut(key) {
            children.values_mut().for_each(declared_keys_only);
        }
    }
    if let Some(Value::Array(branches)) = m.get_mut("anyOf") {
        branches.iter_mut().for_each(declared_keys_only);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = m.get_mut(key) {
            declared_keys_only(sub);
        }
    }
}

/// Moves a function's `$defs`/`definitions` into the envelope's `$defs` under names of its own
/// and points its `$ref`s there, so references still resolve once it is nested.
fn hoist(mut params: Value, root: &str, defs: &mut Map<String, Value>) -> Value {
    let mut names = BTreeMap::new();
    if let Value::Object(m) = &mut params {
        for section in ["$defs", "definitions"] {
            if let Some(Value::Object(d)) = m.remove(section) {
                for (name, body) in d {
                    let new = format!("{root}d{}", names.len());
                    names.insert(format!("#/{section}/{name}"), new.clone());
                    defs.insert(new, body);
                }
            }
        }
    }
    let rename = |r: &str| -> Option<String> {
        if r == "#" {
            return Some(format!("#/$defs/{root}"));
        }
        // A reference as JSON Pointer escapes it (`~1` for `/`).
        let plain = r.replace("~1", "/").replace("~0", "~");
        names
            .get(r)
            .or_else(|| names.get(&plain))
            .map(|n| format!("#/$defs/{n}"))
    };
    fn walk(v: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        Value::String(r) if k == "$ref" => {
                            if let Some(n) = rename(r) {
                                *r = n;
                            }
                        }
                        _ => walk(x, rename),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, rename)),
            _ => {}
        }
    }
    for body in defs.values_mut() {
        walk(body, &rename);
    }
    walk(&mut params, &rename);
    params
}

/// The system text that offers `tools` and explains the envelope, worded for `tools.choice`.
pub fn instruction(tools: &Tools) -> String {
    let mut s =
        String::from("You can call functions. These are the functions, one per line, as JSON:\n");
    for t in &tools.list {
        // Written out by hand, keys in reading order, whatever serde_json's map order is.
        s.push_str(&format!(
            "{{\"name\": {}, \"description\": {}, \"parameters\": {}}}\n",
            quote(&t.name),
            quote(&t.description),
            json_text(&t.parameters),
        ));
    }
    s.push_str(&format_line(tools));
    s
}

/// The envelope the output must be, worded for `tools.choice`: the end of [`instruction`], and
/// all the system turn says of tools when the template lays them out itself.
pub fn format_line(tools: &Tools) -> String {
    let mut s = String::from(
        "To call functions, answer with only this JSON: \
         {\"tool_calls\": [{\"name\": \"<function name>\", \"arguments\": {<its arguments>}}]}.",
    );
    match &tools.choice {
        ToolChoice::Auto => s.push_str(
            " To answer without calling a function, answer with only this JSON: \
             {\"content\": \"<your answer>\"}.",
        ),
        ToolChoice::Required => s.push_str(" You must call at least one function."),
        ToolChoice::Function(name) => {
            s.push_str(&format!(" You must call the function {name}."));
        }
    }
    if !tools.parallel {
        s.push_str(" Call one function at a time.");
    }
    s
}

/// The conversation as plain `system`/`user`/`assistant` turns for the model's chat template:
/// the tools' [`instruction`] joins the system message (or opens the chat as one), an
/// assistant's calls become the envelope it would have written, and a `tool` message becomes a
/// user turn `{"tool_result": {"name": ..., "content": ...}}`. Deterministic, as an auditor
/// must rebuild the same prompt. A chat without tools or tool turns is borrowed as it is.
pub fn prompt_messages<'a>(
    messages: &'a [ChatMessage],
    tools: Option<&Tools>,
) -> Cow<'a, [ChatMessage]> {
    if tools.is_none() && !has_tool_turns(messages) {
        return Cow::Borrowed(messages);
    }
    let mut out = Vec::with_capacity(messages.len() + 1);
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for m in messages {
        let content = match m.role.as_str() {
            "assistant" if !m.tool_calls.is_empty() => {
                let calls: Vec<String> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        names.insert(&c.id, &c.name);
                        format!(
                            "{{\"name\": {}, \"arguments\": {}}}",
                            quote(&c.name),
                            json_text(&c.arguments)
                        )
                    })
                    .collect();
                let envelope = format!("{{\"tool_calls\": [{}]}}", calls.join(", "));
                if m.content.is_empty() {
                    envelope
                } else {
                    format!("{}\n{envelope}", m.content)
                }
            }
            "tool" => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = names.get(id).copied().unwrap_or(id);
                out.push(ChatMessage::new(
                    "user",
                    format!(
                        "{{\"tool_result\": {{\"name\": {}, \"content\": {}}}}}",
                        quote(name),
                        quote(&m.content)
                    ),
                ));
                continue;
            }
            _ => m.content.clone(),
        };
        out.push(ChatMessage::new(m.role.clone(), content));
    }
    if let Some(tools) = tools {
        join_system(&mut out, instruction(tools));
    }
    Cow::Owned(out)
}

/// Whether a chat carries calls or tool results (which both prompt formats write out).
pub fn has_tool_turns(messages: &[ChatMessage]) -> bool {
    messages
        .iter()
        .any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some() || m.role == "tool")
}

/// `text` joins the chat's system message, or opens the chat as one.
fn join_system(out: &mut Vec<ChatMessage>, text: String) {
    match out.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{text}", first.content);
        }
        _ => out.insert(0, ChatMessage::new("system", text)),
    }
}

/// The conversation for a template that renders tools, calls and results itself: as it is, with
/// [`format_line`] joining the system message (or opening the chat as one) when tools are
/// offered. Borrowed as it is without tools.
pub fn native_messages<'a>(
    messages: &'a [ChatMessage],
    tools: Option<&Tools>,
) -> Cow<'a, [ChatMessage]> {
    let Some(tools) = tools else {
        return Cow::Borrowed(messages);
    };
    let mut out = messages.to_vec();
    join_system(&mut out, format_line(tools));
    Cow::Owned(out)
}

/// Fixed text a template's own tool section may add: Hermes 3's, the longest of the golden
/// templates, is about 1.1 KB.
pub const NATIVE_FIXED_BYTES: usize = 4096;
/// Template text per message (Llama 3's turn markers are about 60 bytes).
pub const NATIVE_BYTES_PER_MESSAGE: usize = 128;
/// Template text per tool (Hermes prints a tool's name three times, its parameters' names and
/// descriptions twice, Llama 3 indents its schema).
pub const NATIVE_BYTES_PER_TOOL: usize = 256;
/// How many times a template may print what the client sent (a schema indented, descriptions
/// repeated, arguments re-serialized with Python's spacing).
pub const NATIVE_TEXT_FACTOR: usize = 4;

/// The most bytes a native rendering of `messages` with `tools` may take. The engine uses the
/// fallback ([`prompt_messages`]) above it, so a bound counted from these bytes holds (a token is
/// at least a byte) whatever the template prints.
pub fn native_limit(messages: &[ChatMessage], tools: Option<&Tools>) -> usize {
    let text: usize = messages.iter().map(ChatMessage::text_len).sum::<usize>()
        + tools.map_or(0, Tools::text_len);
    let tools_fixed = tools.map_or(0, |t| {
        format_line(t)
            .len()
            .saturating_add(t.list.len().saturating_mul(NATIVE_BYTES_PER_TOOL))
    });
    NATIVE_FIXED_BYTES
        .saturating_add(text.saturating_mul(NATIVE_TEXT_FACTOR))
        .saturating_add(
            messages
                .len()
                .saturating_add(1)
                .saturating_mul(NATIVE_BYTES_PER_MESSAGE),
        )
        .saturating_add(tools_fixed)
}

/// `s` as a JSON string.
fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `text` itself when it is JSON (as the client or the model wrote it), else as a JSON string.
fn json_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(_) => text.trim().to_owned(),
        Err(_) => quote(text),
    }
}

#[cfg(test)]
mod tests;
