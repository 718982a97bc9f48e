//! OpenAI's response bodies as types: `chat.completion`, `chat.completion.chunk`,
//! `text_completion`, the embedding and model lists, usage and the error body, plus Agora's
//! `agora` extensions (ignored by stock SDKs).
//!
//! The bytes on the wire are the ones the gateway always sent: fields are declared in
//! alphabetical order (the order `serde_json`'s map gave them) and every `f32` is written as the
//! `f64` it widens to. The tests check both against `serde_json::Value`'s rendering.

use std::collections::BTreeMap;

use agora_types::{Amount, Hash};
use serde::{Serialize, Serializer};

/// `{"error": {...}}`.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: Option<&'a str>,
    pub message: &'a str,
    pub param: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub completion_tokens: u32,
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            completion_tokens,
            prompt_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// Who served a completion and what each provider was paid.
#[derive(Serialize, Debug, Clone)]
pub struct AgoraSummary {
    pub charged: Amount,
    /// The redundant tier's second run and how it compared (`agora.verification: "redundant"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redundant: Option<RedundantCheck>,
    /// The key of this completion's receipts (`GET /v1/receipts/{request_id}`).
    pub request_id: String,
    pub segments: Vec<AgoraSegment>,
}

/// The same request run again on another provider, compared token for token with the answer.
#[derive(Serialize, Debug, Clone)]
pub struct RedundantCheck {
    /// The second run's tokens are the answer's, one for one.
    pub agreed: bool,
    /// What the second run cost the customer (on top of the answer's `charged`).
    pub charged: Amount,
    /// The first token position where the runs differ (where the shorter ends, when one is a
    /// prefix of the other); absent when they agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_divergence: Option<usize>,
    /// The key of the second run's receipts.
    pub request_id: String,
    pub segments: Vec<AgoraSegment>,
}

/// `GET /v1/receipts/{request_id}`.
#[derive(Serialize, Debug, Clone)]
pub struct ReceiptList {
    pub data: Vec<crate::receipts::KeptReceipt>,
    pub object: &'static str,
    pub request_id: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct AgoraSegment {
    pub charged: Amount,
    pub completion_tokens: u32,
    pub prompt_tokens: u32,
    pub provider: String,
    /// The provider's signed receipt, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<agora_market::protocol::SignedReceipt>,
    /// The proof of inference the receipt's `proof_hash` binds (hex), when one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<agora_market::protocol::ProofBytes>,
    pub receipt_ok: bool,
}

/// One token's log-probability and its alternatives (chat's `logprobs.content[i]`).
#[derive(Serialize, Debug, Clone)]
pub struct TokenLogprob {
    pub bytes: Vec<u8>,
    pub logprob: f64,
    pub token: String,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Serialize, Debug, Clone)]
pub struct TopLogprob {
    pub bytes: Vec<u8>,
    pub logprob: f64,
    pub token: String,
}

/// A whole `chat.completion` or `text_completion`.
#[derive(Serialize)]
pub struct Completion<C> {
    pub choices: Vec<C>,
    pub created: u64,
    pub id: String,
    pub model: String,
    pub object: &'static str,
    /// Always null: providers differ.
    pub system_fingerprint: Option<String>,
    pub usage: Usage,
}

/// One server-sent event of a streamed `chat.completion.chunk` or `text_completion`.
#[derive(Serialize)]
pub struct Chunk<C> {
    pub choices: Vec<C>,
    pub created: u64,
    pub id: String,
    pub model: String,
    pub object: &'static str,
    pub system_fingerprint: Option<String>,
    /// Absent unless `stream_options.include_usage`; then null on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
pub struct ChatChoice {
    pub agora: AgoraSummary,
    pub finish_reason: String,
    pub index: usize,
    pub logprobs: Option<ChatLogprobs>,
    pub message: AssistantMessage,
}

#[derive(Serialize)]
pub struct AssistantMessage {
    /// `null` when the message is only tool calls, as OpenAI sends it.
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// One function call of an assistant message.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ToolCallOut {
    pub function: FunctionCallOut,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallOut {
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
    pub name: String,
}

/// A piece of one tool call in a chunk: the first carries its id, type and name, the rest more
/// of its arguments' text.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub function: FunctionDelta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub index: usize,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FunctionDelta {
    pub arguments: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Serialize)]
pub struct ChatChunkChoice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agora: Option<AgoraSummary>,
    pub delta: Delta,
    pub finish_reason: Option<String>,
    pub index: usize,
    pub logprobs: Option<ChatLogprobs>,
}

/// What a chat chunk adds to the message.
#[derive(Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

#[derive(Serialize)]
pub struct TextChoice {
    pub agora: AgoraSummary,
    pub finish_reason: String,
    pub index: usize,
    pub logprobs: Option<TextLogprobs>,
    pub text: String,
}

/// The legacy completions' logprobs: parallel lists.
#[derive(Serialize)]
pub struct TextLogprobs {
    pub token_logprobs: Vec<f64>,
    pub tokens: Vec<String>,
    pub top_logprobs: Vec<BTreeMap<String, f64>>,
}

#[derive(Serialize)]
pub struct TextChunkChoice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agora: Option<AgoraSummary>,
    pub finish_reason: Option<String>,
    pub index: usize,
    pub logprobs: Option<TokenLogprob>,
    pub text: String,
}

/// `{"object": "list", "data": [...]}` of embeddings.
#[derive(Serialize)]
pub struct EmbeddingList {
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub object: &'static str,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub struct EmbeddingObject {
    pub embedding: Embedding,
    pub index: usize,
    pub object: &'static str,
}

/// A vector as floats or as base64 of its little-endian `f32`s.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Embedding {
    Float(#[serde(serialize_with = "f32s_as_f64s")] Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

/// `{"object": "list", "data": [...]}` of models.
#[derive(Serialize)]
pub struct ModelList {
    pub data: Vec<ModelObject>,
    pub object: &'static str,
}

#[derive(Serialize)]
pub struct ModelObject {
    pub agora: ModelAgora,
    pub created: u64,
    pub id: String,
    pub object: &'static str,
    pub owned_by: String,
}

/// What the network knows of a model.
#[derive(Serialize)]
pub struct ModelAgora {
    pub endpoints: &'static [&'static str],
    pub family: String,
    pub kind: &'static str,
    pub license: String,
    pub price_per_mtok: PriceRanges,
    pub providers: usize,
    pub royalty_bps: u16,
    pub sha256: Hash,
}

#[derive(Serialize)]
pub struct PriceRanges {
    pub input: PriceRange,
    pub output: PriceRange,
    pub unit: &'static str,
}

/// Base units per million tokens, as decimal strings (they may exceed JSON's safe integers).
#[derive(Serialize)]
pub struct PriceRange {
    pub max: String,
    pub min: String,
}

fn f32s_as_f64s<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| f64::from(*x)))
}
