//! The scorer, the auditor's sibling: a validator measures the providers of each market from
//! what it can check itself, turns the measurements into weights, and commits and reveals them
//! (`CommitWeights` / `RevealWeights`) so Yuma can pay the most useful providers.
//!
//! ```text
//!  every finalized block the audit role reads:
//!     CommitReceipts batches of the followed gateways ──► per provider: paid completion
//!        tokens, and in which tenth of the epoch it served  (observe_receipt)
//!     this validator's own audit verdicts ──► passed / failed per provider (observe_verdict)
//!  first block of incentive epoch e:
//!     reveal what was committed in e - 1 (pending file) ──► RevealWeights
//!     per market: score(members) over epoch e - 1's window ──► weights ──► pending file
//!        (fsynced, with a random salt) ──► CommitWeights
//! ```
//!
//! What is measured, and why these and not others (a provider signs its receipts, so anything
//! it alone reports is a claim, not a measurement):
//! - **quality**: 0 while the ledger has the provider jailed or on probation (a failed audit);
//!   otherwise the share of this validator's own audits of it that passed (1 with none);
//! - **uptime**: the share of the epoch's ten slices in which it served paid work that a gateway
//!   committed on the ledger (a provider paid for serving, not for being warm);
//! - **service**: its paid completion tokens over the most any member served;
//! - **price**: the cheapest listed output price in the market over its own;
//! - **latency** and **throughput**, when probes are configured: the validator's own timed
//!   requests through a gateway, like any customer's (a provider cannot tell them from other
//!   traffic), each answered by one provider; latency is the best median request time over its
//!   own, throughput its median tokens per second over the best. A member no probe reached gets
//!   the mean of those that were. A receipt's `time_ms` is never used: it is the provider's claim.
//!
//! `score = quality x (30 uptime + 20 service + 20 price + 15 latency + 15 throughput) / 100`
//! with probes, `quality x (40 uptime + 30 service + 30 price) / 100` without, in parts per
//! million; a provider that served nothing scores 0. Weights are scores scaled so the best is
//! 65,535.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agora_market::{ChainClient, TxSender};
use agora_types::market::{ProviderWeight, WeightsReveal, fresh_salt, weights_commitment};
use agora_types::receipt::InferenceReceipt;
use agora_types::{Address, Hash, TxBody};

/// Slices of an epoch for uptime: serving in each tenth counts a tenth.
pub const SLICES: u64 = 10;

/// What the scorer knows of one member of a market over one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreInput {
    /// Jailed or on probation on the ledger (a failed audit).
    pub sanctioned: bool,
    pub audits_passed: u32,
    pub audits_failed: u32,
    /// Slices of the epoch (of [`SLICES`]) in which it served committed, paid work.
    pub slices_served: u32,
    /// Paid completion tokens in committed receipts.
    pub tokens: u64,
    /// Its listed output price per million tokens for the market's models (the lowest, if
    /// several); `None` when it lists none.
    pub price: Option<u128>,
    /// The median time of this validator's probes it answered, in ms (`None`: none did).
    pub probe_ms: Option<u64>,
    /// The median tokens per second of those probes, in thousandths.
    pub probe_tps_milli: Option<u64>,
}

/// Each input's score in parts per million (see the module docs for the formula).
pub fn score(inputs: &[ScoreInput]) -> Vec<u64> {
    let max_tokens = inputs.iter().map(|i| i.tokens).max().unwrap_or(0);
    let min_price = inputs
        .iter()
        .filter_map(|i| i.price)
        .filter(|p| *p > 0)
        .min();
    let latency = relative(inputs.iter().map(|i| i.probe_ms), true);
    let throughput = relative(inputs.iter().map(|i| i.probe_tps_milli), false);
    let probed = inputs.iter().any(|i| i.probe_ms.is_some());
    inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            if i.sanctioned || i.tokens == 0 {
                return 0;
            }
            let audits = u64::from(i.audits_passed) + u64::from(i.audits_failed);
            // No audits of it yet: nothing against it.
            let quality = (u64::from(i.audits_passed) * 1_000_000)
                .checked_div(audits)
                .unwrap_or(1_000_000);
            let uptime = u64::from(i.slices_served).min(SLICES) * 1_000_000 / SLICES;
            let service = i.tokens * 1_000_000 / max_tokens.max(1);
            let price = match (min_price, i.price) {
                (Some(min), Some(p)) if p > 0 => (min * 1_000_000 / p) as u64,
                // A free listing is the cheapest there is.
                (_, Some(0)) => 1_000_000,
                _ => 0,
            };
            let blend = if probed {
                30 * uptime + 20 * service + 20 * price + 15 * latency[k] + 15 * throughput[k]
            } else {
                40 * uptime + 30 * service + 30 * price
            };
            quality * (blend / 100) / 1_000_000
        })
        .collect()
}

