//! Incentives on the ledger: markets, validators' weights, Yuma and emission, run at the last
//! block of every incentive epoch.
//!
//! ```text
//!  during epoch k:  CreateMarket / JoinMarket / CommitWeights / RevealWeights (markets.rs)
//!                   RedeemVoucher ──► usage of the market its model belongs to
//!                   FailedAudit forfeiture ──► that usage taken back
//!  last block of k: E = schedule over the epoch's heights
//!                   no usage anywhere ──► nothing minted (EmissionNotMinted, with the reason)
//!                   else per market (id order): share = E split by usage (largest remainder)
//!                        view  = epoch_view(state, market)   (validators = the active set)
//!                        out   = yuma::run_epoch(view)
//!                        pay   = emission::pay_market(share, I, D, active stake)
//!                        owner, validators credited; providers' emission locked (earnings)
//!                        permits, bonds, members' incentive stored; usage reset
//! ```
//! Everything an epoch reads is on the ledger at that block (stake, the active set, revealed
//! weights, bonds, members), so anyone replaying finalized blocks recomputes every figure;
//! `epoch_view` is public so a node or a client can do exactly that, and the `EpochPaid` and
//! `EmissionPaid` events carry each account's line.

pub mod markets;
mod params;
mod report;

pub use params::IncentiveParams;
pub use report::{EpochReport, ProviderLine, ValidatorLine, WeightLine, report};

use crate::emission::{largest_remainder, pay_market};
use crate::events::Event;
use crate::state::{BondRow, State};
use crate::yuma::{self, EpochInput, EpochOutput, Fixed, ProviderInput, ValidatorInput};
use agora_types::{Address, Amount, Hash};

/// Who each row and column of a market's Yuma input is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochView {
    pub market: Hash,
    /// Validators (rows), ascending address: the ledger's active validator set.
    pub validators: Vec<Address>,
    /// Members (columns), in slot order.
    pub providers: Vec<Address>,
    /// Per member: jailed at this height (a failed audit or an equivocation). Weights on a
    /// jailed member are dropped, so it earns no incentive whatever validators set.
    pub jailed: Vec<bool>,
    pub input: EpochInput,
}

/// The Yuma input of `market`'s epoch ending at `height`, from the state as it is.
pub fn epoch_view(state: &State, market: &Hash, height: u64) -> Option<EpochView> {
    let record = state.market(market)?;
    let params = &state.params().incentives;
    let mut validators: Vec<(Address, Amount)> = crate::epochs::active_set(state);
    validators.sort_by_key(|(address, _)| *address);
    let providers: Vec<Address> = record.members.iter().map(|m| m.provider).collect();
    let jailed: Vec<bool> = providers
        .iter()
        .map(|p| state.provider(p).is_none_or(|r| r.jailed_until > height))
        .collect();
    let slot = |a: &Address| providers.iter().position(|p| p == a).map(|i| i as u32);
    let counted_slot = |a: &Address| slot(a).filter(|j| !jailed[*j as usize]);
    // A market's first epoch grants permits to the top K at once, so it does not open with
    // an epoch in which no weights can count.
    let first_epoch = record.epochs_run == 0;
    let rows = validators
        .iter()
        .map(|(v, stake)| {
            let (weights, last_update) = match state.revealed_weights(market, v) {
                Some(w) => (
                    w.weights
                        .iter()
                        .filter_map(|pw| Some((counted_slot(&pw.provider)?, pw.weight)))
                        .collect(),
                    w.committed_at,
                ),
                None => (Vec::new(), 0),
            };
            let bonds = state
                .bonds(market, v)
                .map(|row| {
                    row.0
                        .iter()
                        .filter_map(|(p, b)| Some((slot(p)?, Fixed::from_bits(*b))))
                        .collect()
                })
                .unwrap_or_default();
            ValidatorInput {
                stake: stake.0,
                permit: first_epoch || record.permits.binary_search(v).is_ok(),
                last_update,
                weights,
                bonds,
                own_provider: slot(v),
            }
        })
        .collect();
    let epoch_blocks = params.epoch_blocks.max(1);
    Some(EpochView {
        market: *market,
        validators: validators.into_iter().map(|(a, _)| a).collect(),
        providers,
        jailed,
        input: EpochInput {
            block: height,
            last_epoch_block: height.saturating_sub(epoch_blocks),
            validators: rows,
            providers: record
                .members
                .iter()
                .map(|m| ProviderInput {
                    registered_at: m.joined_at,
                })
                .collect(),
        },
    })
}

/// At the last block of an incentive epoch: mint the epoch's emission and pay every market.
pub(crate) fn finish_epoch(state: &mut State, height: u64) -> (Vec<Event>, Vec<EpochReport>) {
    let params = state.params().incentives.clone();
    let epoch_blocks = params.epoch_blocks.max(1);
    if !crate::epochs::ends_epoch(height, epoch_blocks) {
        return (Vec::new(), Vec::new());
    }
    let epoch = crate::epochs::epoch_of(height, epoch_blocks);
    let first = height.saturating_add(1).saturating_sub(epoch_blocks);
    let emission = params.schedule.emission_between(first, height);
    let ids: Vec<Hash> = state.markets().map(|(id, _)| *id).collect();
    let usage: Vec<u128> = ids
        .iter()
        .filter_map(|id| state.market(id))
        .map(|m| m.usage.0)
        .collect();
    let mut events = Vec::new();
    let shares = if usage.iter().any(|u| *u > 0) {
        largest_remainder(emission, &usage)
    } else {
        if emission > 0 {
            events.push(Event::EmissionNotMinted {
                epoch,
                amount: Amount(emission),
                reason: "no market served paid work this epoch".into(),
            });
        }
        vec![0; ids.len()]
    };
    let mut reports = Vec::new();
    for ((id, share), usage) in ids.iter().zip(shares).zip(usage) {
        let (paid, report) =
            pay_market_epoch(state, id, height, epoch, Amount(share), Amount(usage));
        events.extend(paid);
        reports.extend(report);
    }
    (events, reports)
}

