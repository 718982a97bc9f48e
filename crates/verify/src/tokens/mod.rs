//! The token-level check (Token-DiFR style): replay our sampler over the auditor's logits and
//! measure every claimed token against its choice. TOPLOC alone misses the *prefill attack*
//! (text from a cheap model, proofs from one real-model prefill over it); this check does not,
//! because a cheap model's tokens are rarely the real model's Gumbel-max under the request's seed.
//!
//! ```text
//! Sampler::new(params, prompt), accept(continuation..)       (the run it resumed, unchecked)
//! for each generated token t_i at absolute position prompt + continuation + i:
//!     Sampler::margin(auditor logits_i, position, t_i, tolerance, mask)
//!         greedy:  max_j l'_j - l'_t              (l' = logits + bias - penalties)
//!         sampled: T * (max_j (z_j + G_j) - (z_t + G_t)),  z = l'/T, j over top-k/min-p/top-p
//!     flag: out of vocabulary | not allowed by the mask | after an end-of-generation token
//!           | outside the filtered set by more than the tolerance | margin over the tolerance
//!     accept(t_i)
//! plus: continuation + generated <= max_tokens; nothing after an end-of-generation token
//! ```
//!
//! The check needs only the auditor's logits (one prefill over prompt ++ continuation ++
//! generated), never the provider's. The auditor's logits differ slightly from the provider's
//! decode-time logits, so a margin up to [`Tolerance::margin`] is accepted as a near tie.
//!
//! Not checked here: stop sequences and the end of a JSON document (they need the text; the
//! caller's [`TokenMask`] applies the JSON constraint to each step), and the context length.

#[cfg(test)]
mod tests;

use crate::Rows;
use crate::sampler::{InvalidParams, Sampler, SamplingParams, validate};

/// What a provider claims it generated, and for which request.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The request's parameters, seed included (the gateway's, never the provider's).
    pub params: &'a SamplingParams,
    pub prompt: &'a [u32],
    /// Tokens an earlier run delivered, which this run resumed after (replayed, not checked).
    pub continuation: &'a [u32],
    /// The tokens this run generated. An end-of-generation token may close the list (when the
    /// run stopped on one and the caller wants that choice checked too); nothing may follow it.
    pub generated: &'a [u32],
}

/// A per-step constraint (JSON mode): which tokens may come next, advanced by each token taken.
pub trait TokenMask {
    /// Whether `token` may come next.
    fn allows(&mut self, token: u32) -> bool;
    /// `token` was taken (also called for the continuation's tokens).
    fn push(&mut self, token: u32);
}

/// How much the auditor's logits may disagree with the provider's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// The largest margin (logit units) accepted as a near tie, and how far below the filtered
    /// set's cut a claimed token may lie.
    ///
    /// Default 0.6. An honest margin is at most twice the largest difference between one of the
    /// provider's logits and the auditor's (the claimed token's score can be that much lower, the
    /// best one's that much higher). Set from Gemma 3 270M, where a change of batch shape alone
    /// moved chosen tokens' log-probabilities by up to 0.26 (2 x 0.26, rounded up). On SmolLM2
    /// Q4_1 the provider's token-by-token decode against the auditor's one prefill goes further
    /// on rare tokens (`slow` audit binary, `docs/benchmarks.md`: over 28,800 honest tokens at
    /// 64-128, 99.99% of margins under 0.42, 2 tokens over 0.6, the largest 0.698; 0.726 once in
    /// another 19,200): those are the near misses below. 0 demands an exact replay.
    pub margin: f64,
    /// Tokens over the margin (or outside the filtered set) still accepted in one response,
    /// besides the near misses. Default 0: any other flag fails the response.
    pub max_flagged: usize,
    /// A token over `margin` but within `near_margin` is a near miss: decode-against-prefill
    /// noise that is rare per token but not per response. Default 1.5 (twice the largest
    /// honest margin measured).
    pub near_margin: f64,
    /// Near misses accepted: one per this many generated tokens, and at least one (0: none).
    /// Default 64. Two near misses in one 64-token response are about 1 in 100,000 honest
    /// responses at the measured rate (7e-5 per token); a cheater choosing its own tokens gets
    /// one free choice per 64 among tokens within 1.5 logits of the sampler's, which the honest
    /// sampler itself picks often.
    pub near_per_tokens: usize,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            margin: 0.6,
            max_flagged: 0,
            near_margin: 1.5,
            near_per_tokens: 64,
        }
    }
}

