//! The provider service: takes jobs from the overlay, runs them on the engine, streams frames
//! under the channel's credit limit, signs a receipt for every response, takes vouchers and
//! redeems them on the ledger in batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_inference::backends::candle::Embedder;
use agora_inference::{Event, GenerateError, Prompt, Request, Scheduler, SubmitError};
use agora_market::Meter;
use agora_p2p::{Inbound, InferenceCall, RpcCall, TokenSink};
use agora_types::{Amount, Encode, Hash, SecretKey, TxBody};
use agora_verify::toploc::{self, Proof};
use futures::FutureExt;

use crate::chain::TxSender;
use crate::payments::{PaymentError, Payments};
use crate::protocol::{
    FailureCode, Frame, InferenceReceipt, Job, Price, ProofBytes, RpcReply, RpcRequest, Tok, Usage,
    Work, token_hash, work_hash,
};

/// Longest wait for a submitted redeem to be final before the next round tries again.
const REDEEM_WAIT: Duration = Duration::from_secs(60);

/// How a served model runs.
pub enum ModelEngine {
    /// A chat/completion model behind the scheduler.
    Generate(Arc<Scheduler>),
    /// A sentence-embedding model; `count_tokens` gives the billed token count of one input.
    Embed {
        embedder: Arc<dyn Embedder + Send + Sync>,
        count_tokens: Arc<dyn Fn(&str) -> usize + Send + Sync>,
    },
}

/// One model this provider serves, at its price.
pub struct ServedModel {
    pub sha256: Hash,
    pub name: String,
    pub price: Price,
    pub engine: ModelEngine,
}

/// Knobs of the service.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Unpaid work a channel may run up before streaming pauses for a voucher.
    pub credit_limit: Amount,
    /// Unpaid work one payer may run up across all its channels (abandoned ones included)
    /// before its jobs are refused: what a payer can take for free, whatever it opens.
    pub payer_limit: Amount,
    /// How long streaming waits for a voucher before giving up on the job.
    pub voucher_wait: Duration,
    /// How often held vouchers are redeemed on the ledger.
    pub redeem_every: Duration,
    /// How often the channels taking work are re-read from the ledger (a close or a coming
    /// expiry triggers an immediate redeem).
    pub watch_every: Duration,
    /// Most tokens packed into one frame (tokens already generated are sent together).
    pub max_tokens_per_frame: usize,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            credit_limit: Amount(100_000),  // 0.0001 AGR
            payer_limit: Amount(1_000_000), // 0.001 AGR
            voucher_wait: Duration::from_secs(10),
            redeem_every: Duration::from_secs(5),
            watch_every: Duration::from_secs(1),
            max_tokens_per_frame: 16,
        }
    }
}

/// A running provider.
pub struct Provider {
    key: SecretKey,
    models: BTreeMap<[u8; 32], ServedModel>,
    payments: Arc<Payments>,
    settings: ProviderSettings,
    /// Held by a redeem round.
    redeeming: tokio::sync::Mutex<()>,
    metrics: crate::metrics::ProviderMetrics,
}

/// What a job has delivered so far: its bill and its output.
struct Delivered {
    meter: Meter,
    /// The rendered prompt the engine reported when it admitted the job.
    prompt: Option<Vec<u32>>,
    tokens: Vec<u32>,
    /// The hidden row each delivered token was sampled from (when the engine captures them):
    /// what the proof of the response, complete or cut off, is built from.
    rows: Vec<Vec<f32>>,
    /// The hash of the embedding vectors, once sent.
    embeddings: Option<Hash>,
    /// The hash of the proof of inference sent with the final frame.
    proof: Option<Hash>,
}

/// The TOPLOC proof of delivered tokens: `rows` are the hidden states of the positions they were
/// sampled from (`TokenEvent::hidden`, one per delivered token; the first, the last prefilled
/// position's, is the proof's prompt chunk). `None` when nothing was generated or the rows do not
/// fit a proof (logged: the response goes out without one).
fn proof_of(rows: &[Vec<f32>]) -> Option<Proof> {
    if rows.is_empty() {
        return None;
    }
    let built = agora_verify::flatten(rows).and_then(|(flat, width)| {
        let rows = agora_verify::Rows::new(&flat, width)?;
        Ok(toploc::prove(rows, 1))
    });
    match built {
        Ok(Ok(p)) => Some(p),
        Ok(Err(e)) => {
            tracing::warn!(target: "agora::provider", error = %e, "no proof for this response");
            None
        }
        Err(e) => {
            tracing::warn!(target: "agora::provider", error = %e, "no proof for this response");
            None
        }
    }
}

