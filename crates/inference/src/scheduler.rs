//! Continuous batching over one [`Engine`], with streaming, cancellation and prefix reuse.
//!
//! One thread owns the engine. Requests arrive through a bounded queue; a full queue is an
//! immediate [`SubmitError::Overloaded`]. Each admitted request gets a *slot* (a KV-cache
//! sequence). Every step builds one multi-sequence batch: one token for each decoding sequence,
//! then prompt chunks of prefilling sequences up to the batch limit. New requests join between
//! steps, so a long prompt never stalls the others for more than one chunk.
//!
//! ```text
//!  submit() --try_send--> [bounded queue] --admit when a slot is free--> slots[0..n_seq]
//!                                                                         |  prefix reuse:
//!  Stream <--Token/Done events-- sample (our Sampler) <-- logits <-- decode(batch)  keep KV of the
//!                                                                            longest common prefix
//! ```
//!
//! A finished slot keeps its tokens and KV cache; the next request whose prompt shares a prefix
//! with it (the next turn of a conversation) only prefills the new suffix. Dropping a [`Stream`]
//! or calling [`Stream::cancel`] ends the request at the next step and frees its slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::engine::{
    BatchToken, ChatMessage, ChatPromptError, Engine, EngineError, ModelInfo, TokenId, chat_tokens,
    completion_tokens,
};
use crate::json::Constraint;
use crate::sampler::{InvalidParams, Sampler, SamplingParams, TokenLogprob};
use crate::text::TextStream;

/// What to run on.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A plain completion prompt (no special-token parsing).
    Text(String),
    /// Messages rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
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
    /// Reuse the KV cache of a finished request that shares a prompt prefix.
    pub reuse_prefix: bool,
    /// Resume an interrupted generation (gateway failover): tokens that an earlier run of the
    /// *same* request (same prompt, same [`SamplingParams`], seed included) already generated and
    /// delivered, in order. Empty for a fresh request; only allowed with [`Task::Generate`].
    ///
    /// The scheduler prefills prompt + continuation and replays each continuation token through
    /// all per-sequence state exactly as if it had just been sampled (penalty history, the
    /// [`TextStream`] with its held-back partial UTF-8 bytes and stop-sequence prefixes, the JSON
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

/// Token accounting of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens whose KV cache was reused rather than computed.
    pub cached_tokens: u32,
}

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
    /// Hidden states, one row per position fed to the model, when requested.
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

struct Job {
    request: Request,
    events: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
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
    queue_capacity: usize,
}

/// Given to the closure of [`Scheduler::spawn`]: call [`Serve::run`] with the engine.
pub struct Serve {
    jobs: Receiver<Job>,
    ready: SyncSender<Result<ModelInfo, LoadError>>,
}

impl Serve {
    /// Report readiness and serve requests until every handle is dropped.
    pub fn run<E: Engine>(self, engine: E) {
        let _ = self.ready.send(Ok(engine.info().clone()));
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
        let info = ready_rx.recv().map_err(|_| LoadError::Died)??;
        Ok(Self {
            jobs: jobs_tx,
            info,
            queue_capacity: config.queue_capacity,
        })
    }

    /// Facts about the served model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
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

enum Kind {
    Generate(Box<Gen>),
    Score { logprobs: Vec<f32> },
}

/// Per-sequence post-processing state of a generation.
struct Gen {
    sampler: Sampler,
    text: TextStream,
    json: Option<Constraint>,
    max_tokens: u32,
}

/// What taking one chosen token did.
enum Advance {
    /// An end-of-generation token (not ignored): generation stops, nothing is appended.
    Eog,
    /// The token was appended; `text` became complete with it; `done` when generation must end.
    Token {
        text: String,
        done: Option<FinishReason>,
    },
}

impl Gen {
    /// Take `token` as the next generated token of `all` (prompt ++ generated, `n_prompt` of them
    /// prompt). Sampling and continuation replay both go through here, so a replayed token leaves
    /// exactly the state a sampled one would have.
    fn advance<E: Engine>(
        &mut self,
        engine: &E,
        all: &mut Vec<TokenId>,
        n_prompt: usize,
        token: TokenId,
    ) -> Advance {
        if engine.is_eog(token) && !self.sampler.params().ignore_eos {
            return Advance::Eog;
        }
        self.sampler.accept(token);
        all.push(token);
        let piece = engine.piece(token);
        let mut done = None;
        if let Some(j) = &mut self.json {
            j.feed_all(piece);
            if j.is_complete() {
                done = Some(FinishReason::Stop);
            }
        }
        let chunk = self.text.push(piece);
        if chunk.stopped {
            done = Some(FinishReason::Stop);
        }
        let generated = (all.len() - n_prompt) as u32;
        if done.is_none()
            && (generated >= self.max_tokens || all.len() >= engine.info().n_ctx_seq as usize)
        {
            done = Some(FinishReason::Length);
        }
        Advance::Token {
            text: chunk.text,
            done,
        }
    }

