//! Bond, unbond (with an unbonding period in blocks) and withdraw; delegation of stake to a
//! validator or provider. Stake, bonded or unbonding, is what slashing takes from. A registered
//! provider cannot unbond its own stake below `Params::min_provider_stake`.

use crate::accounts::{credit, debit};
use crate::error::{BondError, UnbondError, WithdrawError};
use crate::events::Event;
use crate::state::State;
use agora_types::{Address, Amount};

pub(crate) fn bond(
    state: &mut State,
    height: u64,
    delegator: &Address,
    target: &Address,
    amount: Amount,
) -> Result<Vec<Event>, BondError> {
    if amount.is_zero() {
        return Err(BondError::ZeroAmount);
    }
    if delegator != target {
        let jailed_until = match (state.validator(target), state.provider(target)) {
            (Some(v), Some(p)) => v.jailed_until.max(p.jailed_until),
            (Some(v), None) => v.jailed_until,
            (None, Some(p)) => p.jailed_until,
            (None, None) => return Err(BondError::UnknownTarget),
        };
        if jailed_until > height {
            return Err(BondError::TargetJailed {
                until: jailed_until,
            });
        }
    }
    let stake = state
        .stake(target, delegator)
        .checked_add(amount)
        .ok_or(BondError::Overflow)?;
    let total = state
        .total_stake(target)
        .checked_add(amount)
        .ok_or(BondError::Overflow)?;
    debit(state, delegator, amount).map_err(|balance| BondError::InsufficientBalance {
        balance,
        needed: amount,
    })?;
    state.set_stake(target, delegator, stake);
    state.set_stake_total(target, total);
    Ok(vec![Event::Bonded {
        delegator: *delegator,
        target: *target,
        amount,
    }])
}

pub(crate) fn unbond(
    state: &mut State,
    height: u64,
    delegator: &Address,
    target: &Address,
    amount: Amount,
) -> Result<Vec<Event>, UnbondError> {
    if amount.is_zero() {
        return Err(UnbondError::ZeroAmount);
    }
    let bonded = state.stake(target, delegator);
    let left = bonded
        .checked_sub(amount)
        .ok_or(UnbondError::InsufficientStake {
            bonded,
            requested: amount,
        })?;
    // A registered provider keeps at least the provider minimum self-bonded: otherwise it would
    // go on taking channels and payments with nothing left to slash. There is no deregistration
    // yet, so a provider's minimum stays bonded; only the surplus can be unbonded. (Validators
    // need no such floor here: `epochs::active_set` leaves out a validator whose total stake
    // is below `min_validator_stake` at the next epoch boundary, and that is how one leaves.)
    if delegator == target && state.provider(target).is_some() {
        let min = state.params().min_provider_stake;
        if left < min {
            return Err(UnbondError::BelowProviderMinimum { left, min });
        }
    }
    let release_height = height.saturating_add(state.params().unbonding_period_blocks);
    let key = (*delegator, *target, release_height);
    let pending = state.unbonding.get(&key).copied().unwrap_or_default();
    let pending = pending.checked_add(amount).ok_or(UnbondError::Overflow)?;
    let total = state.total_stake(target).saturating_sub(amount);
    state.set_stake(target, delegator, left);
    state.set_stake_total(target, total);
    state.set_unbonding(key, pending);
    Ok(vec![Event::Unbonding {
        delegator: *delegator,
        target: *target,
        amount,
        release_height,
    }])
}

pub(crate) fn withdraw(
    state: &mut State,
    height: u64,
    delegator: &Address,
) -> Result<Vec<Event>, WithdrawError> {
    let entries = state.unbonding_of(delegator);
    let (matured, waiting): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(_, release, _)| *release <= height);
    if matured.is_empty() {
        let next = waiting.iter().map(|(_, h, _)| *h).min();
        return Err(WithdrawError::NothingMatured { next });
    }
    let mut sum = Amount::ZERO;
    for (_, _, amount) in &matured {
        sum = sum.checked_add(*amount).ok_or(WithdrawError::Overflow)?;
    }
    state
        .balance(delegator)
        .checked_add(sum)
        .ok_or(WithdrawError::Overflow)?;
    for (target, release, _) in matured {
        state.set_unbonding((*delegator, target, release), Amount::ZERO);
    }
    credit(state, delegator, sum).map_err(|_| WithdrawError::Overflow)?;
    Ok(vec![Event::Withdrawn {
        delegator: *delegator,
        amount: sum,
    }])
}
