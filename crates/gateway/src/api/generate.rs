//! Running the `n` choices of a chat or completion request on the upstream and shaping what
//! comes back: one `chat.completion` / `text_completion` body, or server-sent chunks ending with
//! `[DONE]`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use agora_market::protocol::{SamplingParams, Tok, Work};
use axum::Json;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use super::tool_calls::{self, Added, ToolOutput};
use super::wire::{
    AgoraSegment, AgoraSummary, AssistantMessage, ChatChoice, ChatChunkChoice, ChatLogprobs, Chunk,
    Completion, Delta, RedundantCheck, TextChoice, TextChunkChoice, TextLogprobs, TokenLogprob,
    TopLogprob, Usage,
};
use super::{ApiError, Shared, now_secs};
use crate::customers::KeyHash;
use crate::market::{Constraints, ModelView, Verification};
use crate::relay::{CompletionJob, RelayEvent, Summary, new_request_id};

/// Who asks for how many choices, under which routing constraints.
pub(super) struct NChoices {
    pub(super) n: u32,
    pub(super) constraints: Constraints,
    pub(super) customer: KeyHash,
}

/// Runs `n` choices of one request (seeds `seed + i`) and answers streamed or whole.
#[allow(clippy::too_many_arguments)]
pub(super) async fn respond(
    s: &Shared,
    model: &ModelView,
    work: Work,
    sampling: SamplingParams,
    choices: NChoices,
    shape: Shape,
    stream: bool,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let jobs = (0..choices.n)
        .map(|i| CompletionJob {
            request_id: new_request_id(),
            model: model.sha256,
            work: work.clone(),
            sampling: SamplingParams {
                seed: sampling.seed.wrapping_add(u64::from(i)),
                ..sampling.clone()
            },
            constraints: choices.constraints,
            customer: choices.customer,
        })
        .collect();
    if choices.constraints.verification == Verification::Redundant {
        if stream {
            return Err(ApiError::invalid(
                "verification \"redundant\" needs stream: false (both runs are compared before \
                 the answer is returned)",
                Some("stream"),
            ));
        }
        // Checked before the first run, which would otherwise be served and charged with no
        // second provider to compare it with.
        let admitted = s.upstream.admitted(&model.sha256, &choices.constraints);
        if admitted < 2 {
            return Err(ApiError::upstream(
                "no_provider",
                format!(
                    "verification \"redundant\" needs two providers of this model within the \
                     request's price and trust limits; {admitted} serve it now"
                ),
            ));
        }
    }
    if stream {
        Ok(stream_response(s, jobs, shape, include_usage))
    } else {
        collect_response(s, jobs, shape).await
    }
}

/// How responses of one request look.
#[derive(Clone)]
pub(super) struct Shape {
    id: String,
    model: String,
    chat: bool,
    logprobs: bool,
    /// With tools: the envelope schema the output follows, read into `tool_calls`.
    pub(super) tools: Option<agora_json::Schema>,
}

impl Shape {
    pub(super) fn new(model: &ModelView, chat: bool, sampling: &SamplingParams) -> Self {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            id: format!("{prefix}-{}", hex::encode(rand::random::<[u8; 12]>())),
            model: model.name.clone(),
            chat,
            logprobs: sampling.logprobs.is_some(),
            tools: None,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, true) => "chat.completion.chunk",
            (true, false) => "chat.completion",
            (false, _) => "text_completion",
        }
    }
}

fn token_logprob(t: &Tok) -> TokenLogprob {
    let top_logprobs = t
        .top
        .iter()
        .enumerate()
        .map(|(i, (id, lp))| {
            // The provider's text for each alternative; an id for one it did not name.
            let token = match t.top_text.get(i) {
                Some(text) => text.clone(),
                None if *id == t.id => t.text.clone(),
                None => format!("<token {id}>"),
            };
            TopLogprob {
                bytes: token.as_bytes().to_vec(),
                logprob: f64::from(*lp),
                token,
            }
        })
        .collect();
    TokenLogprob {
        bytes: t.text.as_bytes().to_vec(),
        logprob: f64::from(t.logprob.unwrap_or(0.0)),
        token: t.text.clone(),
        top_logprobs,
    }
}

