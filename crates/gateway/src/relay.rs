//! One completion across providers: route, pay per frame, verify the receipt, and when a provider
//! dies or stalls mid-stream, continue the same completion on another provider from the tokens
//! already delivered (same prompt, parameters and seed; the sampler's noise depends only on
//! (seed, position, token), so the continuation is the text the first provider would have
//! written). The caller sees one uninterrupted sequence of [`RelayEvent`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_market::Meter;
use agora_market::bounds::{completion_token_bound, max_cost, prompt_token_bound};
use agora_market::protocol::{
    FailureCode, Frame, InferenceReceipt, Job, ProofBytes, Replay, SamplingParams, SignedReceipt,
    Tok, Work, token_hash, work_hash,
};
use agora_p2p::{InferenceRequest, PeerId};
use agora_types::{Amount, Hash, HashDomain};
use agora_verify::toploc::Proof;
use futures::FutureExt;
use tokio::sync::mpsc;

use crate::customers::{Customers, KeyHash};
use crate::feed::{Feed, FeedEvent, RequestEvent, SegmentEvent, now_ms};
use crate::market::{Constraints, Market};
use crate::payer::Payer;
use crate::receipts::{KeptReceipt, ReceiptStore};

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
    pub request_id: Hash,
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
    /// The provider's signed receipt and proof of inference, as received (also in the gateway's
    /// receipt store).
    pub receipt: Option<KeptReceipt>,
}

/// Whose fault a failed completion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself (HTTP 400).
    Client,
    /// The key's free credit cannot cover what the request may cost (HTTP 429).
    Quota,
    /// The network: no provider, or every provider tried failed (HTTP 503).
    Network,
}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayError {
    /// OpenAI-style code: `invalid_request`, `context_length_exceeded`, `no_provider`, ...
    pub code: String,
    pub message: String,
    pub fault: Fault,
}

impl RelayError {
    /// A provider's failure that ends the completion (one where [`FailureCode::fails_over`] is
    /// false), passed on to the client as the provider named it.
    fn from_provider(code: FailureCode, message: String) -> RelayError {
        RelayError {
            fault: if code.is_client_fault() {
                Fault::Client
            } else {
                Fault::Network
            },
            code: code.to_string(),
            message,
        }
    }
}

/// A fresh request id: every provider that serves part of the completion signs a receipt for it.
pub fn new_request_id() -> Hash {
    Hash::of_parts(
        HashDomain::Request,
        &[b"gateway", &rand::random::<[u8; 32]>()],
    )
}

/// A whole completion request, as the API layer built it.
#[derive(Debug, Clone)]
pub struct CompletionJob {
    /// [`new_request_id`]; the key of its receipts in the gateway's store.
    pub request_id: Hash,
    pub model: Hash,
    pub work: Work,
    pub sampling: SamplingParams,
    pub constraints: Constraints,
    /// Who pays: charged exactly `Summary::charged` whether the completion ends, fails or the
    /// client leaves.
    pub customer: KeyHash,
}

/// The receipt a provider must sign for one attempt, built from what this gateway sent and
/// received.
struct Expected {
    base: InferenceReceipt,
    /// Where this attempt's tokens start in the completion's delivered tokens.
    from: usize,
    /// An embedding job: its output is the vectors, not tokens.
    embed: bool,
    /// The embedding vectors received, as the provider hashes them.
    embedding_bytes: Vec<u8>,
}

impl Expected {
    fn of(&self, meter: &Meter, delivered: &[u32], complete: bool) -> InferenceReceipt {
        let output_hash = if self.embed {
            Hash::of_parts(HashDomain::Request, &[b"embeddings", &self.embedding_bytes])
        } else {
            token_hash(delivered.get(self.from..).unwrap_or_default())
        };
        InferenceReceipt {
            prompt_tokens: meter.prompt_tokens(),
            completion_tokens: meter.completion_tokens(),
            charged: meter.owed(),
            output_hash,
            complete,
            ..self.base.clone()
        }
    }
}

