//! One completion across providers: route, pay per frame, verify the receipt, and when a provider
//! dies or stalls mid-stream, continue the same completion on another provider from the tokens
//! already delivered (same prompt, parameters and seed; the sampler's noise depends only on
//! (seed, position, token), so the continuation is the text the first provider would have
//! written). The caller sees one uninterrupted sequence of [`RelayEvent`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_market::Meter;
use agora_market::protocol::{FailureCode, Frame, Job, Sampling, Tok, Work};
use agora_p2p::{InferenceRequest, PeerId};
use agora_types::{Amount, Hash, HashDomain};
use tokio::sync::mpsc;

use crate::customers::{Customers, KeyHash};
use crate::market::{Constraints, Market};
use crate::payer::Payer;

/// Failover and patience.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Providers tried for one completion.
    pub max_attempts: usize,
    /// Longest wait for a provider's first frame.
    pub first_frame_timeout: Duration,
    /// Longest silence between frames before the provider counts as stalled.
    pub stall_timeout: Duration,
    /// Longest time a client may leave delivered tokens unread (its socket and our bounded
    /// queue full) before it counts as gone: the provider's slot is not held hostage.
    pub client_stall_timeout: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            first_frame_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(10),
            client_stall_timeout: Duration::from_secs(30),
        }
    }
}

/// What the API layer receives.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    Token(Tok),
    Text(String),
    Embeddings {
        first_index: u32,
        vectors: Vec<Vec<f32>>,
    },
    Done(Summary),
    Error(RelayError),
}

/// The end of a completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub finish_reason: String,
    /// Prompt tokens billed: the prompt once per provider that prefilled it (a failover re-reads
    /// the prompt and the delivered tokens).
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Exactly what the providers were paid for this completion.
    pub charged: Amount,
    /// One entry per provider that contributed.
    pub segments: Vec<Segment>,
}

/// One provider's part of a completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub provider: agora_types::Address,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub charged: Amount,
    /// The provider's signed receipt matched what was received.
    pub receipt_ok: bool,
}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayError {
    /// OpenAI-style code: `invalid_request`, `context_length_exceeded`, `no_provider`, ...
    pub code: String,
    pub message: String,
    /// True when the request itself is at fault (HTTP 400), false for network trouble (5xx).
    pub client_error: bool,
}

impl RelayError {
    /// A provider's failure that ends the completion (one where [`FailureCode::fails_over`] is
    /// false), passed on to the client as the provider named it.
    fn from_provider(code: FailureCode, message: String) -> RelayError {
        RelayError {
            client_error: code.is_client_fault(),
            code: code.to_string(),
            message,
        }
    }
}

/// A whole completion request, as the API layer built it.
#[derive(Debug, Clone)]
pub struct CompletionJob {
    pub model: Hash,
    pub work: Work,
    pub sampling: Sampling,
    pub constraints: Constraints,
    /// Who pays: charged exactly `Summary::charged` whether the completion ends, fails or the
    /// client leaves.
    pub customer: KeyHash,
}

/// Runs completions.
pub struct Relay {
    pub market: Arc<Market>,
    pub payer: Arc<Payer>,
    pub net: agora_p2p::Handle,
    pub customers: Arc<Customers>,
    pub settings: RelaySettings,
}

enum Attempt {
    /// The provider finished.
    Done,
    /// The request is at fault; stop.
    Fatal(RelayError),
    /// The provider failed; try another.
    Retry(String),
    /// The caller went away.
    Gone,
}

