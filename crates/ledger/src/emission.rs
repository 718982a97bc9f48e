//! Emission: how many new tokens each block mints, and how an epoch's tokens are split among
//! markets and, inside a market, among its owner, providers and validators.
//!
//! ```text
//!  schedule: block h mints initial >> ((h - 1) / halving_interval)      (h ≥ 1; 0 after 127 halvings)
//!  epoch emission E = Σ over the epoch's heights
//!      │ split across markets by the paid, audited usage each served this epoch
//!      ▼
//!  market share M ── owner_bps ──► market owner
//!                 ── provider_bps ──► providers, by Yuma incentive I
//!                 ── the rest ──► validators, by Yuma dividends D
//! ```
//! Every split is by largest remainder: shares are floored, and the units left over go one
//! each to the largest remainders (ties to the lower index), so the parts always sum to the
//! whole and no dust is lost. When a pool has no one to go to, the `Redirect` says where it went
//! and why: provider pool with no incentive -> validators by active stake (subtensor does the
//! same); no validator stake either -> the treasury. Integers only.

use crate::yuma::Fixed;
use serde::{Deserialize, Serialize};

/// The fixed supply schedule (a genesis parameter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Base units minted by each block of the first era.
    pub initial_block_reward: u128,
    /// Blocks per era; each era mints half of the one before (floored). 0 means no halving.
    pub halving_interval_blocks: u64,
}

impl Schedule {
    /// What block `height` mints (genesis, height 0, mints nothing).
    pub fn block_reward(&self, height: u64) -> u128 {
        if height == 0 {
            return 0;
        }
        let era = self.era_of(height);
        if era >= 128 {
            0
        } else {
            self.initial_block_reward >> era
        }
    }

    /// What heights `first..=last` mint together, in O(eras) rather than O(blocks).
    pub fn emission_between(&self, first: u64, last: u64) -> u128 {
        let mut total = 0u128;
        let mut height = first.max(1);
        while height <= last {
            if self.halving_interval_blocks > 0 && self.era_of(height) >= 128 {
                break; // every later block mints 0
            }
            let era_end = match self.halving_interval_blocks {
                0 => last,
                interval => self
                    .era_of(height)
                    .saturating_add(1)
                    .saturating_mul(interval)
                    .min(last),
            };
            let blocks = u128::from(era_end - height + 1);
            total = total.saturating_add(self.block_reward(height).saturating_mul(blocks));
            if era_end == u64::MAX {
                break;
            }
            height = era_end + 1;
        }
        total
    }

    /// Everything the schedule will ever mint: `initial * interval * (2 - 2^-127)`, floored
    /// era by era (infinite without halvings).
    pub fn cap(&self) -> Option<u128> {
        if self.halving_interval_blocks == 0 {
            return None;
        }
        let per_era = u128::from(self.halving_interval_blocks);
        (0..128).try_fold(0u128, |sum, era| {
            sum.checked_add((self.initial_block_reward >> era).checked_mul(per_era)?)
        })
    }

    fn era_of(&self, height: u64) -> u64 {
        match self.halving_interval_blocks {
            0 => 0,
            interval => (height - 1) / interval,
        }
    }
}

/// `total` split in proportion to `weights` by largest remainder: the parts sum to `total`
/// exactly when any weight is positive, and are all 0 otherwise.
pub fn largest_remainder(total: u128, weights: &[u128]) -> Vec<u128> {
    // Scale weights so their sum fits in 64 bits (n * max < 2^64); then every product below
    // fits in u128. Only weights of 2^64 / n or more lose low bits.
    let max = weights.iter().copied().max().unwrap_or(0);
    let bits = |x: u128| 128 - x.leading_zeros();
    let shift = (bits(max) + bits(weights.len() as u128)).saturating_sub(64);
    let scaled: Vec<u128> = weights.iter().map(|w| w >> shift).collect();
    let sum: u128 = scaled.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let (quotient, rest) = (total / sum, total % sum);
    let mut parts = Vec::with_capacity(scaled.len());
    let mut remainders = Vec::with_capacity(scaled.len());
    for (i, w) in scaled.iter().enumerate() {
        let extra = rest * w; // rest < sum < 2^64, w < 2^64
        parts.push(quotient * w + extra / sum);
        remainders.push((extra % sum, i));
    }
    let leftover = total - parts.iter().sum::<u128>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(leftover as usize) {
        parts[i] += 1;
    }
    parts
}

/// How a market's emission is divided (a ledger parameter; the rest goes to validators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSplit {
    pub owner_bps: u16,
    pub provider_bps: u16,
}

impl Default for MarketSplit {
    /// Subtensor's 18 / 41 / 41.
    fn default() -> Self {
        MarketSplit {
            owner_bps: 1_800,
            provider_bps: 4_100,
        }
    }
}

/// Where a pool went when its own recipients could not take it, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redirect {
    /// No provider had incentive (no validator's weights reached consensus): the provider and
    /// validator pools went to validators by active stake.
    NoIncentiveToValidatorsByStake,
    /// No validator had stake that counts: the pools went to the treasury.
    NoValidatorsToTreasury,
}

