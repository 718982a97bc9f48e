//! A model's own chat template: the Jinja source its GGUF carries (`tokenizer.chat_template`),
//! rendered with minijinja the way Hugging Face's `apply_chat_template` and llama.cpp's Jinja
//! engine render it (blocks trimmed, Python string methods, `raise_exception`, `tojson` with
//! Python's separators), so a prompt has the default system prompt and layout the model's
//! authors wrote. Checked against llama.cpp's rendering in `tests/it/template.rs`.
//!
//! Templates come from model files, so rendering is bounded: a fuel limit stops a template that
//! loops, and the output has a size cap.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

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
}

/// One model's compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
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
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The prompt for `messages` (anything that serializes as `{role, content, ...}` maps), with
    /// the assistant's turn opened when `add_generation_prompt`.
    pub fn render<M: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatTemplateError::Parse(describe(&e)))?;
        let out = template
            .render(Context {
                messages,
                add_generation_prompt,
                bos_token: &self.bos_token,
                eos_token: &self.eos_token,
            })
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
}