    /// Replay `continuation` as if each token had been sampled, appending to `all`. `Some(reason)`
    /// when its last token ends the generation.
    fn replay<E: Engine>(
        &mut self,
        engine: &E,
        all: &mut Vec<TokenId>,
        continuation: &[TokenId],
    ) -> Result<Option<FinishReason>, GenerateError> {
        let n_prompt = all.len();
        for (index, &token) in continuation.iter().enumerate() {
            let bad = |index: usize, why: &str| GenerateError::BadContinuation {
                index,
                why: why.into(),
            };
            if let Some(j) = &self.json {
                let piece = engine.piece(token);
                let allowed = if engine.is_eog(token) {
                    j.can_end()
                } else {
                    !piece.is_empty() && j.accepts(piece)
                };
                if !allowed {
                    return Err(bad(index, "JSON mode would not have produced it"));
                }
            }
            let done = match self.advance(engine, all, n_prompt, token) {
                Advance::Eog => Some(FinishReason::Stop),
                Advance::Token { done, .. } => done,
            };
            if let Some(reason) = done {
                if index + 1 < continuation.len() {
                    return Err(bad(
                        index + 1,
                        "the generation had already ended at the token before it",
                    ));
                }
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }
}

struct Active {
    events: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
    /// prompt ++ continuation ++ generated
    all: Vec<TokenId>,
    n_prompt: usize,
    /// Continuation tokens (replayed, not emitted) after the prompt.
    n_cont: usize,
    /// Tokens of `all` whose KV is in the cache.
    n_fed: usize,
    cached: usize,
    kind: Kind,
    hidden: Option<Vec<Vec<f32>>>,
    admitted: Instant,
    first_token: Option<Instant>,
}

struct Slot {
    seq: u32,
    /// Tokens whose KV is in the cache for this sequence (kept after a request ends).
    cached: Vec<TokenId>,
    active: Option<Active>,
    last_used: u64,
}

struct Runner<E> {
    engine: E,
    jobs: Receiver<Job>,
    slots: Vec<Slot>,
    clock: u64,
    jobs_open: bool,
}

fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<E: Engine> Runner<E> {
    fn new(engine: E, jobs: Receiver<Job>) -> Self {
        let n = engine.info().n_seq.max(1);
        let slots = (0..n)
            .map(|seq| Slot {
                seq,
                cached: Vec::new(),
                active: None,
                last_used: 0,
            })
            .collect();
        Self {
            engine,
            jobs,
            slots,
            clock: 0,
            jobs_open: true,
        }
    }

    fn run(mut self) {
        loop {
            self.admit();
            let busy = self.slots.iter().any(|s| s.active.is_some());
            if !busy {
                if !self.jobs_open {
                    return;
                }
                match self.jobs.recv() {
                    Ok(job) => self.start(job),
                    Err(_) => return,
                }
                continue;
            }
            self.step();
        }
    }

    fn admit(&mut self) {
        while self.jobs_open && self.slots.iter().any(|s| s.active.is_none()) {
            match self.jobs.try_recv() {
                Ok(job) => self.start(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.jobs_open = false,
            }
        }
    }

    fn prepare(&self, request: &Request) -> Result<Vec<TokenId>, GenerateError> {
        let info = self.engine.info();
        let tokens = match &request.prompt {
            Prompt::Text(t) => completion_tokens(&self.engine, t).map_err(GenerateError::Engine)?,
            Prompt::Chat(m) => chat_tokens(&self.engine, m)?,
            Prompt::Tokens(t) => {
                if let Some(&token) = t.iter().find(|&&t| t >= info.n_vocab) {
                    return Err(GenerateError::BadToken {
                        token,
                        n_vocab: info.n_vocab,
                    });
                }
                t.clone()
            }
        };
        if tokens.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let max_tokens = match &request.task {
            Task::Generate(p) => {
                p.validate(info.n_vocab as usize)?;
                p.max_tokens
            }
            Task::Score => 0,
        };
        let cont = &request.continuation;
        if !cont.is_empty() {
            if matches!(request.task, Task::Score) {
                return Err(GenerateError::BadContinuation {
                    index: 0,
                    why: "a scoring request has nothing to resume".into(),
                });
            }
            if cont.len() > max_tokens as usize {
                return Err(GenerateError::BadContinuation {
                    index: max_tokens as usize,
                    why: format!("max_tokens is {max_tokens}"),
                });
            }
            if let Some(index) = cont.iter().position(|&t| t >= info.n_vocab) {
                return Err(GenerateError::BadContinuation {
                    index,
                    why: format!("it is outside the vocabulary of {}", info.n_vocab),
                });
            }
        }
        if tokens.len() as u64 + u64::from(max_tokens) > u64::from(info.n_ctx_seq) {
            return Err(GenerateError::ContextLength {
                prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                max_tokens,
                n_ctx: info.n_ctx_seq,
            });
        }
        if request.capture_hidden && !info.hidden_states {
            return Err(GenerateError::Engine(EngineError::NoHiddenStates));
        }
        Ok(tokens)
    }

    fn start(&mut self, mut job: Job) {
        let prompt = match self.prepare(&job.request) {
            Ok(p) => p,
            Err(e) => {
                let _ = job.events.send(Event::Error(e));
                return;
            }
        };
        let n_prompt = prompt.len();
        let mut all = prompt;
        let continuation = std::mem::take(&mut job.request.continuation);
        let kind = match &job.request.task {
            Task::Generate(params) => {
                let json = match Constraint::new(params.json, params.json_schema.as_deref()) {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = job.events.send(Event::Error(InvalidParams::from(e).into()));
                        return;
                    }
                };
                let mut g = Gen {
                    text: TextStream::new(params.stop.clone()),
                    json,
                    max_tokens: params.max_tokens,
                    sampler: Sampler::new(params.clone(), &all),
                };
                match g.replay(&self.engine, &mut all, &continuation) {
                    Err(e) => {
                        let _ = job.events.send(Event::Error(e));
                        return;
                    }
                    Ok(Some(reason)) => {
                        // The earlier run had already ended: nothing to compute.
                        let _ = job.events.send(Event::Started {
                            prompt_tokens: 0,
                            cached_tokens: 0,
                        });
                        let tail = g.text.finish();
                        if !tail.is_empty() {
                            let _ = job.events.send(Event::Text(tail));
                        }
                        let _ = job.events.send(Event::Done(Completion {
                            finish_reason: reason,
                            usage: Usage::default(),
                            prompt: all[..n_prompt].to_vec(),
                            tokens: Vec::new(),
                            score_logprobs: Vec::new(),
                            hidden: job.request.capture_hidden.then(Vec::new),
                            prefill_secs: 0.0,
                            decode_secs: 0.0,
                        }));
                        return;
                    }
                    Ok(None) => Kind::Generate(Box::new(g)),
                }
            }
            Task::Score => Kind::Score {
                logprobs: Vec::with_capacity(all.len()),
            },
        };
        let reuse = job.request.reuse_prefix
            && !job.request.capture_hidden
            && matches!(job.request.task, Task::Generate(_));
        // Pick the free slot with the longest reusable prefix, then the least recently used.
        let Some(idx) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| {
                let lcp = if reuse {
                    common_prefix(&s.cached, &all)
                } else {
                    0
                };
                (lcp, std::cmp::Reverse(s.last_used))
            })
            .map(|(i, _)| i)
        else {
            let _ = job.events.send(Event::Error(GenerateError::Shutdown));
            return;
        };
        self.clock += 1;
        let slot = &mut self.slots[idx];
        let mut keep = if reuse {
            common_prefix(&slot.cached, &all)
        } else {
            0
        };
        if keep == all.len() {
            keep -= 1; // the last prompt token must be fed to get its logits
        }
        self.engine.truncate_seq(slot.seq, keep as u32);
        slot.cached.truncate(keep);
        slot.last_used = self.clock;
        let _ = job.events.send(Event::Started {
            prompt_tokens: all.len() as u32,
            cached_tokens: keep as u32,
        });
        tracing::debug!(target: "agora_inference::scheduler", seq = slot.seq, prompt = n_prompt, continuation = continuation.len(), cached = keep, "admitted");
        slot.active = Some(Active {
            events: job.events,
            cancel: job.cancel,
            n_prompt,
            n_cont: continuation.len(),
            all,
            n_fed: keep,
            cached: keep,
            kind,
            hidden: job.request.capture_hidden.then(Vec::new),
            admitted: Instant::now(),
            first_token: None,
        });
    }

    fn finish(&mut self, idx: usize, reason: FinishReason) {
        let slot = &mut self.slots[idx];
        let Some(mut a) = slot.active.take() else {
            return;
        };
        slot.cached = a.all[..a.n_fed].to_vec();
        let (tokens, score_logprobs) = match &mut a.kind {
            Kind::Generate(g) => {
                let tail = g.text.finish();
                if !tail.is_empty() && reason != FinishReason::Cancelled {
                    let _ = a.events.send(Event::Text(tail));
                }
                (a.all[a.n_prompt + a.n_cont..].to_vec(), Vec::new())
            }
            Kind::Score { logprobs } => (Vec::new(), std::mem::take(logprobs)),
        };
        let now = Instant::now();
        let first = a.first_token.unwrap_or(now);
        let completion = Completion {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: (a.n_prompt + a.n_cont) as u32,
                completion_tokens: tokens.len() as u32,
                cached_tokens: a.cached as u32,
            },
            prompt: a.all[..a.n_prompt].to_vec(),
            tokens,
            score_logprobs,
            hidden: a.hidden.take(),
            prefill_secs: (first - a.admitted).as_secs_f64(),
            decode_secs: (now - first).as_secs_f64(),
        };
        let _ = a.events.send(Event::Done(completion));
    }