/// Run one market's Yuma epoch and pay its share.
fn pay_market_epoch(
    state: &mut State,
    market: &Hash,
    height: u64,
    epoch: u64,
    share: Amount,
    usage: Amount,
) -> (Vec<Event>, Option<EpochReport>) {
    let Some(view) = epoch_view(state, market, height) else {
        return (Vec::new(), None);
    };
    let Some(record) = state.market(market).cloned() else {
        return (Vec::new(), None);
    };
    let params = state.params().incentives.clone();
    // The view is built from checked records, so Yuma cannot refuse it; if it ever did, the
    // share is not minted rather than paid on a guess.
    let out: EpochOutput = match yuma::run_epoch(&params.yuma, &view.input) {
        Ok(out) => out,
        Err(e) => {
            let reason = format!("market {market}: {e}");
            let not_minted = Event::EmissionNotMinted {
                epoch,
                amount: share,
                reason,
            };
            return (vec![not_minted], None);
        }
    };
    let payout = pay_market(
        share.0,
        &params.split,
        &out.incentive,
        &out.dividends,
        &out.active_stake,
    );
    let mut events = Vec::new();
    let mut minted = 0u128;
    let mut line = |state: &mut State,
                    account: &Address,
                    role: &str,
                    amount: u128,
                    events: &mut Vec<Event>| {
        if amount == 0 {
            return;
        }
        let paid = if role == "provider" {
            crate::earnings::pay(state, height, account, Amount(amount)).map(|e| events.extend(e))
        } else {
            crate::accounts::credit(state, account, Amount(amount))
        };
        // An account that cannot take more (its balance would overflow) is skipped: its
        // amount is simply not minted.
        if paid.is_ok() {
            minted += amount;
            events.push(Event::EmissionPaid {
                market: *market,
                epoch,
                account: *account,
                role: role.into(),
                amount: Amount(amount),
            });
        }
    };
    line(state, &record.owner, "owner", payout.owner, &mut events);
    for (provider, amount) in view.providers.iter().zip(&payout.providers) {
        line(state, provider, "provider", *amount, &mut events);
    }
    for (validator, amount) in view.validators.iter().zip(&payout.validators) {
        line(state, validator, "validator", *amount, &mut events);
    }
    let treasury = state.params().treasury;
    line(state, &treasury, "treasury", payout.treasury, &mut events);
    let supply = &mut state.meta_mut().supply;
    supply.minted = Amount(supply.minted.0.saturating_add(minted));

    store_results(state, market, &view, &out);
    events.insert(
        0,
        Event::EpochPaid {
            market: *market,
            epoch,
            usage,
            emission: share,
            owner: Amount(payout.owner),
            providers: Amount(payout.providers.iter().sum()),
            validators: Amount(payout.validators.iter().sum()),
            treasury: Amount(payout.treasury),
            redirects: payout.redirects.clone(),
        },
    );
    let report = report(
        &record.name,
        record.owner,
        epoch,
        &params.yuma,
        &view,
        &out,
        &payout,
        share,
        usage,
    );
    (events, Some(report))
}

/// What the next epoch reads back: permits, bonds, members' incentive; usage starts again.
fn store_results(state: &mut State, market: &Hash, view: &EpochView, out: &EpochOutput) {
    let permits: Vec<Address> = view
        .validators
        .iter()
        .zip(&out.new_permits)
        .filter(|(_, p)| **p)
        .map(|(v, _)| *v)
        .collect();
    let stale: Vec<Address> = state
        .bonds
        .range((*market, Address::default())..)
        .take_while(|((m, _), _)| m == market)
        .map(|((_, v), _)| *v)
        .filter(|v| view.validators.binary_search(v).is_err())
        .collect();
    for v in stale {
        state.set_bonds(*market, v, BondRow::default());
    }
    for (v, row) in view.validators.iter().zip(&out.bonds) {
        let kept = view
            .providers
            .iter()
            .zip(row)
            .filter(|(_, b)| **b > Fixed::ZERO)
            .map(|(p, b)| (*p, b.to_bits()))
            .collect();
        state.set_bonds(*market, *v, BondRow(kept));
    }
    if let Some(record) = state.market_mut(market) {
        for (member, incentive) in record.members.iter_mut().zip(&out.incentive) {
            member.incentive_ppm = u32::try_from(incentive.to_ppm()).unwrap_or(u32::MAX);
        }
        record.permits = permits;
        record.usage = Amount::ZERO;
        record.epochs_run = record.epochs_run.saturating_add(1);
    }
}

/// Counts a redeemed amount for `model` toward its market's usage this epoch.
pub(crate) fn record_usage(state: &mut State, model: &Hash, amount: Amount) {
    if let Some(market) = state.market_of_model(model)
        && let Some(record) = state.market_mut(&market)
    {
        record.usage = Amount(record.usage.0.saturating_add(amount.0));
    }
}

/// Takes back usage a failed audit forfeited (never below zero).
pub(crate) fn forfeit_usage(state: &mut State, model: &Hash, amount: Amount) {
    if let Some(market) = state.market_of_model(model)
        && let Some(record) = state.market_mut(&market)
    {
        record.usage = Amount(record.usage.0.saturating_sub(amount.0));
    }
}
