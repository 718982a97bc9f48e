//! Yuma consensus (Bittensor's Yuma3) in fixed point: from validators' weights over a market's
//! providers to each provider's incentive and each validator's dividends.
//!
//! ```text
//!  stake ──► S (normalized) ──► permits (top-K, for the next epoch)
//!              │ masked: inactive, no permit from the last epoch
//!              ▼
//!        active stake AS
//!  weights W (rows normalized; own provider, stale and permitless rows dropped)
//!              │
//!              ├─► consensus C_j = max{ w : Σ AS_i [W_ij ≥ w] ≥ κ }   (quantile.rs)
//!              ├─► clipped Wc_ij = min(W_ij, C_j) ─► validator trust VT_i = Σ_j Wc_ij
//!              │                                 └► rank R_j = Σ_i AS_i Wc_ij ─► incentive I = R / ΣR
//!              └─► W_b = W - β (W - Wc) ─► bonds B = EMA(B_prev, W_b), per pair α (bonds.rs)
//!                                          └► dividends D_i ∝ AS_i Σ_j (B_ij / Σ_k B_kj) I_j
//! ```
//!
//! The mechanism is subtensor's `epoch_dense_mechanism` with Yuma3 bonds (the conformance
//! target: `tests/it/yuma.rs` reproduces its published vectors), with three deliberate
//! differences, all written down in docs/design/incentives.md:
//! - validators and providers are separate accounts, so the matrices are validators x providers
//!   and a validator's weight on the provider run by the same account is dropped (subtensor's
//!   masked diagonal);
//! - a bond to a provider missing from a validator's new weights decays by (1 - α) (the dense
//!   semantics), never drops at once;
//! - rows are normalized from the integer weights directly, and the quantile is computed by a
//!   sort, not a quickselect; the result is the same level, `max{w : stake at or above w ≥ κ}`.
//!
//! Pure and deterministic: integers only (`Fixed`, Q32.32), no maps, no clock; the same input
//! gives the same bits on every replica.

pub mod bonds;
pub mod fixed;
pub mod quantile;

pub use fixed::Fixed;

use serde::{Deserialize, Serialize};

/// Yuma's parameters, per market. Shares are parts per million.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YumaParams {
    /// κ: the share of active stake that must put a weight at or above the consensus level.
    pub kappa_ppm: u32,
    /// β: how much bonds follow clipped rather than raw weights (1,000,000 = clipped only).
    pub bonds_penalty_ppm: u32,
    /// Bonds' moving average when liquid alpha is off: α = 1 - this.
    pub bonds_moving_average_ppm: u32,
    /// Per-pair bond rates from the sigmoid (Yuma3's "liquid alpha").
    pub liquid_alpha: bool,
    /// The slowest per-pair bond rate (a validator that agrees with consensus).
    pub alpha_low_ppm: u32,
    /// The fastest per-pair bond rate (a validator ahead of consensus, or selling a bond).
    pub alpha_high_ppm: u32,
    /// The sigmoid's steepness; its slope is steepness / 100.
    pub alpha_steepness: u32,
    /// Validator permits: the top K by stake.
    pub max_validators: u32,
    /// A validator whose last weights are older than this many blocks counts no stake.
    pub activity_cutoff_blocks: u64,
}

impl Default for YumaParams {
    /// Subtensor's defaults for a new subnet (Yuma3 on, liquid alpha off), with κ = 1/2
    /// exactly instead of 32,767/65,535.
    fn default() -> Self {
        YumaParams {
            kappa_ppm: 500_000,
            bonds_penalty_ppm: 1_000_000,
            bonds_moving_average_ppm: 900_000,
            liquid_alpha: false,
            alpha_low_ppm: 700_000,
            alpha_high_ppm: 900_000,
            alpha_steepness: 1_000,
            max_validators: 64,
            activity_cutoff_blocks: 5_000,
        }
    }
}

/// One validator's state going into an epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidatorInput {
    /// Bonded stake, in base units.
    pub stake: u128,
    /// Whether it held a permit after the previous epoch (a new validator waits one epoch).
    pub permit: bool,
    /// Height of its last weights (under commit-reveal: of the commit).
    pub last_update: u64,
    /// Its weights: (provider index, raw weight), any positive scale; rows are normalized here.
    pub weights: Vec<(u32, u16)>,
    /// Its bonds from the previous epoch: (provider index, bond in [0, 1]).
    pub bonds: Vec<(u32, Fixed)>,
    /// The provider index run by the same account, whose weight is dropped.
    pub own_provider: Option<u32>,
}

