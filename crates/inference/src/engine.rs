//! The one trait every generation backend implements.
//!
//! An [`Engine`] is deliberately low level: tokenize, run one multi-sequence batch, read the
//! logits and final-norm hidden state of the positions marked as outputs, drop KV-cache ranges.
//! Everything that makes Agora's serving behaviour (sampling, batching, streaming, prefix reuse,
//! proof capture) lives above it in [`crate::scheduler`], so each backend gets it for free.

/// A token id in the model's vocabulary.
pub type TokenId = u32;

/// Static facts about a loaded model and its context.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// Display name (the store name or the file stem).
    pub name: String,
    /// `general.architecture`.
    pub architecture: String,
    /// Context length the model was trained for.
    pub n_ctx_train: u32,
    /// Context length available to one sequence.
    pub n_ctx_seq: u32,
    /// Parallel sequences (scheduler slots) the context holds.
    pub n_seq: u32,
    /// Most tokens one `decode` call may contain.
    pub n_batch: u32,
    pub n_vocab: u32,
    /// Width of the hidden state (`d_model`).
    pub n_embd: u32,
    /// Whether a beginning-of-sequence token is prepended to prompts.
    pub add_bos: bool,
    pub bos: Option<TokenId>,
    /// True when the file carries a chat template.
    pub has_chat_template: bool,
    /// Whether hidden states can be read (the context was built with them enabled).
    pub hidden_states: bool,
    /// The end-of-generation tokens ([`Engine::is_eog`] as a list: what an auditor replays the
    /// stop rule with).
    pub eog_tokens: Vec<TokenId>,
}

/// One token of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchToken {
    pub token: TokenId,
    pub pos: u32,
    pub seq: u32,
    /// Compute logits (and the hidden state) for this position.
    pub output: bool,
}

/// A failure inside a backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("decode failed: {0}")]
    Decode(String),
    #[error("no output was requested at batch index {0}")]
    NoOutput(usize),
    #[error("hidden states are not enabled on this engine")]
    NoHiddenStates,
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error("batch of {len} tokens exceeds the engine's limit of {max}")]
    BatchTooLarge { len: usize, max: usize },
}

/// A chat message (the one the gateway-provider protocol carries, from `agora-types`).
pub use agora_types::ChatMessage;

/// Why a chat prompt could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "model {model} has no chat template (it is a base model); send a plain completion prompt instead"
    )]
    NoTemplate { model: String },
    #[error("the chat template could not be applied: {0}")]
    Apply(String),
    #[error("a chat request needs at least one message")]
    NoMessages,
    #[error("message #{index} has an invalid role {role:?} (use system, user or assistant)")]
    BadRole { index: usize, role: String },
    #[error("message #{index} contains a NUL byte")]
    Nul { index: usize },
}

/// A generation backend: one model and one multi-sequence KV cache.
pub trait Engine {
    /// Facts about the model and context.
    fn info(&self) -> &ModelInfo;
    /// Tokenize `text`. With `parse_special == false`, text that looks like a control token
    /// (`<|im_start|>`) is tokenized as plain text.
    fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<TokenId>, EngineError>;
    /// The bytes a token renders to in output text (control tokens render as nothing).
    fn piece(&self, token: TokenId) -> &[u8];
    /// End-of-generation token (EOS, EOT, ...)?
    fn is_eog(&self, token: TokenId) -> bool;
    /// Render `messages` with the model's own chat template, adding the assistant prefix.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, TemplateError>;
    /// Run one batch. Afterwards, `logits(i)`/`hidden(i)` are valid for batch indices marked output.
    fn decode(&mut self, batch: &[BatchToken]) -> Result<(), EngineError>;
    /// Logits of batch index `i` of the last `decode`.
    fn logits(&self, i: usize) -> Result<&[f32], EngineError>;
    /// Final-norm hidden state of batch index `i` of the last `decode`.
    fn hidden(&self, i: usize) -> Result<&[f32], EngineError>;
    /// Drop the KV cache of `seq` from position `from` on.
    fn truncate_seq(&mut self, seq: u32, from: u32);
}

/// Private-use sentinels put in place of message contents while the template is rendered.
const SENTINEL_OPEN: char = '\u{F8F0}';
const SENTINEL_CLOSE: char = '\u{F8F1}';

/// Build the token sequence of a chat prompt so that message *contents* can never become control
/// tokens: the template is rendered around sentinels, template text is tokenized with special-token
/// parsing and each content with it switched off.
pub fn chat_tokens<E: Engine + ?Sized>(
    engine: &E,
    messages: &[ChatMessage],
) -> Result<Vec<TokenId>, ChatPromptError> {
    if messages.is_empty() {
        return Err(TemplateError::NoMessages.into());
    }
    let mut masked = Vec::with_capacity(messages.len());
    for (index, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(TemplateError::BadRole {
                index,
                role: m.role.clone(),
            }
            .into());
        }
        if m.content.contains('\0') || m.role.contains('\0') {
            return Err(TemplateError::Nul { index }.into());
        }
        masked.push(ChatMessage::new(
            m.role.clone(),
            format!("{SENTINEL_OPEN}{index}{SENTINEL_CLOSE}"),
        ));
    }
    let rendered = engine.render_chat(&masked)?;
    let mut out = Vec::new();
    if engine.info().add_bos
        && let Some(b) = engine.info().bos
    {
        out.push(b);
    }
    let mut rest = rendered.as_str();
    while let Some(open) = rest.find(SENTINEL_OPEN) {
        let (template, after) = rest.split_at(open);
        if !template.is_empty() {
            out.extend(engine.tokenize(template, true)?);
        }
        let after = &after[SENTINEL_OPEN.len_utf8()..];
        let close = after
            .find(SENTINEL_CLOSE)
            .ok_or_else(|| TemplateError::Apply("template mangled a message".into()))?;
        let index: usize = after[..close]
            .parse()
            .map_err(|_| TemplateError::Apply("template mangled a message".into()))?;
        let content = &messages
            .get(index)
            .ok_or_else(|| TemplateError::Apply("template mangled a message".into()))?
            .content;
        if !content.is_empty() {
            out.extend(engine.tokenize(content, false)?);
        }
        rest = &after[close + SENTINEL_CLOSE.len_utf8()..];
    }
    if !rest.is_empty() {
        out.extend(engine.tokenize(rest, true)?);
    }
    Ok(out)
}

/// Tokens of a plain completion prompt (BOS added when the model wants it; no special parsing).
pub fn completion_tokens<E: Engine + ?Sized>(
    engine: &E,
    prompt: &str,
) -> Result<Vec<TokenId>, EngineError> {
    let mut out = Vec::new();
    if engine.info().add_bos
        && let Some(b) = engine.info().bos
    {
        out.push(b);
    }
    out.extend(engine.tokenize(prompt, false)?);
    Ok(out)
}

/// Why a chat prompt could not be turned into tokens.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatPromptError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}