/// Who served a completion and what each was paid (an extension stock SDKs ignore).
pub(super) fn agora_summary(sm: &Summary) -> AgoraSummary {
    AgoraSummary {
        charged: sm.charged,
        redundant: None,
        request_id: hex::encode(sm.request_id.0),
        segments: sm
            .segments
            .iter()
            .map(|g| AgoraSegment {
                charged: g.charged,
                completion_tokens: g.completion_tokens,
                prompt_tokens: g.prompt_tokens,
                provider: g.provider.to_string(),
                receipt: g.receipt.as_ref().map(|k| k.signed.clone()),
                proof: g.receipt.as_ref().and_then(|k| k.proof.clone()),
                receipt_ok: g.receipt_ok,
            })
            .collect(),
    }
}

/// The legacy completions' parallel lists from per-token log-probabilities.
fn text_logprobs(lps: Vec<TokenLogprob>) -> TextLogprobs {
    let mut out = TextLogprobs {
        token_logprobs: Vec::with_capacity(lps.len()),
        tokens: Vec::with_capacity(lps.len()),
        top_logprobs: Vec::with_capacity(lps.len()),
    };
    for l in lps {
        out.token_logprobs.push(l.logprob);
        out.top_logprobs.push(
            l.top_logprobs
                .into_iter()
                .map(|t| (t.token, t.logprob))
                .collect::<BTreeMap<_, _>>(),
        );
        out.tokens.push(l.token);
    }
    out
}

/// Why a choice's events ended without a summary.
fn ended_early() -> ApiError {
    ApiError::upstream("internal", "the completion ended without a result")
}

/// One choice run to its end: its text, log-probabilities (when asked), token ids and summary.
pub(super) struct Collected {
    pub(super) text: String,
    lps: Vec<TokenLogprob>,
    ids: Vec<u32>,
    pub(super) summary: Summary,
}

pub(super) async fn collect_choice(
    rx: &mut mpsc::Receiver<RelayEvent>,
    logprobs: bool,
) -> Result<Collected, ApiError> {
    let (mut text, mut lps, mut ids) = (String::new(), Vec::new(), Vec::new());
    loop {
        match rx.recv().await {
            Some(RelayEvent::Token(t)) => {
                text.push_str(&t.text);
                ids.push(t.id);
                if logprobs {
                    lps.push(token_logprob(&t));
                }
            }
            Some(RelayEvent::Text(t)) => text.push_str(&t),
            Some(RelayEvent::Embeddings { .. }) => {}
            Some(RelayEvent::Done(summary)) => {
                return Ok(Collected {
                    text,
                    lps,
                    ids,
                    summary,
                });
            }
            Some(RelayEvent::Error(e)) => return Err(ApiError::from_relay(e)),
            None => return Err(ended_early()),
        }
    }
}

/// The redundant tier's second run of `job`: the same work and seed on another provider than
/// the one that served `first`, compared token for token.
async fn second_run(
    s: &Shared,
    job: &CompletionJob,
    first: &Collected,
) -> Result<RedundantCheck, ApiError> {
    let second = CompletionJob {
        request_id: new_request_id(),
        constraints: Constraints {
            verification: Verification::Sampled,
            avoid: first.summary.segments.first().map(|g| g.provider),
            ..job.constraints
        },
        ..job.clone()
    };
    let mut rx = s.upstream.start(second);
    // The error of the second run as it is (no second provider, no credit left for it), saying
    // which run failed: the first was served and is charged.
    let run = collect_choice(&mut rx, false).await.map_err(|mut e| {
        e.message = format!(
            "the second run of redundant execution failed (the first was served and is \
                 charged): {}",
            e.message
        );
        e
    })?;
    let first_divergence = first
        .ids
        .iter()
        .zip(&run.ids)
        .position(|(a, b)| a != b)
        .or_else(|| (first.ids.len() != run.ids.len()).then(|| first.ids.len().min(run.ids.len())));
    let summary = agora_summary(&run.summary);
    Ok(RedundantCheck {
        agreed: first_divergence.is_none(),
        first_divergence,
        charged: summary.charged,
        request_id: summary.request_id,
        segments: summary.segments,
    })
}

