//! A model's own chat template: the Jinja source its GGUF carries (`tokenizer.chat_template`),
//! rendered with minijinja the way Hugging Face's `apply_chat_template` and llama.cpp's Jinja
//! engine render it (blocks trimmed, Python string methods, `raise_exception`, `tojson` with
//! Python's separators), so a prompt has the default system prompt and layout the model's
//! authors wrote. Checked against llama.cpp's rendering in `tests/it/template.rs`.
//!
//! Function calling: [`ChatTemplate::render_tools`] gives the template what llama.cpp gives it,
//! in OpenAI's shapes: `tools` (`[{"type": "function", "function": {"name", "description",
//! "parameters"}}]`, left undefined when there are none), an assistant's `tool_calls`
//! (`[{"type": "function", "function": {"name", "arguments"}, "id"}]`, `arguments` an object
//! where the template reads it as one, else the JSON text) and `tool` messages (`content`,
//! `name` of the function called, `tool_call_id`). Whether a template lays tools out at all
//! ([`ChatTemplate::tool_caps`]) is found once, when it compiles, as llama.cpp finds it: by
//! rendering a probe conversation. Templates that do not get Agora's fallback format
//! (`agora_json::tools::prompt_messages`) instead; either way the model answers in Agora's
//! envelope, which the sampling constraint enforces. Checked against llama.cpp's rendering of
//! its own tool-capable templates in the tests below.
//!
//! Templates come from model files, so rendering is bounded: a fuel limit stops a template that
//! loops, and the output has a size cap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agora_types::Tool;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::engine::ChatMessage;

/// Name of the template inside the environment.
const NAME: &str = "chat";
/// Instructions one rendering may execute; templates of real models use a few thousand.
const FUEL: u64 = 5_000_000;
/// Largest rendered prompt (bytes): far over any context window.
pub const MAX_RENDERED: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("the model's chat template does not parse: {0}")]
    Parse(String),
    #[error("the model's chat template failed: {0}")]
    Render(String),
    #[error("the rendered prompt is over {MAX_RENDERED} bytes")]
    TooLarge,
    #[error("tool {name:?}: its parameters are not JSON")]
    ToolParameters { name: String },
}

/// What a template does with function calling, found by rendering a probe conversation (as
/// llama.cpp's `caps_get` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolCaps {
    /// It prints the offered `tools`.
    pub tools: bool,
    /// It prints an assistant's `tool_calls` and the `tool` messages answering them.
    pub tool_calls: bool,
    /// It reads a call's `arguments` as an object (`| tojson`, `.items()`), so it gets one.
    pub object_arguments: bool,
}

impl ToolCaps {
    /// Whether a chat with tools renders natively: the tools and the calls and their results.
    pub fn native(&self) -> bool {
        self.tools && self.tool_calls
    }
}

/// One model's compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    caps: ToolCaps,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Context<'a, M: Serialize> {
    messages: &'a [M],
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
}

