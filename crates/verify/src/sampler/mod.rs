//! Agora's replayable sampler.
//!
//! Every random choice is Gumbel-max with noise from a keyed pseudo-random function of
//! `(seed, position, token id)`, computed with integer hashing and our own `ln`/`exp` built from
//! IEEE-754 `+ - * /` only (no platform libm). So anyone holding the same logits, parameters and
//! seed picks the same token, on any machine: a validator can replay a provider's choices.
//!
//! Pipeline for one step, over the model's raw logits `l`:
//!
//! ```text
//! l + logit_bias - penalties  ->  greedy? argmax (ties: lowest id)
//!        | / temperature
//!        v
//!   z  -> top-k -> min-p -> top-p  (filters keep a set S)
//!        -> argmax_{i in S} z_i + G(seed, pos, i),   G = -ln(-ln(U)), U in (0,1) from the PRF
//! ```
//!
//! Reported log-probabilities are those of the model itself (log-softmax of the raw logits), which
//! is what a verifier compares, not of the filtered sampling distribution.
//!
//! The parameters and their validation are in `params`, the keyed noise and portable math in
//! `noise`, the auditor's replay of one choice ([`Sampler::margin`]) in `margin`; this file holds
//! the sampler itself. The sampler lives in `agora-verify` so that the auditor runs the very code
//! the provider samples with; `agora_inference::sampler` re-exports it.

use std::collections::HashMap;

mod margin;
mod noise;
mod params;
#[cfg(test)]
mod tests;

pub use margin::Margin;
pub use noise::{gumbel, portable_exp, portable_ln, prf, uniform};
use noise::{gumbel_keyed, prf_key, uniform_keyed};
pub use params::{InvalidParams, SamplingParams, validate};

/// A token with its model log-probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// The outcome of one sampling step.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Model log-probability of `token`, when requested.
    pub logprob: Option<f32>,
    /// The most likely tokens under the model, when requested.
    pub top: Vec<TokenLogprob>,
}

