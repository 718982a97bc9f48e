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
use agora_types::{Tool, Tools};

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
    /// Whether the model's template lays out tools, calls and results itself
    /// ([`crate::template::ToolCaps::native`]); if not, chats with tools use the fallback format.
    fn native_tools(&self) -> bool {
        false
    }
    /// Render a chat with `tools` (empty: none), calls and `tool` messages natively, adding the
    /// assistant prefix. Only asked of an engine whose [`Engine::native_tools`] is true.
    fn render_tool_chat(
        &self,
        _messages: &[ChatMessage],
        _tools: &[Tool],
    ) -> Result<String, TemplateError> {
        Err(TemplateError::Apply(
            "the chat template does not render tools".into(),
        ))
    }
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

    /// Whether `text` holds a control token's text.
    fn occur_in(&self, text: &str) -> bool {
        self.finder.as_ref().is_some_and(|f| f.is_match(text))
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
    let masked = masked(messages, &["system", "user", "assistant"])?;
    let rendered = engine.render_chat(&masked)?;
    template_tokens(engine, &rendered, messages)
}

/// The tokens of a chat that may offer `tools` and carry calls and results, as the provider
/// runs it and an auditor rebuilds it. Rendered natively (the template's own tool layout, with
/// `agora_json::tools::native_messages`) when the engine's template supports tools and the
/// native rendering is sound: it renders, it is within `native_limit`, it prints message contents
/// as they are (the check that lets contents stay masked), and no client text it prints outside
/// the contents holds a control token's text. Otherwise Agora's fallback format
/// (`prompt_messages`) through [`chat_tokens`]; a chat without tools or tool turns is exactly
/// [`chat_tokens`]'s.
pub fn tool_chat_tokens<E: Engine + ?Sized>(
    engine: &E,
    messages: &[ChatMessage],
    tools: Option<&Tools>,
) -> Result<Vec<TokenId>, ChatPromptError> {
    use agora_json::tools::{native_messages, prompt_messages};
    if engine.native_tools() && (tools.is_some() || agora_json::tools::has_tool_turns(messages)) {
        let native = native_messages(messages, tools);
        let list = tools.map_or(&[][..], |t| &t.list[..]);
        let limit = agora_json::tools::native_limit(messages, tools);
        if let Some(rendered) = native_rendering(engine, &native, list, limit) {
            return template_tokens(engine, &rendered, &native);
        }
    }
    chat_tokens(engine, &prompt_messages(messages, tools))
}

/// The native rendering with contents masked, or `None` where it is not sound (see
/// [`tool_chat_tokens`]).
fn native_rendering<E: Engine + ?Sized>(
    engine: &E,
    messages: &[ChatMessage],
    tools: &[Tool],
    limit: usize,
) -> Option<String> {
    let control = engine.control_tokens();
    let unsafe_text = |t: &str| t.contains('\0') || control.occur_in(t);
    let client_text = messages
        .iter()
        .flat_map(|m| {
            m.tool_calls
                .iter()
                .flat_map(|c| [&c.id, &c.name, &c.arguments])
                .chain(&m.tool_call_id)
        })
        .chain(
            tools
                .iter()
                .flat_map(|t| [&t.name, &t.description, &t.parameters]),
        );
    if client_text.map(String::as_str).any(unsafe_text) {
        return None;
    }
    let masked = masked(messages, &["system", "user", "assistant", "tool"]).ok()?;
    let rendered = engine.render_tool_chat(&masked, tools).ok()?;
    let real = engine.render_tool_chat(messages, tools).ok()?;
    // A template that escapes, trims or drops a content would have it tokenized other than
    // printed; only a rendering that prints every content as it is may keep them masked.
    (real.len() <= limit && unmask(&rendered, messages).as_deref() == Some(real.as_str()))
        .then_some(rendered)
}

/// `messages` with each content replaced by its sentinel, after checking roles and NULs.
fn masked(messages: &[ChatMessage], roles: &[&str]) -> Result<Vec<ChatMessage>, TemplateError> {
    if messages.is_empty() {
        return Err(TemplateError::NoMessages);
    }
    messages
        .iter()
        .enumerate()
        .map(|(index, m)| {
            if !roles.contains(&m.role.as_str()) {
                return Err(TemplateError::BadRole {
                    index,
                    role: m.role.clone(),
                });
            }
            if m.content.contains('\0') || m.role.contains('\0') {
                return Err(TemplateError::Nul { index });
            }
            // An empty content has nothing to protect, and templates test it (`if
            // message.content`: Qwen's prints a call's content only when there is one), so it
            // stays empty for the template to see.
            if m.content.is_empty() {
                return Ok(m.clone());
            }
            Ok(ChatMessage {
                content: format!("{SENTINEL_OPEN}{index}{SENTINEL_CLOSE}"),
                ..m.clone()
            })
        })
        .collect()
}

/// The masked rendering with each sentinel replaced by its content.
fn unmask(rendered: &str, messages: &[ChatMessage]) -> Option<String> {
    let mut out = String::with_capacity(rendered.len());
    let mut rest = rendered;
    while let Some(open) = rest.find(SENTINEL_OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + SENTINEL_OPEN.len_utf8()..];
        let close = after.find(SENTINEL_CLOSE)?;
        let index: usize = after[..close].parse().ok()?;
        out.push_str(&messages.get(index)?.content);
        rest = &after[close + SENTINEL_CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    Some(out)
}

/// The tokens of a rendering made over masked `messages` (see [`chat_tokens`]).
fn template_tokens<E: Engine + ?Sized>(
    engine: &E,
    rendered: &str,
    messages: &[ChatMessage],
) -> Result<Vec<TokenId>, ChatPromptError> {
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
    let mut rest = rendered;
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
