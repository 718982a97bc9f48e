//! The mempool under random admissions: limits hold, eviction only takes an account's last
//! pending nonce and only for a higher fee, candidates apply in nonce order, and pruning drops
//! exactly what the state consumed.

use agora_consensus::{AdmitError, Mempool, MempoolLimits};
use agora_ledger::{Params, State};
use agora_testkit::{TEST_CHAIN, test_genesis, test_keys};
use agora_types::{Address, Amount, SecretKey, SignedTx, Tx, TxBody};
use proptest::prelude::*;
use std::collections::BTreeMap;

const ACCOUNTS: usize = 4;
const MAX_TXS: usize = 8;
const MAX_PER_ACCOUNT: u64 = 4;

fn signed(key: &SecretKey, nonce: u64, fee: u128, to: Address) -> SignedTx {
    Tx {
        chain_id: TEST_CHAIN.into(),
        signer: key.public(),
        nonce,
        fee: Amount(fee),
        body: TxBody::Transfer {
            to,
            amount: Amount(1),
        },
    }
    .sign(key)
}

fn state(keys: &[SecretKey]) -> State {
    test_genesis(keys, Amount::from_agr(1_000), Params::default())
        .into_state()
        .expect("genesis")
}

/// What the pool holds, as (signer, nonce) -> fee.
/// Probed by id: every (account, nonce, fee) the ops can produce.
fn contents(pool: &Mempool, keys: &[SecretKey]) -> BTreeMap<(Address, u64), u128> {
    let mut out = BTreeMap::new();
    for k in keys {
        for nonce in 0..MAX_PER_ACCOUNT {
            for fee in FEES {
                if pool.contains(&signed(k, nonce, *fee, keys[0].public()).id()) {
                    out.insert((k.public(), nonce), *fee);
                }
            }
        }
    }
    out
}

const FEES: &[u128] = &[1_000, 2_000, 3_000, 5_000];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn limits_eviction_and_candidates_hold_under_random_admissions(
        ops in prop::collection::vec((0..ACCOUNTS, 0..MAX_PER_ACCOUNT + 1, 0..FEES.len()), 1..40),
    ) {
        let keys = test_keys(ACCOUNTS);
        let st = state(&keys);
        let mut pool = Mempool::new(MempoolLimits { max_txs: MAX_TXS, max_per_account: MAX_PER_ACCOUNT });
        for (who, nonce, fee_index) in ops {
            let fee = FEES[fee_index];
            let stx = signed(&keys[who], nonce, fee, keys[0].public());
            let before = contents(&pool, &keys);
            let result = pool.admit(&st, stx.clone());
            let after = contents(&pool, &keys);
            prop_assert!(pool.len() <= MAX_TXS);
            prop_assert_eq!(pool.len(), after.len());
            match result {
                Ok(id) => {
                    prop_assert_eq!(id, stx.id());
                    prop_assert!(pool.contains(&id));
                    prop_assert_eq!(after.get(&(keys[who].public(), nonce)), Some(&fee));
                    let gone: Vec<_> = before.iter().filter(|(k, _)| !after.contains_key(k)).collect();
                    prop_assert!(gone.len() <= 1, "more than one eviction: {gone:?}");
                    if let Some(((signer, evicted_nonce), evicted_fee)) = gone.first() {
                        // Only when full, only a cheaper one, and only an account's last nonce.
                        prop_assert_eq!(before.len(), MAX_TXS);
                        prop_assert!(**evicted_fee < fee);
                        prop_assert!(before.keys().all(|(s, n)| s != signer || n <= evicted_nonce));
                    } else {
                        prop_assert_eq!(after.len(), before.len() + 1);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&before, &after, "a refused tx changed the pool ({})", e);
                    match e {
                        AdmitError::Full(_) => prop_assert_eq!(before.len(), MAX_TXS),
                        AdmitError::NonceGap { .. } => prop_assert!(nonce >= MAX_PER_ACCOUNT),
                        AdmitError::NonceUsed { .. } | AdmitError::Duplicate(_) => {
                            prop_assert!(before.contains_key(&(keys[who].public(), nonce)))
                        }
                        AdmitError::Invalid(e) => prop_assert!(false, "valid tx refused: {e}"),
                    }
                }
            }
            // Candidates: per account, consecutive nonces from the state's, in order.
            let cands = pool.candidates(&st, usize::MAX);
            let mut next: BTreeMap<Address, u64> = BTreeMap::new();
            for c in &cands {
                let expected = next.entry(c.tx.signer).or_insert(0);
                prop_assert_eq!(c.tx.nonce, *expected);
                *expected += 1;
                prop_assert!(pool.contains(&c.id()));
            }
            for (signer, nonce) in after.keys() {
                let reachable = (0..*nonce).all(|n| after.contains_key(&(*signer, n)));
                prop_assert_eq!(reachable, cands.iter().any(|c| c.tx.signer == *signer && c.tx.nonce == *nonce));
            }
            prop_assert!(pool.candidates(&st, 2).len() <= 2);
        }
    }
}

/// Pruning against a state that consumed nonces drops exactly those, and candidates on a
/// state ahead of the pool skip the consumed nonces instead of stopping.
#[test]
fn prune_drops_what_the_state_consumed_and_candidates_skip_it() {
    let keys = test_keys(2);
    let st = state(&keys);
    let mut pool = Mempool::new(MempoolLimits::default());
    for nonce in 0..4 {
        pool.admit(&st, signed(&keys[0], nonce, 1_000, keys[1].public()))
            .unwrap();
    }
    pool.admit(&st, signed(&keys[1], 0, 1_000, keys[0].public()))
        .unwrap();
    // Apply nonces 0 and 1 of keys[0] through the ledger to get a state ahead of the pool.
    let block = agora_ledger::build_block(
        &st,
        &agora_ledger::BlockContext {
            timestamp_ms: st.last_timestamp_ms() + 1,
            proposer: keys[1].public(),
        },
        pool.candidates(&st, 10)
            .into_iter()
            .filter(|c| c.tx.signer == keys[0].public())
            .take(2),
    );
    let ahead = block.state;
    assert_eq!(ahead.account(&keys[0].public()).nonce, 2);
    let skipped: Vec<u64> = pool
        .candidates(&ahead, 10)
        .iter()
        .filter(|c| c.tx.signer == keys[0].public())
        .map(|c| c.tx.nonce)
        .collect();
    assert_eq!(skipped, vec![2, 3]);
    assert_eq!(pool.prune(&ahead), 2);
    assert_eq!(pool.len(), 3);
    assert!(!pool.contains(&signed(&keys[0], 0, 1_000, keys[1].public()).id()));
    assert!(pool.contains(&signed(&keys[0], 2, 1_000, keys[1].public()).id()));
}
