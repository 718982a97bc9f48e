//! The audit and scoring roles: replays a provider's response on the real model and says whether
//! the provider served what it was paid for, with the numbers; and scores each market's providers
//! into the weights Yuma pays by (`scorer`).
//!
//! ```text
//!  signed receipt + proof + Replay (job, delivered tokens), from a gateway's receipt store
//!      |  1. the receipt: the provider's signature, this auditor's model, and every hash the
//!      |     receipt carries against the Replay (work, parameters, seed, continuation, output)
//!      v     and the proof (a gateway cannot frame a provider with a made-up job)
//!  one prefill on the real model: rendered prompt ++ continuation ++ output[..n-1]
//!      |     (++ output[n-1] when a complete response must end on an end-of-generation token)
//!      |     (Task::Score: every hidden row, the logits of the last n (+1) positions)
//!      |  2. the prompt: what the template and tokenizer make of the work is the provider's
//!      |     prompt_hash and prompt_tokens
//!      |  3. the rules: continuation ++ output replayed through the scheduler's own generation
//!      |     rules (stop sequences, JSON mode, max_tokens): nothing after the end, and a
//!      |     complete response ends where a rule or the model ends it
//!      |  4. TOPLOC: the proof against the auditor's rows of the sampled positions
//!      v  5. tokens: our sampler replayed over the auditor's logits, under the JSON mask when
//!            the request asked for JSON (prefill attack, sampler tampering, edited text)
//!  AuditReport { findings, toploc verdict, token report }   failed() == !findings.is_empty()
//! ```
//!
//! Design notes and measured rates: `docs/design/verification.md`.

mod report;
pub mod role;
pub mod scorer;

use std::sync::Arc;

use agora_inference::{FinishReason, GenerateError, JsonMask, Prompt, Request, Scheduler};
use agora_market::protocol::{ProofBytes, Replay, SignedReceipt, Work, token_hash};
use agora_types::Hash;
use agora_types::audit::receipt_id;
use agora_verify::tokens::{self, Claim, TokenMask, Tolerance};
use agora_verify::toploc::{self, Proof, Thresholds};
use agora_verify::{Rows, flatten};

pub use report::{AuditReport, Finding};

/// A response this auditor cannot judge (not a finding against the provider).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the receipt is for model {receipt}, this auditor runs {ours}")]
    OtherModel { receipt: Hash, ours: Hash },
    #[error("embeddings are not audited by replay")]
    Embeddings,
    #[error("the engine failed: {0}")]
    Engine(String),
}

/// Audits responses of one model.
pub struct Auditor {
    scheduler: Arc<Scheduler>,
    /// sha256 of the model file the scheduler runs.
    model: Hash,
    pub thresholds: Thresholds,
    pub tolerance: Tolerance,
}

impl Auditor {
    /// An auditor over `scheduler` (built with hidden states), which runs the model file whose
    /// sha256 is `model`.
    pub fn new(scheduler: Arc<Scheduler>, model: Hash) -> Auditor {
        Auditor {
            scheduler,
            model,
            thresholds: Thresholds::default(),
            tolerance: Tolerance::default(),
        }
    }