/// One provider (a market member) going into an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderInput {
    /// Height at which it (last) joined the market.
    pub registered_at: u64,
}

/// Everything an epoch reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochInput {
    /// The height the epoch runs at.
    pub block: u64,
    /// The height the previous epoch ran at (0 for the first).
    pub last_epoch_block: u64,
    pub validators: Vec<ValidatorInput>,
    pub providers: Vec<ProviderInput>,
}

/// Everything an epoch computes: every intermediate figure, so one account's line can be
/// explained (which weights counted, which were clipped, which bonds paid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochOutput {
    /// Normalized stake per validator.
    pub stake: Vec<Fixed>,
    /// Whether each validator's weights are recent enough to count.
    pub active: Vec<bool>,
    /// Normalized stake that counts: active, with a permit from the previous epoch.
    pub active_stake: Vec<Fixed>,
    /// Permits for the next epoch (top `max_validators` by stake, non-zero).
    pub new_permits: Vec<bool>,
    /// Weights after masking and row normalization (validators x providers).
    pub weights: Vec<Vec<Fixed>>,
    /// Consensus weight per provider.
    pub consensus: Vec<Fixed>,
    /// Weights clipped at consensus.
    pub clipped: Vec<Vec<Fixed>>,
    /// Per validator: the sum of its clipped weights (1 when it agrees with consensus).
    pub validator_trust: Vec<Fixed>,
    /// Per provider: stake-weighted clipped weight.
    pub rank: Vec<Fixed>,
    /// Per provider: rank normalized (sums to 1 when anything ranked).
    pub incentive: Vec<Fixed>,
    /// Bonds after this epoch (validators x providers); rows without a new permit are zero.
    pub bonds: Vec<Vec<Fixed>>,
    /// Per validator: dividends (sums to 1 when any validator earned).
    pub dividends: Vec<Fixed>,
}

impl EpochOutput {
    /// Each validator's bonds in the form the next epoch reads them
    /// (`ValidatorInput::bonds`): the non-zero entries, by provider index.
    pub fn bonds_for_next_epoch(&self) -> Vec<Vec<(u32, Fixed)>> {
        self.bonds
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, b)| **b > Fixed::ZERO)
                    .map(|(j, b)| (j as u32, *b))
                    .collect()
            })
            .collect()
    }
}

/// Input an epoch refuses: the ledger checks weights when they are submitted, so any of these
/// in an epoch's input is a bug upstream, not something to paper over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YumaError {
    #[error("validator {validator} weights provider {provider}, but there are {providers}")]
    WeightOutOfRange {
        validator: usize,
        provider: u32,
        providers: usize,
    },
    #[error("validator {validator} weights provider {provider} twice")]
    DuplicateWeight { validator: usize, provider: u32 },
    #[error("validator {validator} has a bond to provider {provider}, but there are {providers}")]
    BondOutOfRange {
        validator: usize,
        provider: u32,
        providers: usize,
    },
}

