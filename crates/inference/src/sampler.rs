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

use std::collections::HashMap;

/// Largest value the Gumbel noise can take: `-ln(-ln(1 - 2^-53))` is about 36.7.
const MAX_TOP_LOGPROBS: u8 = 20;
const MAX_STOP: usize = 16;
const MAX_STOP_LEN: usize = 256;

/// Sampling parameters of one request. `Default` is greedy decoding of up to 256 tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: u32,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// llama.cpp-style multiplicative penalty over the last `penalty_last_n` tokens; 1 disables.
    pub repetition_penalty: f32,
    /// OpenAI-style, over generated tokens: `- count * frequency_penalty`.
    pub frequency_penalty: f32,
    /// OpenAI-style, over generated tokens: `- presence_penalty` once a token appeared.
    pub presence_penalty: f32,
    pub penalty_last_n: u32,
    /// Added to the raw logit of a token id (OpenAI range -100..=100).
    pub logit_bias: Vec<(u32, f32)>,
    pub stop: Vec<String>,
    pub max_tokens: u32,
    pub seed: u64,
    /// Return the chosen token's log-probability and this many alternatives (0..=20).
    pub logprobs: Option<u8>,
    /// Constrain the output to one JSON object.
    pub json: bool,
    /// Constrain the output to a document satisfying this JSON schema (JSON text; see
    /// [`crate::json::Schema`]). Implies JSON output; takes precedence over `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            stop: Vec::new(),
            max_tokens: 256,
            seed: 0,
            logprobs: None,
            json: false,
            json_schema: None,
            ignore_eos: false,
        }
    }
}

/// A sampling parameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    #[error("{name} = {value} is outside {range}")]
    OutOfRange {
        name: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    #[error("stop sequence #{index} is empty")]
    EmptyStop { index: usize },
    #[error("stop sequence #{index} is {len} bytes; the limit is {MAX_STOP_LEN}")]
    StopTooLong { index: usize, len: usize },
    #[error("{count} stop sequences given; the limit is {MAX_STOP}")]
    TooManyStops { count: usize },
    #[error("logit_bias names token {token}, but the vocabulary has {n_vocab} tokens")]
    UnknownToken { token: u32, n_vocab: usize },
    #[error(transparent)]
    Schema(#[from] crate::json::SchemaError),
}

fn range(
    name: &'static str,
    v: f32,
    lo: f32,
    hi: f32,
    text: &'static str,
) -> Result<(), InvalidParams> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(InvalidParams::OutOfRange {
            name,
            value: v.to_string(),
            range: text,
        })
    }
}

impl SamplingParams {
    /// Greedy decoding of `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens,
            ..Self::default()
        }
    }

    /// Check every field against its range and the model's vocabulary size.
    pub fn validate(&self, n_vocab: usize) -> Result<(), InvalidParams> {
        range("temperature", self.temperature, 0.0, 100.0, "[0, 100]")?;
        range("top_p", self.top_p, f32::MIN_POSITIVE, 1.0, "(0, 1]")?;
        range("min_p", self.min_p, 0.0, 1.0, "[0, 1]")?;
        range(
            "repetition_penalty",
            self.repetition_penalty,
            0.01,
            10.0,
            "[0.01, 10]",
        )?;
        range(
            "frequency_penalty",
            self.frequency_penalty,
            -2.0,
            2.0,
            "[-2, 2]",
        )?;
        range(
            "presence_penalty",
            self.presence_penalty,
            -2.0,
            2.0,
            "[-2, 2]",
        )?;
        if self.max_tokens == 0 {
            return Err(InvalidParams::ZeroMaxTokens);
        }
        if let Some(n) = self.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return Err(InvalidParams::OutOfRange {
                name: "top_logprobs",
                value: n.to_string(),
                range: "[0, 20]",
            });
        }
        for &(token, bias) in &self.logit_bias {
            if token as usize >= n_vocab {
                return Err(InvalidParams::UnknownToken { token, n_vocab });
            }
            range("logit_bias", bias, -100.0, 100.0, "[-100, 100]")?;
        }
        if self.stop.len() > MAX_STOP {
            return Err(InvalidParams::TooManyStops {
                count: self.stop.len(),
            });
        }
        for (index, s) in self.stop.iter().enumerate() {
            if s.is_empty() {
                return Err(InvalidParams::EmptyStop { index });
            }
            if s.len() > MAX_STOP_LEN {
                return Err(InvalidParams::StopTooLong {
                    index,
                    len: s.len(),
                });
            }
        }
        if let Some(schema) = &self.json_schema {
            crate::json::Schema::parse(schema)?;
        }
        Ok(())
    }
}