    /// Replays `receipt`'s response and checks it.
    pub async fn audit(
        &self,
        receipt: &SignedReceipt,
        proof: Option<&ProofBytes>,
        replay: &Replay,
    ) -> Result<AuditReport, AuditError> {
        let r = &receipt.receipt;
        if r.model != self.model {
            return Err(AuditError::OtherModel {
                receipt: r.model,
                ours: self.model,
            });
        }
        let prompt = match &replay.work {
            Work::Chat { messages, tools } => Prompt::ToolChat {
                messages: messages.clone(),
                tools: tools.clone(),
            },
            Work::Text { prompt } => Prompt::Text(prompt.clone()),
            Work::Embed { .. } => return Err(AuditError::Embeddings),
        };
        let mut report = AuditReport::new(receipt_id(receipt));
        // 1. The receipt binds everything the audit relies on.
        if !receipt.verify() {
            report.findings.push(Finding::BadSignature);
            return Ok(report);
        }
        if let Some(field) = replay.mismatch(r) {
            report.findings.push(Finding::ReplayMismatch(field));
            return Ok(report);
        }
        let max_chunks = Proof::max_decode_chunks(replay.sampling.max_tokens);
        let decoded = match proof {
            None => None,
            Some(bytes) => match Proof::decode(&bytes.0, max_chunks) {
                Ok(p) => Some(p),
                Err(_) => {
                    report.findings.push(Finding::ProofUndecodable);
                    None
                }
            },
        };
        let bound = decoded.as_ref().map_or(Hash::ZERO, Proof::hash);
        if bound != r.proof_hash {
            report.findings.push(Finding::ProofNotBound);
        }
        let n = replay.output.len();
        if n == 0 {
            // Nothing generated: nothing to replay but the receipt's own consistency.
            return Ok(report);
        }
        // Cut off midway or not, delivered tokens come proved (the provider proves from the
        // rows it streamed with them).
        if decoded.is_none() && !report.findings.contains(&Finding::ProofUndecodable) {
            report.findings.push(Finding::NoProof);
        }
        // Token ids the real model does not have: no replay needed (the engine would refuse to
        // score them), the signed receipt binds tokens this model cannot have produced.
        let n_vocab = self.scheduler.info().n_vocab;
        let all = replay.continuation.iter().chain(&replay.output);
        if let Some((index, &token)) = all.enumerate().find(|(_, t)| **t >= n_vocab) {
            report.findings.push(Finding::OutsideVocabulary {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                token,
                n_vocab,
            });
            return Ok(report);
        }

        // 3. The generation rules, over the tokens alone (the rendered prompt only seeds the
        // sampler's penalties, which the rules do not read).
        let vocab = self.scheduler.vocabulary();
        let mut produced = replay.continuation.clone();
        produced.extend_from_slice(&replay.output);
        let ended =
            match agora_inference::replay_generation(vocab, &replay.sampling, &[], &produced) {
                Ok(end) => end,
                Err(GenerateError::BadContinuation { index, why }) => {
                    report.findings.push(Finding::AgainstTheRules {
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        why,
                    });
                    Some(FinishReason::Stop)
                }
                // Parameters that do not compile (a bad schema): the token check below says so.
                Err(_) => Some(FinishReason::Stop),
            };
        // A complete response no rule ended must end on the model's own end-of-generation
        // token: the position after the last token is scored too, and that choice checked.
        let must_end = r.complete && ended.is_none() && !replay.sampling.ignore_eos;
        let extra = usize::from(must_end);

        // One prefill over prompt ++ continuation ++ output but the last token (all of it when
        // the end is checked).
        let mut fed = replay.continuation.clone();
        fed.extend_from_slice(&replay.output[..n - 1 + extra]);
        let mut request = Request::score(Vec::new(), true);
        request.prompt = prompt;
        request.continuation = fed;
        request.score_last_logits = n + extra;
        let out = self
            .scheduler
            .submit(request)
            .map_err(|e| AuditError::Engine(e.to_string()))?;
        let scored = collect(out).await?;
        let c = scored.completion;

        // 2. The prompt the provider says it prefilled.
        let prompt_total = c.prompt.len() + replay.continuation.len();
        if token_hash(&c.prompt) != r.prompt_hash || prompt_total != r.prompt_tokens as usize {
            report.findings.push(Finding::PromptMismatch {
                ours: u32::try_from(prompt_total).unwrap_or(u32::MAX),
                claimed: r.prompt_tokens,
            });
        }

        // 4. TOPLOC over the sampled positions: the last n rows (before the end's row).
        let hidden = c.hidden.unwrap_or_default();
        if let Some(p) = &decoded {
            let end = hidden.len().saturating_sub(extra);
            let rows = hidden.get(end.saturating_sub(n)..end).unwrap_or_default();
            match flatten(rows).and_then(|(flat, width)| {
                let rows = Rows::new(&flat, width)?;
                Ok(toploc::verify(p, rows, 1, &self.thresholds))
            }) {
                Ok(Ok(verdict)) => {
                    if !verdict.pass {
                        report.findings.push(Finding::ProofFailed);
                    }
                    report.toploc = Some(verdict);
                }
                // The proof's shape does not fit this model's rows (another model's width).
                _ => report.findings.push(Finding::ProofFailed),
            }
        }

        // 5. Every token replayed through our sampler over the auditor's logits, under JSON
        // mode's mask when the request asked for it (without it an honest JSON answer's tokens
        // would be measured against candidates the provider's sampler never had).
        let eog = &self.scheduler.info().eog_tokens;
        let (flat, width) =
            flatten(&c.score_logits).map_err(|e| AuditError::Engine(e.to_string()))?;
        let replay_tokens = |generated: &[u32], rows: usize| {
            let rows = Rows::new(flat.get(..rows * width).unwrap_or(&flat), width)
                .map_err(|e| AuditError::Engine(e.to_string()))?;
            let claim = Claim {
                params: &replay.sampling,
                prompt: &c.prompt,
                continuation: &replay.continuation,
                generated,
            };
            let mut mask = JsonMask::new(&replay.sampling, vocab).ok().flatten();
            let mask = mask.as_mut().map(|m| m as &mut dyn TokenMask);
            Ok::<_, AuditError>(tokens::check(&claim, rows, eog, &self.tolerance, mask))
        };
        if must_end {
            // The end-of-generation token the real model rates highest after the last token
            // (the sampler's choice, if it ended there at all), replayed as one more token.
            let last = c.score_logits.last().map(Vec::as_slice).unwrap_or_default();
            let score = |t: u32| last.get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
            let best_end = eog
                .iter()
                .copied()
                .max_by(|a, b| score(*a).total_cmp(&score(*b)));
            let ends_there = best_end.is_some_and(|end| {
                let mut with_end = replay.output.clone();
                with_end.push(end);
                matches!(replay_tokens(&with_end, n + 1),
                    Ok(Ok(t)) if t.tokens.last().is_some_and(|f| f.flag.is_none()))
            });
            if !ends_there {
                report.findings.push(Finding::EndedEarly);
            }
        }
        match replay_tokens(&replay.output, n)? {
            Ok(t) => {
                if !t.pass {
                    report.findings.push(Finding::TokensFlagged {
                        flagged: u32::try_from(t.flagged + t.invalid).unwrap_or(u32::MAX),
                        of: u32::try_from(n).unwrap_or(u32::MAX),
                    });
                }
                report.tokens = Some(t);
            }
            // Parameters the sampler refuses, or tokens outside the vocabulary: not a response
            // this model could have given.
            Err(_) => report.findings.push(Finding::TokensFlagged {
                flagged: u32::try_from(n).unwrap_or(u32::MAX),
                of: u32::try_from(n).unwrap_or(u32::MAX),
            }),
        }
        Ok(report)
    }
}

async fn collect(
    mut stream: agora_inference::Stream,
) -> Result<agora_inference::Output, AuditError> {
    use agora_inference::Event;
    let mut text = String::new();
    loop {
        match stream.next().await {
            Some(Event::Done(completion)) => {
                return Ok(agora_inference::Output {
                    text,
                    tokens: Vec::new(),
                    completion,
                });
            }
            Some(Event::Error(e)) => return Err(AuditError::Engine(e.to_string())),
            Some(Event::Text(t)) => text.push_str(&t),
            Some(_) => {}
            None => return Err(AuditError::Engine("the engine stopped".into())),
        }
    }
}
