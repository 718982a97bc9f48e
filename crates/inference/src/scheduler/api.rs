//! What callers of the scheduler see: the [`Scheduler`] handle, requests, streamed events,
//! token accounting and errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::Job;
use super::runner::Runner;
use crate::engine::{ChatMessage, ChatPromptError, Engine, EngineError, ModelInfo, TokenId};
use crate::sampler::{InvalidParams, SamplingParams, TokenLogprob};
use crate::vocab::Vocabulary;

/// What to run on.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A plain completion prompt (no special-token parsing).
    Text(String),
    /// Messages rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// A chat that may offer function tools and carry calls and results: rendered natively
    /// where the template supports tools, else in Agora's fallback format
    /// ([`crate::engine::tool_chat_tokens`]; the provider's and the auditor's prompt).
    ToolChat {
        messages: Vec<ChatMessage>,
        tools: Option<agora_types::Tools>,
    },
    /// Raw token ids (e.g. a verifier replaying a transcript).
    Tokens(Vec<TokenId>),
}

/// What to do with the prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Generate a continuation.
    Generate(SamplingParams),
    /// One prefill over the prompt: per-position log-probability of the next prompt token (and hidden
    /// states when requested). This is the verifier's pass.
    Score,
}

/// One request to the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: Prompt,
    pub task: Task,
    /// Return the final-norm hidden state of every position fed to the model.
    pub capture_hidden: bool,
    /// Return the final-norm hidden state of every position whose logits were sampled: the last
    /// prefilled position, then each generated token fed back. These are the rows a proof of
    /// inference commits to, and they cost nothing extra (no position becomes an output that
    /// was not one already), so prefix reuse stays on. Ignored when `capture_hidden` is set.
    pub capture_sampled: bool,
    /// For [`Task::Score`]: keep the raw logits of the last `score_last_logits` positions fed
    /// (an auditor scoring prompt ++ response asks for one per response token: the rows its
    /// sampler replay needs), in [`Completion::score_logits`]. Each row is the vocabulary wide,
    /// so ask only for the positions needed; 0 keeps none.
    pub score_last_logits: usize,
    /// Reuse the KV cache of a finished request that shares a prompt prefix.
    pub reuse_prefix: bool,
    /// Resume an interrupted generation (gateway failover): tokens that an earlier run of the
    /// *same* request (same prompt, same [`SamplingParams`], seed included) already generated and
    /// delivered, in order. Empty for a fresh request. With [`Task::Score`], tokens scored after
    /// the rendered prompt (an auditor scores a chat prompt followed by a response's tokens;
    /// [`Completion::prompt`] is then the rendered prompt alone).
    ///
    /// The scheduler prefills prompt + continuation and replays each continuation token through
    /// all per-sequence state exactly as if it had just been sampled (penalty history, the
    /// [`TextStream`](crate::text::TextStream) with its held-back partial UTF-8 bytes and stop-sequence prefixes, the JSON
    /// validator, the `max_tokens` budget, which the continuation counts against), without emitting
    /// events for them, then samples at the next absolute position. So for any `k`, running with
    /// the first `k` tokens of a full run yields exactly the full run's remaining tokens, and the
    /// *delivered text* of those `k` tokens — the concatenation of the `text` of their
    /// [`Event::Token`]s, which excludes anything still held back after token `k` and any final
    /// [`Event::Text`] — followed by the resumed run's event texts equals the full run's text.
    ///
    /// [`Completion::tokens`] holds only the new tokens; [`Usage::prompt_tokens`] counts prompt +
    /// continuation (they are prefilled like the prompt) and [`Usage::completion_tokens`] only the
    /// new tokens. A continuation that already reaches a stop condition at its last token (an
    /// end-of-generation token, a stop sequence, a complete JSON object, `max_tokens`) ends the
    /// request at once with that finish reason, no tokens, nothing prefilled (`prompt_tokens` 0) and
    /// the held-back text released as [`Event::Text`], as the full run would have. A continuation
    /// that the full run could not have produced (a token after a stop condition, a token JSON
    /// mode would have refused, an id outside the vocabulary) is [`GenerateError::BadContinuation`].
    pub continuation: Vec<TokenId>,
}

