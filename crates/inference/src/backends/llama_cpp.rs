//! The llama.cpp backend, through the `llama-cpp-2` crate.
//!
//! llama.cpp computes; everything else is ours. We hand it multi-sequence batches formed by the
//! scheduler and read back raw logits (for our sampler) and, when the context was built with
//! `hidden_states`, the final-norm output of each output position (llama.cpp's "embeddings" with
//! pooling NONE: the vector the LM head consumes). Files are validated by [`crate::gguf`] before
//! llama.cpp opens them, because llama.cpp may abort the process on a malformed file.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::engine::{
    BatchToken, ChatMessage, ControlTokens, Engine, EngineError, ModelInfo, TemplateError, TokenId,
};
use crate::gguf;
use crate::scheduler::{LoadError, Scheduler, SchedulerConfig};
use crate::template::ChatTemplate;

/// Settings of one llama.cpp engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// Parallel sequences (scheduler slots).
    pub n_seq: u32,
    /// Context per sequence; `None` = min(4096, trained context).
    pub n_ctx_seq: Option<u32>,
    /// Most tokens per decode call.
    pub n_batch: u32,
    /// CPU threads for decode and prefill.
    pub threads: u32,
    /// Build the context with hidden-state output (needed for proof capture).
    pub hidden_states: bool,
    /// Layers to offload to a GPU backend (0 = CPU only).
    pub gpu_layers: u32,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            n_seq: 4,
            n_ctx_seq: None,
            n_batch: 512,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            hidden_states: false,
            gpu_layers: 0,
        }
    }
}

fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs a hundred lines per model load at INFO; forward them to tracing only
            // when asked (AGORA_LLAMA_LOG=1), otherwise silence them.
            let enabled = std::env::var_os("AGORA_LLAMA_LOG").is_some_and(|v| v != "0");
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(enabled),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

/// Validate and load a GGUF file. `progress` receives the load fraction (0..=1).
pub fn load_model(
    path: &Path,
    gpu_layers: u32,
    progress: Option<Box<dyn FnMut(f32) + Send>>,
) -> Result<LlamaModel, LoadError> {
    if !path.exists() {
        return Err(LoadError::Missing(path.to_path_buf()));
    }
    let info = gguf::inspect(path)?;
    tracing::debug!(target: "agora_inference::llama", path = %path.display(), arch = ?info.architecture(), tensors = info.tensors.len(), "gguf validated");
    let backend = backend()?;
    let mut params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    if let Some(mut f) = progress {
        params = params.with_progress_callback(move |p| {
            f(p);
            true
        });
    }
    LlamaModel::load_from_file(backend, path, &params)
        .map_err(|e| LoadError::Backend(format!("{}: {e}", path.display())))
}

/// A llama.cpp context over a loaded model.
pub struct LlamaEngine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    info: ModelInfo,
    pieces: Vec<Vec<u8>>,
    eog: Vec<bool>,
    /// Whether each index of the last batch was an output.
    outputs: Vec<bool>,
    /// The GGUF's own Jinja template, rendered as llama.cpp's Jinja engine does.
    jinja: Option<ChatTemplate>,
    /// llama.cpp's built-in rendering, for a template the Jinja engine cannot compile.
    template: Option<LlamaChatTemplate>,
    /// The text of the BOS token, dropped from the front of a rendering when the tokenizer adds
    /// BOS itself (as llama.cpp does), so the prompt does not start with two.
    bos_text: String,
    /// The control tokens a chat template's text is split at.
    control: ControlTokens,
}