impl ChatTemplate {
    /// Compile `source`, with the text of the model's BOS and EOS tokens (templates print them).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        // Hugging Face renders with jinja2's trim_blocks and lstrip_blocks; so does llama.cpp.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        // No `strftime_now`: a prompt must be the same when an auditor renders it again later;
        // templates that use it test `is defined` and fall back to a fixed date.
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| ChatTemplateError::Parse(describe(&e)))?;
        let mut t = Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            caps: ToolCaps::default(),
        };
        t.caps = t.probe();
        Ok(t)
    }

    /// What the template does with tools (see [`ToolCaps`]).
    pub fn tool_caps(&self) -> ToolCaps {
        self.caps
    }

    /// The prompt for a chat that may offer `tools` and carry tool calls and results, in the
    /// shapes llama.cpp gives a template (see the module's notes); `tools` is undefined when
    /// empty. A tool message's `name` is the function of the call it answers.
    pub fn render_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                for c in &m.tool_calls {
                    names.insert(&c.id, &c.name);
                }
                let name = m
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| names.get(id).copied());
                message_value(m, name, |args| self.arguments(args))
            })
            .collect();
        let tools = tools
            .iter()
            .map(|t| {
                let parameters: Value = serde_json::from_str(&t.parameters).map_err(|_| {
                    ChatTemplateError::ToolParameters {
                        name: t.name.clone(),
                    }
                })?;
                Ok(tool_value(&t.name, &t.description, parameters))
            })
            .collect::<Result<Vec<Value>, ChatTemplateError>>()?;
        self.render_value(Value::from(messages), tools, add_generation_prompt)
    }

    /// A call's arguments as the template reads them: the parsed object, or the text itself
    /// (also when it is not JSON, where llama.cpp would refuse the chat).
    fn arguments(&self, text: &str) -> Value {
        if self.caps.object_arguments
            && let Ok(v) = serde_json::from_str::<Value>(text)
        {
            return v;
        }
        Value::from(text)
    }

    fn render_value(
        &self,
        messages: Value,
        tools: Vec<Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let mut ctx = vec![("messages", messages)];
        // Templates test `tools is defined` or `if tools`: absent, not empty, when there are none.
        if !tools.is_empty() {
            ctx.push(("tools", Value::from(tools)));
        }
        ctx.push(("add_generation_prompt", Value::from(add_generation_prompt)));
        ctx.push(("bos_token", Value::from(self.bos_token.as_str())));
        ctx.push(("eos_token", Value::from(self.eos_token.as_str())));
        self.finish(Value::from_iter(ctx))
    }

    /// llama.cpp's capability probe: a user turn, an assistant's call, its result, an answer and
    /// another user turn, with one tool offered. The tool and the call have names of their own,
    /// so a template that prints calls but not the tools list is told apart.
    fn probe(&self) -> ToolCaps {
        const TOOL: &str = "agora_probe_tool";
        const CALL: &str = "agora_probe_call";
        const RESULT: &str = "agora_probe_result";
        let tool = tool_value(
            TOOL,
            "Tool description",
            serde_json::from_str(
                r#"{"type": "object", "properties": {"arg": {"type": "string", "description": "Arg description"}}, "required": ["arg"]}"#,
            )
            .unwrap_or_default(),
        );
        let render = |arguments: Value| {
            let call = ChatMessage {
                tool_calls: vec![agora_types::ToolCall {
                    id: "call00001".into(),
                    name: CALL.into(),
                    arguments: String::new(),
                }],
                ..ChatMessage::new("assistant", "")
            };
            let result = ChatMessage {
                tool_call_id: Some("call00001".into()),
                ..ChatMessage::new("tool", RESULT)
            };
            let messages = vec![
                message_value(&ChatMessage::new("user", "User message"), None, |_| {
                    Value::UNDEFINED
                }),
                message_value(&call, None, |_| arguments.clone()),
                message_value(&result, Some(CALL), |_| Value::UNDEFINED),
                message_value(
                    &ChatMessage::new("assistant", "The tool response was 'tool response'"),
                    None,
                    |_| Value::UNDEFINED,
                ),
                message_value(&ChatMessage::new("user", "User message"), None, |_| {
                    Value::UNDEFINED
                }),
            ];
            self.render_value(Value::from(messages), vec![tool.clone()], true)
                .ok()
        };
        let read = Arc::new(AtomicBool::new(false));
        let object = Value::from_object(ProbeArguments { read: read.clone() });
        let (out, object_arguments) = match render(object) {
            Some(out) => (Some(out), read.load(Ordering::Relaxed)),
            None => (render(Value::from(r#"{"arg": "value"}"#)), false),
        };
        let Some(out) = out else {
            return ToolCaps::default();
        };
        let tool_calls = out.contains(CALL) && out.contains(RESULT);
        ToolCaps {
            tools: out.contains(TOOL),
            tool_calls,
            object_arguments: object_arguments && tool_calls,
        }
    }

    /// The prompt for `messages` (anything that serializes as `{role, content, ...}` maps), with
    /// the assistant's turn opened when `add_generation_prompt`.
    pub fn render<M: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        self.finish(Value::from_serialize(Context {
            messages,
            add_generation_prompt,
            bos_token: &self.bos_token,
            eos_token: &self.eos_token,
        }))
    }

    fn finish(&self, ctx: Value) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatTemplateError::Parse(describe(&e)))?;
        let out = template
            .render(ctx)
            .map_err(|e| ChatTemplateError::Render(describe(&e)))?;
        if out.len() > MAX_RENDERED {
            return Err(ChatTemplateError::TooLarge);
        }
        Ok(out)
    }

    /// The text of the model's BOS token, which a template may print first.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }
}

