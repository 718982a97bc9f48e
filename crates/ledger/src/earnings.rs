//! The earnings lock: what a provider is paid through its channels waits
//! `Params::earnings_lock_blocks` before it joins its balance, so a failed audit found within
//! that window can still take the job's payment back (`slashing`, forfeiture).
//!
//! ```text
//!  RedeemVoucher ──► provider's share ──► locked queue [(unlock height, amount), ...]
//!                                              │   end of block `unlock height`
//!                                              ▼
//!                                           balance (spendable)
//!  FailedAudit ──► forfeiture takes from the queue (soonest first), then from the balance
//! ```
//!
//! Locked earnings are the provider's but not spendable: they are not in the account's balance,
//! so fees, transfers, bonds and deposits cannot use them. They count in
//! [`State::circulating_total`], so supply stays exact.
//!
//! Heights are rounded up to a multiple of `ceil(lock / LOCK_BUCKETS)` blocks, so a provider
//! redeeming every block keeps at most `LOCK_BUCKETS + 1` entries while the lock length stays the
//! same; an amount locks for between `lock` and `lock + lock / LOCK_BUCKETS` blocks. A queue at
//! [`MAX_LOCKED_ENTRIES`] (possible only after governance shortens the lock) merges the new
//! amount into its last entry, which then unlocks at the later height: merging only ever
//! lengthens a lock. Release is at the end of each block, for the queues whose first entry is
//! due (an index keyed by that height, so a block touches only the queues it releases).

use crate::events::Event;
use crate::state::{MAX_LOCKED_ENTRIES, State};
use agora_types::{Address, Amount};

/// Unlock heights are rounded up to multiples of `ceil(lock / LOCK_BUCKETS)`.
pub const LOCK_BUCKETS: u64 = 32;

/// The height at whose end an amount locked at `height` unlocks, for a lock of `lock` blocks.
pub fn unlock_height(height: u64, lock: u64) -> u64 {
    let bucket = lock.div_ceil(LOCK_BUCKETS).max(1);
    let due = height.saturating_add(lock);
    due.div_ceil(bucket).saturating_mul(bucket).max(due)
}

/// Pays `amount` of channel earnings to `provider`: locked until [`unlock_height`], or credited
/// at once when the lock is 0. Fails (changing nothing) only on overflow.
pub(crate) fn pay(
    state: &mut State,
    height: u64,
    provider: &Address,
    amount: Amount,
) -> Result<Option<Event>, ()> {
    if amount.is_zero() {
        return Ok(None);
    }
    let lock = state.params().earnings_lock_blocks;
    if lock == 0 {
        crate::accounts::credit(state, provider, amount)?;
        return Ok(None);
    }
    // The account's balance plus everything locked must stay representable.
    state
        .balance(provider)
        .checked_add(state.locked_total(provider))
        .and_then(|t| t.checked_add(amount))
        .ok_or(())?;
    let due = unlock_height(height, lock);
    let mut queue = state.locked_of(provider).to_vec();
    let full = queue.len() >= MAX_LOCKED_ENTRIES;
    let unlock = match queue.last_mut() {
        Some(last) if last.0 >= due || full => {
            last.0 = last.0.max(due);
            last.1 = last.1.checked_add(amount).ok_or(())?;
            last.0
        }
        _ => {
            queue.push((due, amount));
            due
        }
    };
    state.set_locked(provider, queue);
    Ok(Some(Event::EarningsLocked {
        provider: *provider,
        amount,
        unlock_height: unlock,
    }))
}

/// Takes up to `amount` from `provider`'s locked earnings, soonest-unlocking first; returns
/// what it took (the caller credits it somewhere).
pub(crate) fn take(state: &mut State, provider: &Address, amount: Amount) -> Amount {
    let mut queue = state.locked_of(provider).to_vec();
    if queue.is_empty() || amount.is_zero() {
        return Amount::ZERO;
    }
    let mut left = amount;
    let mut taken = Amount::ZERO;
    for entry in queue.iter_mut() {
        if left.is_zero() {
            break;
        }
        let cut = entry.1.min(left);
        entry.1 = entry.1.saturating_sub(cut);
        left = left.saturating_sub(cut);
        taken = Amount(taken.0.saturating_add(cut.0));
    }
    queue.retain(|(_, a)| !a.is_zero());
    state.set_locked(provider, queue);
    taken
}