impl Delivered {
    fn new(job: &Job) -> Delivered {
        Delivered {
            meter: Meter::new(job.price),
            prompt: None,
            tokens: Vec::new(),
            rows: Vec::new(),
            embeddings: None,
            proof: None,
        }
    }

    /// Anything billed yet.
    fn any(&self) -> bool {
        !self.meter.owed().is_zero() || self.meter.prompt_tokens() > 0
    }

    fn output_hash(&self) -> Hash {
        self.embeddings.unwrap_or_else(|| token_hash(&self.tokens))
    }

    /// The proof of the tokens delivered so far (none for embeddings, for an engine without
    /// hidden states, or before the first token), its hash noted for the receipt.
    fn prove(&mut self) -> Option<ProofBytes> {
        // A row missing for some token (an engine without hidden states) proves nothing.
        let proof = (self.rows.len() == self.tokens.len())
            .then(|| proof_of(&self.rows))
            .flatten();
        self.proof = proof.as_ref().map(Proof::hash);
        proof.map(|p| ProofBytes(p.encode()))
    }
}

/// The engine and build a receipt names for `model`.
fn engine_name(model: &ServedModel) -> String {
    let backend = match &model.engine {
        ModelEngine::Generate(s) => s.info().architecture.clone(),
        ModelEngine::Embed { .. } => "candle embedding".into(),
    };
    let mut name = format!("agora {} {backend}", env!("CARGO_PKG_VERSION"));
    name.truncate(crate::protocol::MAX_ENGINE_BYTES);
    name
}

/// Why a job ended early.
enum Failure {
    /// Reported to the gateway as `Frame::Failed`.
    Job { code: FailureCode, message: String },
    /// The requester closed the stream: there is nobody to tell.
    RequesterGone,
}

impl Failure {
    fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Failure::Job {
            code,
            message: message.into(),
        }
    }
}

impl From<PaymentError> for Failure {
    fn from(e: PaymentError) -> Self {
        let code = match &e {
            PaymentError::Exhausted { .. } => FailureCode::ChannelExhausted,
            PaymentError::Ledger(_) => FailureCode::LedgerUnavailable,
            _ => FailureCode::PaymentRequired,
        };
        Failure::new(code, e.to_string())
    }
}

fn generate_failure(e: &GenerateError) -> Failure {
    let code = match e {
        GenerateError::ContextLength { .. } => FailureCode::ContextLengthExceeded,
        GenerateError::InvalidParams(_)
        | GenerateError::Prompt(_)
        | GenerateError::EmptyPrompt
        | GenerateError::BadToken { .. }
        | GenerateError::BadContinuation { .. } => FailureCode::InvalidRequest,
        GenerateError::Engine(_) | GenerateError::Shutdown => FailureCode::EngineError,
    };
    Failure::new(code, e.to_string())
}

impl Provider {
    pub fn new(
        key: SecretKey,
        models: Vec<ServedModel>,
        payments: Arc<Payments>,
        settings: ProviderSettings,
    ) -> Provider {
        Provider {
            key,
            models: models.into_iter().map(|m| (m.sha256.0, m)).collect(),
            payments,
            settings,
            redeeming: tokio::sync::Mutex::new(()),
            metrics: crate::metrics::ProviderMetrics::new(),
        }
    }