impl Request {
    /// Generate from `prompt` with `params`, prefix reuse on, no hidden states.
    pub fn generate(prompt: Prompt, params: SamplingParams) -> Self {
        Self {
            prompt,
            task: Task::Generate(params),
            capture_hidden: false,
            capture_sampled: false,
            score_last_logits: 0,
            reuse_prefix: true,
            continuation: Vec::new(),
        }
    }
    /// Score (prefill) `tokens`.
    pub fn score(tokens: Vec<TokenId>, capture_hidden: bool) -> Self {
        Self {
            prompt: Prompt::Tokens(tokens),
            task: Task::Score,
            capture_hidden,
            capture_sampled: false,
            score_last_logits: 0,
            reuse_prefix: false,
            continuation: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token, a stop sequence, or a complete JSON object.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    /// The client cancelled or went away.
    Cancelled,
}

/// Token accounting of one request (one definition, shared with the wire's final frame).
pub use agora_types::Usage;

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub id: TokenId,
    /// Text that became complete with this token (valid UTF-8, maybe empty).
    pub text: String,
    pub logprob: Option<f32>,
    pub top: Vec<TokenLogprob>,
    /// The text of each alternative in `top` (its piece, lossily decoded: a piece may be part
    /// of a multi-byte character).
    pub top_text: Vec<String>,
    /// The final-norm hidden state of the position this token was sampled from, when rows are
    /// captured: a provider proves what it delivered from these, so a job cut off midway is
    /// proved as far as it went (the same rows [`Completion::hidden`] holds at the end).
    pub hidden: Option<Vec<f32>>,
}

/// The end of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// The prompt's tokens.
    pub prompt: Vec<TokenId>,
    /// The generated tokens (no end-of-generation token).
    pub tokens: Vec<TokenId>,
    /// For [`Task::Score`]: log-probability of `prompt[i + 1]` after `prompt[..=i]`.
    pub score_logprobs: Vec<f32>,
    /// For [`Task::Score`] with [`Request::score_last_logits`]: the raw logits of those last
    /// positions, one row per position, in order.
    pub score_logits: Vec<Vec<f32>>,
    /// Hidden states when requested: one row per position fed to the model
    /// ([`Request::capture_hidden`]), or one per sampled position ([`Request::capture_sampled`]).
    pub hidden: Option<Vec<Vec<f32>>>,
    /// Seconds from admission to the first sampled token (prefill).
    pub prefill_secs: f64,
    /// Seconds from the first to the last sampled token.
    pub decode_secs: f64,
}

/// A streamed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The request was admitted.
    Started {
        prompt_tokens: u32,
        cached_tokens: u32,
        /// The rendered prompt's token ids (without the continuation): what a provider's
        /// receipt binds, known before the end (so a job cut off midway can bind it too).
        prompt: Vec<TokenId>,
    },
    Token(TokenEvent),
    /// Text released at the end that belongs to no single token (held-back stop-sequence prefix,
    /// trailing bytes).
    Text(String),
    Done(Completion),
    Error(GenerateError),
}

/// A request that failed after it was queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid sampling parameters: {0}")]
    InvalidParams(#[from] InvalidParams),
    #[error(transparent)]
    Prompt(#[from] ChatPromptError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    BadToken { token: TokenId, n_vocab: u32 },
    #[error(
        "context length exceeded: the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}, but one sequence holds {n_ctx} tokens"
    )]
    ContextLength {
        prompt_tokens: u32,
        max_tokens: u32,
        n_ctx: u32,
    },
    #[error("continuation token #{index} cannot be resumed: {why}")]
    BadContinuation { index: usize, why: String },
    #[error("the engine failed: {0}")]
    Engine(#[from] EngineError),
    #[error("the engine stopped")]
    Shutdown,
}

/// A request that could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("overloaded: {queued} requests are already waiting; retry later")]
    Overloaded { queued: usize },
    #[error("the engine stopped")]
    Shutdown,
}

/// Loading a model or starting the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("model file {0} does not exist")]
    Missing(std::path::PathBuf),
    #[error("the backend failed to load the model: {0}")]
    Backend(String),
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error("the engine thread exited before it was ready")]
    Died,
}

