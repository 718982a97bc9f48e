//! Payment channels: the off-chain per-token payment path.
//!
//! ```text
//!  payer ── OpenChannel(deposit) ──► escrow ◄── RedeemVoucher(cumulative, signed by payer) ── provider
//!                                      │            pays only the increase: royalty → model owners,
//!                                      │            protocol fee → treasury, rest → provider
//!                                      │            (locked for `earnings_lock_blocks`, `earnings`)
//!  payer ── CloseChannel ──► challenge period ──► SettleChannel: unspent deposit → payer
//! ```
//! A voucher is cumulative, so only the latest one matters and replaying an old one pays nothing
//! (it is rejected as not increasing). It can never pay more than the deposit, and its per-model
//! split must name every unit of the increase, so no payment skips its royalty. Whether a voucher
//! would be paid is one pure function, [`check_voucher`], that providers call too.

use crate::accounts::{credit, debit};
use crate::error::{ChannelError, RedeemError};
use crate::events::Event;
use crate::state::{Channel, State};
use agora_types::hash::HashDomain;
use agora_types::{Address, Amount, Hash, SignedVoucher};
use std::collections::BTreeMap;

/// A channel's id: unique because the payer's nonce is.
pub fn channel_id(payer: &Address, provider: &Address, payer_nonce: u64) -> Hash {
    Hash::of_parts(
        HashDomain::ChannelId,
        &[&payer.0, &provider.0, &payer_nonce.to_le_bytes()],
    )
}

pub(crate) fn open(
    state: &mut State,
    height: u64,
    payer: &Address,
    payer_nonce: u64,
    provider: &Address,
    deposit: Amount,
    expiry_height: u64,
) -> Result<Vec<Event>, ChannelError> {
    if deposit.is_zero() {
        return Err(ChannelError::ZeroAmount);
    }
    let p = state
        .provider(provider)
        .ok_or(ChannelError::UnknownProvider)?;
    if p.jailed_until > height {
        return Err(ChannelError::ProviderJailed {
            until: p.jailed_until,
        });
    }
    if expiry_height <= height {
        return Err(ChannelError::ExpiryInPast {
            expiry: expiry_height,
            height,
        });
    }
    let id = channel_id(payer, provider, payer_nonce);
    debit(state, payer, deposit).map_err(|balance| ChannelError::InsufficientBalance {
        balance,
        needed: deposit,
    })?;
    state.insert_channel(
        id,
        Channel {
            payer: *payer,
            provider: *provider,
            deposit,
            redeemed: Amount::ZERO,
            redeemed_per_model: BTreeMap::new(),
            opened_at: height,
            expiry_height,
            close_deadline: None,
            settled: false,
        },
    );
    Ok(vec![Event::ChannelOpened {
        channel: id,
        payer: *payer,
        provider: *provider,
        deposit,
    }])
}

pub(crate) fn top_up(
    state: &mut State,
    signer: &Address,
    id: &Hash,
    amount: Amount,
) -> Result<Vec<Event>, ChannelError> {
    if amount.is_zero() {
        return Err(ChannelError::ZeroAmount);
    }
    let c = state.channel(id).ok_or(ChannelError::UnknownChannel)?;
    if c.settled {
        return Err(ChannelError::Settled);
    }
    if c.close_deadline.is_some() {
        return Err(ChannelError::Closing);
    }
    if c.payer != *signer {
        return Err(ChannelError::NotAllowed("payer"));
    }
    let deposit = c
        .deposit
        .checked_add(amount)
        .ok_or(ChannelError::Overflow)?;
    debit(state, signer, amount).map_err(|balance| ChannelError::InsufficientBalance {
        balance,
        needed: amount,
    })?;
    if let Some(c) = state.channel_mut(id) {
        c.deposit = deposit;
    }
    Ok(vec![Event::ChannelToppedUp {
        channel: *id,
        amount,
    }])
}

/// What a valid voucher pays on its channel: the whole increase, and each named model's part of
/// it (in the voucher's order, sorted by model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherCheck {
    pub increase: Amount,
    pub model_increases: Vec<(Hash, Amount)>,
}

