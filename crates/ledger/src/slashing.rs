//! Slashing: checked evidence burns a fraction of the offender's stake (bonded and unbonding,
//! own and delegated), pays a share to the reporter and jails the offender.
//!
//! Evidence kinds grow with the verification work; today's is equivocation (two different
//! signed claims about one subject), which needs nothing but the two signatures to check.

use crate::accounts::credit;
use crate::error::SlashError;
use crate::events::Event;
use crate::state::State;
use agora_types::tx::claim_message;
use agora_types::{Address, Amount, Evidence, SignDomain};

pub(crate) fn slash(
    state: &mut State,
    height: u64,
    reporter: &Address,
    evidence: &Evidence,
) -> Result<Vec<Event>, SlashError> {
    let Evidence::ConflictingClaims {
        offender,
        subject,
        claim_a,
        signature_a,
        claim_b,
        signature_b,
    } = evidence;
    if claim_a == claim_b {
        return Err(SlashError::NoConflict);
    }
    let id = evidence.id();
    if state.evidence_used(&id) {
        return Err(SlashError::AlreadySlashed);
    }
    offender
        .verify(
            SignDomain::Claim,
            &claim_message(subject, claim_a),
            signature_a,
        )
        .map_err(|_| SlashError::BadSignature)?;
    offender
        .verify(
            SignDomain::Claim,
            &claim_message(subject, claim_b),
            signature_b,
        )
        .map_err(|_| SlashError::BadSignature)?;

    let fraction = state.params().slash_fraction_bps;
    let bonded: Vec<(Address, Amount)> = state
        .stakes
        .range((*offender, Address::default())..)
        .take_while(|((t, _), _)| t == offender)
        .map(|((_, d), a)| (*d, *a))
        .collect();
    let unbonding: Vec<((Address, Address, u64), Amount)> = state
        .unbonding
        .iter()
        .filter(|((_, t, _), _)| t == offender)
        .map(|(k, a)| (*k, *a))
        .collect();
    let mut slashed = Amount::ZERO;
    let mut new_total = state.total_stake(offender);
    for (delegator, amount) in &bonded {
        let cut = amount.mul_bps(fraction);
        slashed = slashed.checked_add(cut).ok_or(SlashError::Overflow)?;
        new_total = new_total.saturating_sub(cut);
        state.set_stake(offender, delegator, amount.saturating_sub(cut));
    }
    state.set_stake_total(offender, new_total);
    for (key, amount) in &unbonding {
        let cut = amount.mul_bps(fraction);
        slashed = slashed.checked_add(cut).ok_or(SlashError::Overflow)?;
        state.set_unbonding(*key, amount.saturating_sub(cut));
    }
    if slashed.is_zero() && bonded.is_empty() && unbonding.is_empty() {
        return Err(SlashError::NothingToSlash);
    }
    let reward = slashed.mul_bps(state.params().slash_reporter_bps);
    let burned = slashed.saturating_sub(reward);
    credit(state, reporter, reward).map_err(|_| SlashError::Overflow)?;
    let supply = &mut state.meta_mut().supply;
    supply.burned = supply
        .burned
        .checked_add(burned)
        .ok_or(SlashError::Overflow)?;

    let jail_until = height.saturating_add(state.params().jail_blocks);
    if let Some(p) = state.provider_mut(offender) {
        p.jailed_until = p.jailed_until.max(jail_until);
    }
    if let Some(v) = state.validator_mut(offender) {
        v.jailed_until = v.jailed_until.max(jail_until);
    }
    state.insert_evidence(id);
    Ok(vec![Event::Slashed {
        offender: *offender,
        slashed,
        burned,
        reporter: *reporter,
        reward,
    }])
}
