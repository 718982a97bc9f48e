//! A chat answer in the tool-call envelope (`agora_json::tools`) turned into OpenAI's message:
//! `content`, or `tool_calls` with ids the gateway gives them, whole or as chunk deltas while
//! the tokens arrive.
//!
//! The provider's text is a claim: it is read through the same schema automaton the provider
//! had to generate under, so output that breaks the tools' schemas (a name not offered,
//! arguments outside their parameters) is refused here rather than handed to the client's code.

use agora_json::tools::{EnvelopeError, EnvelopeReader, ToolEvent};
use agora_json::{Schema, SchemaPrefix};

use super::wire::{FunctionCallOut, FunctionDelta, ToolCallDelta, ToolCallOut};

/// What one piece of output adds to the message.
#[derive(Default, Debug, Clone, PartialEq)]
pub(super) struct Added {
    pub(super) content: Option<String>,
    pub(super) tool_calls: Vec<ToolCallDelta>,
}

/// Why a provider's output is not a tool-call answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum OutputError {
    #[error("the provider's output breaks the request's tool schemas at byte {at}")]
    Schema { at: usize },
    #[error("{0}")]
    Envelope(EnvelopeError),
}

/// One choice's output, read as it arrives.
pub(super) struct ToolOutput {
    reader: EnvelopeReader,
    check: SchemaPrefix,
    seen: usize,
    broken: Option<usize>,
    ids: Vec<String>,
    events: Vec<ToolEvent>,
}

impl ToolOutput {
    /// Reads output that must follow `schema` (the tools' envelope schema).
    pub(super) fn new(schema: &Schema) -> Self {
        Self {
            reader: EnvelopeReader::new(),
            check: schema.prefix(),
            seen: 0,
            broken: None,
            ids: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The message's growth from the next piece of text; an error once the text breaks the
    /// schema (nothing more is read after that).
    pub(super) fn feed(&mut self, text: &str) -> Result<Added, OutputError> {
        if let Some(at) = self.broken {
            return Err(OutputError::Schema { at });
        }
        for (i, b) in text.bytes().enumerate() {
            if !self.check.feed_all(&[b]) {
                let at = self.seen + i;
                self.broken = Some(at);
                return Err(OutputError::Schema { at });
            }
        }
        self.seen += text.len();
        self.reader.feed(text, &mut self.events);
        Ok(self.drain())
    }

    /// The rest of the message at the end of the output. A cut-off envelope (`max_tokens`) is
    /// not an error: what was complete is kept, as OpenAI does with `finish_reason: "length"`.
    pub(super) fn finish(&mut self) -> Result<Added, OutputError> {
        if let Some(at) = self.broken {
            return Err(OutputError::Schema { at });
        }
        match self.reader.finish(&mut self.events) {
            Ok(()) | Err(EnvelopeError::Truncated { .. }) => Ok(self.drain()),
            Err(e) => Err(OutputError::Envelope(e)),
        }
    }

    /// Tool calls begun so far.
    pub(super) fn calls(&self) -> usize {
        self.ids.len()
    }

    fn drain(&mut self) -> Added {
        let mut added = Added::default();
        for ev in self.events.drain(..) {
            match ev {
                ToolEvent::Content(t) => added.content.get_or_insert_with(String::new).push_str(&t),
                ToolEvent::CallStart { index, name } => {
                    let id = format!("call_{}", hex::encode(rand::random::<[u8; 12]>()));
                    self.ids.push(id.clone());
                    added.tool_calls.push(ToolCallDelta {
                        function: FunctionDelta {
                            arguments: String::new(),
                            name: Some(name),
                        },
                        id: Some(id),
                        index,
                        kind: Some("function"),
                    });
                }
                ToolEvent::Arguments { index, text } => match added.tool_calls.last_mut() {
                    Some(last) if last.index == index => last.function.arguments.push_str(&text),
                    _ => added.tool_calls.push(ToolCallDelta {
                        function: FunctionDelta {
                            arguments: text,
                            name: None,
                        },
                        id: None,
                        index,
                        kind: None,
                    }),
                },
            }
        }
        added
    }
}

/// A whole message's content and calls from its deltas, in order.
pub(super) fn assemble(
    parts: impl IntoIterator<Item = Added>,
) -> (Option<String>, Vec<ToolCallOut>) {
    let mut content: Option<String> = None;
    let mut calls: Vec<ToolCallOut> = Vec::new();
    for part in parts {
        if let Some(t) = part.content {
            content.get_or_insert_with(String::new).push_str(&t);
        }
        for d in part.tool_calls {
            match (d.id, d.function.name) {
                (Some(id), Some(name)) => calls.push(ToolCallOut {
                    function: FunctionCallOut {
                        arguments: d.function.arguments,
                        name,
                    },
                    id,
                    kind: "function",
                }),
                _ => {
                    if let Some(c) = calls.get_mut(d.index) {
                        c.function.arguments.push_str(&d.function.arguments);
                    }
                }
            }
        }
    }
    (content, calls)
}

/// OpenAI's finish reason for a choice that made tool calls and ended by itself.
pub(super) fn finish_reason(reason: &str, calls: usize) -> String {
    if calls > 0 && reason == "stop" {
        "tool_calls".into()
    } else {
        reason.into()
    }
}
