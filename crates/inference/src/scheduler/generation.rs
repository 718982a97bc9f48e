//! One sequence's generation state between tokens: its sampler (penalty history), the text
//! stream (held-back UTF-8 and stop-sequence prefixes), the JSON constraint and the `max_tokens`
//! budget. Sampling and continuation replay both advance it the same way.

use super::{FinishReason, GenerateError};
use crate::engine::{Engine, TokenId};
use crate::json::Constraint;
use crate::sampler::{InvalidParams, Sampled, Sampler, SamplingParams};
use crate::text::TextStream;

/// Per-sequence post-processing state of a generation.
pub(super) struct Gen {
    sampler: Sampler,
    text: TextStream,
    json: Option<Constraint>,
    max_tokens: u32,
}

/// What taking one chosen token did.
pub(super) enum Advance {
    /// An end-of-generation token (not ignored): generation stops, nothing is appended.
    Eog,
    /// The token was appended; `text` became complete with it; `done` when generation must end.
    Token {
        text: String,
        done: Option<FinishReason>,
    },
}

impl Gen {
    /// The state of a fresh generation with `params` after `prompt`; fails on a schema that does
    /// not compile.
    pub(super) fn new(params: &SamplingParams, prompt: &[TokenId]) -> Result<Self, InvalidParams> {
        let json = Constraint::new(params.json, params.json_schema.as_deref())?;
        Ok(Self {
            text: TextStream::new(params.stop.clone()),
            json,
            max_tokens: params.max_tokens,
            sampler: Sampler::new(params.clone(), prompt),
        })
    }

    /// Sample the next token at absolute `position` from `logits`; under a JSON constraint only
    /// tokens that keep the document valid (or end it, once it may end) are candidates.
    pub(super) fn sample<E: Engine>(
        &self,
        engine: &E,
        logits: &[f32],
        position: u64,
    ) -> Option<Sampled> {
        match &self.json {
            None => self.sampler.sample(logits, position, None),
            Some(j) => {
                let mut ok = |t: TokenId| {
                    if engine.is_eog(t) {
                        return j.can_end();
                    }
                    let piece = engine.piece(t);
                    !piece.is_empty() && j.accepts(piece)
                };
                self.sampler.sample(logits, position, Some(&mut ok))
            }
        }
    }

    /// Release the text still held back (partial stop-sequence prefix, trailing bytes).
    pub(super) fn finish_text(&mut self) -> String {
        self.text.finish()
    }

    /// Take `token` as the next generated token of `all` (prompt ++ generated, `n_prompt` of them
    /// prompt). Sampling and continuation replay both go through here, so a replayed token leaves
    /// exactly the state a sampled one would have.
    pub(super) fn advance<E: Engine>(
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
    pub(super) fn replay<E: Engine>(
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
