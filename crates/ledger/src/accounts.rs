//! Balances, nonces, transfers and fees.

use crate::error::{TransferError, TxError};
use crate::events::Event;
use crate::state::State;
use agora_types::{Address, Amount};

/// Charges the fee and bumps the nonce: the part of every included transaction that happens
/// whether or not its action succeeds. Half-burn (per params), the rest to the proposer.
pub(crate) fn charge_fee(
    state: &mut State,
    payer: &Address,
    fee: Amount,
    proposer: &Address,
) -> Result<Event, TxError> {
    let balance = state.balance(payer);
    let after = balance
        .checked_sub(fee)
        .ok_or(TxError::CannotPayFee { balance, fee })?;
    let burned = fee.mul_bps(state.params().fee_burn_bps);
    let to_proposer = fee.checked_sub(burned).unwrap_or_default();
    let acct = state.account_mut(payer);
    acct.balance = after;
    acct.nonce += 1;
    credit(state, proposer, to_proposer).map_err(|_| TxError::CannotPayFee { balance, fee })?;
    let supply = &mut state.meta_mut().supply;
    supply.burned = supply.burned.checked_add(burned).unwrap_or(supply.burned);
    Ok(Event::FeePaid {
        payer: *payer,
        fee,
        burned,
        to_proposer,
    })
}

pub(crate) fn transfer(
    state: &mut State,
    from: &Address,
    to: &Address,
    amount: Amount,
) -> Result<Vec<Event>, TransferError> {
    if amount.is_zero() {
        return Err(TransferError::ZeroAmount);
    }
    let balance = state.balance(from);
    let after = balance
        .checked_sub(amount)
        .ok_or(TransferError::InsufficientBalance {
            balance,
            needed: amount,
        })?;
    if from != to {
        state
            .balance(to)
            .checked_add(amount)
            .ok_or(TransferError::Overflow)?;
        state.account_mut(from).balance = after;
        credit(state, to, amount).map_err(|_| TransferError::Overflow)?;
    }
    Ok(vec![Event::Transferred {
        from: *from,
        to: *to,
        amount,
    }])
}

/// Adds to a balance; the caller has made sure it was taken from somewhere.
pub(crate) fn credit(state: &mut State, to: &Address, amount: Amount) -> Result<(), ()> {
    if amount.is_zero() {
        return Ok(());
    }
    let acct = state.account_mut(to);
    acct.balance = acct.balance.checked_add(amount).ok_or(())?;
    Ok(())
}

/// Takes from a balance or fails without changing anything.
pub(crate) fn debit(state: &mut State, from: &Address, amount: Amount) -> Result<(), Amount> {
    let balance = state.balance(from);
    let after = balance.checked_sub(amount).ok_or(balance)?;
    state.account_mut(from).balance = after;
    Ok(())
}