/// A message as llama.cpp hands it to a template (`common_chat_msg::to_json_oaicompat`), keys in
/// its order: role, content, name, tool_call_id, tool_calls (each type, function, id).
fn message_value(m: &ChatMessage, name: Option<&str>, arguments: impl Fn(&str) -> Value) -> Value {
    let mut fields = vec![
        ("role", Value::from(m.role.as_str())),
        ("content", Value::from(m.content.as_str())),
    ];
    if let Some(name) = name.filter(|_| m.role == "tool") {
        fields.push(("name", Value::from(name)));
    }
    if let Some(id) = &m.tool_call_id {
        fields.push(("tool_call_id", Value::from(id.as_str())));
    }
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let function = Value::from_iter([
                    ("name", Value::from(c.name.as_str())),
                    ("arguments", arguments(&c.arguments)),
                ]);
                let mut call = vec![("type", Value::from("function")), ("function", function)];
                if !c.id.is_empty() {
                    call.push(("id", Value::from(c.id.as_str())));
                }
                Value::from_iter(call)
            })
            .collect();
        fields.push(("tool_calls", Value::from(calls)));
    }
    Value::from_iter(fields)
}

/// A tool as llama.cpp hands it to a template (`common_chat_tools_to_json_oaicompat`).
fn tool_value(name: &str, description: &str, parameters: Value) -> Value {
    Value::from_iter([
        ("type", Value::from("function")),
        (
            "function",
            Value::from_iter([
                ("name", Value::from(name)),
                ("description", Value::from(description)),
                ("parameters", parameters),
            ]),
        ),
    ])
}

/// The probe's call arguments `{"arg": "value"}`, noting whether the template read `arg`: what
/// llama.cpp's probe checks to give templates objects (printing the map whole does not count,
/// as there; `tojson`, `.items()` and `arguments.arg` do).
#[derive(Debug)]
struct ProbeArguments {
    read: Arc<AtomicBool>,
}

impl Object for ProbeArguments {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str() == Some("arg")).then(|| {
            self.read.store(true, Ordering::Relaxed);
            Value::from("value")
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["arg"])
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"{"arg": "value"}"#)
    }
}

