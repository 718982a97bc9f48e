//! One chat message, as a gateway receives it, a job carries it and an engine renders it, and
//! the function tools a chat may offer the model.

use serde::{Deserialize, Serialize};

/// A chat message: a role (`system`, `user`, `assistant`, `tool`) and its text; an assistant
/// message may carry the tool calls it made, a `tool` message answers one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The calls an assistant message made (empty for every other role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// One function call an assistant made: its id (chosen by the gateway), the function's name and
/// the arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A function the model may call: its name, what it does, and its parameters' JSON Schema text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub parameters: String,
}

/// Whether the model must call a function (OpenAI's `tool_choice` without `none`, which sends no
/// tools at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolChoice {
    /// Call functions or answer in text, as the model decides.
    Auto,
    /// Call at least one function.
    Required,
    /// Call this function.
    Function(String),
}

/// The functions offered to the model in one chat, and how it may call them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    pub list: Vec<Tool>,
    pub choice: ToolChoice,
    /// May the model call more than one function in one answer?
    pub parallel: bool,
}

impl ChatMessage {
    /// Bytes of text the message carries (role, content, tool calls, the call it answers).
    pub fn text_len(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        self.role.len()
            + self.content.len()
            + calls
            + self.tool_call_id.as_ref().map_or(0, String::len)
    }
}

impl Tools {
    /// Bytes of text the functions carry (names, descriptions, parameter schemas).
    pub fn text_len(&self) -> usize {
        let named = match &self.choice {
            ToolChoice::Function(name) => name.len(),
            _ => 0,
        };
        self.list
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.len())
            .sum::<usize>()
            + named
    }
}