/// The one rule for a voucher: would the ledger pay it on `channel` to `redeemer`? Among the
/// rules, the per-model increases must add up to exactly the whole increase, so every payment
/// carries its royalty. Called by the ledger's redeem (with the channel in state) and by a
/// provider before it accepts a voucher (with the channel as read from a node, so a voucher it
/// holds is one the ledger will pay).
/// Pure: `is_registered` answers whether a model is in the ledger's registry.
pub fn check_voucher(
    channel: &Channel,
    redeemer: &Address,
    chain_id: &str,
    sv: &SignedVoucher,
    is_registered: impl Fn(&Hash) -> bool,
) -> Result<VoucherCheck, RedeemError> {
    let (c, v) = (channel, &sv.voucher);
    if c.settled {
        return Err(RedeemError::Settled);
    }
    if c.provider != *redeemer {
        return Err(RedeemError::NotProvider);
    }
    if v.chain_id != chain_id {
        return Err(RedeemError::WrongChain(v.chain_id.clone()));
    }
    if v.cumulative <= c.redeemed {
        return Err(RedeemError::NotIncreasing {
            cumulative: v.cumulative,
            redeemed: c.redeemed,
        });
    }
    if v.cumulative > c.deposit {
        return Err(RedeemError::OverDeposit {
            cumulative: v.cumulative,
            deposit: c.deposit,
        });
    }
    sv.verify(&c.payer).map_err(|_| RedeemError::BadSignature)?;
    let increase = v
        .cumulative
        .checked_sub(c.redeemed)
        .ok_or(RedeemError::Overflow)?;
    let mut model_increases = Vec::with_capacity(v.per_model.len());
    let mut model_increase_sum = Amount::ZERO;
    for (i, (model, amount)) in v.per_model.iter().enumerate() {
        if i > 0 && v.per_model[i - 1].0 >= *model {
            return Err(RedeemError::UnsortedModels);
        }
        if !is_registered(model) {
            return Err(RedeemError::UnknownModel(*model));
        }
        let before = c.redeemed_per_model.get(model).copied().unwrap_or_default();
        let inc = amount
            .checked_sub(before)
            .ok_or(RedeemError::ModelAmountDecreased(*model))?;
        model_increase_sum = model_increase_sum
            .checked_add(inc)
            .ok_or(RedeemError::Overflow)?;
        model_increases.push((*model, inc));
    }
    // Royalties are not voluntary: every unit of the increase is attributed to a model, so a
    // payer cannot leave the split empty (or short) and pay no royalty.
    if model_increase_sum != increase {
        return Err(RedeemError::ModelAmountsDoNotMatchIncrease {
            models: model_increase_sum,
            increase,
        });
    }
    Ok(VoucherCheck {
        increase,
        model_increases,
    })
}