/// Each value relative to the best, in ppm: best / own when lower is better, own / best
/// otherwise; a missing value gets the mean of the present ones (1,000,000 when none is).
fn relative(values: impl Iterator<Item = Option<u64>>, lower_is_better: bool) -> Vec<u64> {
    let values: Vec<Option<u64>> = values.collect();
    let present: Vec<u64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0)
        .collect();
    let best = if lower_is_better {
        present.iter().min()
    } else {
        present.iter().max()
    };
    let Some(&best) = best else {
        return vec![1_000_000; values.len()];
    };
    let of = |v: u64| -> u64 {
        let ratio = if lower_is_better {
            u128::from(best) * 1_000_000 / u128::from(v)
        } else {
            u128::from(v) * 1_000_000 / u128::from(best)
        };
        ratio.min(1_000_000) as u64
    };
    let scored: Vec<Option<u64>> = values
        .iter()
        .map(|v| v.filter(|v| *v > 0).map(of))
        .collect();
    let known: Vec<u64> = scored.iter().flatten().copied().collect();
    let mean = known.iter().sum::<u64>() / known.len().max(1) as u64;
    scored.into_iter().map(|v| v.unwrap_or(mean)).collect()
}

/// Scores to weights: the best is 65,535, the rest in proportion (rounded; a positive score
/// never rounds to 0).
pub fn weights(scores: &[u64]) -> Vec<u16> {
    let max = scores.iter().copied().max().unwrap_or(0);
    scores
        .iter()
        .map(|s| match (*s, max) {
            (0, _) | (_, 0) => 0,
            (s, max) => {
                ((u128::from(s) * 65_535 + u128::from(max) / 2) / u128::from(max)).max(1) as u16
            }
        })
        .collect()
}

/// One provider's observations in the current window.
#[derive(Debug, Clone, Default)]
struct Observed {
    tokens: u64,
    slices: u16,
    passed: u32,
    failed: u32,
    /// This validator's probes it answered: (ms, completion tokens), at most [`MAX_PROBES`].
    probes: Vec<(u64, u32)>,
}

/// Probes kept per provider and epoch.
const MAX_PROBES: usize = 64;

/// The validator's own timed requests through a gateway (`[audit] probe_*`).
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// The gateway's OpenAI base URL, e.g. `http://127.0.0.1:8646/v1`.
    pub gateway: String,
    pub api_key: String,
    /// Probes per market per epoch, spread over the epoch.
    pub per_epoch: u32,
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The running scorer of one validator.
pub struct Scorer {
    dir: PathBuf,
    /// The incentive epoch whose window is being observed.
    epoch: Option<u64>,
    window: BTreeMap<Address, Observed>,
    probe: Option<ProbeSettings>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("ledger: {0}")]
    Chain(#[from] agora_market::ChainError),
    #[error("{path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
}

