//! Epochs and the active validator set, derived from staking.
//!
//! Heights are grouped into epochs of `Params::epoch_length_blocks`: epoch `e` holds heights
//! `e * L ..= (e + 1) * L - 1` (height 0, genesis, opens epoch 0). The validator set of epoch
//! `e + 1` is [`active_set`] of the state after the last block of epoch `e`; epoch 0's is
//! `active_set(genesis)`. Every replica finalizes the same block at the boundary, so every
//! replica computes the same set.
//!
//! Membership: registered as a validator, not jailed at that height, total bonded stake
//! (self + delegated) at least `Params::min_validator_stake`; of those, the top
//! `Params::max_validators` by stake, ties broken by address. No floats, no hash maps: the
//! validator records are a `BTreeMap` and the sort is total.

use crate::State;
use agora_types::{Address, Amount};

/// The epoch a height belongs to.
pub fn epoch_of(height: u64, epoch_length_blocks: u64) -> u64 {
    height / epoch_length_blocks.max(1)
}

/// The last height of `epoch` (saturating at `u64::MAX`).
pub fn last_height_of(epoch: u64, epoch_length_blocks: u64) -> u64 {
    epoch
        .saturating_add(1)
        .saturating_mul(epoch_length_blocks.max(1))
        .saturating_sub(1)
}

/// Whether `height` is the last block of its epoch (the block whose state fixes the next
/// epoch's validator set).
pub fn ends_epoch(height: u64, epoch_length_blocks: u64) -> bool {
    last_height_of(epoch_of(height, epoch_length_blocks), epoch_length_blocks) == height
}

/// The validator set `state` selects, by descending stake (ties by ascending address).
pub fn active_set(state: &State) -> Vec<(Address, Amount)> {
    let params = state.params();
    let height = state.height();
    let mut members: Vec<(Address, Amount)> = state
        .validators()
        .filter(|(_, record)| record.jailed_until <= height)
        .map(|(address, _)| (*address, state.total_stake(address)))
        .filter(|(_, stake)| *stake >= params.min_validator_stake)
        .collect();
    members.sort_by(|(a, sa), (b, sb)| sb.cmp(sa).then(a.cmp(b)));
    members.truncate(usize::try_from(params.max_validators).unwrap_or(usize::MAX));
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{GenesisAccount, GenesisValidator};
    use crate::{BlockContext, Genesis, Params, build_block};
    use agora_types::{SecretKey, Tx, TxBody};

    #[test]
    fn epoch_arithmetic() {
        assert_eq!(epoch_of(0, 10), 0);
        assert_eq!(epoch_of(9, 10), 0);
        assert_eq!(epoch_of(10, 10), 1);
        assert_eq!(last_height_of(0, 10), 9);
        assert_eq!(last_height_of(2, 10), 29);
        assert!(ends_epoch(9, 10) && ends_epoch(19, 10));
        assert!(!ends_epoch(10, 10) && !ends_epoch(0, 10));
        assert!(ends_epoch(0, 1) && ends_epoch(5, 1));
        assert_eq!(epoch_of(5, 0), 5, "a zero length is treated as 1");
        assert_eq!(last_height_of(u64::MAX, 10), u64::MAX - 1);
    }

    fn key(i: usize) -> SecretKey {
        SecretKey::from_test_seed(&format!("epochs-{i}"))
    }

    fn genesis(stakes: &[u64], params: Params) -> State {
        Genesis {
            chain_id: "epochs".into(),
            timestamp_ms: 0,
            params,
            accounts: (0..stakes.len() + 1)
                .map(|i| GenesisAccount {
                    address: key(i).public(),
                    balance: Amount::from_agr(100_000),
                })
                .collect(),
            validators: stakes
                .iter()
                .enumerate()
                .map(|(i, s)| GenesisValidator {
                    address: key(i).public(),
                    stake: Amount::from_agr(*s),
                })
                .collect(),
        }
        .into_state()
        .unwrap()
    }

    fn apply(state: &State, signer: usize, nonce: u64, body: TxBody) -> State {
        let k = key(signer);
        let stx = Tx {
            chain_id: "epochs".into(),
            signer: k.public(),
            nonce,
            fee: state.params().min_fee,
            body,
        }
        .sign(&k);
        let built = build_block(
            state,
            &BlockContext {
                timestamp_ms: state.last_timestamp_ms() + 1,
                proposer: key(0).public(),
            },
            [stx],
        );
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        assert_eq!(
            built.applied.receipts[0].outcome,
            agora_types::Outcome::Success
        );
        built.state
    }

    #[test]
    fn set_is_top_n_above_the_threshold_by_stake_then_address() {
        let params = Params {
            max_validators: 3,
            ..Params::default()
        };
        // min_validator_stake is 1,000 AGR by default.
        let state = genesis(&[5_000, 2_000, 2_000, 3_000, 9_000], params);
        let set: Vec<Address> = active_set(&state).into_iter().map(|(a, _)| a).collect();
        let mut tied = [key(1).public(), key(2).public()];
        tied.sort();
        assert_eq!(set, vec![key(4).public(), key(0).public(), key(3).public()]);
        let params = Params {
            max_validators: 5,
            ..Params::default()
        };
        let state = genesis(&[5_000, 2_000, 2_000, 3_000, 9_000], params);
        let set: Vec<Address> = active_set(&state).into_iter().map(|(a, _)| a).collect();
        assert_eq!(&set[3..], &tied, "equal stakes ordered by address");
    }

    #[test]
    fn bonding_joins_and_unbonding_below_the_threshold_leaves() {
        let state = genesis(&[2_000, 2_000], Params::default());
        assert_eq!(active_set(&state).len(), 2);
        // Account 2 bonds the minimum and registers: it is in the next set.
        let s = apply(
            &state,
            2,
            0,
            TxBody::Bond {
                target: key(2).public(),
                amount: Amount::from_agr(1_000),
            },
        );
        let s = apply(&s, 2, 1, TxBody::RegisterValidator);
        let set: Vec<Address> = active_set(&s).into_iter().map(|(a, _)| a).collect();
        assert!(set.contains(&key(2).public()));
        // Validator 1 unbonds to below the minimum: it leaves.
        let s = apply(
            &s,
            1,
            0,
            TxBody::Unbond {
                target: key(1).public(),
                amount: Amount::from_agr(1_500),
            },
        );
        let set: Vec<Address> = active_set(&s).into_iter().map(|(a, _)| a).collect();
        assert_eq!(set.len(), 2);
        assert!(!set.contains(&key(1).public()));
    }
}
