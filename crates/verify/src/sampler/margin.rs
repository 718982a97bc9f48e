//! The auditor's replay of one sampling step: how far a claimed token is from the sampler's own
//! choice, given the auditor's logits, which differ slightly from the provider's.
//!
//! With a tolerance `tol` (logit units) the auditor assumes every provider logit was within
//! `tol / 2` of its own, so every difference of two scaled logits `z = l / T` moved by at most
//! `d = tol / T` and every ratio of softmax weights by at most `e^d`. The filters keep a prefix of
//! the tokens in decreasing `z`; from those bounds the auditor computes two prefixes of its own
//! order:
//!
//! ```text
//!   certain  tokens the provider's filters kept for sure    (max of their scores: the bar)
//!   possible tokens the provider's filters may have kept     (the claimed token must be one)
//!   top-k:  certain iff fewer than k others have z >= z_i - d; possible iff fewer than k have z > z_i + d
//!   min-p:  z_i - z_max >= ln(min_p) + d  /  >= ln(min_p) - d
//!   top-p:  upper / lower bound of the mass before i (weights within e^d, over the possible /
//!           certain set left by top-k and min-p) below top_p
//! ```
//!
//! The margin is measured against the best *certain* candidate only: a token in the uncertain
//! fringe may not have been in the provider's set, and its noise must not count against an
//! honest claim. With `tol = 0` both prefixes are exactly the sampler's filtered set.

use super::noise::{gumbel_keyed, prf_key};
use super::{Sampler, portable_exp, portable_ln};

/// How a claimed token compares with what the sampler picks from the same logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Margin {
    /// The sampler's own choice from these logits (what [`Sampler::sample`] returns).
    pub best: u32,
    /// The best certain candidate's score minus the claimed token's, in **logit units**
    /// (Gumbel-max scores `z + G` times the temperature; greedy: logits after bias and
    /// penalties). 0 when the claimed token is the choice; never negative; infinite when the
    /// claimed token has no logit (outside the vocabulary or NaN).
    pub margin: f64,
    /// The claimed token may have been in the provider's filtered set (always true without
    /// filters, or when the mask's fallback to the whole vocabulary applies).
    pub in_filter: bool,
    /// For a token outside the possible set: how far its logit is below the lowest possible
    /// one, in logit units (0 otherwise).
    pub outside_by: f64,
    /// The mask allowed the claimed token (true without a mask).
    pub allowed: bool,
}

/// The auditor's order (decreasing `z`, ties by id) over the tokens that matter, and the two
/// prefixes of it.
struct Bounds {
    order: Vec<(u32, f64)>,
    certain: usize,
    possible: usize,
}

impl Sampler {
    /// Replays the choice at `position` from `logits` and measures the claimed `token` against
    /// it (see the module notes for `tolerance`, in logit units); `None` when no token has a
    /// logit. `allowed` is [`Sampler::sample`]'s mask, including its fallback to the whole
    /// vocabulary when the filters keep no allowed token.
    pub fn margin(
        &self,
        logits: &[f32],
        position: u64,
        token: u32,
        tolerance: f64,
        mut allowed: Option<&mut dyn FnMut(u32) -> bool>,
    ) -> Option<Margin> {
        let choice = match allowed.as_deref_mut() {
            Some(ok) => self.sample(logits, position, Some(ok))?.token,
            None => self.sample(logits, position, None)?.token,
        };
        let adjusted = self.adjusted(logits);
        let value: &[f32] = &adjusted;
        let tok_ok = allowed.as_deref_mut().is_none_or(|ok| ok(token));
        let tok_logit = value
            .get(token as usize)
            .copied()
            .filter(|v| !v.is_nan())
            .map(f64::from);
        let tolerance = if tolerance.is_finite() {
            tolerance.max(0.0)
        } else {
            0.0
        };
        let mut out = Margin {
            best: choice,
            margin: 0.0,
            in_filter: true,
            outside_by: 0.0,
            allowed: tok_ok,
        };
        let Some(tok_logit) = tok_logit else {
            out.margin = f64::INFINITY;
            out.in_filter = false;
            out.outside_by = f64::INFINITY;
            return Some(out);
        };
        if self.params.temperature == 0.0 {
            // Greedy: the choice is the best allowed adjusted logit.
            out.margin = (f64::from(value[choice as usize]) - tok_logit).max(0.0);
            return Some(out);
        }

        let t = f64::from(self.params.temperature);
        let key = prf_key(self.params.seed, position);
        let score = |i: u32, z: f64| z + gumbel_keyed(key, i);
        let tok_score = score(token, tok_logit / t);
        let whole = |allowed: Option<&mut dyn FnMut(u32) -> bool>| match allowed {
            None => Some(choice),
            Some(ok) => Self::first_allowed(all_scored(value, |i, v| score(i, v / t)), ok),
        };
        // The score every candidate the provider certainly had must not beat by more than the
        // tolerance; None when no candidate is certain.
        let bar: Option<f64> = match self.bounds(value, tolerance / t) {
            None => whole(allowed).map(|b| score(b, f64::from(value[b as usize]) / t)),
            Some(b) => {
                let scored = |set: &[(u32, f64)]| -> Vec<(u32, f64)> {
                    set.iter().map(|&(i, z)| (i, score(i, z))).collect()
                };
                let possible = &b.order[..b.possible];
                let core = best_of(&scored(&b.order[..b.certain]), allowed.as_deref_mut());
                let any_possible = match allowed.as_deref_mut() {
                    None => !possible.is_empty(),
                    Some(ok) => possible.iter().any(|x| ok(x.0)),
                };
                if !any_possible {
                    // The provider's filters kept no allowed token: the whole vocabulary, as
                    // the sampler falls back.
                    whole(allowed).map(|b| score(b, f64::from(value[b as usize]) / t))
                } else {
                    out.in_filter = possible.iter().any(|x| x.0 == token);
                    if !out.in_filter {
                        let lowest = possible.last().map_or(tok_logit / t, |x| x.1);
                        out.outside_by = ((lowest - tok_logit / t) * t).max(0.0);
                    }
                    core.map(|c| c.1)
                }
            }
        };
        if let Some(bar) = bar {
            out.margin = ((bar - tok_score) * t).max(0.0);
        }
        Some(out)
    }