/// Runs every choice to the end and answers with one JSON body.
async fn collect_response(
    s: &Shared,
    jobs: Vec<CompletionJob>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let mut rxs: Vec<_> = jobs.iter().map(|j| s.upstream.start(j.clone())).collect();
    let mut chat_choices = Vec::new();
    let mut text_choices = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0u32, 0u32);
    for (index, (rx, job)) in rxs.iter_mut().zip(&jobs).enumerate() {
        let run = collect_choice(rx, shape.logprobs).await?;
        let redundant = match job.constraints.verification {
            Verification::Redundant => Some(second_run(s, job, &run).await?),
            Verification::Sampled => None,
        };
        let Collected {
            text, lps, summary, ..
        } = run;
        prompt_tokens = prompt_tokens.saturating_add(summary.prompt_tokens);
        completion_tokens = completion_tokens.saturating_add(summary.completion_tokens);
        s.metrics
            .tokens(summary.completion_tokens, summary.segments.len());
        let mut agora = agora_summary(&summary);
        agora.redundant = redundant;
        let mut finish_reason = summary.finish_reason;
        if shape.chat {
            let (content, tool_calls) = match &shape.tools {
                None => (Some(text), Vec::new()),
                Some(schema) => {
                    let mut out = ToolOutput::new(schema);
                    let parts = [out.feed(&text), out.finish()];
                    let parts = parts
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| ApiError::bad_output(e.to_string()))?;
                    finish_reason = tool_calls::finish_reason(&finish_reason, out.calls());
                    tool_calls::assemble(parts)
                }
            };
            chat_choices.push(ChatChoice {
                agora,
                finish_reason,
                index,
                logprobs: shape.logprobs.then_some(ChatLogprobs { content: lps }),
                message: AssistantMessage {
                    content,
                    refusal: None,
                    role: "assistant",
                    tool_calls,
                },
            });
        } else {
            text_choices.push(TextChoice {
                agora,
                finish_reason,
                index,
                logprobs: shape.logprobs.then(|| text_logprobs(lps)),
                text,
            });
        }
    }
    let usage = Usage::new(prompt_tokens, completion_tokens);
    Ok(if shape.chat {
        whole(&shape, chat_choices, usage)
    } else {
        whole(&shape, text_choices, usage)
    })
}

/// One `chat.completion` or `text_completion` body.
fn whole<C: Serialize>(shape: &Shape, choices: Vec<C>, usage: Usage) -> Response {
    Json(Completion {
        choices,
        created: now_secs(),
        id: shape.id.clone(),
        model: shape.model.clone(),
        object: shape.object(false),
        system_fingerprint: None,
        usage,
    })
    .into_response()
}

pub(super) fn event(body: &impl Serialize) -> SseEvent {
    // Serializing these types cannot fail (string keys, no custom errors).
    SseEvent::default().data(serde_json::to_string(body).unwrap_or_default())
}

/// Builds the chunks of one streamed response.
struct Chunker {
    shape: Shape,
    created: u64,
    /// `Some(None)` with `include_usage`: every chunk carries `"usage": null` until the last.
    usage: Option<Option<Usage>>,
}

impl Chunker {
    fn chunk<C: Serialize>(&self, choices: Vec<C>) -> SseEvent {
        event(&Chunk {
            choices,
            created: self.created,
            id: self.shape.id.clone(),
            model: self.shape.model.clone(),
            object: self.shape.object(true),
            system_fingerprint: None,
            usage: self.usage,
        })
    }