/// Scheduler limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Requests that may wait for a slot before submit says Overloaded (at least 1).
    pub queue_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { queue_capacity: 64 }
    }
}

/// The receiving end of one request.
#[derive(Debug)]
pub struct Stream {
    rx: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
}

/// A whole generation, collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub completion: Completion,
}

impl Stream {
    /// The next event; `None` after `Done`/`Error`.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
    /// The next event, blocking the thread (do not call from inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
    /// Ask the scheduler to stop this request; its slot is freed at the next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
    /// Block until the request ends and collect its text and tokens.
    pub fn collect_blocking(mut self) -> Result<Output, GenerateError> {
        let mut text = String::new();
        let mut tokens = Vec::new();
        while let Some(ev) = self.blocking_next() {
            match ev {
                Event::Started { .. } => {}
                Event::Token(t) => {
                    text.push_str(&t.text);
                    tokens.push(t);
                }
                Event::Text(t) => text.push_str(&t),
                Event::Done(completion) => {
                    return Ok(Output {
                        text,
                        tokens,
                        completion,
                    });
                }
                Event::Error(e) => return Err(e),
            }
        }
        Err(GenerateError::Shutdown)
    }
}

/// Handle to a running scheduler. Cheap to share behind an `Arc`; dropping the last handle stops
/// the engine thread once its running requests have finished.
#[derive(Debug)]
pub struct Scheduler {
    jobs: SyncSender<Job>,
    info: ModelInfo,
    vocabulary: Arc<Vocabulary>,
    queue_capacity: usize,
}

/// Given to the closure of [`Scheduler::spawn`]: call [`Serve::run`] with the engine.
pub struct Serve {
    jobs: Receiver<Job>,
    ready: SyncSender<Result<(ModelInfo, Vocabulary), LoadError>>,
}

impl Serve {
    /// Report readiness and serve requests until every handle is dropped.
    pub fn run<E: Engine>(self, engine: E) {
        let _ = self
            .ready
            .send(Ok((engine.info().clone(), Vocabulary::of(&engine))));
        Runner::new(engine, self.jobs).run();
    }
}

impl Scheduler {
    /// Start the engine thread. `build` loads the model on that thread and calls [`Serve::run`];
    /// this returns once the engine is ready, or with the load error.
    pub fn spawn<F>(config: SchedulerConfig, build: F) -> Result<Self, LoadError>
    where
        F: FnOnce(Serve) -> Result<(), LoadError> + Send + 'static,
    {
        if config.queue_capacity == 0 {
            return Err(LoadError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let serve = Serve {
            jobs: jobs_rx,
            ready: ready_tx.clone(),
        };
        std::thread::Builder::new()
            .name("agora-engine".into())
            .spawn(move || {
                if let Err(e) = build(serve) {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| LoadError::Backend(format!("cannot start the engine thread: {e}")))?;
        let (info, vocabulary) = ready_rx.recv().map_err(|_| LoadError::Died)??;
        Ok(Self {
            jobs: jobs_tx,
            info,
            vocabulary: Arc::new(vocabulary),
            queue_capacity: config.queue_capacity,
        })
    }

    /// Facts about the served model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The served model's vocabulary, for applying the generation rules off the engine thread
    /// ([`crate::replay_generation`], [`crate::JsonMask`]).
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// Queue a request. Errors are immediate only for a full queue or a stopped engine; everything
    /// about the request itself is reported on the stream.
    pub fn submit(&self, request: Request) -> Result<Stream, SubmitError> {
        let (tx, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            request,
            events: tx,
            cancel: cancel.clone(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(Stream { rx, cancel }),
            Err(TrySendError::Full(_)) => Err(SubmitError::Overloaded {
                queued: self.queue_capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Shutdown),
        }
    }

    /// Submit and wait for the whole output.
    pub fn generate_blocking(&self, request: Request) -> Result<Output, GenerateError> {
        self.submit(request)
            .map_err(|_| GenerateError::Shutdown)?
            .collect_blocking()
    }
}