    fn fail(&mut self, idx: usize, err: GenerateError) {
        let slot = &mut self.slots[idx];
        if let Some(a) = slot.active.take() {
            self.engine.truncate_seq(slot.seq, 0);
            slot.cached.clear();
            let _ = a.events.send(Event::Error(err));
        }
    }

    fn step(&mut self) {
        // Drop cancelled requests first: their slots become free for the queue.
        for i in 0..self.slots.len() {
            if let Some(a) = &self.slots[i].active
                && (a.cancel.load(Ordering::Relaxed) || a.events.is_closed())
            {
                tracing::debug!(target: "agora_inference::scheduler", seq = self.slots[i].seq, "cancelled");
                self.finish(i, FinishReason::Cancelled);
            }
        }
        let max = self.engine.info().n_batch as usize;
        let mut batch: Vec<BatchToken> = Vec::new();
        // (slot index, batch index of its first token, count)
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_some())
            .collect();
        // Decoding sequences (one pending token) first, then prefills.
        order.sort_by_key(|&i| {
            let a = self.slots[i]
                .active
                .as_ref()
                .map_or(0, |a| a.all.len() - a.n_fed);
            (a > 1, i)
        });
        for i in order {
            let room = max - batch.len();
            if room == 0 {
                break;
            }
            let slot = &self.slots[i];
            let Some(a) = &slot.active else { continue };
            let pending = a.all.len() - a.n_fed;
            let n = pending.min(room);
            let all_outputs = a.hidden.is_some() || matches!(a.kind, Kind::Score { .. });
            let start = batch.len();
            for k in 0..n {
                let p = a.n_fed + k;
                batch.push(BatchToken {
                    token: a.all[p],
                    pos: p as u32,
                    seq: slot.seq,
                    output: all_outputs || p + 1 == a.all.len(),
                });
            }
            spans.push((i, start, n));
        }
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.engine.decode(&batch) {
            tracing::warn!(target: "agora_inference::scheduler", error = %e, "decode failed");
            for (i, _, _) in spans {
                self.fail(i, GenerateError::Engine(e.clone()));
            }
            return;
        }
        for (i, start, n) in spans {
            if let Err(e) = self.after_decode(i, &batch, start, n) {
                self.fail(i, e);
            }
        }
    }