// ---- portable math -----------------------------------------------------------------------------

/// SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The keyed PRF: 64 uniform bits for `(seed, position, token)`.
#[inline]
pub fn prf(seed: u64, position: u64, token: u32) -> u64 {
    prf_keyed(prf_key(seed, position), token)
}

/// The part of [`prf`] that depends only on `(seed, position)`, computed once per step.
#[inline]
fn prf_key(seed: u64, position: u64) -> u64 {
    let a = mix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    mix64(a ^ position.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

#[inline]
fn prf_keyed(key: u64, token: u32) -> u64 {
    mix64(key ^ u64::from(token).wrapping_mul(0x8cb9_2ba7_2f3d_8dd7))
}

/// The uniform in (0, 1) for `(seed, position, token)`: 53 bits, offset by half a step.
#[inline]
pub fn uniform(seed: u64, position: u64, token: u32) -> f64 {
    uniform_keyed(prf_key(seed, position), token)
}

#[inline]
fn uniform_keyed(key: u64, token: u32) -> f64 {
    ((prf_keyed(key, token) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

const LN2: f64 = std::f64::consts::LN_2;

/// Natural logarithm from `+ - * /` only; exact to about 1e-15 relative. `x` must be positive and
/// finite.
pub fn portable_ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if (bits >> 52) & 0x7ff == 0 {
        // Subnormal: scale up first.
        return portable_ln(x * (1u64 << 54) as f64) - 54.0 * LN2;
    }
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * LN2
}

/// `1/n!` for n = 0..=15, correctly rounded.
const INV_FACTORIAL: [f64; 16] = [
    1.0,
    1.0,
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
    0.0001984126984126984,
    2.48015873015873e-05,
    2.7557319223985893e-06,
    2.755731922398589e-07,
    2.505210838544172e-08,
    2.08767569878681e-09,
    1.6059043836821613e-10,
    1.1470745597729725e-11,
    7.647163731819816e-13,
];

/// `e^x` from `+ - * /` only. Underflows to 0 below -745, saturates to infinity above 709.
pub fn portable_exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = (x / LN2 + if x >= 0.0 { 0.5 } else { -0.5 }) as i64;
    let r = x - k as f64 * LN2;
    // Taylor series for |r| <= ln2/2 in Horner form: the first omitted term, r^16/16!, is below
    // 1e-20, and there is no division in the loop (this runs once per vocabulary entry for top-p).
    let mut sum = INV_FACTORIAL[15];
    for c in INV_FACTORIAL[..15].iter().rev() {
        sum = sum * r + c;
    }
    // Multiply by 2^k in two steps so subnormal results stay correct.
    let half = k / 2;
    let p1 = f64::from_bits(((half + 1023) as u64) << 52);
    let p2 = f64::from_bits(((k - half + 1023) as u64) << 52);
    sum * p1 * p2
}

/// Gumbel noise for `(seed, position, token)`.
#[inline]
pub fn gumbel(seed: u64, position: u64, token: u32) -> f64 {
    gumbel_keyed(prf_key(seed, position), token)
}

#[inline]
fn gumbel_keyed(key: u64, token: u32) -> f64 {
    -portable_ln(-portable_ln(uniform_keyed(key, token)))
}

// ---- sampler -----------------------------------------------------------------------------------

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

    /// Choose the token at absolute sequence `position` from raw `logits`. `allowed`, when given,
    /// restricts the choice (JSON mode); it is called on candidates in decreasing score order, so the
    /// result is the Gumbel-max over the allowed set. Returns `None` only if nothing is allowed.
    pub fn sample(
        &self,
        logits: &[f32],
        position: u64,
        allowed: Option<&mut dyn FnMut(u32) -> bool>,
    ) -> Option<Sampled> {
        // The logits after bias and penalties: borrowed when nothing changes, so the hot loops
        // below run over a plain slice.
        let changes = self.penalised(logits);
        let adjusted: std::borrow::Cow<'_, [f32]> = if changes.is_empty() {
            std::borrow::Cow::Borrowed(logits)
        } else {
            let mut v = logits.to_vec();
            for (t, x) in changes {
                v[t as usize] = x;
            }
            std::borrow::Cow::Owned(v)
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_math_matches_libm_closely() {
        for &x in &[
            1e-300, 1e-10, 0.001, 0.5, 0.999, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300,
        ] {
            let (a, b) = (portable_ln(x), f64::ln(x));
            assert!(
                (a - b).abs() <= 1e-13 * b.abs().max(1.0),
                "ln({x}) {a} vs {b}"
            );
        }
        for &x in &[-700.0, -30.0, -1.0, -1e-9, 0.0, 0.3, 1.0, 5.5, 80.0, 700.0] {
            let (a, b) = (portable_exp(x), f64::exp(x));
            assert!((a - b).abs() <= 1e-13 * b.abs(), "exp({x}) {a} vs {b}");
        }
        assert_eq!(portable_exp(-1000.0), 0.0);
        assert_eq!(portable_exp(1000.0), f64::INFINITY);
    }

    #[test]
    fn uniform_is_in_open_interval_and_roughly_uniform() {
        let mut sum = 0.0;
        for i in 0..10_000u32 {
            let u = uniform(7, 3, i);
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        let mean = sum / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_ne!(prf(1, 2, 3), prf(1, 2, 4));
        assert_ne!(prf(1, 2, 3), prf(2, 2, 3));
        assert_ne!(prf(1, 2, 3), prf(1, 3, 3));
    }

    fn logits() -> Vec<f32> {
        (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect()
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_ties() {
        let s = Sampler::new(SamplingParams::greedy(1), &[]);
        let l = vec![1.0, 3.0, 3.0, 2.0];
        assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
        let l = logits();
        let best = (0..l.len())
            .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(s.sample(&l, 0, None).unwrap().token as usize, best);
    }

    #[test]
    fn fast_path_equals_exhaustive_gumbel_max() {
        let l = logits();
        for seed in 0..50u64 {
            for &temp in &[0.3f32, 1.0, 2.0] {
                let p = SamplingParams {
                    temperature: temp,
                    seed,
                    ..SamplingParams::default()
                };
                let s = Sampler::new(p, &[]);
                for pos in 0..5u64 {
                    let got = s.sample(&l, pos, None).unwrap().token;
                    let want = (0..l.len() as u32)
                        .max_by(|&a, &b| {
                            let sa =
                                f64::from(l[a as usize]) / f64::from(temp) + gumbel(seed, pos, a);
                            let sb =
                                f64::from(l[b as usize]) / f64::from(temp) + gumbel(seed, pos, b);
                            sa.total_cmp(&sb).then(b.cmp(&a))
                        })
                        .unwrap();
                    assert_eq!(got, want, "seed {seed} temp {temp} pos {pos}");
                }
            }
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // Two tokens with logits ln(3) and 0: token 0 should win about 75% of draws.
        let l = vec![3f32.ln(), 0.0];
        let mut wins = 0;
        for seed in 0..4000u64 {
            let s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    seed,
                    ..SamplingParams::default()
                },
                &[],
            );
            if s.sample(&l, 0, None).unwrap().token == 0 {
                wins += 1;
            }
        }
        let f = f64::from(wins) / 4000.0;
        assert!((f - 0.75).abs() < 0.03, "{f}");
    }

    /// The candidate set of `filtered` equals a plain reference: sort everything, cut top-k, min-p,
    /// then the shortest sorted prefix whose mass (normaliser summed in token-id order) reaches
    /// top-p.
    #[test]
    fn filtered_set_equals_the_full_sort_reference() {
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng = mix64(rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..300 {
            let n = 50 + (next() * 3000.0) as usize;
            // Coarse values so that ties occur.
            let l: Vec<f32> = (0..n)
                .map(|_| ((next() * 40.0).floor() - 20.0) as f32 * 0.5)
                .collect();
            let params = SamplingParams {
                temperature: [0.3, 0.8, 1.0, 2.0][case % 4],
                top_k: [0, 0, 5, 1000][(case / 4) % 4],
                min_p: [0.0, 0.0, 0.05][case % 3],
                top_p: [0.5, 0.9, 0.95, 0.999, 1.0][case % 5],
                ..SamplingParams::default()
            };
            let s = Sampler::new(params.clone(), &[]);
            let Some(mut got) = s.filtered(&l) else {
                assert!(params.top_k == 0 && params.min_p == 0.0 && params.top_p == 1.0);
                continue;
            };
            let t = f64::from(params.temperature);
            let mut c: Vec<(u32, f64)> = l
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as u32, f64::from(v) / t))
                .collect();
            c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if params.top_k > 0 {
                c.truncate(params.top_k as usize);
            }
            let zmax = c[0].1;
            if params.min_p > 0.0 {
                let cut = zmax + portable_ln(f64::from(params.min_p));
                c.retain(|x| x.1 >= cut);
            }
            if params.top_p < 1.0 {
                let w = |z: f64| {
                    if z < zmax - 60.0 {
                        0.0
                    } else {
                        portable_exp(z - zmax)
                    }
                };
                let mut by_id = c.clone();
                by_id.sort_by_key(|x| x.0);
                let total: f64 = by_id.iter().map(|x| w(x.1)).sum();
                let mut acc = 0.0;
                let mut keep = c.len();
                for (i, x) in c.iter().enumerate() {
                    acc += w(x.1) / total;
                    if acc >= f64::from(params.top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                c.truncate(keep.max(1));
            }
            got.sort_by_key(|x| x.0);
            c.sort_by_key(|x| x.0);
            assert_eq!(got, c, "case {case}: {params:?}");
        }
    }

    #[test]
    fn filters_restrict_the_choice() {
        let l = logits();
        let mut order: Vec<u32> = (0..l.len() as u32).collect();
        order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
        for seed in 0..100 {
            let s = Sampler::new(
                SamplingParams {
                    temperature: 5.0,
                    top_k: 3,
                    seed,
                    ..SamplingParams::default()
                },
                &[],
            );
            let t = s.sample(&l, 1, None).unwrap().token;
            assert!(order[..3].contains(&t));
            let s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    top_p: 1e-6,
                    seed,
                    ..SamplingParams::default()
                },
                &[],
            );
            assert_eq!(s.sample(&l, 1, None).unwrap().token, order[0]);
            let s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    min_p: 0.999,
                    seed,
                    ..SamplingParams::default()
                },
                &[],
            );
            assert_eq!(s.sample(&l, 1, None).unwrap().token, order[0]);
        }
    }

    #[test]
    fn bias_and_penalties_change_the_choice() {
        let l = vec![2.0, 1.0, 0.0];
        let s = Sampler::new(
            SamplingParams {
                logit_bias: vec![(2, 5.0)],
                ..SamplingParams::greedy(1)
            },
            &[],
        );
        assert_eq!(s.sample(&l, 0, None).unwrap().token, 2);
        let mut s = Sampler::new(
            SamplingParams {
                presence_penalty: 1.5,
                ..SamplingParams::greedy(1)
            },
            &[],
        );
        s.accept(0);
        assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
        let s = Sampler::new(
            SamplingParams {
                repetition_penalty: 4.0,
                ..SamplingParams::greedy(1)
            },
            &[0],
        );
        assert_eq!(s.sample(&l, 0, None).unwrap().token, 1);
    }

    #[test]
    fn constrained_pick_is_gumbel_max_over_the_allowed_set() {
        let l = logits();
        let p = SamplingParams {
            temperature: 1.0,
            seed: 9,
            ..SamplingParams::default()
        };
        let s = Sampler::new(p, &[]);
        let mut allow_even = |t: u32| t.is_multiple_of(2);
        let got = s.sample(&l, 4, Some(&mut allow_even)).unwrap().token;
        let want = (0..l.len() as u32)
            .filter(|t| t % 2 == 0)
            .max_by(|&a, &b| {
                let sa = f64::from(l[a as usize]) + gumbel(9, 4, a);
                let sb = f64::from(l[b as usize]) + gumbel(9, 4, b);
                sa.total_cmp(&sb)
            })
            .unwrap();
        assert_eq!(got, want);
        let mut none = |_t: u32| false;
        assert!(s.sample(&l, 4, Some(&mut none)).is_none());
    }

    #[test]
    fn logprobs_are_normalised() {
        let l = vec![0.0f32, 1.0, 2.0];
        let (lp, top) = logprobs(&l, 2, 2);
        let total: f64 = l.iter().map(|&v| (f64::from(v) - 2.0).exp()).sum();
        assert!((f64::from(lp) - (-(total.ln()))).abs() < 1e-6);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].token, 2);
        assert_eq!(top[1].token, 1);
    }

    #[test]
    fn validation_rejects_bad_values() {
        let ok = SamplingParams::default();
        assert!(ok.validate(10).is_ok());
        let bad = [
            SamplingParams {
                temperature: -1.0,
                ..ok.clone()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..ok.clone()
            },
            SamplingParams {
                top_p: 0.0,
                ..ok.clone()
            },
            SamplingParams {
                max_tokens: 0,
                ..ok.clone()
            },
            SamplingParams {
                stop: vec![String::new()],
                ..ok.clone()
            },
            SamplingParams {
                stop: vec!["x".repeat(300)],
                ..ok.clone()
            },
            SamplingParams {
                stop: vec!["a".into(); 17],
                ..ok.clone()
            },
            SamplingParams {
                logit_bias: vec![(10, 1.0)],
                ..ok.clone()
            },
            SamplingParams {
                logit_bias: vec![(1, 1000.0)],
                ..ok.clone()
            },
            SamplingParams {
                logprobs: Some(21),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate(10).is_err(), "{b:?}");
        }
    }
}
