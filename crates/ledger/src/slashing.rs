//! Slashing: checked evidence burns a fraction of the offender's stake (bonded and unbonding,
//! own and delegated), pays a share to the reporter and jails the offender. The reporter may
//! not be the offender ([`check_report`]).
//!
//! Three kinds of evidence. Two are equivocation that needs nothing but two signatures to
//! check:
//!
//! * [`Evidence::ConflictingClaims`]: two different signed claims about one subject.
//! * [`Evidence::ConflictingVotes`]: a validator's two conflicting simplex consensus votes in
//!   one round (two notarizes or two finalizes of different proposals, or a nullify and a
//!   finalize). [`vote_message`] rebuilds the exact bytes commonware simplex's ed25519 scheme
//!   signs, with the namespace [`consensus_namespace`] of this chain, so a signature made for
//!   another chain or another round does not verify. One slash per offender and round
//!   ([`Evidence::id`]), whichever conflicting pair proves it.
//!
//! ```text
//!   signed bytes = varint(len(ns')) || ns' || varint(epoch) || varint(view) [ || varint(parent) || payload ]
//!   ns' = "agora-consensus/<chain id>" || "_NOTARIZE" | "_NULLIFY" | "_FINALIZE"
//! ```
//!
//! The third is a failed audit, [`Evidence::FailedAudit`]: a provider-signed receipt and the
//! failing verdicts of at least two distinct active validators on it (checked by
//! [`crate::audit::check_failed_audit`]). It takes `audit_slash_bps` of the provider's stake
//! (instead of `slash_fraction_bps`), pays the reporter the same share, jails the provider like
//! any slash, and also **forfeits the job's payment**: `min(charged, what the receipt's channel
//! ever paid, what the provider holds)` goes back to the receipt's payer, taken from the
//! provider's locked earnings first (soonest-unlocking first, `earnings::take`), then from its
//! balance; never more than the receipt's `charged`, never below zero. Nothing is forfeited
//! when the receipt's channel is not a channel of this provider and payer on this ledger (the
//! job was not paid here), or when the payer is the provider itself (which would only unlock its
//! own earnings early). Then the provider is on probation until `height + probation_blocks`
//! ([`crate::audit::on_probation`]): every receipt of it is audited.

use crate::accounts::credit;
use crate::error::SlashError;
use crate::events::Event;
use crate::state::State;
use agora_types::receipt::SignedReceipt;
use agora_types::tx::claim_message;
use agora_types::{
    Address, Amount, ConsensusVote, Evidence, Hash, SignDomain, VoteKind, receipt_id,
};