/// Why one claimed token is wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flag {
    /// Not a token of the vocabulary (or the auditor's logit for it is NaN).
    OutOfVocab,
    /// The mask (JSON constraint) does not allow it.
    NotAllowed,
    /// It follows an end-of-generation token.
    AfterEnd,
    /// The auditor's logits have no candidate at all.
    NoCandidates,
    /// Outside every top-k / min-p / top-p set the provider's logits could have given (within
    /// the tolerance); `by` is its logit's distance below the lowest token that could be kept.
    OutsideFilter { by: f64 },
    /// Its margin exceeds the tolerance.
    OverMargin,
}

impl Flag {
    /// A flag no logit noise explains (as opposed to a margin a tolerance could absorb).
    pub fn is_invalid(&self) -> bool {
        !matches!(self, Flag::OutsideFilter { .. } | Flag::OverMargin)
    }
}

/// The replay of one claimed token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenFinding {
    /// Index in [`Claim::generated`].
    pub index: usize,
    /// Absolute sequence position (the PRF's position).
    pub position: u64,
    pub token: u32,
    /// The auditor's own choice, when it made one.
    pub best: Option<u32>,
    /// See [`crate::sampler::Margin::margin`]; 0 for tokens not replayed (after an end).
    pub margin: f64,
    pub flag: Option<Flag>,
}

/// What the auditor reports about a response's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenReport {
    pub tokens: Vec<TokenFinding>,
    /// Tokens identical to the auditor's own choice.
    pub exact: usize,
    /// Tokens flagged for their margin or filter distance (what [`Tolerance::max_flagged`] bounds).
    pub flagged: usize,
    /// Of those, the near misses accepted ([`Tolerance::near_margin`]).
    pub near: usize,
    /// Tokens with a flag no noise explains ([`Flag::is_invalid`]).
    pub invalid: usize,
    /// The largest finite margin (0 when there is none).
    pub max_margin: f64,
    /// Continuation plus generated tokens exceed `max_tokens`.
    pub over_max_tokens: bool,
    /// The continuation has tokens after an end-of-generation token.
    pub continuation_after_end: bool,
    pub pass: bool,
}

impl TokenReport {
    /// Token-DiFR's statistic `mean_t min(margin_t, clip)` over the replayed tokens (0 when none):
    /// a length-normalised score for calibrated, response-level thresholds.
    pub fn clipped_mean(&self, clip: f64) -> f64 {
        let replayed: Vec<f64> = self
            .tokens
            .iter()
            .filter(|t| t.best.is_some())
            .map(|t| t.margin.min(clip))
            .collect();
        if replayed.is_empty() {
            0.0
        } else {
            replayed.iter().sum::<f64>() / replayed.len() as f64
        }
    }
}

/// The auditor's input cannot be checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenCheckError {
    #[error("the request's sampling parameters are invalid: {0}")]
    Params(#[from] InvalidParams),
    #[error("{rows} logit rows for {tokens} generated tokens")]
    LogitRows { rows: usize, tokens: usize },
}

