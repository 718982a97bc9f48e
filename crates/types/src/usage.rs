//! Token counts of one job: what the engine reports, the provider's final frame carries and the
//! gateway turns into OpenAI's `usage` object.

use serde::{Deserialize, Serialize};

/// Token accounting of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens prefilled: the prompt plus any continuation.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens whose KV cache was reused rather than computed (absent from older frames).
    #[serde(default)]
    pub cached_tokens: u32,
}