/// Moves every locked entry due at or before `height` to its provider's balance (called at the
/// end of every block).
pub(crate) fn release(state: &mut State, height: u64) -> Vec<Event> {
    let due: Vec<Address> = state
        .unlock_index
        .range(..=(height, agora_types::PublicKey([0xff; 32])))
        .map(|(_, a)| *a)
        .collect();
    let mut events = Vec::with_capacity(due.len());
    for provider in due {
        let queue = state.locked_of(&provider).to_vec();
        let split = queue.partition_point(|(h, _)| *h <= height);
        let (matured, waiting) = queue.split_at(split);
        let amount = matured
            .iter()
            .fold(Amount::ZERO, |t, (_, a)| Amount(t.0.saturating_add(a.0)));
        // Balance + locked was checked to fit when each amount was locked, and nothing else
        // adds to locked earnings, so this cannot overflow; if it somehow did, the entries
        // stay locked rather than vanish.
        if state.balance(&provider).checked_add(amount).is_none() {
            continue;
        }
        state.set_locked(&provider, waiting.to_vec());
        if crate::accounts::credit(state, &provider, amount).is_ok() {
            events.push(Event::EarningsUnlocked { provider, amount });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_heights_are_at_least_the_lock_and_at_most_a_bucket_more() {
        for lock in [1u64, 2, 31, 32, 33, 100, 3_600, 10_000] {
            let bucket = lock.div_ceil(LOCK_BUCKETS).max(1);
            let mut distinct = std::collections::BTreeSet::new();
            for height in 0..2_000u64 {
                let u = unlock_height(height, lock);
                assert!(u >= height + lock, "lock {lock} at {height}: {u}");
                assert!(u < height + lock + bucket, "lock {lock} at {height}: {u}");
                assert_eq!(u % bucket, 0);
                // Heights in flight at once (one lock window) fall into few buckets.
                if (1_000..1_000 + lock).contains(&height) {
                    distinct.insert(u);
                }
            }
            assert!(distinct.len() as u64 <= LOCK_BUCKETS + 1, "lock {lock}");
        }
        assert_eq!(unlock_height(u64::MAX - 1, 3_600), u64::MAX);
    }

    fn state() -> State {
        crate::Genesis {
            chain_id: "earnings".into(),
            timestamp_ms: 0,
            params: crate::Params::default(),
            accounts: Vec::new(),
            validators: Vec::new(),
        }
        .into_state()
        .unwrap()
    }

    #[test]
    fn a_full_queue_merges_into_its_last_entry_and_merging_only_lengthens_locks() {
        let mut s = state();
        let p = Address::derived("provider");
        let mut total = 0u128;
        // Governance lengthening the lock at every payment: each one is a new, later entry.
        for i in 0..200u64 {
            s.meta_mut().params.earnings_lock_blocks = 1_000 * (i + 1);
            let due = unlock_height(i, 1_000 * (i + 1));
            let ev = pay(&mut s, i, &p, Amount(1 + u128::from(i)))
                .unwrap()
                .unwrap();
            total += 1 + u128::from(i);
            let Event::EarningsLocked {
                unlock_height: u, ..
            } = ev
            else {
                panic!("{ev:?}")
            };
            assert!(u >= due, "an amount would unlock early: {u} < {due}");
            let q = s.locked_of(&p);
            assert!(q.len() <= MAX_LOCKED_ENTRIES);
            assert!(q.windows(2).all(|x| x[0].0 < x[1].0));
        }
        assert_eq!(s.locked_of(&p).len(), MAX_LOCKED_ENTRIES);
        assert_eq!(s.locked_total(&p).0, total);
        // Shortening it: new amounts join the last entry, which does not move earlier.
        let last = *s.locked_of(&p).last().unwrap();
        s.meta_mut().params.earnings_lock_blocks = 1;
        pay(&mut s, 300, &p, Amount(5)).unwrap();
        assert_eq!(
            s.locked_of(&p).last().unwrap(),
            &(last.0, Amount(last.1.0 + 5))
        );
        // Taking takes the soonest first and never more than there is.
        let first = s.locked_of(&p)[0];
        assert_eq!(take(&mut s, &p, Amount(first.1.0 + 1)).0, first.1.0 + 1);
        assert_eq!(s.locked_of(&p).len(), MAX_LOCKED_ENTRIES - 1);
        assert_eq!(
            take(&mut s, &p, Amount(u128::MAX)).0,
            total + 5 - first.1.0 - 1
        );
        assert!(s.locked_of(&p).is_empty());
        assert_eq!(take(&mut s, &p, Amount(1)), Amount::ZERO);
        // A zero lock credits at once.
        s.meta_mut().params.earnings_lock_blocks = 0;
        assert_eq!(pay(&mut s, 400, &p, Amount(7)).unwrap(), None);
        assert_eq!(s.balance(&p), Amount(7));
        assert!(s.unlock_index.is_empty());
    }
}
