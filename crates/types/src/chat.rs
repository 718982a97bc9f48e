//! One chat message, as a gateway receives it, a job carries it and an engine renders it.

use serde::{Deserialize, Serialize};

/// A chat message: a role (`system`, `user`, `assistant`) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}