/// Pays a voucher's increase. The provider's share, and the royalty of any model the provider
/// owns itself, are locked earnings (`earnings::pay`): a provider cannot route its pay around
/// the lock through its own model's royalty.
pub(crate) fn redeem(
    state: &mut State,
    height: u64,
    signer: &Address,
    sv: &SignedVoucher,
) -> Result<Vec<Event>, RedeemError> {
    let v = &sv.voucher;
    let c = state
        .channel(&v.channel)
        .ok_or(RedeemError::UnknownChannel)?;
    let VoucherCheck {
        increase,
        model_increases,
    } = check_voucher(c, signer, state.chain_id(), sv, |m| {
        state.model(m).is_some()
    })?;

    // Royalties on each model's increase. Each royalty is at most its increase, and the
    // increases sum to exactly the whole increase, so the royalties' sum cannot overflow;
    // checked anyway.
    let mut royalties: Vec<(Address, Amount)> = Vec::with_capacity(model_increases.len());
    let mut royalty_sum = Amount::ZERO;
    for (model, inc) in &model_increases {
        let record = state
            .model(model)
            .ok_or(RedeemError::UnknownModel(*model))?;
        let royalty = inc.mul_bps(record.info.royalty_bps.min(state.params().max_royalty_bps));
        royalty_sum = royalty_sum
            .checked_add(royalty)
            .ok_or(RedeemError::Overflow)?;
        royalties.push((record.owner, royalty));
    }
    let protocol_fee = increase.mul_bps(state.params().protocol_fee_bps);
    // royalty <= max_royalty_bps and fee bps + max royalty <= 10000 (params validation), so
    // this cannot underflow; checked anyway.
    let to_provider = increase
        .checked_sub(royalty_sum)
        .and_then(|x| x.checked_sub(protocol_fee))
        .ok_or(RedeemError::Overflow)?;

    let treasury = state.params().treasury;
    let provider = c.provider;
    let channel_id = v.channel;
    let mut provider_earnings = to_provider;
    let mut others: Vec<(Address, Amount)> = Vec::with_capacity(royalties.len() + 1);
    for (owner, royalty) in royalties {
        if owner == provider {
            provider_earnings = provider_earnings
                .checked_add(royalty)
                .ok_or(RedeemError::Overflow)?;
        } else {
            others.push((owner, royalty));
        }
    }
    others.push((treasury, protocol_fee));
    let c = state
        .channel_mut(&channel_id)
        .ok_or(RedeemError::UnknownChannel)?;
    c.redeemed = v.cumulative;
    for (model, amount) in &v.per_model {
        c.redeemed_per_model.insert(*model, *amount);
    }
    let locked = crate::earnings::pay(state, height, &provider, provider_earnings)
        .map_err(|_| RedeemError::Overflow)?;
    for (model, inc) in &model_increases {
        crate::incentives::record_usage(state, model, *inc);
    }
    for (to, amount) in others {
        credit(state, &to, amount).map_err(|_| RedeemError::Overflow)?;
    }
    let mut events = vec![Event::VoucherRedeemed {
        channel: channel_id,
        increase,
        to_provider,
        royalties: royalty_sum,
        protocol_fee,
    }];
    events.extend(locked);
    Ok(events)
}

/// The payer asks to close (the provider then has the challenge period to redeem); a provider
/// closing gives up further redeems, so its close may be settled at once.
pub(crate) fn close(
    state: &mut State,
    height: u64,
    signer: &Address,
    id: &Hash,
) -> Result<Vec<Event>, ChannelError> {
    let c = state.channel(id).ok_or(ChannelError::UnknownChannel)?;
    if c.settled {
        return Err(ChannelError::Settled);
    }
    let deadline = if *signer == c.payer {
        if c.close_deadline.is_some() {
            return Err(ChannelError::Closing);
        }
        height.saturating_add(state.params().channel_challenge_blocks)
    } else if *signer == c.provider {
        height
    } else {
        return Err(ChannelError::NotAllowed("payer or provider"));
    };
    let deadline = c.close_deadline.map_or(deadline, |d| d.min(deadline));
    if let Some(c) = state.channel_mut(id) {
        c.close_deadline = Some(deadline);
    }
    Ok(vec![Event::ChannelClosing {
        channel: *id,
        deadline,
    }])
}

/// Refunds the unspent deposit to the payer once the close deadline has passed, or once the
/// channel has expired and the challenge period after expiry has passed.
pub(crate) fn settle(
    state: &mut State,
    height: u64,
    signer: &Address,
    id: &Hash,
) -> Result<Vec<Event>, ChannelError> {
    let c = state.channel(id).ok_or(ChannelError::UnknownChannel)?;
    if c.settled {
        return Err(ChannelError::Settled);
    }
    if *signer != c.payer && *signer != c.provider {
        return Err(ChannelError::NotAllowed("payer or provider"));
    }
    let after_expiry = c
        .expiry_height
        .saturating_add(state.params().channel_challenge_blocks);
    let at = c
        .close_deadline
        .map_or(after_expiry, |d| d.min(after_expiry));
    if height < at {
        return Err(ChannelError::TooEarly { at });
    }
    let refund = c.unspent();
    let payer = c.payer;
    state
        .balance(&payer)
        .checked_add(refund)
        .ok_or(ChannelError::Overflow)?;
    if let Some(c) = state.channel_mut(id) {
        c.settled = true;
    }
    credit(state, &payer, refund).map_err(|_| ChannelError::Overflow)?;
    Ok(vec![Event::ChannelSettled {
        channel: *id,
        refund,
    }])
}