    /// Jobs, tokens and billing, for the node's `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::ProviderMetrics {
        &self.metrics
    }

    /// Jobs being served right now.
    pub fn active_jobs(&self) -> u32 {
        // The metrics' gauge is the one count: the offer's load and `/metrics` read it.
        u32::try_from(self.metrics.active.get()).unwrap_or(0)
    }

    pub fn payments(&self) -> &Arc<Payments> {
        &self.payments
    }

    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.models.values()
    }

    /// Serves the overlay's inbound queues until they close.
    pub async fn serve(self: Arc<Self>, inbound: Inbound) {
        let Inbound {
            mut inference,
            mut rpc,
        } = inbound;
        let me = self.clone();
        let rpcs = tokio::spawn(async move {
            while let Some(call) = rpc.recv().await {
                let me = me.clone();
                tokio::spawn(async move { me.handle_rpc(call).await });
            }
        });
        while let Some(call) = inference.recv().await {
            let me = self.clone();
            tokio::spawn(async move {
                me.metrics.active.inc();
                let outcome = me.handle_job(call).await;
                me.metrics.jobs.with_label_values(&[outcome]).inc();
                me.metrics.active.dec();
            });
        }
        rpcs.abort();
    }

    async fn handle_rpc(&self, call: RpcCall) {
        let reply = match serde_json::from_slice::<RpcRequest>(&call.request) {
            Err(e) => RpcReply::Rejected {
                message: format!("malformed rpc: {e}"),
            },
            Ok(RpcRequest::Voucher { voucher }) => match self.payments.accept(voucher).await {
                Ok(cumulative) => RpcReply::Accepted { cumulative },
                Err(e) => RpcReply::Rejected {
                    message: e.to_string(),
                },
            },
        };
        let _ = call
            .reply
            .send(serde_json::to_vec(&reply).unwrap_or_default());
    }

    /// Serves one job; returns how it ended (the `outcome` label of `agora_provider_jobs_total`).
    async fn handle_job(&self, call: InferenceCall) -> &'static str {
        let InferenceCall {
            peer,
            request,
            tokens,
        } = call;
        let sink = tokens;
        let job = match Job::decode(&request.payload) {
            Ok(j) => j,
            Err(e) => {
                fail(
                    sink,
                    Failure::new(FailureCode::InvalidRequest, e.to_string()),
                )
                .await;
                return "refused";
            }
        };
        // The payer's account key is its overlay identity: a job billed to anyone but the peer
        // that sent it is a stranger spending someone else's channel.
        if !agora_p2p::is_account_peer(&peer, &job.payer.0) {
            let f = Failure::new(
                FailureCode::NotThePayer,
                format!(
                    "the job names payer {} but was sent by peer {peer}",
                    job.payer
                ),
            );
            fail(sink, f).await;
            return "refused";
        }
        let Some(model) = self.models.get(&request.model) else {
            let f = Failure::new(
                FailureCode::ModelNotFound,
                format!(
                    "this provider does not serve model {}",
                    hex::encode(request.model)
                ),
            );
            fail(sink, f).await;
            return "refused";
        };
        if !job.price.covers(&model.price) {
            let f = Failure::new(
                FailureCode::PriceTooLow,
                format!(
                    "offered {}/{} per million tokens; this provider charges {}/{}",
                    job.price.input_per_million.0,
                    job.price.output_per_million.0,
                    model.price.input_per_million.0,
                    model.price.output_per_million.0
                ),
            );
            fail(sink, f).await;
            return "refused";
        }
        if let Err(e) = self.payments.admit(&job.channel, &job.payer).await {
            fail(sink, e.into()).await;
            return "refused";
        }
        let mut delivered = Delivered::new(&job);
        let result = match &model.engine {
            ModelEngine::Generate(s) => {
                self.run_generate(s, model, &job, &sink, &mut delivered)
                    .await
            }
            ModelEngine::Embed {
                embedder,
                count_tokens,
            } => {
                let (e, c) = (embedder.clone(), count_tokens.clone());
                self.run_embed(e, c, model, &job, &sink, &mut delivered)
                    .await
            }
        };
        self.metrics.tokens.inc_by(delivered.tokens.len() as u64);
        self.metrics
            .billed
            .inc_by(u64::try_from(delivered.meter.owed().0).unwrap_or(u64::MAX));
        match result {
            Ok(()) => {
                let _ = sink.finish().await;
                "ok"
            }
            // Work was delivered before the failure: the payer gets a signed receipt for it.
            Err(Failure::Job { code, message }) if delivered.any() => {
                // Proved as far as it went, like a complete response.
                let proof = delivered.prove();
                let receipt = self.receipt(&job, model, &delivered, false);
                let frame = Frame::Failed {
                    code,
                    message,
                    receipt: Some(receipt),
                    proof,
                };
                if sink.send(frame.encode()).await.is_ok() {
                    let _ = sink.finish().await;
                }
                "failed"
            }
            Err(Failure::RequesterGone) => {
                // Off the job's slot: the grace for the payer's last vouchers runs on its own.
                let (payments, channel, owed) =
                    (self.payments.clone(), job.channel, delivered.meter.owed());
                tokio::spawn(async move { payments.requester_left(&channel, owed).await });
                "cancelled"
            }
            Err(f) => {
                fail(sink, f).await;
                "failed"
            }
        }
    }

    /// Charges the next frame (what `add` adds to the job's meter) once the channel's earlier
    /// frames are paid for. The meter moves only when the charge is taken, so a frame refused
    /// (the deposit spent) is in neither the bill nor the receipt. A requester that leaves
    /// while the job waits is seen at once (so the job ends as cancelled and its unpaid frames
    /// are forgiven), not after the voucher wait runs out.
    async fn pay_gate(
        &self,
        job: &Job,
        sink: &TokenSink,
        meter: &mut Meter,
        add: impl FnOnce(&mut Meter) -> Amount,
    ) -> Result<(), Failure> {
        tokio::select! {
            paid = self.payments.wait_paid(&job.channel) => paid?,
            () = sink.closed() => return Err(Failure::RequesterGone),
        }
        let mut next = meter.clone();
        let amount = add(&mut next);
        self.payments.charge(&job.channel, amount)?;
        *meter = next;
        Ok(())
    }

    async fn run_generate(
        &self,
        scheduler: &Scheduler,
        model: &ServedModel,
        job: &Job,
        sink: &TokenSink,
        delivered: &mut Delivered,
    ) -> Result<(), Failure> {
        let prompt = match &job.work {
            // Natively where the model's template lays out tools, else in agora-json's fallback
            // format; the gateway bounded both and an auditor rebuilds the same.
            Work::Chat { messages, tools } => Prompt::ToolChat {
                messages: messages.clone(),
                tools: tools.clone(),
            },
            Work::Text { prompt } => Prompt::Text(prompt.clone()),
            Work::Embed { .. } => {
                return Err(Failure::new(
                    FailureCode::InvalidRequest,
                    format!(
                        "{} is a generative model, not an embedding model",
                        model.name
                    ),
                ));
            }
        };
        let mut request = Request::generate(prompt, job.sampling.clone());
        request.continuation = job.continuation.clone();
        // The rows a proof commits to cost nothing extra to keep; an engine built without
        // hidden states answers without a proof.
        request.capture_sampled = scheduler.info().hidden_states;
        let mut stream = scheduler.submit(request).map_err(|e| match e {
            SubmitError::Overloaded { .. } => Failure::new(FailureCode::Overloaded, e.to_string()),
            SubmitError::Shutdown => Failure::new(FailureCode::EngineError, e.to_string()),
        })?;
        // Returning early drops `stream`, which frees the engine's slot at its next step.
        // What the job owes, frame by frame (`delivered.meter`): the gateway meters the same
        // frames.
        let mut pending: Option<Event> = None;
        loop {
            let ev = match pending.take() {
                Some(e) => e,
                None => match stream.next().await {
                    Some(e) => e,
                    None => {
                        return Err(Failure::new(FailureCode::EngineError, "the engine stopped"));
                    }
                },
            };
            match ev {
                Event::Started {
                    prompt_tokens: p,
                    cached_tokens,
                    prompt,
                } => {
                    delivered.prompt = Some(prompt);
                    self.pay_gate(job, sink, &mut delivered.meter, |m| m.prompt(p))
                        .await?;
                    send(
                        sink,
                        &Frame::Started {
                            prompt_tokens: p,
                            cached_tokens,
                        },
                    )
                    .await?;
                }
                Event::Token(mut t) => {
                    let mut rows: Vec<Vec<f32>> = t.hidden.take().into_iter().collect();
                    let mut toks = vec![tok(t)];
                    // Pack tokens that are already waiting into the same frame.
                    while toks.len() < self.settings.max_tokens_per_frame {
                        match stream.next().now_or_never() {
                            Some(Some(Event::Token(mut t))) => {
                                rows.extend(t.hidden.take());
                                toks.push(tok(t));
                            }
                            Some(Some(other)) => {
                                pending = Some(other);
                                break;
                            }
                            _ => break,
                        }
                    }
                    let n = toks.len();
                    self.pay_gate(job, sink, &mut delivered.meter, |m| m.generated(n))
                        .await?;
                    delivered.tokens.extend(toks.iter().map(|t| t.id));
                    delivered.rows.extend(rows);
                    send(sink, &Frame::Tokens { tokens: toks }).await?;
                }
                Event::Text(text) => {
                    send(sink, &Frame::Text { text }).await?;
                }
                Event::Error(e) => return Err(generate_failure(&e)),
                Event::Done(c) => {
                    let usage = Usage {
                        prompt_tokens: delivered.meter.prompt_tokens(),
                        completion_tokens: delivered.meter.completion_tokens(),
                        cached_tokens: c.usage.cached_tokens,
                    };
                    let finish_reason = match c.finish_reason {
                        agora_inference::FinishReason::Stop => "stop",
                        agora_inference::FinishReason::Length => "length",
                        agora_inference::FinishReason::Cancelled => "cancelled",
                    };
                    let proof = delivered.prove();
                    let receipt = self.receipt(job, model, delivered, true);
                    return send(
                        sink,
                        &Frame::Done {
                            finish_reason: finish_reason.into(),
                            usage,
                            receipt,
                            proof,
                        },
                    )
                    .await;
                }
            }
        }
    }

    async fn run_embed(
        &self,
        embedder: Arc<dyn Embedder + Send + Sync>,
        count_tokens: Arc<dyn Fn(&str) -> usize + Send + Sync>,
        model: &ServedModel,
        job: &Job,
        sink: &TokenSink,
        delivered: &mut Delivered,
    ) -> Result<(), Failure> {
        let Work::Embed { inputs } = &job.work else {
            return Err(Failure::new(
                FailureCode::InvalidRequest,
                format!("{} is an embedding model; use /v1/embeddings", model.name),
            ));
        };
        let prompt_tokens: usize = inputs.iter().map(|s| count_tokens(s)).sum();
        let prompt_tokens = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
        // Embeddings are delivered in one go, so the whole cost is gated like one frame.
        self.pay_gate(job, sink, &mut delivered.meter, |m| m.prompt(prompt_tokens))
            .await?;
        send(
            sink,
            &Frame::Started {
                prompt_tokens,
                cached_tokens: 0,
            },
        )
        .await?;
        let owned = inputs.clone();
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            embedder.embed(&refs)
        })
        .await
        .map_err(|e| Failure::new(FailureCode::EngineError, e.to_string()))?
        .map_err(|e| Failure::new(FailureCode::InvalidRequest, e.to_string()))?;
        let mut bytes = Vec::new();
        for (i, chunk) in vectors.chunks(8).enumerate() {
            for v in chunk {
                bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            }
            send(
                sink,
                &Frame::Embeddings {
                    first_index: (i * 8) as u32,
                    vectors: chunk.to_vec(),
                },
            )
            .await?;
        }
        let usage = Usage {
            prompt_tokens,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        delivered.embeddings = Some(agora_types::Hash::of_parts(
            agora_types::HashDomain::Request,
            &[b"embeddings", &bytes],
        ));
        let receipt = self.receipt(job, model, delivered, true);
        send(
            sink,
            &Frame::Done {
                finish_reason: "stop".into(),
                usage,
                receipt,
                proof: None,
            },
        )
        .await
    }

    /// The signed receipt for what `delivered` holds (its prompt hash once the engine reported
    /// the prompt).
    fn receipt(
        &self,
        job: &Job,
        model: &ServedModel,
        delivered: &Delivered,
        complete: bool,
    ) -> Box<crate::protocol::SignedReceipt> {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let meter = &delivered.meter;
        InferenceReceipt {
            chain_id: self.payments.chain_id().to_string(),
            work_hash: work_hash(&job.work),
            continuation_hash: token_hash(&job.continuation),
            prompt_hash: delivered.prompt.as_deref().map_or(Hash::ZERO, token_hash),
            engine: engine_name(model),
            complete,
            request_id: job.request_id,
            provider: self.key.public(),
            payer: job.payer,
            channel: job.channel,
            model: model.sha256,
            seed: job.sampling.seed,
            params_hash: job.sampling.hash(),
            prompt_tokens: meter.prompt_tokens(),
            completion_tokens: meter.completion_tokens(),
            continuation_tokens: job.continuation.len() as u32,
            price: job.price,
            charged: meter.owed(),
            output_hash: delivered.output_hash(),
            time_ms,
            proof_hash: delivered.proof.unwrap_or(Hash::ZERO),
        }
        .sign(&self.key)
        .into()
    }

    /// Redeems every voucher better than what the ledger paid, as one batch (all submitted, then
    /// all awaited, so they land in the same block or so); returns how many were redeemed. A
    /// voucher the ledger refused is never sent again.
    pub async fn redeem_now(&self, sender: &TxSender) -> usize {
        // One round at a time (the watcher's, the periodic one, the final one at shutdown):
        // two rounds would send the same voucher twice and pay a fee for the refusal.
        let _round = self.redeeming.lock().await;
        let mut submitted = Vec::new();
        for v in self.payments.redeemable() {
            let channel = v.voucher.channel;
            let cumulative = v.voucher.cumulative;
            match sender.submit(TxBody::RedeemVoucher(v)).await {
                Ok((id, _)) => submitted.push((channel, cumulative, id)),
                Err(e) => {
                    tracing::warn!(target: "agora::provider", %channel, error = %e, "redeem not submitted");
                }
            }
        }
        let mut done = 0;
        for (channel, cumulative, id) in submitted {
            match sender.chain().wait_final(&id, REDEEM_WAIT).await {
                Ok(r) if matches!(r.outcome, agora_types::Outcome::Success) => {
                    self.payments.redeemed(&channel, cumulative).await;
                    done += 1;
                }
                Ok(r) => {
                    tracing::warn!(target: "agora::provider", %channel, outcome = ?r.outcome, "the ledger refused the redeem; not retrying this voucher");
                    // Already redeemed (e.g. before a restart): learn the ledger's figure.
                    if let Ok(Some(c)) = sender.chain().channel(&channel).await {
                        self.payments.redeemed(&channel, c.redeemed).await;
                    }
                    self.payments.refused(&channel, cumulative).await;
                }
                Err(e) => {
                    tracing::warn!(target: "agora::provider", %channel, error = %e, "redeem not final yet; next round");
                }
            }
        }
        done
    }

    /// Follows the channels on the ledger every `watch_every` and redeems held vouchers every
    /// `redeem_every`, or at once when a channel starts closing or nears expiry; until the task
    /// is dropped.
    pub async fn redeem_loop(self: Arc<Self>, sender: Arc<TxSender>) {
        let mut tick = tokio::time::interval(self.settings.watch_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let urgent = match self.payments.follow().await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(target: "agora::provider", error = %e, "cannot follow channels");
                    Vec::new()
                }
            };
            if !urgent.is_empty() {
                tracing::info!(target: "agora::provider", channels = urgent.len(), "channels closing or expiring; redeeming now");
            }
            if !urgent.is_empty() || last.elapsed() >= self.settings.redeem_every {
                self.redeem_now(&sender).await;
                last = tokio::time::Instant::now();
            }
        }
    }
}

fn tok(t: agora_inference::scheduler::TokenEvent) -> Tok {
    Tok {
        id: t.id,
        text: t.text,
        logprob: t.logprob,
        top: t.top.iter().map(|a| (a.token, a.logprob)).collect(),
        top_text: t.top_text,
    }
}

async fn send(sink: &TokenSink, frame: &Frame) -> Result<(), Failure> {
    sink.send(frame.encode())
        .await
        .map_err(|_| Failure::RequesterGone)
}

async fn fail(sink: TokenSink, f: Failure) {
    let Failure::Job { code, message } = f else {
        return;
    };
    tracing::debug!(target: "agora::provider", %code, %message, "job failed");
    let frame = Frame::Failed {
        code,
        message,
        receipt: None,
        proof: None,
    };
    if sink.send(frame.encode()).await.is_ok() {
        let _ = sink.finish().await;
    }
}