    fn after_decode(
        &mut self,
        i: usize,
        batch: &[BatchToken],
        start: usize,
        n: usize,
    ) -> Result<(), GenerateError> {
        let engine = &self.engine;
        let slot = &mut self.slots[i];
        let Some(a) = slot.active.as_mut() else {
            return Ok(());
        };
        for (k, bt) in batch.iter().enumerate().skip(start).take(n) {
            if !bt.output {
                continue;
            }
            if let Some(h) = &mut a.hidden {
                h.push(engine.hidden(k)?.to_vec());
            }
            if let Kind::Score { logprobs } = &mut a.kind {
                let p = bt.pos as usize;
                if p + 1 < a.all.len() {
                    let (lp, _) = crate::sampler::logprobs(engine.logits(k)?, a.all[p + 1], 0);
                    logprobs.push(lp);
                }
            }
        }
        a.n_fed += n;
        if a.n_fed < a.all.len() {
            return Ok(()); // prompt chunk; more to prefill
        }
        let last = start + n - 1;
        let position = a.all.len() as u64;
        let (reason, event) = match &mut a.kind {
            Kind::Score { .. } => (Some(FinishReason::Stop), None),
            Kind::Generate(g) => {
                let logits = engine.logits(last)?;
                let sampled = match &g.json {
                    None => g.sampler.sample(logits, position, None),
                    Some(j) => {
                        let mut ok = |t: TokenId| {
                            if engine.is_eog(t) {
                                return j.can_end();
                            }
                            let piece = engine.piece(t);
                            !piece.is_empty() && j.accepts(piece)
                        };
                        g.sampler.sample(logits, position, Some(&mut ok))
                    }
                };
                if a.first_token.is_none() {
                    a.first_token = Some(Instant::now());
                }
                match sampled {
                    None => (Some(FinishReason::Stop), None),
                    Some(s) => match g.advance(engine, &mut a.all, a.n_prompt, s.token) {
                        Advance::Eog => (Some(FinishReason::Stop), None),
                        Advance::Token { text, done } => {
                            let top_text = s
                                .top
                                .iter()
                                .map(|a| {
                                    String::from_utf8_lossy(engine.piece(a.token)).into_owned()
                                })
                                .collect();
                            let ev = Event::Token(TokenEvent {
                                id: s.token,
                                text,
                                logprob: s.logprob,
                                top: s.top,
                                top_text,
                            });
                            (done, Some(ev))
                        }
                    },
                }
            }
        };
        if let Some(ev) = event
            && a.events.send(ev).is_err()
        {
            self.finish(i, FinishReason::Cancelled);
            return Ok(());
        }
        if let Some(r) = reason {
            self.finish(i, r);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::TemplateError;

    /// A deterministic fake model: the logits favour `(last token * 7 + pos) % vocab`; token 0 is
    /// end-of-generation. Pieces are "t<id> ". It checks that the scheduler respects KV positions.
    pub(crate) struct Fake {
        info: ModelInfo,
        kv: Vec<Vec<TokenId>>,
        out: Vec<Option<(Vec<f32>, Vec<f32>)>>,
        pieces: Vec<Vec<u8>>,
        pub(crate) decodes: Arc<std::sync::atomic::AtomicUsize>,
        delay: std::time::Duration,
    }

    impl Fake {
        pub(crate) fn new(n_seq: u32, n_ctx_seq: u32, delay_ms: u64) -> Self {
            let n_vocab = 50;
            Self {
                info: ModelInfo {
                    name: "fake".into(),
                    architecture: "fake".into(),
                    n_ctx_train: n_ctx_seq,
                    n_ctx_seq,
                    n_seq,
                    n_batch: 16,
                    n_vocab,
                    n_embd: 4,
                    add_bos: false,
                    bos: None,
                    has_chat_template: true,
                    hidden_states: true,
                },
                kv: vec![Vec::new(); n_seq as usize],
                out: Vec::new(),
                pieces: (0..n_vocab)
                    .map(|i| format!("t{i} ").into_bytes())
                    .collect(),
                decodes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                delay: std::time::Duration::from_millis(delay_ms),
            }
        }
    }

    impl Engine for Fake {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn tokenize(&self, text: &str, _parse_special: bool) -> Result<Vec<TokenId>, EngineError> {
            Ok(text.bytes().map(|b| 1 + u32::from(b) % 49).collect())
        }
        fn piece(&self, token: TokenId) -> &[u8] {
            &self.pieces[token as usize]
        }
        fn is_eog(&self, token: TokenId) -> bool {
            token == 0
        }
        fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
            Ok(messages
                .iter()
                .map(|m| format!("<{}>{}", m.role, m.content))
                .collect())
        }
        fn decode(&mut self, batch: &[BatchToken]) -> Result<(), EngineError> {
            if batch.len() > self.info.n_batch as usize {
                return Err(EngineError::BatchTooLarge {
                    len: batch.len(),
                    max: self.info.n_batch as usize,
                });
            }
            std::thread::sleep(self.delay);
            self.decodes.fetch_add(1, Ordering::Relaxed);
            self.out.clear();
            for bt in batch {
                let kv = &mut self.kv[bt.seq as usize];
                if kv.len() != bt.pos as usize {
                    return Err(EngineError::Decode(format!(
                        "seq {} position {} but cache holds {}",
                        bt.seq,
                        bt.pos,
                        kv.len()
                    )));
                }
                kv.push(bt.token);
                if bt.output {
                    let n = self.info.n_vocab as usize;
                    let fav = ((bt.token as usize) * 7 + bt.pos as usize) % (n - 1) + 1;
                    let logits = (0..n).map(|i| if i == fav { 10.0 } else { 0.0 }).collect();
                    let hidden = vec![bt.pos as f32, bt.token as f32, 0.0, 1.0];
                    self.out.push(Some((logits, hidden)));
                } else {
                    self.out.push(None);
                }
            }
            Ok(())
        }
        fn logits(&self, i: usize) -> Result<&[f32], EngineError> {
            self.out
                .get(i)
                .and_then(|o| o.as_ref())
                .map(|o| o.0.as_slice())
                .ok_or(EngineError::NoOutput(i))
        }
        fn hidden(&self, i: usize) -> Result<&[f32], EngineError> {
            self.out
                .get(i)
                .and_then(|o| o.as_ref())
                .map(|o| o.1.as_slice())
                .ok_or(EngineError::NoOutput(i))
        }
        fn truncate_seq(&mut self, seq: u32, from: u32) {
            self.kv[seq as usize].truncate(from as usize);
        }
    }

    fn spawn(n_seq: u32, queue: usize, delay_ms: u64) -> Scheduler {
        Scheduler::spawn(
            SchedulerConfig {
                queue_capacity: queue,
            },
            move |serve| {
                serve.run(Fake::new(n_seq, 64, delay_ms));
                Ok(())
            },
        )
        .unwrap()
    }

    fn req(prompt: &str, max: u32) -> Request {
        Request::generate(Prompt::Text(prompt.into()), SamplingParams::greedy(max))
    }

    #[test]
    fn generates_deterministically_and_streams_tokens() {
        let s = spawn(2, 4, 0);
        let a = s.generate_blocking(req("hello", 5)).unwrap();
        let b = s.generate_blocking(req("hello", 5)).unwrap();
        assert_eq!(a.completion.tokens.len(), 5);
        assert_eq!(a.completion.tokens, b.completion.tokens);
        assert_eq!(a.completion.finish_reason, FinishReason::Length);
        let text: String = a
            .completion
            .tokens
            .iter()
            .map(|t| format!("t{t} "))
            .collect();
        assert_eq!(a.text, text);
    }

    #[test]
    fn batching_does_not_change_results() {
        let s = spawn(4, 8, 0);
        let solo: Vec<_> = ["a", "bb", "ccc", "dddd"]
            .iter()
            .map(|p| s.generate_blocking(req(p, 6)).unwrap().completion.tokens)
            .collect();
        let streams: Vec<_> = ["a", "bb", "ccc", "dddd"]
            .iter()
            .map(|p| {
                let mut r = req(p, 6);
                r.reuse_prefix = false;
                s.submit(r).unwrap()
            })
            .collect();
        let together: Vec<_> = streams
            .into_iter()
            .map(|st| st.collect_blocking().unwrap().completion.tokens)
            .collect();
        assert_eq!(solo, together);
    }

    #[test]
    fn every_step_is_one_decode_over_all_active_sequences() {
        // 2 ms a step: the eight submissions land while the first request's first step runs.
        let fake = Fake::new(8, 64, 2);
        let decodes = fake.decodes.clone();
        let s = Scheduler::spawn(SchedulerConfig::default(), move |serve| {
            serve.run(fake);
            Ok(())
        })
        .unwrap();
        let streams: Vec<_> = (0..8)
            .map(|i| s.submit(req(&"p".repeat(1 + i), 20)).unwrap())
            .collect();
        for st in streams {
            assert_eq!(st.collect_blocking().unwrap().completion.tokens.len(), 20);
        }
        // 8 x 20 tokens; one batch per step (prompts fit in the first batches), not one per token.
        let n = decodes.load(Ordering::Relaxed);
        assert!(n <= 20 + 8, "{n} decode calls for 8 streams of 20 tokens");
    }

    #[test]
    fn full_queue_is_overloaded_and_others_finish() {
        let s = spawn(1, 1, 20);
        let first = s.submit(req("x", 20)).unwrap();
        // Give the engine time to admit the first request so that the queue is empty.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = s.submit(req("y", 2)).unwrap();
        let third = s.submit(req("z", 2));
        assert!(
            matches!(third, Err(SubmitError::Overloaded { queued: 1 })),
            "{third:?}"
        );
        assert_eq!(
            first.collect_blocking().unwrap().completion.tokens.len(),
            20
        );
        assert_eq!(
            second.collect_blocking().unwrap().completion.tokens.len(),
            2
        );
    }

    #[test]
    fn dropping_a_stream_frees_its_slot() {
        let s = spawn(1, 2, 5);
        let mut st = s.submit(req("x", 60)).unwrap();
        // Read two tokens, then hang up.
        let mut seen = 0;
        while seen < 2 {
            if let Some(Event::Token(_)) = st.blocking_next() {
                seen += 1;
            }
        }
        drop(st);
        let t0 = Instant::now();
        let out = s.generate_blocking(req("y", 3)).unwrap();
        assert_eq!(out.completion.tokens.len(), 3);
        // The 60-token request (5 ms a step) must not have run to the end first.
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn explicit_cancel_reports_cancelled() {
        let s = spawn(1, 2, 5);
        let mut st = s.submit(req("x", 60)).unwrap();
        st.cancel();
        let mut reason = None;
        while let Some(ev) = st.blocking_next() {
            if let Event::Done(c) = ev {
                reason = Some(c.finish_reason);
            }
        }
        assert_eq!(reason, Some(FinishReason::Cancelled));
    }

    #[test]
    fn context_and_parameter_errors_are_clear() {
        let s = spawn(1, 2, 0);
        let err = s.generate_blocking(req(&"a".repeat(60), 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "context length exceeded: the prompt has 60 tokens and max_tokens is 10, but one sequence holds 64 tokens"
        );
        let err = s.generate_blocking(req("a", 0)).unwrap_err();
        assert!(matches!(
            err,
            GenerateError::InvalidParams(InvalidParams::ZeroMaxTokens)
        ));
        let err = s.generate_blocking(req("a", u32::MAX)).unwrap_err();
        assert!(matches!(err, GenerateError::ContextLength { .. }));
        let err = s.generate_blocking(req("", 3)).unwrap_err();
        assert_eq!(err, GenerateError::EmptyPrompt);
        let bad = Request::generate(Prompt::Tokens(vec![1, 999]), SamplingParams::greedy(2));
        assert!(matches!(
            s.generate_blocking(bad),
            Err(GenerateError::BadToken { token: 999, .. })
        ));
        // The engine still works afterwards.
        assert_eq!(
            s.generate_blocking(req("a", 2))
                .unwrap()
                .completion
                .tokens
                .len(),
            2
        );
    }

    #[test]
    fn prefix_reuse_skips_the_shared_prompt() {
        let s = spawn(2, 2, 0);
        let a = s
            .generate_blocking(req("conversation turn one", 4))
            .unwrap();
        assert_eq!(a.completion.usage.cached_tokens, 0);
        let b = s
            .generate_blocking(req("conversation turn one and two", 4))
            .unwrap();
        assert_eq!(
            b.completion.usage.cached_tokens,
            "conversation turn one".len() as u32
        );
        // Same answer as without reuse.
        let mut fresh = req("conversation turn one and two", 4);
        fresh.reuse_prefix = false;
        let c = s.generate_blocking(fresh).unwrap();
        assert_eq!(c.completion.usage.cached_tokens, 0);
        assert_eq!(b.completion.tokens, c.completion.tokens);
    }

    #[test]
    fn long_prompts_are_prefilled_in_chunks_and_hidden_rows_align() {
        let s = spawn(1, 2, 0);
        let mut r = req(&"p".repeat(40), 3);
        r.capture_hidden = true;
        let out = s.generate_blocking(r).unwrap();
        let h = out.completion.hidden.unwrap();
        // 40 prompt positions + 2 fed generated tokens (the last one is never fed).
        assert_eq!(h.len(), 42);
        for (p, row) in h.iter().enumerate() {
            assert_eq!(row[0], p as f32);
        }
        let all: Vec<TokenId> = out
            .completion
            .prompt
            .iter()
            .chain(&out.completion.tokens)
            .copied()
            .collect();
        let scored = s
            .generate_blocking(Request::score(all.clone(), true))
            .unwrap();
        let hs = scored.completion.hidden.unwrap();
        assert_eq!(&hs[..42], &h[..]);
        assert_eq!(scored.completion.score_logprobs.len(), all.len() - 1);
    }

    #[test]
    fn stop_sequences_and_eog_end_generation() {
        let s = spawn(1, 2, 0);
        let first = s.generate_blocking(req("q", 8)).unwrap();
        let second_tok = first.completion.tokens[1];
        let stop = format!("t{second_tok} ");
        let p = SamplingParams {
            stop: vec![stop],
            ..SamplingParams::greedy(8)
        };
        let out = s
            .generate_blocking(Request::generate(Prompt::Text("q".into()), p))
            .unwrap();
        assert_eq!(out.completion.finish_reason, FinishReason::Stop);
        assert_eq!(out.text, format!("t{} ", first.completion.tokens[0]));
        // Bias the end-of-generation token up: generation stops at once with no tokens.
        let p = SamplingParams {
            logit_bias: vec![(0, 50.0)],
            ..SamplingParams::greedy(8)
        };
        let out = s
            .generate_blocking(Request::generate(Prompt::Text("q".into()), p))
            .unwrap();
        assert_eq!(out.completion.finish_reason, FinishReason::Stop);
        assert!(out.completion.tokens.is_empty());
    }

    #[test]
    fn chat_content_is_tokenized_without_special_parsing() {
        let s = spawn(1, 2, 0);
        let r = Request::generate(
            Prompt::Chat(vec![ChatMessage::new("user", "hi")]),
            SamplingParams::greedy(1),
        );
        let out = s.generate_blocking(r).unwrap();
        assert_eq!(out.completion.usage.prompt_tokens, "<user>hi".len() as u32);
        let r = Request::generate(
            Prompt::Chat(vec![ChatMessage::new("wizard", "hi")]),
            SamplingParams::greedy(1),
        );
        assert!(matches!(
            s.generate_blocking(r),
            Err(GenerateError::Prompt(_))
        ));
    }

    /// Everything a client sees of one run.
    struct Seen {
        tokens: Vec<TokenEvent>,
        text: String,
        completion: Completion,
    }

    fn watch(s: &Scheduler, r: Request) -> Seen {
        let mut st = s.submit(r).unwrap();
        let mut tokens = Vec::new();
        let mut text = String::new();
        while let Some(ev) = st.blocking_next() {
            match ev {
                Event::Started { .. } => {}
                Event::Token(t) => {
                    text.push_str(&t.text);
                    tokens.push(t);
                }
                Event::Text(t) => text.push_str(&t),
                Event::Done(completion) => {
                    return Seen {
                        tokens,
                        text,
                        completion,
                    };
                }
                Event::Error(e) => panic!("request failed: {e}"),
            }
        }
        panic!("stream ended without Done");
    }

    /// Run `params` in full, then resume it from every prefix of its tokens: the resumed run must
    /// produce exactly the rest, with the same events, and the delivered text of the prefix plus
    /// the resumed text must be the full text. `last_token_ends`: the full run ended because of its
    /// last token (max_tokens, a stop sequence, JSON complete), not by sampling end-of-generation.
    fn check_resume_from_every_prefix(
        s: &Scheduler,
        prompt: &Prompt,
        params: &SamplingParams,
        last_token_ends: bool,
    ) -> Seen {
        let full = watch(s, Request::generate(prompt.clone(), params.clone()));
        let ids: Vec<TokenId> = full.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, full.completion.tokens);
        let n = ids.len();
        let n_prompt = full.completion.prompt.len();
        for k in 0..=n {
            for reuse in [true, false] {
                let mut r = Request::generate(prompt.clone(), params.clone());
                r.reuse_prefix = reuse;
                r.continuation = ids[..k].to_vec();
                let resumed = watch(s, r);
                let delivered: String = full.tokens[..k].iter().map(|t| t.text.as_str()).collect();
                assert_eq!(resumed.tokens, full.tokens[k..], "k = {k}");
                assert_eq!(resumed.completion.tokens, ids[k..], "k = {k}");
                assert_eq!(format!("{delivered}{}", resumed.text), full.text, "k = {k}");
                assert_eq!(
                    resumed.completion.finish_reason, full.completion.finish_reason,
                    "k = {k}"
                );
                assert_eq!(resumed.completion.prompt, full.completion.prompt);
                let u = resumed.completion.usage;
                assert_eq!(u.completion_tokens as usize, n - k, "k = {k}");
                // Only a continuation whose last token ended the full run computes nothing; one
                // that ended with end-of-generation samples it again.
                if k == n && last_token_ends {
                    assert_eq!(u, Usage::default(), "k = {k}");
                } else {
                    assert_eq!(u.prompt_tokens as usize, n_prompt + k, "k = {k}");
                }
            }
        }
        full
    }

    fn test_engine() -> Scheduler {
        crate::backends::test_engine::TestEngine::spawn(
            crate::backends::test_engine::TestEngineConfig {
                n_seq: 3,
                n_batch: 32,
                ..Default::default()
            },
            SchedulerConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn resuming_from_any_prefix_continues_exactly_with_penalties_partial_utf8_and_held_stops() {
        use crate::backends::test_engine::BYTE0;
        let s = test_engine();
        let prompt = Prompt::Text("the story of one river".into());
        // Penalties depend on the history; the bias makes the three bytes of "€" likely, so
        // characters are split over tokens (and often broken); "e zq" keeps " the"/" t" held
        // back until the next token shows it is not a stop.
        let params = SamplingParams {
            temperature: 1.0,
            seed: 11,
            repetition_penalty: 1.3,
            frequency_penalty: 0.4,
            presence_penalty: 0.2,
            logit_bias: vec![
                (BYTE0 + 0xE2, 12.5),
                (BYTE0 + 0x82, 12.5),
                (BYTE0 + 0xAC, 12.5),
            ],
            stop: vec!["e zq".into()],
            logprobs: Some(2),
            max_tokens: 40,
            ..SamplingParams::default()
        };
        let full = check_resume_from_every_prefix(&s, &prompt, &params, true);
        assert_eq!(full.completion.finish_reason, FinishReason::Length);
        assert_eq!(full.tokens.len(), 40);
        // The scenario really exercises held-back text: some tokens released nothing.
        assert!(
            full.tokens.iter().any(|t| t.text.is_empty()),
            "{:?}",
            full.text
        );
        assert!(full.text.contains('€') || full.text.contains('\u{fffd}'));

        // A stop sequence that is hit: the text across two tokens in the middle of the run.
        let cut: Vec<usize> = full.text.char_indices().map(|(i, _)| i).collect();
        let at = cut[cut.len() / 2];
        let stop: String = full.text[at..].chars().take(5).collect();
        let stopping = SamplingParams {
            stop: vec!["e zq".into(), stop],
            ..params.clone()
        };
        let stopped = check_resume_from_every_prefix(&s, &prompt, &stopping, true);
        assert_eq!(stopped.completion.finish_reason, FinishReason::Stop);
        assert!(stopped.tokens.len() < 40);
        assert!(full.text.starts_with(&stopped.text));
    }

    #[test]
    fn json_schema_generation_resumes_exactly_and_validates() {
        let s = test_engine();
        let prompt = Prompt::Chat(vec![ChatMessage::new("user", "give me json")]);
        let text = r#"{"type":"object","properties":{"k":{"enum":["a","bc"]},
            "n":{"type":"integer"},"t":{"type":"array","items":{"type":"boolean"},"maxItems":2}},
            "required":["k","n"],"additionalProperties":false}"#;
        let schema = crate::json::Schema::parse(text).unwrap();
        for seed in 0..4 {
            let params = SamplingParams {
                temperature: 1.0,
                seed,
                json_schema: Some(text.into()),
                max_tokens: 200,
                ..SamplingParams::default()
            };
            let full = check_resume_from_every_prefix(&s, &prompt, &params, true);
            assert_eq!(
                full.completion.finish_reason,
                FinishReason::Stop,
                "{}",
                full.text
            );
            let v: serde_json::Value = serde_json::from_str(&full.text).unwrap();
            assert!(schema.validate(&v), "{}", full.text);
        }
        // A schema the engine refuses before any work.
        let bad = SamplingParams {
            json_schema: Some(r#"{"type":"string","format":"email"}"#.into()),
            ..SamplingParams::default()
        };
        let err = s
            .generate_blocking(Request::generate(prompt, bad))
            .unwrap_err();
        assert!(
            matches!(err, GenerateError::InvalidParams(InvalidParams::Schema(_))),
            "{err}"
        );
    }

    #[test]
    fn resuming_in_json_mode_and_after_eos() {
        use crate::backends::test_engine::{BYTE0, EOS};
        let s = test_engine();
        let prompt = Prompt::Chat(vec![ChatMessage::new("user", "give me json")]);
        let json = SamplingParams {
            temperature: 1.0,
            seed: 5,
            json: true,
            logit_bias: vec![
                (BYTE0 + u32::from(b'"'), 14.0),
                (BYTE0 + u32::from(b'}'), 10.5),
            ],
            max_tokens: 60,
            ..SamplingParams::default()
        };
        let full = check_resume_from_every_prefix(&s, &prompt, &json, true);
        assert_eq!(
            full.completion.finish_reason,
            FinishReason::Stop,
            "{}",
            full.text
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(&full.text).is_ok(),
            "{}",
            full.text
        );

        // A generation that ends with end-of-generation.
        let eos = SamplingParams {
            temperature: 1.0,
            seed: 9,
            logit_bias: vec![(EOS, 2.0)],
            max_tokens: 60,
            ..SamplingParams::default()
        };
        let full = check_resume_from_every_prefix(&s, &prompt, &eos, false);
        assert_eq!(full.completion.finish_reason, FinishReason::Stop);
        assert!(full.tokens.len() < 60);
        // The end-of-generation token itself as the last continuation token: done at once.
        let mut ids = full.completion.tokens.clone();
        ids.push(EOS);
        let mut r = Request::generate(prompt.clone(), eos.clone());
        r.continuation = ids.clone();
        let done = watch(&s, r);
        assert_eq!(done.completion.finish_reason, FinishReason::Stop);
        assert!(done.completion.tokens.is_empty() && done.text.is_empty());
        assert_eq!(done.completion.usage, Usage::default());
        // Anything after it could not have come from this request.
        ids.push(BYTE0 + u32::from(b'a'));
        let mut r = Request::generate(prompt.clone(), eos.clone());
        r.continuation = ids.clone();
        let err = s.generate_blocking(r).unwrap_err();
        assert_eq!(
            err,
            GenerateError::BadContinuation {
                index: ids.len() - 1,
                why: "the generation had already ended at the token before it".into()
            }
        );
    }

    #[test]
    fn impossible_continuations_are_clear_errors() {
        let s = test_engine();
        let prompt = Prompt::Text("x".into());
        let with = |cont: Vec<TokenId>, params: SamplingParams| {
            let mut r = Request::generate(prompt.clone(), params);
            r.continuation = cont;
            s.generate_blocking(r).unwrap_err()
        };
        let n_vocab = s.info().n_vocab;
        assert!(matches!(
            with(vec![5, n_vocab], SamplingParams::greedy(4)),
            GenerateError::BadContinuation { index: 1, .. }
        ));
        // Longer than max_tokens.
        assert!(matches!(
            with(vec![5; 5], SamplingParams::greedy(4)),
            GenerateError::BadContinuation { index: 4, .. }
        ));
        // JSON mode could never have started with a letter.
        let json = SamplingParams {
            json: true,
            ..SamplingParams::greedy(4)
        };
        let a = crate::backends::test_engine::BYTE0 + u32::from(b'a');
        assert!(matches!(
            with(vec![a], json),
            GenerateError::BadContinuation { index: 0, .. }
        ));
        // Scoring has nothing to resume.
        let mut r = Request::score(vec![5, 6], false);
        r.continuation = vec![7];
        assert!(matches!(
            s.generate_blocking(r),
            Err(GenerateError::BadContinuation { .. })
        ));
        // The engine is fine afterwards.
        assert_eq!(
            s.generate_blocking(Request::generate(prompt.clone(), SamplingParams::greedy(3)))
                .unwrap()
                .completion
                .tokens
                .len(),
            3
        );
    }

    #[test]
    fn resuming_on_the_fake_engine_from_every_prefix() {
        let s = spawn(2, 64, 0);
        let params = SamplingParams {
            temperature: 0.7,
            seed: 1,
            stop: vec!["t4".into()],
            max_tokens: 12,
            ..SamplingParams::default()
        };
        check_resume_from_every_prefix(&s, &Prompt::Text("abc".into()), &params, true);
    }
}