    /// A chat choice's opening chunk: the assistant's role.
    fn role(&self, index: usize) -> SseEvent {
        self.chunk(vec![ChatChunkChoice {
            agora: None,
            delta: Delta {
                content: Some(String::new()),
                role: Some("assistant"),
                tool_calls: Vec::new(),
            },
            finish_reason: None,
            index,
            logprobs: None,
        }])
    }

    /// Text of choice `index` and its log-probability, or (with `end`) the choice's end.
    fn piece(
        &self,
        index: usize,
        text: String,
        lp: Option<TokenLogprob>,
        end: Option<&Summary>,
    ) -> SseEvent {
        self.piece_with(
            index,
            Added {
                content: Some(text),
                tool_calls: Vec::new(),
            },
            lp,
            end,
            0,
        )
    }

    /// What choice `index` adds to its message (text, tool-call deltas) and its
    /// log-probability, or (with `end`) the choice's end after `calls` tool calls.
    fn piece_with(
        &self,
        index: usize,
        added: Added,
        lp: Option<TokenLogprob>,
        end: Option<&Summary>,
        calls: usize,
    ) -> SseEvent {
        let (agora, finish_reason) = match end {
            Some(sm) => (
                Some(agora_summary(sm)),
                Some(tool_calls::finish_reason(&sm.finish_reason, calls)),
            ),
            None => (None, None),
        };
        let text = added.content.unwrap_or_default();
        if !self.shape.chat {
            return self.chunk(vec![TextChunkChoice {
                agora,
                finish_reason,
                index,
                logprobs: lp,
                text,
            }]);
        }
        let delta = if end.is_some() {
            Delta::default()
        } else {
            Delta {
                content: (!text.is_empty() || added.tool_calls.is_empty()).then_some(text),
                role: None,
                tool_calls: added.tool_calls,
            }
        };
        self.chunk(vec![ChatChunkChoice {
            agora,
            delta,
            finish_reason,
            index,
            logprobs: lp.map(|l| ChatLogprobs { content: vec![l] }),
        }])
    }

    /// The usage of all choices, after the last choice ended.
    fn usage(&self, usage: Usage) -> SseEvent {
        event(&Chunk::<ChatChunkChoice> {
            choices: Vec::new(),
            created: self.created,
            id: self.shape.id.clone(),
            model: self.shape.model.clone(),
            object: self.shape.object(true),
            system_fingerprint: None,
            usage: Some(Some(usage)),
        })
    }
}