impl Scorer {
    /// A scorer keeping its pending reveals under `dir`.
    pub fn new(dir: PathBuf) -> Scorer {
        Scorer {
            dir,
            epoch: None,
            window: BTreeMap::new(),
            probe: None,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Also time requests of its own through a gateway.
    pub fn with_probes(mut self, probe: Option<ProbeSettings>) -> Scorer {
        self.probe = probe.filter(|p| p.per_epoch > 0 && !p.gateway.is_empty());
        self
    }

    /// One probe answered by `provider` in `ms` with `tokens` completion tokens.
    pub fn observe_probe(&mut self, provider: Address, ms: u64, tokens: u32) {
        let o = self.window.entry(provider).or_default();
        if o.probes.len() < MAX_PROBES {
            o.probes.push((ms.max(1), tokens));
        }
    }

    /// A committed receipt of height `height` (its batch's commitment block).
    pub fn observe_receipt(&mut self, height: u64, epoch_blocks: u64, r: &InferenceReceipt) {
        let epoch_blocks = epoch_blocks.max(1);
        let slice = (height % epoch_blocks) * SLICES / epoch_blocks;
        let o = self.window.entry(r.provider).or_default();
        o.tokens = o.tokens.saturating_add(u64::from(r.completion_tokens));
        o.slices |= 1 << slice.min(SLICES - 1);
    }

    /// This validator's own verdict on one of `provider`'s receipts.
    pub fn observe_verdict(&mut self, provider: Address, failed: bool) {
        let o = self.window.entry(provider).or_default();
        if failed {
            o.failed = o.failed.saturating_add(1);
        } else {
            o.passed = o.passed.saturating_add(1);
        }
    }

    /// Called after each block is read: at the first block of a new incentive epoch, reveals
    /// last epoch's commitments and commits weights scored over the window that just ended.
    pub async fn on_block(&mut self, height: u64, epoch_blocks: u64, sender: &TxSender) {
        if let Some(probe) = self.probe.clone() {
            let every = (epoch_blocks / u64::from(probe.per_epoch)).max(1);
            if height.is_multiple_of(every) {
                self.probe_markets(&probe, sender.chain()).await;
            }
        }
        let epoch = height / epoch_blocks.max(1);
        match self.epoch {
            None => {
                self.epoch = Some(epoch);
                return;
            }
            Some(e) if e >= epoch => return,
            Some(_) => {}
        }
        let window = std::mem::take(&mut self.window);
        self.epoch = Some(epoch);
        if let Err(e) = self.turn(epoch, &window, sender).await {
            tracing::warn!(target: "agora::score", error = %e, epoch, "scoring failed; weights not set this epoch");
        }
    }

    async fn turn(
        &mut self,
        epoch: u64,
        window: &BTreeMap<Address, Observed>,
        sender: &TxSender,
    ) -> Result<(), ScoreError> {
        let chain = sender.chain();
        for market in chain.markets().await?.markets {
            let path = self.pending_path(&market.id);
            if let Some(reveal) = read_pending(&path)? {
                match sender.send(TxBody::RevealWeights(reveal)).await {
                    Ok(_) => {
                        tracing::info!(target: "agora::score", market = %market.name, epoch, "weights revealed")
                    }
                    Err(e) => {
                        tracing::warn!(target: "agora::score", market = %market.name, error = %e, "reveal refused")
                    }
                }
                remove(&path)?;
            }
            let Some(view) = chain.market(&market.id).await? else {
                continue;
            };
            let members: Vec<Address> = view.record.members.iter().map(|m| m.provider).collect();
            let inputs = inputs(chain, &view.record.models, &members, window).await?;
            let w = weights(&score(&inputs));
            let entries: Vec<ProviderWeight> = members
                .iter()
                .zip(&w)
                .filter(|(_, w)| **w > 0)
                .map(|(p, w)| ProviderWeight {
                    provider: *p,
                    weight: *w,
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let reveal = WeightsReveal {
                market: market.id,
                weights: entries,
                salt: fresh_salt(),
            };
            write_pending(&path, &reveal)?;
            let commitment = weights_commitment(&sender.address(), &reveal);
            match sender
                .send(TxBody::CommitWeights {
                    market: market.id,
                    commitment,
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(target: "agora::score", market = %market.name, epoch, weights = reveal.weights.len(), "weights committed")
                }
                Err(e) => {
                    tracing::warn!(target: "agora::score", market = %market.name, error = %e, "commit refused");
                    remove(&path)?;
                }
            }
        }
        Ok(())
    }

    /// One timed request per market (chat and completion models) through the gateway; the
    /// provider that answered it alone gets the measurement.
    async fn probe_markets(&mut self, probe: &ProbeSettings, chain: &ChainClient) {
        let Ok(markets) = chain.markets().await else {
            return;
        };
        for market in markets.markets {
            let Ok(Some(view)) = chain.market(&market.id).await else {
                continue;
            };
            let Some(model) = view.record.models.first() else {
                continue;
            };
            let Ok(Some(record)) = chain.model(model).await else {
                continue;
            };
            if record.info.kind == agora_types::ModelKind::Embedding {
                continue;
            }
            let url = format!("{}/completions", probe.gateway.trim_end_matches('/'));
            let body = serde_json::json!({
                "model": record.info.name, "prompt": "Count: 1, 2, 3,", "max_tokens": 8, "temperature": 0
            });
            let start = std::time::Instant::now();
            let answer = self
                .http
                .post(&url)
                .bearer_auth(&probe.api_key)
                .json(&body)
                .send()
                .await;
            let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            let Ok(answer) = answer else { continue };
            let Ok(v) = answer.json::<serde_json::Value>().await else {
                continue;
            };
            let Some((provider, tokens)) = probe_answer(&v) else {
                continue;
            };
            tracing::info!(target: "agora::score", market = %market.name, %provider, ms, tokens, "probe answered");
            self.observe_probe(provider, ms, tokens);
        }
    }

    fn pending_path(&self, market: &Hash) -> PathBuf {
        self.dir.join(format!("{}.json", market.to_hex()))
    }
}

/// What the ledger and the window say of each member.
async fn inputs(
    chain: &ChainClient,
    models: &[Hash],
    members: &[Address],
    window: &BTreeMap<Address, Observed>,
) -> Result<Vec<ScoreInput>, ScoreError> {
    let mut out = Vec::with_capacity(members.len());
    for p in members {
        let o = window.get(p).cloned().unwrap_or_default();
        let (sanctioned, price) = match chain.provider(p).await? {
            Some(v) => (
                v.record.jailed_until > v.height || v.probation_until > v.height,
                v.record
                    .info
                    .models
                    .iter()
                    .filter(|m| models.contains(&m.model))
                    .map(|m| m.output_per_million.0)
                    .min(),
            ),
            None => (true, None),
        };
        let probe_ms = median(o.probes.iter().map(|(ms, _)| *ms).collect());
        let probe_tps_milli = median(
            o.probes
                .iter()
                .map(|(ms, t)| u64::from(*t) * 1_000_000 / ms)
                .collect(),
        );
        out.push(ScoreInput {
            sanctioned,
            audits_passed: o.passed,
            audits_failed: o.failed,
            slices_served: o.slices.count_ones(),
            tokens: o.tokens,
            price,
            probe_ms,
            probe_tps_milli,
        });
    }
    Ok(out)
}

/// Who answered a probe, and with how many tokens, from the provider-signed receipt the answer
/// carries: the gateway's own `provider` field and usage are its claims, the receipt is the
/// provider's signature over what it was paid for. `None` unless exactly one provider answered
/// (a failover spreads the time over two) and its receipt verifies.
fn probe_answer(v: &serde_json::Value) -> Option<(Address, u32)> {
    let segments = v["choices"][0]["agora"]["segments"].as_array()?;
    let [segment] = segments.as_slice() else {
        return None;
    };
    let receipt: agora_types::receipt::SignedReceipt =
        serde_json::from_value(segment["receipt"].clone()).ok()?;
    receipt
        .verify()
        .then_some((receipt.receipt.provider, receipt.receipt.completion_tokens))
}

fn read_pending(path: &Path) -> Result<Option<WeightsReveal>, ScoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| ScoreError::Json {
                path: path.to_path_buf(),
                error,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ScoreError::File {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Written and fsynced before the commitment is sent: a crash after the commit never loses
/// what it hides.
fn write_pending(path: &Path, reveal: &WeightsReveal) -> Result<(), ScoreError> {
    let err = |error| ScoreError::File {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let bytes = serde_json::to_vec(reveal).map_err(|error| ScoreError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    let file = std::fs::File::create(path).map_err(err)?;
    std::io::Write::write_all(&mut &file, &bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

fn remove(path: &Path) -> Result<(), ScoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ScoreError::File {
            path: path.to_path_buf(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::SecretKey;

    fn serving(tokens: u64, slices: u32, price: u128) -> ScoreInput {
        ScoreInput {
            tokens,
            slices_served: slices,
            price: Some(price),
            ..ScoreInput::default()
        }
    }

    #[test]
    fn a_sanctioned_or_idle_provider_scores_zero() {
        let mut jailed = serving(1_000, 10, 1);
        jailed.sanctioned = true;
        let idle = serving(0, 0, 1);
        let s = score(&[serving(1_000, 10, 1), jailed, idle]);
        assert_eq!(s, vec![1_000_000, 0, 0]);
    }

    #[test]
    fn uptime_service_and_price_weigh_four_three_three() {
        // Half the slices, half the tokens, twice the price of the best.
        let s = score(&[serving(1_000, 10, 10), serving(500, 5, 20)]);
        assert_eq!(s[0], 1_000_000);
        assert_eq!(s[1], (4 * 500_000 + 3 * 500_000 + 3 * 500_000) / 10);
    }

    #[test]
    fn with_probes_the_faster_provider_scores_higher_and_an_unprobed_one_gets_the_mean() {
        let timed = |ms: u64, tps: u64| ScoreInput {
            probe_ms: Some(ms),
            probe_tps_milli: Some(tps),
            ..serving(1_000, 10, 1)
        };
        let s = score(&[
            timed(100, 80_000),
            timed(200, 40_000),
            serving(1_000, 10, 1),
        ]);
        assert_eq!(s[0], 1_000_000);
        // Half as fast on both: 15% + 15% of the score at a half each.
        assert_eq!(s[1], 1_000_000 - 75_000 - 75_000);
        // Never reached by a probe: the mean of the measured (0.75 each).
        assert_eq!(s[2], 1_000_000 - 37_500 - 37_500);
        let o = &mut Scorer::new(std::env::temp_dir());
        let p = SecretKey::from_test_seed("probed").public();
        for ms in [300, 100, 200] {
            o.observe_probe(p, ms, 8);
        }
        assert_eq!(
            median(o.window[&p].probes.iter().map(|(ms, _)| *ms).collect()),
            Some(200)
        );
    }

    #[test]
    fn a_probe_is_credited_to_the_provider_that_signed_its_receipt_and_no_one_else() {
        let key = SecretKey::from_test_seed("scorer-provider");
        let mut r = receipt();
        r.completion_tokens = 8;
        let signed = r.clone().sign(&key);
        let answer = |provider: &str, receipt: serde_json::Value, segments: usize| {
            let segment = serde_json::json!({"provider": provider, "receipt": receipt});
            serde_json::json!({"choices": [{"agora": {"segments": vec![segment; segments]}}], "usage": {"completion_tokens": 999}})
        };
        let good = serde_json::to_value(&signed).expect("json");
        assert_eq!(
            probe_answer(&answer(&key.public().to_string(), good.clone(), 1)),
            Some((key.public(), 8))
        );
        // A gateway naming another provider, or claiming other usage, changes nothing.
        let other = SecretKey::from_test_seed("someone-else")
            .public()
            .to_string();
        assert_eq!(
            probe_answer(&answer(&other, good.clone(), 1)),
            Some((key.public(), 8))
        );
        // A receipt whose signature does not verify, or two segments, credit no one.
        let mut forged = signed.clone();
        forged.receipt.completion_tokens = 1;
        assert_eq!(
            probe_answer(&answer(
                &other,
                serde_json::to_value(&forged).expect("json"),
                1
            )),
            None
        );
        assert_eq!(probe_answer(&answer(&other, good, 2)), None);
    }

    #[test]
    fn failed_own_audits_scale_the_score_down() {
        let mut half = serving(1_000, 10, 1);
        half.audits_passed = 1;
        half.audits_failed = 1;
        let s = score(&[serving(1_000, 10, 1), half]);
        assert_eq!(s[1], 500_000);
    }

    #[test]
    fn a_provider_cannot_inflate_its_score_with_claims() {
        // Nothing a provider signs alone enters the score: the inputs are paid tokens a gateway
        // committed, the slices they landed in, the ledger's sanctions and listed prices, and
        // this validator's own audits. A receipt's time_ms is not among them.
        let mut r = receipt();
        let mut scorer = Scorer::new(std::env::temp_dir());
        r.completion_tokens = 10;
        r.time_ms = 1;
        scorer.observe_receipt(5, 100, &r);
        r.time_ms = 1_000_000;
        scorer.observe_receipt(95, 100, &r);
        let o = &scorer.window[&r.provider];
        assert_eq!((o.tokens, o.slices.count_ones()), (20, 2));
    }

    #[test]
    fn weights_put_the_best_at_the_top_and_keep_small_scores_above_zero() {
        assert_eq!(
            weights(&[1_000_000, 500_000, 1, 0]),
            vec![65_535, 32_768, 1, 0]
        );
        assert_eq!(weights(&[0, 0]), vec![0, 0]);
    }

    #[test]
    fn a_pending_reveal_survives_a_restart() {
        let dir = tempfile_dir();
        let reveal = WeightsReveal {
            market: Hash([1; 32]),
            weights: vec![ProviderWeight {
                provider: Address::default(),
                weight: 9,
            }],
            salt: Hash([2; 32]),
        };
        let path = Scorer::new(dir.clone()).pending_path(&reveal.market);
        write_pending(&path, &reveal).expect("written");
        assert_eq!(read_pending(&path).expect("read"), Some(reveal));
        remove(&path).expect("removed");
        assert_eq!(read_pending(&path).expect("read"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn receipt() -> InferenceReceipt {
        InferenceReceipt {
            chain_id: "agora-test".into(),
            request_id: Hash::ZERO,
            provider: SecretKey::from_test_seed("scorer-provider").public(),
            payer: Address::default(),
            channel: Hash::ZERO,
            model: Hash::ZERO,
            seed: 0,
            params_hash: Hash::ZERO,
            work_hash: Hash::ZERO,
            continuation_hash: Hash::ZERO,
            prompt_hash: Hash::ZERO,
            engine: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            continuation_tokens: 0,
            price: agora_types::Price {
                input_per_million: agora_types::Amount(1),
                output_per_million: agora_types::Amount(1),
            },
            charged: agora_types::Amount(0),
            output_hash: Hash::ZERO,
            time_ms: 0,
            complete: true,
            proof_hash: Hash::ZERO,
        }
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("agora-scorer-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }
}