impl Relay {
    /// Hands an event to the client's side; false when the client left or stopped reading for
    /// longer than `client_stall_timeout`.
    async fn deliver(&self, tx: &mpsc::Sender<RelayEvent>, event: RelayEvent) -> bool {
        match tokio::time::timeout(self.settings.client_stall_timeout, tx.send(event)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(target: "agora::gateway", "client stopped reading; ending its completion");
                false
            }
        }
    }

    /// Starts a completion; events arrive on the returned channel. Dropping the receiver cancels
    /// the work (the provider's stream is reset and its slot freed).
    pub fn start(self: &Arc<Self>, job: CompletionJob) -> mpsc::Receiver<RelayEvent> {
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move { me.run(job, tx).await });
        rx
    }

    async fn run(&self, job: CompletionJob, tx: mpsc::Sender<RelayEvent>) {
        let mut summary = Summary {
            finish_reason: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            charged: Amount::ZERO,
            segments: Vec::new(),
        };
        let last = self.attempts(&job, &mut summary, &tx).await;
        // Charge on every way out: what the providers delivered is what the customer pays.
        self.customers.charge(&job.customer, summary.charged);
        let event = match last {
            Some(Ok(())) => RelayEvent::Done(summary),
            Some(Err(e)) => RelayEvent::Error(e),
            None => return,
        };
        let _ = tx.send(event).await;
    }

    /// Tries providers in turn; `None` when the caller went away.
    async fn attempts(
        &self,
        job: &CompletionJob,
        summary: &mut Summary,
        tx: &mpsc::Sender<RelayEvent>,
    ) -> Option<Result<(), RelayError>> {
        let request_id = Hash::of_parts(
            HashDomain::Request,
            &[b"gateway", &rand::random::<[u8; 32]>()],
        );
        let mut delivered: Vec<u32> = Vec::new();
        let mut tried: Vec<PeerId> = Vec::new();
        let mut last_reason = String::from("no provider serves this model");
        for _ in 0..self.settings.max_attempts {
            let mut cand = self.market.pick(&job.model, &job.constraints, &tried);
            if cand.is_none() && tried.is_empty() {
                self.market.refresh().await;
                cand = self.market.pick(&job.model, &job.constraints, &tried);
            }
            let Some(cand) = cand else { break };
            tried.push(cand.provider.peer);
            match self
                .attempt(job, request_id, &cand, &mut delivered, summary, tx)
                .await
            {
                Attempt::Done => return Some(Ok(())),
                Attempt::Fatal(e) => return Some(Err(e)),
                Attempt::Gone => return None,
                Attempt::Retry(reason) => {
                    tracing::warn!(target: "agora::gateway", provider = %cand.provider.address, %reason, delivered = delivered.len(), "provider failed; failing over");
                    last_reason = reason;
                }
            }
        }
        Some(Err(RelayError {
            code: if tried.is_empty() {
                "no_provider".into()
            } else {
                "providers_failed".into()
            },
            message: if tried.is_empty() {
                "no provider on the network serves this model within the request's price and trust limits".into()
            } else {
                format!("{} provider(s) failed; last: {last_reason}", tried.len())
            },
            client_error: false,
        }))
    }

    async fn attempt(
        &self,
        job: &CompletionJob,
        request_id: Hash,
        cand: &crate::market::Candidate,
        delivered: &mut Vec<u32>,
        summary: &mut Summary,
        tx: &mpsc::Sender<RelayEvent>,
    ) -> Attempt {
        let peer = cand.provider.peer;
        let channel = match self.payer.channel_to(cand.provider.address, peer).await {
            Ok(c) => c,
            Err(e) => return Attempt::Retry(format!("cannot open a channel: {e}")),
        };
        let wire = Job {
            request_id,
            work: job.work.clone(),
            sampling: job.sampling.clone(),
            continuation: delivered.clone(),
            payer: self.payer.address(),
            channel: channel.id,
            price: cand.price,
        };
        let start = Instant::now();
        self.market.started(peer);
        // `infer` returns once the first frame arrived, so the first-frame limit covers it.
        let opened = tokio::time::timeout(
            self.settings.first_frame_timeout,
            self.net.infer(
                peer,
                InferenceRequest {
                    model: job.model.0,
                    payload: wire.encode(),
                },
            ),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.market.finished(peer, false, None);
                return Attempt::Retry(format!("cannot reach the provider: {e}"));
            }
            Err(_) => {
                self.market.finished(peer, false, None);
                return Attempt::Retry(format!(
                    "no frame for {:?}",
                    self.settings.first_frame_timeout
                ));
            }
        };
        // What this provider is owed for what arrived: the provider meters the same frames.
        let mut meter = Meter::new(cand.price);
        let mut receipt_ok = false;
        let mut first = true;
        let result = loop {
            let wait = if first {
                self.settings.first_frame_timeout
            } else {
                self.settings.stall_timeout
            };
            let item = match tokio::time::timeout(wait, stream.next()).await {
                Err(_) => break Attempt::Retry(format!("no frame for {wait:?}")),
                Ok(None) => break Attempt::Retry("the stream ended without a final frame".into()),
                Ok(Some(Err(e))) => break Attempt::Retry(e.to_string()),
                Ok(Some(Ok(bytes))) => bytes,
            };
            if first {
                self.market.first_frame(peer, start.elapsed());
                first = false;
            }
            let frame = match Frame::decode(&item) {
                Ok(f) => f,
                Err(e) => break Attempt::Retry(format!("malformed frame: {e}")),
            };
            // Pay for exactly what arrived, before passing it on.
            match frame {
                Frame::Started { prompt_tokens, .. } => {
                    channel.add(job.model, meter.prompt(prompt_tokens));
                }
                Frame::Tokens { tokens } => {
                    channel.add(job.model, meter.generated(tokens.len()));
                    let mut gone = false;
                    for t in tokens {
                        delivered.push(t.id);
                        if !self.deliver(tx, RelayEvent::Token(t)).await {
                            gone = true;
                            break;
                        }
                    }
                    if gone || tx.is_closed() {
                        break Attempt::Gone;
                    }
                }
                Frame::Text { text } => {
                    if !self.deliver(tx, RelayEvent::Text(text)).await {
                        break Attempt::Gone;
                    }
                }
                Frame::Embeddings {
                    first_index,
                    vectors,
                } => {
                    if tx
                        .send(RelayEvent::Embeddings {
                            first_index,
                            vectors,
                        })
                        .await
                        .is_err()
                    {
                        break Attempt::Gone;
                    }
                }
                Frame::Done {
                    finish_reason,
                    usage,
                    receipt,
                } => {
                    let r = &receipt.receipt;
                    receipt_ok = receipt.verify()
                        && r.provider == cand.provider.address
                        && r.request_id == request_id
                        && r.channel == channel.id
                        && usage.prompt_tokens == meter.prompt_tokens()
                        && usage.completion_tokens == meter.completion_tokens()
                        && r.charged == meter.owed();
                    if !receipt_ok {
                        tracing::warn!(target: "agora::gateway", provider = %cand.provider.address, "receipt does not match what was received");
                    }
                    summary.finish_reason = finish_reason;
                    break Attempt::Done;
                }
                Frame::Failed { code, message } => {
                    if code.fails_over() {
                        break Attempt::Retry(format!("{code}: {message}"));
                    }
                    break Attempt::Fatal(RelayError::from_provider(code, message));
                }
            }
        };
        let seg = Segment {
            provider: cand.provider.address,
            prompt_tokens: meter.prompt_tokens(),
            completion_tokens: meter.completion_tokens(),
            charged: meter.owed(),
            receipt_ok,
        };
        let ok = matches!(result, Attempt::Done | Attempt::Fatal(_) | Attempt::Gone);
        let secs = start.elapsed().as_secs_f64();
        let tps = (seg.completion_tokens > 0 && secs > 0.0)
            .then(|| f64::from(seg.completion_tokens) / secs);
        self.market.finished(peer, ok, tps);
        summary.prompt_tokens += seg.prompt_tokens;
        summary.completion_tokens += seg.completion_tokens;
        summary.charged = summary
            .charged
            .checked_add(seg.charged)
            .unwrap_or(summary.charged);
        if seg.prompt_tokens > 0 || seg.completion_tokens > 0 {
            summary.segments.push(seg);
        }
        result
    }
}