/// Replays `claim` over `logits` (one row of the auditor's raw logits per generated token, the
/// row that predicts it; width = vocabulary size). `eog` lists the end-of-generation tokens
/// (ignored with `ignore_eos`). `mask`, when given, is the JSON constraint: it is pushed the
/// continuation first, then each generated token.
pub fn check(
    claim: &Claim<'_>,
    logits: Rows<'_>,
    eog: &[u32],
    tolerance: &Tolerance,
    mut mask: Option<&mut dyn TokenMask>,
) -> Result<TokenReport, TokenCheckError> {
    let params = claim.params;
    validate(params, logits.width())?;
    if logits.len() != claim.generated.len() {
        return Err(TokenCheckError::LogitRows {
            rows: logits.len(),
            tokens: claim.generated.len(),
        });
    }
    let is_end = |t: u32| !params.ignore_eos && eog.contains(&t);
    let mut sampler = Sampler::new(params.clone(), claim.prompt);
    let mut ended = false;
    let mut continuation_after_end = false;
    for &t in claim.continuation {
        continuation_after_end |= ended;
        ended |= is_end(t);
        if !ended {
            sampler.accept(t);
            if let Some(m) = mask.as_deref_mut() {
                m.push(t);
            }
        }
    }
    let total = claim
        .continuation
        .len()
        .saturating_add(claim.generated.len());
    let over_max_tokens = total > params.max_tokens as usize;
    let start = (claim.prompt.len() + claim.continuation.len()) as u64;
    let tol = if tolerance.margin.is_finite() {
        tolerance.margin.max(0.0)
    } else {
        0.0
    };
    let mut tokens = Vec::with_capacity(claim.generated.len());
    for (index, &token) in claim.generated.iter().enumerate() {
        let position = start + index as u64;
        let mut finding = TokenFinding {
            index,
            position,
            token,
            best: None,
            margin: 0.0,
            flag: None,
        };
        let row = logits.row(index).unwrap_or(&[]);
        if ended {
            finding.flag = Some(Flag::AfterEnd);
        } else if token as usize >= row.len() || row[token as usize].is_nan() {
            finding.flag = Some(Flag::OutOfVocab);
        } else {
            let m = match mask.as_deref_mut() {
                Some(mk) => {
                    let mut ok = |t: u32| mk.allows(t);
                    sampler.margin(row, position, token, tol, Some(&mut ok))
                }
                None => sampler.margin(row, position, token, tol, None),
            };
            match m {
                None => finding.flag = Some(Flag::NoCandidates),
                Some(m) => {
                    finding.best = Some(m.best);
                    finding.margin = m.margin;
                    finding.flag = if !m.allowed {
                        Some(Flag::NotAllowed)
                    } else if !m.in_filter {
                        Some(Flag::OutsideFilter { by: m.outside_by })
                    } else if m.margin > tol {
                        Some(Flag::OverMargin)
                    } else {
                        None
                    };
                }
            }
        }
        tokens.push(finding);
        if !ended {
            ended = is_end(token);
            if !ended {
                sampler.accept(token);
                if let Some(m) = mask.as_deref_mut() {
                    m.push(token);
                }
            }
        }
    }
    let exact = tokens.iter().filter(|t| t.best == Some(t.token)).count();
    let flagged = tokens
        .iter()
        .filter(|t| t.flag.is_some_and(|f| !f.is_invalid()))
        .count();
    let invalid = tokens
        .iter()
        .filter(|t| t.flag.is_some_and(|f| f.is_invalid()))
        .count();
    let max_margin = tokens
        .iter()
        .map(|t| t.margin)
        .filter(|m| m.is_finite())
        .fold(0.0, f64::max);
    let near = near_misses(&tokens, claim.generated.len(), tolerance, tol);
    let pass = !over_max_tokens
        && !continuation_after_end
        && invalid == 0
        && flagged - near <= tolerance.max_flagged;
    Ok(TokenReport {
        tokens,
        exact,
        flagged,
        near,
        invalid,
        max_margin,
        over_max_tokens,
        continuation_after_end,
        pass,
    })
}

/// How many of the tokens over the margin are accepted as near misses: those within
/// `near_margin`, at most one per `near_per_tokens` generated tokens (at least one).
fn near_misses(tokens: &[TokenFinding], generated: usize, t: &Tolerance, tol: f64) -> usize {
    if t.near_per_tokens == 0 || !t.near_margin.is_finite() || t.near_margin <= tol {
        return 0;
    }
    let allowed = generated.div_ceil(t.near_per_tokens).max(1);
    let near = tokens
        .iter()
        .filter(|f| f.flag == Some(Flag::OverMargin) && f.margin <= t.near_margin)
        .count();
    near.min(allowed)
}
