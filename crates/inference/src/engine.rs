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
    /// Tokenize `text` as plain text: text that looks like a control token (`<|im_start|>`)
    /// stays text. Control tokens enter a prompt only through [`chat_tokens`], from the
    /// template's own text ([`Engine::control_tokens`]).
    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, EngineError>;
    /// The bytes a token renders to in output text (control tokens render as nothing).
    fn piece(&self, token: TokenId) -> &[u8];
    /// End-of-generation token (EOS, EOT, ...)?
    fn is_eog(&self, token: TokenId) -> bool;
    /// The vocabulary's control tokens by their text, looked for in chat templates' text.
    fn control_tokens(&self) -> &ControlTokens {
        &NO_CONTROL_TOKENS
    }
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

/// The texts of a vocabulary's control tokens (`<|im_start|>`), found in a chat template's own
/// text. llama.cpp splits a prompt at these and tokenizes what lies between as plain text; a chat
/// prompt does the same, except that a message's content is never searched, so a user cannot
/// open a turn of their own by typing one.
#[derive(Debug)]
pub struct ControlTokens {
    finder: Option<aho_corasick::AhoCorasick>,
    ids: Vec<TokenId>,
}

/// One piece of template text: plain text, or a control token.
enum Piece<'a> {
    Text(&'a str),
    Control(TokenId),
}

impl ControlTokens {
    /// No control tokens: template text is all plain text.
    pub const NONE: ControlTokens = ControlTokens {
        finder: None,
        ids: Vec::new(),
    };

    /// From the vocabulary's control tokens and their texts (empty texts are left out); where
    /// two texts start at the same place, the longer wins.
    pub fn new(tokens: impl IntoIterator<Item = (String, TokenId)>) -> ControlTokens {
        let (texts, ids): (Vec<String>, Vec<TokenId>) =
            tokens.into_iter().filter(|(t, _)| !t.is_empty()).unzip();
        if texts.is_empty() {
            return ControlTokens::NONE;
        }
        let finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&texts)
            .ok();
        ControlTokens { finder, ids }
    }

    /// Calls `f` with the pieces of `text` in order.
    fn split<'a>(
        &self,
        text: &'a str,
        mut f: impl FnMut(Piece<'a>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut at = 0;
        if let Some(finder) = &self.finder {
            for m in finder.find_iter(text) {
                if m.start() > at {
                    f(Piece::Text(&text[at..m.start()]))?;
                }
                f(Piece::Control(self.ids[m.pattern().as_usize()]))?;
                at = m.end();
            }
        }
        if at < text.len() {
            f(Piece::Text(&text[at..]))?;
        }
        Ok(())
    }
}

static NO_CONTROL_TOKENS: ControlTokens = ControlTokens::NONE;

/// Build the token sequence of a chat prompt as llama.cpp tokenizes the rendered template (split
/// at control tokens, each run of text between them tokenized whole), except that message
/// *contents* can never become control tokens: the template is rendered around sentinels, control
/// tokens are looked for in the template's own text only, and each content joins the text run it
/// sits in (so tokens form across its edges as they would in llama.cpp).
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
    // The run of plain text since the last control token.
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut Vec<TokenId>| -> Result<(), EngineError> {
        if !run.is_empty() {
            out.extend(engine.tokenize(run)?);
            run.clear();
        }
        Ok(())
    };
    let control = engine.control_tokens();
    let template_text = |text: &str, run: &mut String, out: &mut Vec<TokenId>| {
        control.split(text, |piece| match piece {
            Piece::Text(t) => {
                run.push_str(t);
                Ok(())
            }
            Piece::Control(id) => {
                flush(run, out)?;
                out.push(id);
                Ok(())
            }
        })
    };
    let mangled = || TemplateError::Apply("template mangled a message".into());
    let mut rest = rendered.as_str();
    while let Some(open) = rest.find(SENTINEL_OPEN) {
        let (template, after) = rest.split_at(open);
        template_text(template, &mut run, &mut out)?;
        let after = &after[SENTINEL_OPEN.len_utf8()..];
        let close = after.find(SENTINEL_CLOSE).ok_or_else(mangled)?;
        let index: usize = after[..close].parse().map_err(|_| mangled())?;
        run.push_str(&messages.get(index).ok_or_else(mangled)?.content);
        rest = &after[close + SENTINEL_CLOSE.len_utf8()..];
    }
    template_text(rest, &mut run, &mut out)?;
    flush(&mut run, &mut out)?;
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
    out.extend(engine.tokenize(prompt)?);
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