    /// The certain and possible prefixes of the filtered set when each scaled-logit difference
    /// may be off by `d`; `None` when no filter is active (every token is a candidate).
    fn bounds(&self, value: &[f32], d: f64) -> Option<Bounds> {
        let p = &self.params;
        if !(p.top_k > 0 || p.min_p > 0.0 || p.top_p < 1.0) {
            return None;
        }
        let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if d <= 0.0 {
            let mut c = self.filtered(value)?;
            c.sort_unstable_by(cmp);
            let n = c.len();
            return Some(Bounds {
                order: c,
                certain: n,
                possible: n,
            });
        }
        let t = f64::from(p.temperature);
        let mut c: Vec<(u32, f64)> = value
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, f64::from(v) / t))
            .collect();
        let zmax = c.iter().map(|x| x.1).max_by(f64::total_cmp)?;
        // Only tokens within 2d of a cut can matter; sort just those.
        let k = p.top_k as usize;
        let mut floor = f64::NEG_INFINITY;
        if k > 0 && k < c.len() {
            c.select_nth_unstable_by(k - 1, cmp);
            floor = c[k - 1].1 - 2.0 * d;
        }
        let ln_min_p = (p.min_p > 0.0).then(|| portable_ln(f64::from(p.min_p)));
        if let Some(l) = ln_min_p {
            floor = floor.max(zmax + l - 2.0 * d);
        }
        c.retain(|x| x.1 >= floor);
        c.sort_unstable_by(cmp);
        let n = c.len();
        // above[r]: tokens surely ahead of r; within[r]: tokens possibly ahead of r, r included.
        let (mut above, mut within) = (vec![0usize; n], vec![0usize; n]);
        let (mut a, mut g) = (0, 0);
        for r in 0..n {
            while a < n && c[a].1 > c[r].1 + d {
                a += 1;
            }
            while g < n && c[g].1 >= c[r].1 - d {
                g += 1;
            }
            above[r] = a;
            within[r] = g;
        }
        let first = |f: &dyn Fn(usize) -> bool| (0..n).find(|&r| f(r)).unwrap_or(n);
        let (mut certain, mut possible) = (n, n);
        if k > 0 {
            possible = possible.min(first(&|r| above[r] >= k));
            certain = certain.min(first(&|r| within[r] > k)); // others possibly ahead >= k
        }
        if let Some(l) = ln_min_p {
            possible = possible.min(first(&|r| c[r].1 - zmax < l - d));
            certain = certain.min(first(&|r| c[r].1 - zmax < l + d));
        }
        if p.top_p < 1.0 {
            let top_p = f64::from(p.top_p);
            let w: Vec<f64> = c.iter().map(|x| portable_exp(x.1 - zmax)).collect();
            let mut sum = vec![0.0; n + 1];
            for r in 0..n {
                sum[r + 1] = sum[r] + w[r];
            }
            let (ck, pk) = (certain.min(possible), possible);
            let e = portable_exp(d);
            // Lower bound of the provider's mass before r: certain tokens surely ahead of it,
            // over every token possibly left by top-k and min-p.
            let lower = |r: usize| sum[ck.min(above[r])] / (e * sum[pk]);
            // Upper bound: every possible token possibly ahead of it, over the certain ones.
            let upper = |r: usize| {
                let ahead = sum[pk.min(within[r])] - if r < pk.min(within[r]) { w[r] } else { 0.0 };
                let total = sum[ck] + if r >= ck { w[r] } else { 0.0 };
                e * ahead / total
            };
            possible = possible.min(first(&|r| lower(r) >= top_p).max(1));
            certain = certain.min(first(&|r| upper(r) >= top_p));
        }
        let possible = possible.max(1).min(n);
        c.truncate(possible);
        Some(Bounds {
            order: c,
            certain: certain.min(possible),
            possible,
        })
    }
}

/// The best of `set` (scored candidates) that `ok` allows: highest score, ties to the lowest
/// id, as the sampler breaks them.
fn best_of<'a>(
    set: &[(u32, f64)],
    ok: Option<&mut (dyn FnMut(u32) -> bool + 'a)>,
) -> Option<(u32, f64)> {
    let best = match ok {
        Some(f) => Sampler::first_allowed(set.to_vec(), f)?,
        None => {
            set.iter()
                .copied()
                .reduce(|a, b| {
                    if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
                        b
                    } else {
                        a
                    }
                })?
                .0
        }
    };
    set.iter().find(|x| x.0 == best).copied()
}

/// Every token with a logit, scored by `f(token, logit)`.
fn all_scored(value: &[f32], f: impl Fn(u32, f64) -> f64) -> Vec<(u32, f64)> {
    value
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, f(i as u32, f64::from(v))))
        .collect()
}