/// The namespace validators sign consensus votes under on chain `chain_id`.
pub fn consensus_namespace(chain_id: &str) -> Vec<u8> {
    format!("agora-consensus/{chain_id}").into_bytes()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The bytes a validator signs for `vote` in round (`epoch`, `view`) under `namespace`
/// (commonware-consensus simplex, ed25519 scheme: `union_unique(namespace || suffix, message)`).
pub fn vote_message(namespace: &[u8], epoch: u64, view: u64, vote: &ConsensusVote) -> Vec<u8> {
    let suffix: &[u8] = match vote.kind {
        VoteKind::Notarize => b"_NOTARIZE",
        VoteKind::Nullify => b"_NULLIFY",
        VoteKind::Finalize => b"_FINALIZE",
    };
    let mut out = Vec::with_capacity(namespace.len() + suffix.len() + 64);
    put_varint(&mut out, (namespace.len() + suffix.len()) as u64);
    out.extend_from_slice(namespace);
    out.extend_from_slice(suffix);
    put_varint(&mut out, epoch);
    put_varint(&mut out, view);
    if vote.kind != VoteKind::Nullify {
        put_varint(&mut out, vote.parent_view);
        out.extend_from_slice(&vote.payload.0);
    }
    out
}

/// Whether two votes of one round conflict: different proposals notarized or finalized, or a
/// nullify next to a finalize. A nullify names no proposal, so its parent and payload must be
/// zero (one encoding per vote).
pub fn votes_conflict(a: &ConsensusVote, b: &ConsensusVote) -> bool {
    let canonical = |v: &ConsensusVote| {
        v.kind != VoteKind::Nullify || (v.parent_view == 0 && v.payload == Hash::ZERO)
    };
    if !canonical(a) || !canonical(b) {
        return false;
    }
    let differ = (a.parent_view, a.payload) != (b.parent_view, b.payload);
    match (a.kind, b.kind) {
        (VoteKind::Notarize, VoteKind::Notarize) | (VoteKind::Finalize, VoteKind::Finalize) => {
            differ
        }
        (VoteKind::Nullify, VoteKind::Finalize) | (VoteKind::Finalize, VoteKind::Nullify) => true,
        _ => false,
    }
}

fn verify_vote(
    offender: &Address,
    namespace: &[u8],
    epoch: u64,
    view: u64,
    vote: &ConsensusVote,
) -> Result<(), SlashError> {
    let key = ed25519_zebra::VerificationKey::try_from(offender.0)
        .map_err(|_| SlashError::BadSignature)?;
    key.verify(
        &ed25519_zebra::Signature::from(vote.signature.0),
        &vote_message(namespace, epoch, view, vote),
    )
    .map_err(|_| SlashError::BadSignature)
}

/// Checks `evidence` against `state` without changing it: the two signed statements conflict,
/// the offence was not slashed before, and both signatures are the offender's.
pub fn check_evidence(state: &State, evidence: &Evidence) -> Result<(), SlashError> {
    match evidence {
        Evidence::ConflictingClaims {
            offender,
            subject,
            claim_a,
            signature_a,
            claim_b,
            signature_b,
        } => {
            if claim_a == claim_b {
                return Err(SlashError::NoConflict);
            }
            if state.evidence_used(&evidence.id()) {
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
                .map_err(|_| SlashError::BadSignature)
        }
        Evidence::ConflictingVotes {
            offender,
            epoch,
            view,
            vote_a,
            vote_b,
        } => {
            if !votes_conflict(vote_a, vote_b) {
                return Err(SlashError::NoConflict);
            }
            if state.evidence_used(&evidence.id()) {
                return Err(SlashError::AlreadySlashed);
            }
            if state.validator(offender).is_none() {
                return Err(SlashError::NotAValidator);
            }
            let namespace = consensus_namespace(state.chain_id());
            verify_vote(offender, &namespace, *epoch, *view, vote_a)?;
            verify_vote(offender, &namespace, *epoch, *view, vote_b)
        }
        Evidence::FailedAudit { receipt, verdicts } => {
            crate::audit::check_failed_audit(state, &evidence.id(), receipt, verdicts)
        }
    }
}

/// Checks a `Slash` by `reporter` without changing `state`: [`check_evidence`], and the reporter
/// is not the offender. An offender reporting itself would take the reporter's share of its own
/// slash (and use up the evidence before an honest reporter could), so it is refused and the
/// evidence stays usable by anyone else.
///
/// A validator that signed one of a failed audit's verdicts may report it: the reward pays for
/// the audit work that found the fault (an auditor must earn at least what an audit costs), and
/// reporting adds no power to lie, since the slash needs a second validator's independent
/// failing verdict whoever submits it; two validators lying together could slash whoever
/// reported.
pub fn check_report(
    state: &State,
    reporter: &Address,
    evidence: &Evidence,
) -> Result<(), SlashError> {
    if *reporter == evidence.offender() {
        return Err(SlashError::ReporterIsOffender);
    }
    check_evidence(state, evidence)
}

pub(crate) fn slash(
    state: &mut State,
    height: u64,
    reporter: &Address,
    evidence: &Evidence,
) -> Result<Vec<Event>, SlashError> {
    check_report(state, reporter, evidence)?;
    let offender = &evidence.offender();
    let id = evidence.id();
    let failed_audit = match evidence {
        Evidence::FailedAudit { receipt, .. } => Some(receipt.as_ref()),
        _ => None,
    };
    let fraction = if failed_audit.is_some() {
        state.params().audit_slash_bps
    } else {
        state.params().slash_fraction_bps
    };
    // A failed audit still forfeits the payment and starts probation when the registered
    // provider has no stake left; equivocation with nothing to slash does nothing.
    let slashed = cut_stake(state, offender, fraction, failed_audit.is_none())?;
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
    let mut events = vec![Event::Slashed {
        offender: *offender,
        slashed,
        burned,
        reporter: *reporter,
        reward,
    }];
    if let Some(receipt) = failed_audit {
        let forfeited = forfeit(state, receipt)?;
        let until = height.saturating_add(state.params().probation_blocks);
        let until = state
            .probation_until(offender)
            .map_or(until, |u| u.max(until));
        state.set_probation(offender, until);
        events.push(Event::AuditFailed {
            provider: *offender,
            receipt: receipt_id(receipt),
            payer: receipt.receipt.payer,
            forfeited,
            probation_until: until,
        });
    }
    Ok(events)
}

/// Takes `fraction` of every stake entry behind `offender`, bonded and unbonding; returns the
/// total taken (the caller burns it or pays it out). With `need_stake`, an offender with no
/// stake entries at all is an error and nothing changes.
fn cut_stake(
    state: &mut State,
    offender: &Address,
    fraction: u16,
    need_stake: bool,
) -> Result<Amount, SlashError> {
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
    if need_stake && bonded.is_empty() && unbonding.is_empty() {
        return Err(SlashError::NothingToSlash);
    }
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
    Ok(slashed)
}

/// Gives a failed job's payment back to its payer (see the module docs for the rule); returns
/// what moved.
fn forfeit(state: &mut State, signed: &SignedReceipt) -> Result<Amount, SlashError> {
    let r = &signed.receipt;
    if r.payer == r.provider {
        return Ok(Amount::ZERO);
    }
    let paid_on_channel = match state.channel(&r.channel) {
        Some(c) if c.provider == r.provider && c.payer == r.payer => c.redeemed,
        _ => return Ok(Amount::ZERO),
    };
    let held = state
        .locked_total(&r.provider)
        .checked_add(state.balance(&r.provider))
        .ok_or(SlashError::Overflow)?;
    let amount = r.charged.min(paid_on_channel).min(held);
    if amount.is_zero() {
        return Ok(Amount::ZERO);
    }
    state
        .balance(&r.payer)
        .checked_add(amount)
        .ok_or(SlashError::Overflow)?;
    let from_locked = crate::earnings::take(state, &r.provider, amount);
    let from_balance = amount.saturating_sub(from_locked);
    crate::accounts::debit(state, &r.provider, from_balance).map_err(|_| SlashError::Overflow)?;
    credit(state, &r.payer, amount).map_err(|_| SlashError::Overflow)?;
    crate::incentives::forfeit_usage(state, &r.model, amount);
    Ok(amount)
}