/// The proof hash a response's receipt must carry (complete or cut off): that of the proof that
/// came with it, decoded within the request's bounds. A generated response must bring a proof
/// (what an auditor checks the provider against); embeddings and an attempt that generated
/// nothing bring none.
fn expected_proof_hash(
    proof: Option<&ProofBytes>,
    want: &InferenceReceipt,
    job: &CompletionJob,
) -> Result<Hash, &'static str> {
    let generated = want.completion_tokens > 0 && !matches!(job.work, Work::Embed { .. });
    match (proof, generated) {
        (None, false) => Ok(Hash::ZERO),
        (Some(_), false) => Err("a proof where nothing was generated"),
        (None, true) => Err("no proof with a generated response"),
        (Some(bytes), true) => {
            let max_chunks = Proof::max_decode_chunks(job.sampling.max_tokens);
            let proof =
                Proof::decode(&bytes.0, max_chunks).map_err(|_| "a proof that does not decode")?;
            // One decode chunk per 32 rows after the first: a proof for fewer or more tokens
            // than were delivered is not this response's.
            if proof.decode.len() != Proof::max_decode_chunks(want.completion_tokens) {
                return Err("a proof for another number of tokens");
            }
            Ok(proof.hash())
        }
    }
}

/// Sets the proof hash `want` must carry from the proof that came with the response; false
/// (logged) when that proof is unusable.
fn bind_proof(
    proof: Option<&ProofBytes>,
    want: &mut InferenceReceipt,
    job: &CompletionJob,
) -> bool {
    match expected_proof_hash(proof, want, job) {
        Ok(h) => {
            want.proof_hash = h;
            true
        }
        Err(why) => {
            tracing::warn!(target: "agora::gateway", provider = %want.provider, why, "unusable proof of inference");
            false
        }
    }
}

/// Runs completions.
pub struct Relay {
    pub market: Arc<Market>,
    pub payer: Arc<Payer>,
    pub net: agora_p2p::Handle,
    pub customers: Arc<Customers>,
    pub receipts: Arc<ReceiptStore>,
    pub settings: RelaySettings,
    /// Where each finished or failed completion is announced (the dashboard's live view).
    pub feed: Arc<Feed>,
}

/// Embedding vectors longer than this are refused (the largest open models use 4,096).
const MAX_EMBEDDING_DIMS: usize = 16_384;
/// Loose text (text belonging to no single token) allowed per generated token the request allows.
const TEXT_BYTES_PER_TOKEN: usize = 64;

/// What one attempt's frames may claim, computed from what this gateway sent.
struct FrameLimits {
    prompt_tokens: u32,
    completion_tokens: u32,
    text_bytes: usize,
    embeddings: usize,
}