/// One market's payout for one epoch. `owner + Σ providers + Σ validators + treasury == amount`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarketPayout {
    pub owner: u128,
    pub providers: Vec<u128>,
    pub validators: Vec<u128>,
    pub treasury: u128,
    pub redirects: Vec<Redirect>,
}

/// Pay `amount` to a market's owner, providers (by `incentive`) and validators (by
/// `dividends`); `active_stake` is the fallback for validators when no provider ranked.
pub fn pay_market(
    amount: u128,
    split: &MarketSplit,
    incentive: &[Fixed],
    dividends: &[Fixed],
    active_stake: &[Fixed],
) -> MarketPayout {
    let bps = |b: u16| u128::from(b.min(10_000));
    let owner_bps = bps(split.owner_bps);
    let provider_bps = bps(split.provider_bps).min(10_000 - owner_bps);
    // amount * bps / 10_000 without overflow: split into quotient and remainder.
    let share = |b: u128| (amount / 10_000) * b + (amount % 10_000) * b / 10_000;
    let owner = share(owner_bps);
    let provider_pool = share(provider_bps);
    let validator_pool = amount - owner - provider_pool;
    let bits = |v: &[Fixed]| -> Vec<u128> { v.iter().map(|x| u128::from(x.to_bits())).collect() };

    let mut payout = MarketPayout {
        owner,
        ..MarketPayout::default()
    };
    let ranked = incentive.iter().any(|i| *i > Fixed::ZERO);
    let earned = dividends.iter().any(|d| *d > Fixed::ZERO);
    let staked = active_stake.iter().any(|s| *s > Fixed::ZERO);
    // Providers are paid by incentive whenever anyone ranked; otherwise their pool joins the
    // validators'.
    payout.providers = if ranked {
        largest_remainder(provider_pool, &bits(incentive))
    } else {
        vec![0; incentive.len()]
    };
    let to_validators = validator_pool + if ranked { 0 } else { provider_pool };
    if ranked && earned {
        payout.validators = largest_remainder(to_validators, &bits(dividends));
    } else if staked {
        // With incentive but no dividends (no bonds yet), validators are paid by stake too.
        if !ranked {
            payout
                .redirects
                .push(Redirect::NoIncentiveToValidatorsByStake);
        }
        payout.validators = largest_remainder(to_validators, &bits(active_stake));
    } else {
        payout.redirects.push(Redirect::NoValidatorsToTreasury);
        payout.validators = vec![0; dividends.len()];
        payout.treasury = to_validators;
    }
    payout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_halve_each_era_and_sum_in_closed_form() {
        let s = Schedule {
            initial_block_reward: 1_000,
            halving_interval_blocks: 10,
        };
        assert_eq!(s.block_reward(0), 0);
        assert_eq!(s.block_reward(1), 1_000);
        assert_eq!(s.block_reward(10), 1_000);
        assert_eq!(s.block_reward(11), 500);
        assert_eq!(s.block_reward(21), 250);
        let brute: u128 = (5..=37).map(|h| s.block_reward(h)).sum();
        assert_eq!(s.emission_between(5, 37), brute);
        assert_eq!(s.emission_between(0, 0), 0);
        assert_eq!(s.emission_between(7, 6), 0);
        // 1000*10 + 500*10 + 250*10 + 125*10 + 62*10 + ... (floors)
        let cap: u128 = (0..128).map(|e| (1_000u128 >> e) * 10).sum();
        assert_eq!(s.cap(), Some(cap));
        assert_eq!(s.emission_between(1, u64::MAX), cap);
    }

    #[test]
    fn no_halving_means_a_flat_reward_and_no_cap() {
        let s = Schedule {
            initial_block_reward: 7,
            halving_interval_blocks: 0,
        };
        assert_eq!(s.block_reward(1_000_000), 7);
        assert_eq!(s.emission_between(1, 100), 700);
        assert_eq!(s.cap(), None);
    }

    #[test]
    fn largest_remainder_sums_exactly_and_breaks_ties_by_index() {
        assert_eq!(largest_remainder(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(largest_remainder(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(largest_remainder(100, &[0, 0]), vec![0, 0]);
        assert_eq!(
            largest_remainder(u128::MAX, &[u128::MAX, u128::MAX])
                .iter()
                .sum::<u128>(),
            u128::MAX
        );
        assert_eq!(largest_remainder(7, &[0, 5, 0]), vec![0, 7, 0]);
    }

    #[test]
    fn a_market_with_no_incentive_pays_validators_by_stake_and_says_so() {
        let half = Fixed::ratio(1, 2);
        let p = pay_market(
            1_000,
            &MarketSplit::default(),
            &[Fixed::ZERO],
            &[Fixed::ZERO, Fixed::ZERO],
            &[half, half],
        );
        assert_eq!(p.owner, 180);
        assert_eq!(p.providers, vec![0]);
        assert_eq!(p.validators, vec![410, 410]);
        assert_eq!(p.redirects, vec![Redirect::NoIncentiveToValidatorsByStake]);
        let none = pay_market(
            1_000,
            &MarketSplit::default(),
            &[Fixed::ZERO],
            &[Fixed::ZERO],
            &[Fixed::ZERO],
        );
        assert_eq!(none.treasury, 820);
        assert_eq!(none.redirects, vec![Redirect::NoValidatorsToTreasury]);
    }
}