impl<'m> LlamaEngine<'m> {
    /// Create a context for `model`.
    pub fn new(model: &'m LlamaModel, name: &str, config: &LlamaConfig) -> Result<Self, LoadError> {
        let backend = backend()?;
        let n_ctx_train = model.n_ctx_train();
        let n_ctx_seq = config.n_ctx_seq.unwrap_or(n_ctx_train.min(4096));
        if n_ctx_seq == 0 || n_ctx_seq > n_ctx_train {
            return Err(LoadError::Config(format!(
                "n_ctx_seq {n_ctx_seq} must be in 1..={n_ctx_train} (the model's trained context)"
            )));
        }
        if config.n_seq == 0 || config.n_seq > 64 {
            return Err(LoadError::Config(format!(
                "n_seq {} must be in 1..=64",
                config.n_seq
            )));
        }
        if config.n_batch == 0 || config.threads == 0 {
            return Err(LoadError::Config(
                "n_batch and threads must be at least 1".into(),
            ));
        }
        let total = n_ctx_seq
            .checked_mul(config.n_seq)
            .ok_or_else(|| LoadError::Config("context size overflows".into()))?;
        let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(total))
            .with_n_batch(config.n_batch)
            .with_n_ubatch(config.n_batch)
            .with_n_seq_max(config.n_seq)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(false);
        if config.hidden_states {
            params = params
                .with_embeddings(true)
                .with_pooling_type(LlamaPoolingType::None);
        }
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| LoadError::Backend(format!("cannot create a context: {e}")))?;
        let vocab = model.vocab();
        let n_vocab = u32::try_from(vocab.n_tokens()).unwrap_or(0);
        let mut pieces = Vec::with_capacity(n_vocab as usize);
        let mut eog = Vec::with_capacity(n_vocab as usize);
        let mut control = Vec::new();
        let token_text = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        for t in 0..n_vocab as i32 {
            let tok = LlamaToken::new(t);
            pieces.push(vocab.token_to_piece(tok, false, None));
            eog.push(vocab.is_eog(tok));
            if vocab.is_control(tok) {
                control.push((token_text(tok), t as TokenId));
            }
        }
        let template = model.chat_template(None).ok();
        let bos_text = token_text(vocab.bos());
        let jinja = match template.as_ref().map(LlamaChatTemplate::to_str) {
            Some(Ok(source)) => {
                match ChatTemplate::new(source, &bos_text, &token_text(vocab.eos())) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(target: "agora_inference", model = name, error = %e, "the model's chat template does not compile; using llama.cpp's built-in rendering");
                        None
                    }
                }
            }
            _ => None,
        };
        let architecture = model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "unknown".into());
        let add_bos = vocab.should_add_bos();
        let info = ModelInfo {
            name: name.to_string(),
            architecture,
            n_ctx_train,
            n_ctx_seq,
            n_seq: config.n_seq,
            n_batch: config.n_batch,
            n_vocab,
            n_embd: u32::try_from(model.n_embd()).unwrap_or(0),
            add_bos,
            bos: Some(vocab.bos().0 as u32),
            has_chat_template: template.is_some(),
            hidden_states: config.hidden_states,
            eog_tokens: (0..n_vocab).filter(|&t| eog[t as usize]).collect(),
        };
        Ok(Self {
            model,
            ctx,
            batch: LlamaBatch::new(config.n_batch as usize, config.n_seq as i32),
            info,
            pieces,
            eog,
            outputs: Vec::new(),
            jinja,
            template,
            bos_text,
            control: ControlTokens::new(control),
        })
    }

    /// The underlying model.
    pub fn model(&self) -> &LlamaModel {
        self.model
    }

    /// Drops the template's BOS text when the tokenizer adds BOS itself, as llama.cpp does.
    fn strip_bos(&self, rendered: String) -> String {
        match rendered.strip_prefix(&self.bos_text) {
            Some(rest) if self.info.add_bos && !self.bos_text.is_empty() => rest.to_owned(),
            _ => rendered,
        }
    }
}