/// Per-sequence sampler state: parameters plus the token history penalties need.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    /// Counts of generated tokens (frequency/presence penalties).
    counts: HashMap<u32, u32>,
    /// Recent tokens, prompt included (repetition penalty).
    recent: std::collections::VecDeque<u32>,
    bias: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler for `params` that has seen `prompt` (used only by the repetition penalty window).
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let n = params.penalty_last_n as usize;
        let recent = prompt[prompt.len().saturating_sub(n)..]
            .iter()
            .copied()
            .collect();
        let mut bias = params.logit_bias.clone();
        bias.sort_by_key(|b| b.0);
        Self {
            params,
            counts: HashMap::new(),
            recent,
            bias,
        }
    }

    /// The parameters this sampler runs.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Record a token that was emitted (updates penalty state).
    pub fn accept(&mut self, token: u32) {
        *self.counts.entry(token).or_insert(0) += 1;
        if self.params.penalty_last_n > 0 {
            if self.recent.len() == self.params.penalty_last_n as usize {
                self.recent.pop_front();
            }
            self.recent.push_back(token);
        }
    }

    fn penalised(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        // Only the tokens touched by bias or penalties change; collect their new values.
        let mut changes: HashMap<u32, f32> = HashMap::new();
        for &(t, b) in &self.bias {
            if let Some(l) = logits.get(t as usize) {
                *changes.entry(t).or_insert(*l) += b;
            }
        }
        let rp = self.params.repetition_penalty;
        if rp != 1.0 {
            let mut seen: Vec<u32> = self.recent.iter().copied().collect();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get(t as usize) {
                    let v = changes.entry(t).or_insert(*l);
                    *v = if *v > 0.0 { *v / rp } else { *v * rp };
                }
            }
        }
        let (fp, pp) = (self.params.frequency_penalty, self.params.presence_penalty);
        if fp != 0.0 || pp != 0.0 {
            let mut toks: Vec<(&u32, &u32)> = self.counts.iter().collect();
            toks.sort_unstable();
            for (&t, &c) in toks {
                if let Some(l) = logits.get(t as usize) {
                    let v = changes.entry(t).or_insert(*l);
                    *v -= c as f32 * fp + pp;
                }
            }
        }
        let mut out: Vec<(u32, f32)> = changes.into_iter().collect();
        out.sort_unstable_by_key(|c| c.0);
        out
    }

    /// The logits after bias and penalties: borrowed when nothing changes, so the hot loops run
    /// over a plain slice.
    fn adjusted<'a>(&self, logits: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        let changes = self.penalised(logits);
        if changes.is_empty() {
            std::borrow::Cow::Borrowed(logits)
        } else {
            let mut v = logits.to_vec();
            for (t, x) in changes {
                v[t as usize] = x;
            }
            std::borrow::Cow::Owned(v)
        }
    }

    /// Choose the token at absolute sequence `position` from raw `logits`. `allowed`, when given,
    /// restricts the choice (JSON mode); it is called on candidates in decreasing score order, so the
    /// result is the Gumbel-max over the allowed set. Returns `None` only if nothing is allowed.
    pub fn sample(
        &self,
        logits: &[f32],
        position: u64,
        allowed: Option<&mut dyn FnMut(u32) -> bool>,
    ) -> Option<Sampled> {
        let adjusted = self.adjusted(logits);
        let value: &[f32] = &adjusted;
        let token = match allowed {
            None => self.pick(value, position)?,
            Some(ok) => self.pick_constrained(value, position, ok)?,
        };
        let (logprob, top) = match self.params.logprobs {
            None => (None, Vec::new()),
            Some(n) => {
                let (lp, top) = logprobs(logits, token, n as usize);
                (Some(lp), top)
            }
        };
        Some(Sampled {
            token,
            logprob,
            top,
        })
    }

    fn greedy_argmax(value: &[f32]) -> Option<u32> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &v) in value.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        best.map(|(i, _)| i as u32)
    }

    /// The candidate set after top-k / min-p / top-p, as (token, scaled logit z), or `None` when no
    /// filter is active (all tokens are candidates).
    fn filtered(&self, value: &[f32]) -> Option<Vec<(u32, f64)>> {
        let p = &self.params;
        let t = f64::from(p.temperature);
        let active = p.top_k > 0 || p.min_p > 0.0 || p.top_p < 1.0;
        if !active {
            return None;
        }
        let mut c: Vec<(u32, f64)> = value
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, f64::from(v) / t))
            .collect();
        // Descending by z, ties by ascending id: a total, portable order.
        let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && (p.top_k as usize) < c.len() {
            let k = p.top_k as usize;
            c.select_nth_unstable_by(k - 1, cmp);
            c.truncate(k);
            // Back to token-id order, so the sums below do not depend on the selection algorithm.
            c.sort_unstable_by_key(|x| x.0);
        }
        let zmax = c.iter().map(|x| x.1).max_by(f64::total_cmp)?;
        if p.min_p > 0.0 {
            let cut = zmax + portable_ln(f64::from(p.min_p));
            c.retain(|x| x.1 >= cut);
        }
        if p.top_p < 1.0 {
            let weight = |z: f64| {
                if z < zmax - 60.0 {
                    0.0
                } else {
                    portable_exp(z - zmax)
                }
            };
            // The normaliser is summed in token-id order; only the kept prefix is sorted, chunk by
            // chunk (a full sort of the vocabulary costs more than the model step on small models).
            let total: f64 = c.iter().map(|x| weight(x.1)).sum();
            let mut acc = 0.0;
            let mut keep = c.len();
            let (mut start, mut chunk) = (0, 64);
            'prefix: while start < c.len() {
                let end = (start + chunk).min(c.len());
                let rest = &mut c[start..];
                if end - start < rest.len() {
                    rest.select_nth_unstable_by(end - start - 1, cmp);
                }
                rest[..end - start].sort_unstable_by(cmp);
                for (i, x) in c[start..end].iter().enumerate() {
                    acc += weight(x.1) / total;
                    if acc >= f64::from(p.top_p) {
                        keep = start + i + 1;
                        break 'prefix;
                    }
                }
                start = end;
                chunk *= 4;
            }
            c.truncate(keep.max(1));
        }
        Some(c)
    }

    fn pick(&self, value: &[f32], position: u64) -> Option<u32> {
        if self.params.temperature == 0.0 {
            return Self::greedy_argmax(value);
        }
        let key = prf_key(self.params.seed, position);
        if let Some(c) = self.filtered(value) {
            let mut best: Option<(u32, f64)> = None;
            for (tok, z) in c {
                let s = z + gumbel_keyed(key, tok);
                if best.is_none_or(|(bt, b)| s > b || (s == b && tok < bt)) {
                    best = Some((tok, s));
                }
            }
            return best.map(|b| b.0);
        }
        // Unfiltered Gumbel-max over the whole vocabulary, exact, with a cheap skip: a token whose
        // z is at least MARGIN below the best score can only win if its noise exceeds MARGIN, i.e.
        // its uniform exceeds exp(-exp(-MARGIN)); every other token is skipped after one hash.
        const MARGIN: f64 = 6.0;
        let u_skip = portable_exp(-portable_exp(-(MARGIN - 1e-6)));
        let t = f64::from(self.params.temperature);
        let first = Self::greedy_argmax(value)?;
        let zf = f64::from(value[first as usize]) / t;
        let mut best = (first, zf + gumbel_keyed(key, first));
        for (i, &v) in value.iter().enumerate() {
            if v.is_nan() || i as u32 == first {
                continue;
            }
            let z = f64::from(v) / t;
            if z <= best.1 - MARGIN && uniform_keyed(key, i as u32) < u_skip {
                continue;
            }
            let s = z + gumbel_keyed(key, i as u32);
            if s > best.1 || (s == best.1 && (i as u32) < best.0) {
                best = (i as u32, s);
            }
        }
        Some(best.0)
    }

    fn pick_constrained(
        &self,
        value: &[f32],
        position: u64,
        ok: &mut dyn FnMut(u32) -> bool,
    ) -> Option<u32> {
        let key = prf_key(self.params.seed, position);
        let greedy = self.params.temperature == 0.0;
        let t = f64::from(self.params.temperature);
        if let Some(c) = (!greedy).then(|| self.filtered(value)).flatten() {
            let scored = c
                .into_iter()
                .map(|(tok, z)| (tok, z + gumbel_keyed(key, tok)))
                .collect();
            if let Some(tok) = Self::first_allowed(scored, ok) {
                return Some(tok);
            }
            // The filters (top-k/top-p/min-p) left no allowed token: a constraint must still be
            // able to go on, so fall back to the whole vocabulary, same noise.
        }
        let scored = value
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| {
                let s = if greedy {
                    f64::from(v)
                } else {
                    f64::from(v) / t + gumbel_keyed(key, i as u32)
                };
                (i as u32, s)
            })
            .collect();
        Self::first_allowed(scored, ok)
    }

    /// The best-scored candidate that `ok` allows (ties: lowest id).
    fn first_allowed(mut scored: Vec<(u32, f64)>, ok: &mut dyn FnMut(u32) -> bool) -> Option<u32> {
        // Walk candidates best-first in chunks, sorting only as far as needed.
        let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut start = 0;
        let mut chunk = 64;
        while start < scored.len() {
            let end = (start + chunk).min(scored.len());
            let rest = &mut scored[start..];
            if end - start < rest.len() {
                rest.select_nth_unstable_by(end - start - 1, cmp);
            }
            rest[..end - start].sort_unstable_by(cmp);
            for &(tok, _) in &scored[start..end] {
                if ok(tok) {
                    return Some(tok);
                }
            }
            start = end;
            chunk *= 4;
        }
        None
    }
}

/// Model log-probability of `token` and the `n` most likely tokens, from raw logits.
pub fn logprobs(logits: &[f32], token: u32, n: usize) -> (f32, Vec<TokenLogprob>) {
    let max = logits
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    let max = f64::from(max);
    let mut total = 0.0;
    for &v in logits {
        if !v.is_nan() {
            total += portable_exp(f64::from(v) - max);
        }
    }
    let lse = max + portable_ln(total);
    let lp = |v: f32| (f64::from(v) - lse) as f32;
    let chosen = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |v| lp(*v));
    let mut top: Vec<TokenLogprob> = Vec::new();
    if n > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| !logits[i as usize].is_nan())
            .collect();
        let cmp = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = n.min(idx.len());
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
        }
        idx.truncate(k);
        idx.sort_unstable_by(cmp);
        top = idx
            .into_iter()
            .map(|t| TokenLogprob {
                token: t,
                logprob: lp(logits[t as usize]),
            })
            .collect();
    }
    (chosen, top)
}
