//! One sequence's generation state between tokens: its sampler (penalty history), the text
//! stream (held-back UTF-8 and stop-sequence prefixes), the JSON constraint and the `max_tokens`
//! budget. Sampling and continuation replay both advance it the same way.

use super::{FinishReason, GenerateError};
use crate::engine::TokenId;
use crate::json::Constraint;
use crate::sampler::{InvalidParams, Sampled, Sampler, SamplingParams};
use crate::text::TextStream;
use crate::vocab::{Pieces, Vocabulary};

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
    pub(super) fn sample<V: Pieces>(
        &self,
        vocab: &V,
        logits: &[f32],
        position: u64,
    ) -> Option<Sampled> {
        match &self.json {
            None => self.sampler.sample(logits, position, None),
            Some(j) => {
                let mut ok = |t: TokenId| json_allows(j, vocab, t);
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
    pub(super) fn advance<V: Pieces>(
        &mut self,
        vocab: &V,
        all: &mut Vec<TokenId>,
        n_prompt: usize,
        token: TokenId,
    ) -> Advance {
        if vocab.is_eog(token) && !self.sampler.params().ignore_eos {
            return Advance::Eog;
        }
        self.sampler.accept(token);
        all.push(token);
        let piece = vocab.piece(token);
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
        let context_full = vocab
            .context_limit()
            .is_some_and(|n| all.len() >= n as usize);
        if done.is_none() && (generated >= self.max_tokens || context_full) {
            done = Some(FinishReason::Length);
        }
        Advance::Token {
            text: chunk.text,
            done,
        }
    }

    /// Replay `continuation` as if each token had been sampled, appending to `all`. `Some(reason)`
    /// when its last token ends the generation.
    pub(super) fn replay<V: Pieces>(
        &mut self,
        vocab: &V,
        all: &mut Vec<TokenId>,
        continuation: &[TokenId],
    ) -> Result<Option<FinishReason>, GenerateError> {
        let n_prompt = all.len();
        for (index, &token) in continuation.iter().enumerate() {
            let bad = |index: usize, why: &str| GenerateError::BadContinuation {
                index,
                why: why.into(),
            };
            if let Some(j) = &self.json
                && !json_allows(j, vocab, token)
            {
                return Err(bad(index, "JSON mode would not have produced it"));
            }
            let done = match self.advance(vocab, all, n_prompt, token) {
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

/// Whether JSON mode lets `token` come next: an end-of-generation token once the document may
/// end, else a token whose bytes keep the document valid (one rule for sampling, continuation
/// replay and the auditor's mask).
fn json_allows<V: Pieces + ?Sized>(j: &Constraint, vocab: &V, token: TokenId) -> bool {
    if vocab.is_eog(token) {
        return j.can_end();
    }
    let piece = vocab.piece(token);
    !piece.is_empty() && j.accepts(piece)
}

/// Replays `tokens` as the output of a generation with `params` after `prompt` under the rules
/// the scheduler generates by (JSON mode, stop sequences, `max_tokens`, end-of-generation
/// tokens), without running the model. `Ok(Some(reason))` when the last token ended the
/// generation, `Ok(None)` when it had not ended, [`GenerateError::BadContinuation`] for a token
/// those rules would not have produced (one after the end, or one JSON mode refuses).
pub fn replay_generation(
    vocab: &Vocabulary,
    params: &SamplingParams,
    prompt: &[TokenId],
    tokens: &[TokenId],
) -> Result<Option<FinishReason>, GenerateError> {
    let mut g = Gen::new(params, prompt)?;
    let mut all = prompt.to_vec();
    g.replay(vocab, &mut all, tokens)
}

/// JSON mode as an auditor's per-step mask ([`agora_verify::tokens::TokenMask`]): the candidates
/// the provider's sampler had at each step.
pub struct JsonMask<'a> {
    constraint: Constraint,
    vocab: &'a Vocabulary,
}

impl<'a> JsonMask<'a> {
    /// The mask of `params`, or `None` when they do not ask for JSON.
    pub fn new(
        params: &SamplingParams,
        vocab: &'a Vocabulary,
    ) -> Result<Option<JsonMask<'a>>, InvalidParams> {
        let constraint = Constraint::new(params.json, params.json_schema.as_deref())?;
        Ok(constraint.map(|constraint| JsonMask { constraint, vocab }))
    }
}

impl agora_verify::tokens::TokenMask for JsonMask<'_> {
    fn allows(&mut self, token: u32) -> bool {
        json_allows(&self.constraint, self.vocab, token)
    }
    fn push(&mut self, token: u32) {
        // As `Gen::advance` feeds it (an end-of-generation token ends the replay before).
        self.constraint.feed_all(self.vocab.piece(token));
    }
}