impl Engine for LlamaEngine<'_> {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, EngineError> {
        Ok(self
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect())
    }

    fn piece(&self, token: TokenId) -> &[u8] {
        self.pieces.get(token as usize).map_or(&[], Vec::as_slice)
    }

    fn is_eog(&self, token: TokenId) -> bool {
        self.eog.get(token as usize).copied().unwrap_or(false)
    }

    fn control_tokens(&self) -> &ControlTokens {
        &self.control
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        if let Some(jinja) = &self.jinja {
            let rendered = jinja
                .render(messages, true)
                .map_err(|e| TemplateError::Apply(e.to_string()))?;
            return Ok(self.strip_bos(rendered));
        }
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| TemplateError::NoTemplate {
                model: self.info.name.clone(),
            })?;
        let msgs = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TemplateError::Apply(e.to_string()))?;
        self.model
            .apply_chat_template(template, &msgs, true)
            .map_err(|e| TemplateError::Apply(e.to_string()))
    }

    fn native_tools(&self) -> bool {
        self.jinja.as_ref().is_some_and(|j| j.tool_caps().native())
    }

    fn render_tool_chat(
        &self,
        messages: &[ChatMessage],
        tools: &[agora_types::Tool],
    ) -> Result<String, TemplateError> {
        let jinja = self
            .jinja
            .as_ref()
            .ok_or_else(|| TemplateError::Apply("no Jinja chat template".into()))?;
        let rendered = jinja
            .render_tools(messages, tools, true)
            .map_err(|e| TemplateError::Apply(e.to_string()))?;
        Ok(self.strip_bos(rendered))
    }

    fn decode(&mut self, batch: &[BatchToken]) -> Result<(), EngineError> {
        if batch.len() > self.info.n_batch as usize {
            return Err(EngineError::BatchTooLarge {
                len: batch.len(),
                max: self.info.n_batch as usize,
            });
        }
        self.batch.clear();
        self.outputs.clear();
        for bt in batch {
            self.batch
                .add(
                    LlamaToken::new(bt.token as i32),
                    bt.pos as i32,
                    &[bt.seq as i32],
                    bt.output,
                )
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.outputs.push(bt.output);
        }
        self.ctx.decode(&mut self.batch).map_err(|e| {
            self.outputs.clear();
            EngineError::Decode(e.to_string())
        })
    }

    fn logits(&self, i: usize) -> Result<&[f32], EngineError> {
        if !self.outputs.get(i).copied().unwrap_or(false) {
            return Err(EngineError::NoOutput(i));
        }
        Ok(self.ctx.get_logits_ith(i as i32))
    }

    fn hidden(&self, i: usize) -> Result<&[f32], EngineError> {
        if !self.info.hidden_states {
            return Err(EngineError::NoHiddenStates);
        }
        if !self.outputs.get(i).copied().unwrap_or(false) {
            return Err(EngineError::NoOutput(i));
        }
        self.ctx
            .embeddings_ith(i as i32)
            .map_err(|_| EngineError::NoOutput(i))
    }

    fn truncate_seq(&mut self, seq: u32, from: u32) {
        if let Err(e) = self.ctx.clear_kv_cache_seq(Some(seq), Some(from), None) {
            tracing::warn!(target: "agora_inference::llama", seq, from, error = %e, "kv truncate failed");
        }
    }
}

/// Load `path` and serve it with the scheduler on a dedicated thread.
pub fn serve(
    path: &Path,
    name: &str,
    config: LlamaConfig,
    scheduler: SchedulerConfig,
) -> Result<Scheduler, LoadError> {
    serve_with_progress(path, name, config, scheduler, None)
}

/// [`serve`], reporting the load fraction (0..=1) to `progress` from the engine thread.
pub fn serve_with_progress(
    path: &Path,
    name: &str,
    config: LlamaConfig,
    scheduler: SchedulerConfig,
    progress: Option<Box<dyn FnMut(f32) + Send>>,
) -> Result<Scheduler, LoadError> {
    // Validate on the caller's thread so a bad file fails fast with a precise error.
    if !path.exists() {
        return Err(LoadError::Missing(path.to_path_buf()));
    }
    gguf::inspect(path)?;
    let path = path.to_path_buf();
    let name = name.to_string();
    Scheduler::spawn(scheduler, move |serve| {
        let model = load_model(&path, config.gpu_layers, progress)?;
        let engine = LlamaEngine::new(&model, &name, &config)?;
        serve.run(engine);
        Ok(())
    })
}

/// Figures of llama.cpp driven directly through its API, without our layers (benchmark peer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBench {
    pub prompt_tokens: usize,
    pub prompt_tok_s: f64,
    pub gen_tokens: usize,
    pub gen_tok_s: f64,
}