/// Run one Yuma epoch.
pub fn run_epoch(params: &YumaParams, input: &EpochInput) -> Result<EpochOutput, YumaError> {
    let providers = input.providers.len();
    let validators = &input.validators;
    check(input)?;

    // Stake, permits, activity.
    let total_stake: u128 = validators
        .iter()
        .fold(0u128, |a, v| a.saturating_add(v.stake));
    let stake: Vec<Fixed> = validators
        .iter()
        .map(|v| Fixed::ratio(v.stake, total_stake))
        .collect();
    let new_permits = top_k_nonzero(&stake, params.max_validators);
    let active: Vec<bool> = validators
        .iter()
        .map(|v| v.last_update.saturating_add(params.activity_cutoff_blocks) >= input.block)
        .collect();
    let mut active_stake: Vec<Fixed> = (0..validators.len())
        .map(|i| {
            if active[i] && validators[i].permit {
                stake[i]
            } else {
                Fixed::ZERO
            }
        })
        .collect();
    normalize(&mut active_stake);

    // Weights: permitted rows only, no self-weight, none set before the provider joined.
    let weights: Vec<Vec<Fixed>> = validators
        .iter()
        .map(|v| {
            let mut row = vec![0u64; providers];
            if v.permit {
                for &(j, w) in &v.weights {
                    let stale = v.last_update <= input.providers[j as usize].registered_at;
                    if Some(j) != v.own_provider && !stale {
                        row[j as usize] = u64::from(w);
                    }
                }
            }
            let sum: u64 = row.iter().sum();
            row.iter()
                .map(|&w| Fixed::ratio(u128::from(w), u128::from(sum)))
                .collect()
        })
        .collect();

    // Consensus, clipping, trust, rank, incentive.
    let kappa = Fixed::from_ppm(params.kappa_ppm);
    let consensus: Vec<Fixed> = (0..providers)
        .map(|j| {
            let column = active_stake
                .iter()
                .zip(&weights)
                .filter(|(s, _)| **s > Fixed::ZERO);
            quantile::kappa_quantile(column.map(|(s, row)| (row[j], *s)).collect(), kappa)
        })
        .collect();
    let clipped: Vec<Vec<Fixed>> = weights
        .iter()
        .map(|row| {
            row.iter()
                .zip(&consensus)
                .map(|(w, c)| (*w).min(*c))
                .collect()
        })
        .collect();
    let validator_trust: Vec<Fixed> = clipped
        .iter()
        .map(|row| Fixed::sum(row.iter().copied()))
        .collect();
    let rank: Vec<Fixed> = (0..providers)
        .map(|j| {
            Fixed::sum(
                active_stake
                    .iter()
                    .zip(&clipped)
                    .map(|(s, row)| s.mul_floor(row[j])),
            )
        })
        .collect();
    let mut incentive = rank.clone();
    normalize(&mut incentive);

    // Bonds and dividends.
    let penalty = Fixed::from_ppm(params.bonds_penalty_ppm);
    let weights_for_bonds: Vec<Vec<Fixed>> = weights
        .iter()
        .zip(&clipped)
        .map(|(w, c)| {
            w.iter()
                .zip(c)
                .map(|(w, c)| w.saturating_sub(penalty.mul_floor(w.saturating_sub(*c))))
                .collect()
        })
        .collect();
    // A provider that joined since the last epoch starts with no bonds.
    let last_tempo = input.last_epoch_block.saturating_add(1);
    let previous: Vec<Vec<Fixed>> = validators
        .iter()
        .map(|v| {
            let mut row = vec![Fixed::ZERO; providers];
            for &(j, b) in &v.bonds {
                if input.providers[j as usize].registered_at < last_tempo {
                    row[j as usize] = b.min(Fixed::ONE);
                }
            }
            row
        })
        .collect();
    let mut bonds = bonds::ema(params, &weights_for_bonds, &previous, &consensus);
    let dividends = bonds::dividends(&bonds, &incentive, &active_stake);
    for (row, permit) in bonds.iter_mut().zip(&new_permits) {
        if !permit {
            row.iter_mut().for_each(|b| *b = Fixed::ZERO);
        }
    }

    Ok(EpochOutput {
        stake,
        active,
        active_stake,
        new_permits,
        weights,
        consensus,
        clipped,
        validator_trust,
        rank,
        incentive,
        bonds,
        dividends,
    })
}

fn check(input: &EpochInput) -> Result<(), YumaError> {
    let providers = input.providers.len();
    for (i, v) in input.validators.iter().enumerate() {
        let mut seen = vec![false; providers];
        for &(j, _) in &v.weights {
            let slot = seen
                .get_mut(j as usize)
                .ok_or(YumaError::WeightOutOfRange {
                    validator: i,
                    provider: j,
                    providers,
                })?;
            if std::mem::replace(slot, true) {
                return Err(YumaError::DuplicateWeight {
                    validator: i,
                    provider: j,
                });
            }
        }
        if let Some(&(j, _)) = v.bonds.iter().find(|(j, _)| *j as usize >= providers) {
            return Err(YumaError::BondOutOfRange {
                validator: i,
                provider: j,
                providers,
            });
        }
    }
    Ok(())
}

/// Scale `values` to sum to 1 (floored); left as they are when they sum to 0.
pub fn normalize(values: &mut [Fixed]) {
    let sum = Fixed::sum(values.iter().copied());
    if sum > Fixed::ZERO {
        values.iter_mut().for_each(|v| *v = v.div_floor(sum));
    }
}

/// True for the `k` largest non-zero values; ties lose by lower index (subtensor's stable
/// ascending sort clears the lowest `n - k` first).
pub fn top_k_nonzero(values: &[Fixed], k: u32) -> Vec<bool> {
    let mut keep: Vec<bool> = values.iter().map(|v| *v > Fixed::ZERO).collect();
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    if values.len() > k {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by_key(|&i| values[i]);
        for &i in &order[..values.len() - k] {
            keep[i] = false;
        }
    }
    keep
}