impl FrameLimits {
    fn new(job: &CompletionJob, delivered: usize) -> FrameLimits {
        let completion_tokens = completion_token_bound(&job.work, &job.sampling, delivered);
        FrameLimits {
            prompt_tokens: prompt_token_bound(&job.work, delivered),
            completion_tokens,
            text_bytes: (completion_tokens as usize)
                .saturating_add(1)
                .saturating_mul(TEXT_BYTES_PER_TOKEN),
            embeddings: match &job.work {
                Work::Embed { inputs } => inputs.len(),
                _ => 0,
            },
        }
    }
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

/// How a completion ended, for the feed (`None`: the client left first).
fn request_event(
    job: &CompletionJob,
    summary: &Summary,
    last: &Option<Result<(), RelayError>>,
) -> RequestEvent {
    RequestEvent {
        at_ms: now_ms(),
        request_id: hex::encode(job.request_id.0),
        model: job.model,
        error: match last {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(format!("{}: {}", e.code, e.message)),
            None => Some("the client left".into()),
        },
        finish_reason: summary.finish_reason.clone(),
        prompt_tokens: summary.prompt_tokens,
        completion_tokens: summary.completion_tokens,
        charged: summary.charged,
        segments: summary
            .segments
            .iter()
            .map(|g| SegmentEvent {
                provider: g.provider,
                completion_tokens: g.completion_tokens,
                charged: g.charged,
                receipt_ok: g.receipt_ok,
                receipt_id: g
                    .receipt
                    .as_ref()
                    .map(|k| agora_types::audit::receipt_id(&k.signed)),
                channel: g.receipt.as_ref().map(|k| k.signed.receipt.channel),
                proof_bytes: g
                    .receipt
                    .as_ref()
                    .and_then(|k| k.proof.as_ref())
                    .map_or(0, |p| p.0.len()),
            })
            .collect(),
    }
}

impl Relay {
    /// Checks a provider's receipt against the one this gateway expects; logs the first
    /// mismatching field.
    fn check_receipt(&self, got: &SignedReceipt, expected: &InferenceReceipt) -> bool {
        if !got.verify() {
            tracing::warn!(target: "agora::gateway", provider = %expected.provider, "receipt signature does not verify");
            return false;
        }
        match got.receipt.mismatch(expected) {
            None => true,
            Some(field) => {
                tracing::warn!(target: "agora::gateway", provider = %expected.provider, field, "receipt does not match what was sent and received");
                false
            }
        }
    }

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
            request_id: job.request_id,
            finish_reason: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            charged: Amount::ZERO,
            segments: Vec::new(),
        };
        // Each attempt holds the customer's credit and settles it to what its provider was paid,
        // on every way out: what the providers delivered is what the customer pays.
        let last = self.attempts(&job, &mut summary, &tx).await;
        self.feed
            .publish(FeedEvent::Request(request_event(&job, &summary, &last)));
        // The customer hears the end only once its charge is on disk: a crash after this point
        // cannot lose what it was told it paid.
        self.customers.wait_durable().await;
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
        let request_id = job.request_id;
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
            fault: Fault::Network,
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
        // The most this attempt can cost at this provider's price, held before any work is bought.
        let hold = max_cost(&cand.price, &job.work, &job.sampling, delivered.len())
            .unwrap_or(Amount(u128::MAX));
        if let Err(e) = self.customers.hold(&job.customer, hold, summary.charged) {
            use crate::customers::AuthError;
            return Attempt::Fatal(match e {
                AuthError::OverCap { cap, need } => RelayError {
                    code: "request_over_cap".into(),
                    message: format!(
                        "this request may cost up to {} base units at the provider's price; the \
                         key's per-request cap is {}",
                        need.0, cap.0
                    ),
                    fault: Fault::Client,
                },
                other => {
                    let free = match other {
                        AuthError::NoCredit { remaining } => remaining,
                        _ => Amount::ZERO,
                    };
                    RelayError {
                        code: "insufficient_quota".into(),
                        message: format!(
                            "this request may cost up to {} base units at the provider's price; \
                             the key has {} free",
                            hold.0, free.0
                        ),
                        fault: Fault::Quota,
                    }
                }
            });
        }
        let (result, charged) = self
            .attempt_held(job, request_id, cand, delivered, summary, tx)
            .await;
        self.customers.settle(&job.customer, hold, charged);
        result
    }

    /// One provider's attempt, the customer's credit already held; returns what it was paid.
    async fn attempt_held(
        &self,
        job: &CompletionJob,
        request_id: Hash,
        cand: &crate::market::Candidate,
        delivered: &mut Vec<u32>,
        summary: &mut Summary,
        tx: &mpsc::Sender<RelayEvent>,
    ) -> (Attempt, Amount) {
        let peer = cand.provider.peer;
        let channel = match self.payer.channel_to(cand.provider.address, peer).await {
            Ok(c) => c,
            Err(e) => {
                return (
                    Attempt::Retry(format!("cannot open a channel: {e}")),
                    Amount::ZERO,
                );
            }
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
                let why = format!("cannot reach the provider: {e}");
                return (Attempt::Retry(why), Amount::ZERO);
            }
            Err(_) => {
                self.market.finished(peer, false, None);
                let why = format!("no frame for {:?}", self.settings.first_frame_timeout);
                return (Attempt::Retry(why), Amount::ZERO);
            }
        };
        // What this provider is owed for what arrived: the provider meters the same frames. It is
        // paid only inside what this request can cost, computed from what we sent.
        let mut meter = Meter::new(cand.price);
        let limits = FrameLimits::new(job, delivered.len());
        let mut started = false;
        let mut text_bytes = 0usize;
        let mut receipt_ok = false;
        let mut receipt_kept = None;
        let mut proof_kept = None;
        let expect = Expected {
            base: InferenceReceipt {
                chain_id: self.payer.chain_id().to_string(),
                request_id,
                provider: cand.provider.address,
                payer: self.payer.address(),
                channel: channel.id,
                model: job.model,
                seed: job.sampling.seed,
                params_hash: job.sampling.hash(),
                work_hash: work_hash(&job.work),
                continuation_hash: token_hash(&wire.continuation),
                prompt_hash: Hash::ZERO,
                engine: String::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                continuation_tokens: u32::try_from(wire.continuation.len()).unwrap_or(u32::MAX),
                price: cand.price,
                charged: Amount::ZERO,
                output_hash: Hash::ZERO,
                time_ms: 0,
                complete: true,
                proof_hash: Hash::ZERO,
            },
            from: wire.continuation.len(),
            embed: matches!(job.work, Work::Embed { .. }),
            embedding_bytes: Vec::new(),
        };
        let mut expect = expect;
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
                    if std::mem::replace(&mut started, true) {
                        break Attempt::Retry("sent a second Started frame".into());
                    }
                    if prompt_tokens > limits.prompt_tokens {
                        break Attempt::Retry(format!(
                            "billed {prompt_tokens} prompt tokens; this request has at most {}",
                            limits.prompt_tokens
                        ));
                    }
                    channel.add(job.model, meter.prompt(prompt_tokens));
                }
                Frame::Tokens { tokens } => {
                    let total = u64::from(meter.completion_tokens()) + tokens.len() as u64;
                    if total > u64::from(limits.completion_tokens) {
                        break Attempt::Retry(format!(
                            "sent {total} tokens; the request allows {}",
                            limits.completion_tokens
                        ));
                    }
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
                    text_bytes = text_bytes.saturating_add(text.len());
                    if text_bytes > limits.text_bytes {
                        break Attempt::Retry(format!(
                            "sent {text_bytes} bytes of loose text; the request allows {}",
                            limits.text_bytes
                        ));
                    }
                    if !self.deliver(tx, RelayEvent::Text(text)).await {
                        break Attempt::Gone;
                    }
                }
                Frame::Embeddings {
                    first_index,
                    vectors,
                } => {
                    let end = u64::from(first_index) + vectors.len() as u64;
                    if end > limits.embeddings as u64
                        || vectors.iter().any(|v| v.len() > MAX_EMBEDDING_DIMS)
                    {
                        break Attempt::Retry(format!(
                            "sent embeddings up to index {end} (dimensions up to {}); the request has {} inputs",
                            vectors.iter().map(Vec::len).max().unwrap_or(0),
                            limits.embeddings
                        ));
                    }
                    for v in &vectors {
                        expect
                            .embedding_bytes
                            .extend(v.iter().flat_map(|x| x.to_le_bytes()));
                    }
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
                    proof,
                } => {
                    let counts_ok = usage.prompt_tokens == meter.prompt_tokens()
                        && usage.completion_tokens == meter.completion_tokens();
                    let mut want = expect.of(&meter, delivered, true);
                    let proof_ok = bind_proof(proof.as_ref(), &mut want, job);
                    receipt_ok = counts_ok && proof_ok && self.check_receipt(&receipt, &want);
                    receipt_kept = Some(*receipt);
                    proof_kept = proof;
                    summary.finish_reason = finish_reason;
                    break Attempt::Done;
                }
                Frame::Failed {
                    code,
                    message,
                    receipt,
                    proof,
                } => {
                    if let Some(r) = receipt {
                        // The tokens delivered before the failure are proved like a complete
                        // response's.
                        let mut want = expect.of(&meter, delivered, false);
                        let proof_ok = bind_proof(proof.as_ref(), &mut want, job);
                        receipt_ok = proof_ok && self.check_receipt(&r, &want);
                        receipt_kept = Some(*r);
                        proof_kept = proof;
                    }
                    if code.fails_over() {
                        break Attempt::Retry(format!("{code}: {message}"));
                    }
                    break Attempt::Fatal(RelayError::from_provider(code, message));
                }
            }
        };
        if matches!(result, Attempt::Gone) {
            // The client left: pay for the token frames that already arrived and sit unread
            // (the provider delivered them), within the same bounds, without waiting for more.
            while let Some(Some(Ok(bytes))) = stream.next().now_or_never() {
                let Ok(Frame::Tokens { tokens }) = Frame::decode(&bytes) else {
                    continue;
                };
                let total = u64::from(meter.completion_tokens()) + tokens.len() as u64;
                if total > u64::from(limits.completion_tokens) {
                    break;
                }
                channel.add(job.model, meter.generated(tokens.len()));
            }
        }
        let replay = (!expect.embed).then(|| Replay {
            work: job.work.clone(),
            sampling: job.sampling.clone(),
            continuation: wire.continuation.clone(),
            output: delivered.get(expect.from..).unwrap_or_default().to_vec(),
        });
        let kept = receipt_kept.map(|signed| KeptReceipt {
            signed,
            proof: proof_kept,
            replay,
        });
        if let Some(r) = &kept {
            self.receipts.record(r).await;
        }
        let seg = Segment {
            provider: cand.provider.address,
            prompt_tokens: meter.prompt_tokens(),
            completion_tokens: meter.completion_tokens(),
            charged: meter.owed(),
            receipt_ok,
            receipt: kept,
        };
        // A receipt that does not match what arrived counts against the provider's score.
        let receipt_fine = receipt_ok || !matches!(result, Attempt::Done);
        let ok =
            receipt_fine && matches!(result, Attempt::Done | Attempt::Fatal(_) | Attempt::Gone);
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
        let charged = seg.charged;
        if seg.prompt_tokens > 0 || seg.completion_tokens > 0 {
            summary.segments.push(seg);
        }
        (result, charged)
    }
}