/// One prefill of `prompt` in a single batch, then `n_gen` greedy steps with a plain argmax, on a
/// fresh context: the peer our engine path is compared with in `agora bench inference`.
pub fn raw_bench(
    model: &LlamaModel,
    prompt: &[TokenId],
    n_gen: usize,
    threads: u32,
) -> Result<RawBench, LoadError> {
    let backend = backend()?;
    let n_ctx = u32::try_from(prompt.len() + n_gen + 8)
        .map_err(|_| LoadError::Config("benchmark too long".into()))?;
    let n_batch = u32::try_from(prompt.len().max(1))
        .map_err(|_| LoadError::Config("prompt too long".into()))?;
    let threads = i32::try_from(threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(1)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| LoadError::Backend(e.to_string()))?;
    let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
    let err = |e: &dyn std::fmt::Display| LoadError::Backend(e.to_string());
    let t0 = std::time::Instant::now();
    for (i, &t) in prompt.iter().enumerate() {
        batch
            .add(
                LlamaToken::new(t as i32),
                i as i32,
                &[0],
                i + 1 == prompt.len(),
            )
            .map_err(|e| err(&e))?;
    }
    ctx.decode(&mut batch).map_err(|e| err(&e))?;
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 { (i, v) } else { b }
            })
            .0 as i32
    };
    let mut next = argmax(ctx.get_logits_ith(batch.n_tokens() - 1));
    let prompt_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    for i in 0..n_gen {
        batch.clear();
        batch
            .add(LlamaToken::new(next), (prompt.len() + i) as i32, &[0], true)
            .map_err(|e| err(&e))?;
        ctx.decode(&mut batch).map_err(|e| err(&e))?;
        next = argmax(ctx.get_logits_ith(0));
    }
    let gen_secs = t1.elapsed().as_secs_f64();
    Ok(RawBench {
        prompt_tokens: prompt.len(),
        prompt_tok_s: prompt.len() as f64 / prompt_secs,
        gen_tokens: n_gen,
        gen_tok_s: n_gen as f64 / gen_secs,
    })
}

/// llama.cpp's own multi-sequence decode throughput, the peer of the N-stream figure of `agora
/// bench inference`: one context with a sequence per prompt (separate KV streams, as in
/// [`LlamaEngine`]), all prompts prefilled in one batch, then `n_gen` steps that each decode one
/// token of every sequence in one `llama_decode` and take the argmax. Returns generated tokens per
/// second over the decode steps only.
pub fn raw_batched_bench(
    model: &LlamaModel,
    prompts: &[Vec<TokenId>],
    n_gen: usize,
    threads: u32,
) -> Result<f64, LoadError> {
    let backend = backend()?;
    let n_seq = prompts.len().max(1);
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let total: usize = prompts.iter().map(Vec::len).sum();
    let cfg =
        |v: usize| u32::try_from(v).map_err(|_| LoadError::Config("benchmark too long".into()));
    let n_ctx = cfg(n_seq * (longest + n_gen + 8))?;
    let n_batch = cfg(total.max(n_seq))?;
    let threads = i32::try_from(threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(cfg(n_seq)?)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(false);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| LoadError::Backend(e.to_string()))?;
    let err = |e: &dyn std::fmt::Display| LoadError::Backend(e.to_string());
    let mut batch = LlamaBatch::new(total.max(n_seq), n_seq as i32);
    for (s, p) in prompts.iter().enumerate() {
        for (i, &t) in p.iter().enumerate() {
            batch
                .add(
                    LlamaToken::new(t as i32),
                    i as i32,
                    &[s as i32],
                    i + 1 == p.len(),
                )
                .map_err(|e| err(&e))?;
        }
    }
    ctx.decode(&mut batch).map_err(|e| err(&e))?;
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 { (i, v) } else { b }
            })
            .0 as i32
    };
    let mut at = 0i32;
    let mut next: Vec<i32> = Vec::with_capacity(n_seq);
    for p in prompts {
        at += p.len() as i32;
        next.push(argmax(ctx.get_logits_ith(at - 1)));
    }
    let t0 = std::time::Instant::now();
    for step in 0..n_gen {
        batch.clear();
        for (s, p) in prompts.iter().enumerate() {
            batch
                .add(
                    LlamaToken::new(next[s]),
                    (p.len() + step) as i32,
                    &[s as i32],
                    true,
                )
                .map_err(|e| err(&e))?;
        }
        ctx.decode(&mut batch).map_err(|e| err(&e))?;
        for (s, n) in next.iter_mut().enumerate() {
            *n = argmax(ctx.get_logits_ith(s as i32));
        }
    }
    Ok((n_gen * prompts.len()) as f64 / t0.elapsed().as_secs_f64())
}