fn describe(e: &Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson` as Hugging Face defines it: Python's `json.dumps` (separators `", "` and `": "`,
/// non-ASCII kept), with `indent` when given. Tool schemas are printed with it, so the spacing is
/// part of the prompt.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    python_json(&value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Walks minijinja's own value (not a `serde_json::Value`, whose maps may be sorted) so keys keep
/// the template's order, as Python's dicts do.
fn python_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    // Python's defaults: ", " between items, "," when indenting; ": " after keys.
    let item_sep = if indent.is_some() { "," } else { ", " };
    let (open, close, is_map) = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => ('[', ']', false),
        ValueKind::Map => ('{', '}', true),
        ValueKind::Undefined | ValueKind::None => {
            out.push_str("null");
            return Ok(());
        }
        _ => {
            let scalar = serde_json::to_string(v)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            out.push_str(&scalar);
            return Ok(());
        }
    };
    let items: Vec<Value> = v.try_iter()?.collect();
    out.push(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(item_sep);
        }
        newline(out, depth + 1);
        if is_map {
            let key = serde_json::to_string(&item.to_string())
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            out.push_str(&key);
            out.push_str(": ");
            python_json(&v.get_item(item)?, indent, depth + 1, out)?;
        } else {
            python_json(item, indent, depth + 1, out)?;
        }
    }
    if !items.is_empty() {
        newline(out, depth);
    }
    out.push(close);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Msg {
        role: &'static str,
        content: &'static str,
    }

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_messages_and_the_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let out = t
            .render(
                &[Msg {
                    role: "user",
                    content: "hi",
                }],
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work_as_in_jinja2() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}{{ messages[0].content.strip().upper() }}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let ok = t
            .render(
                &[Msg {
                    role: "user",
                    content: "  hi ",
                }],
                false,
            )
            .unwrap();
        assert_eq!(ok, "<s>HI");
        let err = t
            .render(
                &[Msg {
                    role: "system",
                    content: "x",
                }],
                false,
            )
            .unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn blocks_are_trimmed_like_hugging_face_renders_them() {
        let src = "{% for m in messages %}\n  {% if true %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let out = t
            .render(
                &[
                    Msg {
                        role: "user",
                        content: "a",
                    },
                    Msg {
                        role: "user",
                        content: "b",
                    },
                ],
                false,
            )
            .unwrap();
        assert_eq!(out, "[a]\n[b]\n");
    }

    #[test]
    fn tojson_prints_as_python_json_dumps() {
        let src = "{{ {'name': 'f', 'parameters': {'type': 'object', 'required': ['a', 'b']}, 'é': [1, 2.5, true, none]} | tojson }}|{{ [1, {'a': []}] | tojson(indent=2) }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let out = t.render::<Msg>(&[], false).unwrap();
        // Python: json.dumps(x, ensure_ascii=False) and json.dumps(y, indent=2).
        assert_eq!(
            out,
            "{\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"required\": [\"a\", \"b\"]}, \"é\": [1, 2.5, true, null]}|[\n  1,\n  {\n    \"a\": []\n  }\n]"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_or_loops_forever_is_an_error_not_a_hang() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(ChatTemplateError::Parse(_))
        ));
        let looping =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let t = ChatTemplate::new(looping, "", "").unwrap();
        assert!(matches!(
            t.render::<Msg>(&[], false),
            Err(ChatTemplateError::Render(_))
        ));
    }

    /// llama.cpp's own Jinja rendering of the real models' templates
    /// (`scripts/chat-template-golden.py`), string for string.
    #[test]
    fn renders_as_llama_cpp_does_for_the_real_models_templates() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/chat_templates.json")).unwrap();
        let mut checked = 0;
        for model in fixture["models"].as_array().unwrap() {
            let t = ChatTemplate::new(
                model["template"].as_str().unwrap(),
                model["bos_token"].as_str().unwrap(),
                model["eos_token"].as_str().unwrap(),
            )
            .unwrap();
            for case in model["cases"].as_array().unwrap() {
                let messages = case["messages"].as_array().unwrap();
                let got = t.render(messages, true).unwrap();
                assert_eq!(
                    got,
                    case["prompt"].as_str().unwrap(),
                    "{}: {messages:?}",
                    model["file"]
                );
                checked += 1;
            }
        }
        assert!(checked >= 8, "{checked}");
    }

    /// A chat in the fixture's OpenAI shapes as Agora carries it.
    fn agora_chat(case: &serde_json::Value) -> (Vec<ChatMessage>, Vec<Tool>) {
        agora_testkit::openai_chat(&case["messages"], &case["tools"])
    }

    /// llama.cpp's rendering of its own tool-capable templates with tools, calls and results,
    /// and its capability probe's verdict, string for string.
    #[test]
    fn renders_tools_as_llama_cpp_does_for_its_tool_templates() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/chat_templates.json")).unwrap();
        let (mut checked, mut with_tools, mut native) = (0, 0, 0);
        for entry in fixture["tool_templates"].as_array().unwrap() {
            let file = &entry["file"];
            let t = ChatTemplate::new(
                entry["template"].as_str().unwrap(),
                entry["bos_token"].as_str().unwrap(),
                entry["eos_token"].as_str().unwrap(),
            )
            .unwrap();
            let caps = &entry["caps"];
            assert_eq!(
                t.tool_caps(),
                ToolCaps {
                    tools: caps["supports_tools"] == true,
                    tool_calls: caps["supports_tool_calls"] == true,
                    object_arguments: caps["supports_object_arguments"] == true,
                },
                "{file}"
            );
            native += usize::from(t.tool_caps().native());
            for case in entry["cases"].as_array().unwrap() {
                let (messages, tools) = agora_chat(case);
                let got = t.render_tools(&messages, &tools, true).unwrap();
                assert_eq!(
                    got,
                    case["prompt"].as_str().unwrap(),
                    "{file}: {messages:?}"
                );
                checked += 1;
                with_tools += usize::from(!tools.is_empty());
            }
        }
        // Qwen 2.5, Hermes 3 and Llama 3.2 lay tools out; SmolLM3's template does not (it reads
        // `xml_tools`, not `tools`). 4 templates x 7 chats, plus a parallel call for three.
        assert_eq!((native, checked, with_tools), (3, 31, 27));
    }

    #[test]
    fn a_template_reading_arguments_as_text_gets_text_and_tools_are_undefined_without_any() {
        let src = "{% if tools is defined %}T{% endif %}{% for m in messages %}{% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments }}]{% endfor %}{% if m.role == 'tool' %}({{ m.name }}: {{ m.content }}){% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        // It prints calls and results but not the tools, and reads no argument.
        assert_eq!(
            t.tool_caps(),
            ToolCaps {
                tools: false,
                tool_calls: true,
                object_arguments: false
            }
        );
        let call = ChatMessage {
            tool_calls: vec![agora_types::ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into(),
            }],
            ..ChatMessage::new("assistant", "")
        };
        let result = ChatMessage {
            tool_call_id: Some("c1".into()),
            ..ChatMessage::new("tool", "ok")
        };
        let out = t.render_tools(&[call, result], &[], true).unwrap();
        assert_eq!(out, "[f {\"a\":1}](f: ok)");
        let bad = Tool {
            name: "f".into(),
            description: String::new(),
            parameters: "{not json".into(),
        };
        assert!(matches!(
            t.render_tools(&[], &[bad], true),
            Err(ChatTemplateError::ToolParameters { .. })
        ));
    }
}
