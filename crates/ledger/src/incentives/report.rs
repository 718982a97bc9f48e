//! An epoch's report: every account's line in one market's epoch, with the figures that made
//! it (stake, permit, weights before and after clipping, consensus, bonds, shares) and, for a
//! line paid nothing, the reason. The ledger builds it from the same values it pays with, so
//! the report is what happened, not a second computation; anyone replaying the blocks gets the
//! same report from `report(epoch_view(..), run_epoch(..), pay_market(..))`.

use super::EpochView;
use crate::emission::{MarketPayout, Redirect};
use crate::yuma::{EpochOutput, Fixed, YumaParams};
use agora_types::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};

/// Shares are in parts per million (floored) so the report is integers only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochReport {
    pub market: Hash,
    pub name: String,
    /// The incentive epoch (heights `epoch * L ..= height`).
    pub epoch: u64,
    /// The block whose end ran it.
    pub height: u64,
    pub usage: Amount,
    /// The market's share of the epoch's emission.
    pub emission: Amount,
    pub kappa_ppm: u32,
    pub owner: Address,
    pub owner_paid: Amount,
    pub treasury_paid: Amount,
    pub redirects: Vec<Redirect>,
    pub providers: Vec<ProviderLine>,
    pub validators: Vec<ValidatorLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLine {
    pub provider: Address,
    pub slot: u32,
    pub joined_at: u64,
    pub consensus_ppm: u64,
    pub rank_ppm: u64,
    pub incentive_ppm: u64,
    pub paid: Amount,
    /// Why it was paid nothing, when it was.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorLine {
    pub validator: Address,
    pub stake_ppm: u64,
    pub active_stake_ppm: u64,
    /// Held a permit from the previous epoch (so its weights counted).
    pub permit: bool,
    /// Weights committed within the activity cutoff.
    pub active: bool,
    /// Holds a permit for the next epoch.
    pub next_permit: bool,
    /// Its weights that counted, normalized, and what clipping left of each.
    pub weights: Vec<WeightLine>,
    pub validator_trust_ppm: u64,
    pub dividends_ppm: u64,
    pub paid: Amount,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightLine {
    pub provider: Address,
    pub weight_ppm: u64,
    pub clipped_ppm: u64,
    /// The validator's bond in the provider after this epoch.
    pub bond_ppm: u64,
}

/// Why every line of a market that got no emission this epoch is 0.
const NO_SHARE: &str = "the market's share of emission was 0 (no paid usage this epoch)";

#[allow(clippy::too_many_arguments)]
pub fn report(
    name: &str,
    owner: Address,
    epoch: u64,
    params: &YumaParams,
    view: &EpochView,
    out: &EpochOutput,
    payout: &MarketPayout,
    emission: Amount,
    usage: Amount,
) -> EpochReport {
    let ppm = Fixed::to_ppm;
    let providers = view
        .providers
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let paid = payout.providers.get(j).copied().unwrap_or(0);
            let reason = (paid == 0).then(|| provider_reason(view, out, j, emission));
            ProviderLine {
                provider: *p,
                slot: j as u32,
                joined_at: view.input.providers[j].registered_at,
                consensus_ppm: ppm(out.consensus[j]),
                rank_ppm: ppm(out.rank[j]),
                incentive_ppm: ppm(out.incentive[j]),
                paid: Amount(paid),
                reason,
            }
        })
        .collect();
    let validators = view
        .validators
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let paid = payout.validators.get(i).copied().unwrap_or(0);
            let row = &view.input.validators[i];
            let weights = (0..view.providers.len())
                .filter(|j| out.weights[i][*j] > Fixed::ZERO || out.bonds[i][*j] > Fixed::ZERO)
                .map(|j| WeightLine {
                    provider: view.providers[j],
                    weight_ppm: ppm(out.weights[i][j]),
                    clipped_ppm: ppm(out.clipped[i][j]),
                    bond_ppm: ppm(out.bonds[i][j]),
                })
                .collect();
            let reason = (paid == 0).then(|| {
                if emission == Amount::ZERO {
                    NO_SHARE.to_string()
                } else if !row.permit {
                    format!("no permit from the previous epoch (permits go to the top {} by stake)", params.max_validators)
                } else if !out.active[i] {
                    format!("no weights committed within the activity cutoff ({} blocks)", params.activity_cutoff_blocks)
                } else {
                    "no bonds in a provider with incentive (weights outside consensus, or none revealed)".to_string()
                }
            });
            ValidatorLine {
                validator: *v,
                stake_ppm: ppm(out.stake[i]),
                active_stake_ppm: ppm(out.active_stake[i]),
                permit: row.permit,
                active: out.active[i],
                next_permit: out.new_permits[i],
                weights,
                validator_trust_ppm: ppm(out.validator_trust[i]),
                dividends_ppm: ppm(out.dividends[i]),
                paid: Amount(paid),
                reason,
            }
        })
        .collect();
    EpochReport {
        market: view.market,
        name: name.to_string(),
        epoch,
        height: view.input.block,
        usage,
        emission,
        kappa_ppm: params.kappa_ppm,
        owner,
        owner_paid: Amount(payout.owner),
        treasury_paid: Amount(payout.treasury),
        redirects: payout.redirects.clone(),
        providers,
        validators,
    }
}

fn provider_reason(view: &EpochView, out: &EpochOutput, j: usize, emission: Amount) -> String {
    if view.jailed[j] {
        return "jailed at this height (a failed audit or an equivocation): weights on it do not count".into();
    }
    if emission == Amount::ZERO {
        return NO_SHARE.into();
    }
    let counted = out
        .active_stake
        .iter()
        .zip(&out.weights)
        .any(|(s, row)| *s > Fixed::ZERO && row[j] > Fixed::ZERO);
    if counted {
        return "validators holding less than kappa of active stake weighted it above 0: consensus is 0".into();
    }
    let joined = view.input.providers[j].registered_at;
    let stale = view.input.validators.iter().any(|v| {
        v.weights.iter().any(|(p, w)| *p as usize == j && *w > 0) && v.last_update <= joined
    });
    if stale {
        format!("the weights naming it were committed before it joined its slot at height {joined}")
    } else {
        "no active validator with a permit weighted it".into()
    }
}