/// Streams every choice as server-sent events, ending with `[DONE]`.
fn stream_response(
    s: &Shared,
    jobs: Vec<CompletionJob>,
    shape: Shape,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    let n = jobs.len();
    // The receipts' key is known before the first token: a client that reads headers can ask
    // for them whatever happens to the stream.
    let request_ids = jobs
        .iter()
        .map(|j| hex::encode(j.request_id.0))
        .collect::<Vec<_>>()
        .join(",");
    let mut merged = {
        let (mtx, mrx) = mpsc::channel::<(usize, RelayEvent)>(64);
        for (i, j) in jobs.into_iter().enumerate() {
            let mut r = s.upstream.start(j);
            let mtx = mtx.clone();
            tokio::spawn(async move {
                while let Some(ev) = r.recv().await {
                    if mtx.send((i, ev)).await.is_err() {
                        return;
                    }
                }
            });
        }
        mrx
    };
    let metrics = s.metrics.clone();
    tokio::spawn(async move {
        let chunker = Chunker {
            created: now_secs(),
            usage: include_usage.then_some(None),
            shape,
        };
        if chunker.shape.chat {
            for i in 0..n {
                if tx.send(chunker.role(i)).await.is_err() {
                    return;
                }
            }
        }
        let (mut prompt_tokens, mut completion_tokens, mut done) = (0u32, 0u32, 0usize);
        // With tools, each choice's text is read into content and tool-call deltas.
        let mut readers: Vec<Option<ToolOutput>> = (0..n)
            .map(|_| chunker.shape.tools.as_ref().map(ToolOutput::new))
            .collect();
        while let Some((i, ev)) = merged.recv().await {
            let reader = readers.get_mut(i).and_then(Option::as_mut);
            let text = match &ev {
                RelayEvent::Token(t) => Some(t.text.as_str()),
                RelayEvent::Text(t) => Some(t.as_str()),
                _ => None,
            };
            let added = match (reader, text) {
                (Some(r), Some(text)) => Some(r.feed(text)),
                _ => None,
            };
            let added = match added {
                Some(Err(e)) => {
                    let e = ApiError::bad_output(e.to_string());
                    metrics.error(e.status.as_u16());
                    let _ = tx.send(event(&e.body())).await;
                    return;
                }
                Some(Ok(a)) => Some(a),
                None => None,
            };
            let out = match ev {
                RelayEvent::Token(t) => {
                    let lp = chunker.shape.logprobs.then(|| token_logprob(&t));
                    match added {
                        Some(a) if a == Added::default() && lp.is_none() => continue,
                        Some(a) => chunker.piece_with(i, a, lp, None, 0),
                        None if t.text.is_empty() && lp.is_none() => continue,
                        None => chunker.piece(i, t.text, lp, None),
                    }
                }
                RelayEvent::Text(t) => match added {
                    Some(a) if a == Added::default() => continue,
                    Some(a) => chunker.piece_with(i, a, None, None, 0),
                    None => chunker.piece(i, t, None, None),
                },
                RelayEvent::Embeddings { .. } => continue,
                RelayEvent::Done(sm) => {
                    prompt_tokens = prompt_tokens.saturating_add(sm.prompt_tokens);
                    completion_tokens = completion_tokens.saturating_add(sm.completion_tokens);
                    metrics.tokens(sm.completion_tokens, sm.segments.len());
                    done += 1;
                    let mut calls = 0;
                    if let Some(r) = readers.get_mut(i).and_then(Option::as_mut) {
                        match r.finish() {
                            Ok(rest) => {
                                calls = r.calls();
                                if rest != Added::default()
                                    && tx
                                        .send(chunker.piece_with(i, rest, None, None, 0))
                                        .await
                                        .is_err()
                                {
                                    return;
                                }
                            }
                            Err(e) => {
                                let e = ApiError::bad_output(e.to_string());
                                metrics.error(e.status.as_u16());
                                let _ = tx.send(event(&e.body())).await;
                                return;
                            }
                        }
                    }
                    chunker.piece_with(i, Added::default(), None, Some(&sm), calls)
                }
                RelayEvent::Error(e) => {
                    let e = ApiError::from_relay(e);
                    metrics.error(e.status.as_u16());
                    let _ = tx.send(event(&e.body())).await;
                    return;
                }
            };
            if tx.send(out).await.is_err() {
                return; // the client left: dropping `merged` cancels the relays
            }
            if done == n {
                break;
            }
        }
        if include_usage {
            let usage = Usage::new(prompt_tokens, completion_tokens);
            let _ = tx.send(chunker.usage(usage)).await;
        }
        let _ = tx.send(SseEvent::default().data("[DONE]")).await;
    });
    let mut response = Sse::new(ReceiverStream(rx))
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_ids) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// The response header naming a streamed completion's request ids (one per choice, comma
/// separated), the keys of `GET /v1/receipts/{request_id}`.
pub const REQUEST_ID_HEADER: &str = "x-agora-request-id";

pub(super) struct ReceiverStream(pub(super) mpsc::Receiver<SseEvent>);

impl Stream for ReceiverStream {
    type Item = Result<SseEvent, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}
