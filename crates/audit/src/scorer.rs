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
//! - **price**: the cheapest listed output price in the market over its own.
//!
//! `score = quality x (4 uptime + 3 service + 3 price) / 10`, in parts per million; a provider
//! that served nothing scores 0. Weights are scores scaled so the best is 65,535. Not measured
//! yet: latency and throughput, which need the validator's own timed requests (a receipt's
//! `time_ms` is the provider's claim).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agora_market::{ChainClient, TxSender};
use agora_types::market::{ProviderWeight, WeightsReveal, weights_commitment};
use agora_types::receipt::InferenceReceipt;
use agora_types::{Address, Hash, SecretKey, TxBody};

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
}

/// Each input's score in parts per million (see the module docs for the formula).
pub fn score(inputs: &[ScoreInput]) -> Vec<u64> {
    let max_tokens = inputs.iter().map(|i| i.tokens).max().unwrap_or(0);
    let min_price = inputs
        .iter()
        .filter_map(|i| i.price)
        .filter(|p| *p > 0)
        .min();
    inputs
        .iter()
        .map(|i| {
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
            quality * (4 * uptime + 3 * service + 3 * price) / 10 / 1_000_000
        })
        .collect()
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
}

/// The running scorer of one validator.
pub struct Scorer {
    dir: PathBuf,
    /// The incentive epoch whose window is being observed.
    epoch: Option<u64>,
    window: BTreeMap<Address, Observed>,
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
            // A fresh key's 32 bytes come from the OS's random source: a salt nobody guesses.
            let reveal = WeightsReveal {
                market: market.id,
                weights: entries,
                salt: Hash(SecretKey::generate().to_bytes()),
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
        out.push(ScoreInput {
            sanctioned,
            audits_passed: o.passed,
            audits_failed: o.failed,
            slices_served: o.slices.count_ones(),
            tokens: o.tokens,
            price,
        });
    }
    Ok(out)
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
