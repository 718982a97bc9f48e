//! The engine thread's loop: admit queued requests into slots (KV-cache sequences), build one
//! multi-sequence batch per step, decode it, and turn the logits into events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::generation::{Advance, Gen};
use super::{
    Completion, Event, FinishReason, GenerateError, Job, Prompt, Request, Task, TokenEvent, Usage,
};
use crate::engine::{
    BatchToken, Engine, EngineError, TokenId, chat_tokens, completion_tokens, tool_chat_tokens,
};

enum Kind {
    Generate(Box<Gen>),
    Score {
        logprobs: Vec<f32>,
        /// Raw logits of the positions from `logits_from` on.
        logits: Vec<Vec<f32>>,
        logits_from: usize,
    },
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
    /// Every fed position is an output (hidden capture of all rows, or scoring).
    all_outputs: bool,
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

pub(super) struct Runner<E> {
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
    pub(super) fn new(engine: E, jobs: Receiver<Job>) -> Self {
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

    pub(super) fn run(mut self) {
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
            Prompt::ToolChat { messages, tools } => {
                tool_chat_tokens(&self.engine, messages, tools.as_ref())?
            }
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
                crate::sampler::validate(p, info.n_vocab as usize)?;
                p.max_tokens
            }
            // Scoring's continuation is scored after the prompt, so it counts against the
            // context like generated tokens would.
            Task::Score => u32::try_from(request.continuation.len()).unwrap_or(u32::MAX),
        };
        let cont = &request.continuation;
        if !cont.is_empty() {
            if matches!(request.task, Task::Generate(_)) && cont.len() > max_tokens as usize {
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
        if (request.capture_hidden || request.capture_sampled) && !info.hidden_states {
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
        let wants_rows = job.request.capture_hidden || job.request.capture_sampled;
        let mut all = prompt;
        let continuation = std::mem::take(&mut job.request.continuation);
        let kind = match &job.request.task {
            Task::Generate(params) => {
                let mut g = match Gen::new(params, &all) {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = job.events.send(Event::Error(e.into()));
                        return;
                    }
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
                            prompt: all[..n_prompt].to_vec(),
                        });
                        let tail = g.finish_text();
                        if !tail.is_empty() {
                            let _ = job.events.send(Event::Text(tail));
                        }
                        let _ = job.events.send(Event::Done(Completion {
                            finish_reason: reason,
                            usage: Usage::default(),
                            prompt: all[..n_prompt].to_vec(),
                            tokens: Vec::new(),
                            score_logprobs: Vec::new(),
                            score_logits: Vec::new(),
                            hidden: wants_rows.then(Vec::new),
                            prefill_secs: 0.0,
                            decode_secs: 0.0,
                        }));
                        return;
                    }
                    Ok(None) => Kind::Generate(Box::new(g)),
                }
            }
            Task::Score => {
                all.extend_from_slice(&continuation);
                Kind::Score {
                    logprobs: Vec::with_capacity(all.len()),
                    logits: Vec::new(),
                    logits_from: all.len() - job.request.score_last_logits.min(all.len()),
                }
            }
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
            prompt: all[..n_prompt].to_vec(),
        });
        tracing::debug!(target: "agora_inference::scheduler", seq = slot.seq, prompt = n_prompt, continuation = continuation.len(), cached = keep, "admitted");
        let all_outputs = job.request.capture_hidden || matches!(kind, Kind::Score { .. });
        slot.active = Some(Active {
            events: job.events,
            cancel: job.cancel,
            n_prompt,
            n_cont: continuation.len(),
            all,
            n_fed: keep,
            cached: keep,
            kind,
            hidden: wants_rows.then(Vec::new),
            all_outputs,
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
        let (tokens, score_logprobs, score_logits) = match &mut a.kind {
            Kind::Generate(g) => {
                let tail = g.finish_text();
                if !tail.is_empty() && reason != FinishReason::Cancelled {
                    let _ = a.events.send(Event::Text(tail));
                }
                (
                    a.all[a.n_prompt + a.n_cont..].to_vec(),
                    Vec::new(),
                    Vec::new(),
                )
            }
            Kind::Score {
                logprobs, logits, ..
            } => (Vec::new(), std::mem::take(logprobs), std::mem::take(logits)),
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
            score_logits,
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
            let all_outputs = a.all_outputs;
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
            if let Kind::Score {
                logprobs,
                logits,
                logits_from,
            } = &mut a.kind
            {
                let p = bt.pos as usize;
                let row = engine.logits(k)?;
                if p + 1 < a.all.len() {
                    let (lp, _) = crate::sampler::logprobs(row, a.all[p + 1], 0);
                    logprobs.push(lp);
                }
                if p >= *logits_from {
                    logits.push(row.to_vec());
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
                let sampled = g.sample(engine, logits, position);
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
                                // The last row kept is the sampled position's.
                                hidden: a.hidden.as_ref().and_then(|h| h.last().cloned()),
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
