//! Reference-model property test of the money a failed audit moves: random blocks of redeems
//! (locked earnings), failed audits (valid, forged or repeated; with or without a real channel),
//! transfers and bonds by the provider (which may try to spend locked money) and empty blocks
//! (unlocks), applied to the real ledger and to a plain model, compared after every block to the
//! base unit: balances, locked queues, stakes, burned supply, and supply conservation.

use super::audits::{FEE, World, failed_audit, verdict};
use agora_ledger::Params;
use agora_types::{Address, Amount, Evidence, Hash, Outcome, SignedTx, TxBody, Voucher};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const LOCK: u64 = 5;
const DEPOSIT: u128 = 10_000_000;

#[derive(Clone, Debug)]
enum Op {
    Redeem {
        amount: u128,
    },
    Audit {
        charged: u128,
        real_channel: bool,
        /// 0: two failing verdicts by validators; 1: one; 2: one by a non-validator; 3: one
        /// passing; 4: the same validator twice.
        verdicts: u8,
        self_report: bool,
        repeat: bool,
    },
    Transfer {
        amount: u128,
    },
    Bond {
        amount: u128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0u128..3, 1u128..1_500_000].prop_map(|amount| Op::Redeem { amount }),
        2 => (
            0u128..3_000_000,
            proptest::bool::weighted(0.8),
            prop_oneof![4 => Just(0u8), 1 => 1u8..5],
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.15),
        )
            .prop_map(|(charged, real_channel, verdicts, self_report, repeat)| Op::Audit {
                charged,
                real_channel,
                verdicts,
                self_report,
                repeat,
            }),
        2 => prop_oneof![1u128..1_000_000, 1u128..1_000_000_000_000]
            .prop_map(|amount| Op::Transfer { amount }),
        1 => prop_oneof![1u128..1_000_000, 1u128..1_000_000_000_000]
            .prop_map(|amount| Op::Bond { amount }),
    ]
}

/// The rules for these accounts, as plainly as possible.
#[derive(Debug, Clone)]
struct Model {
    height: u64,
    bal: BTreeMap<Address, u128>,
    /// The provider's locked earnings by unlock height.
    locked: BTreeMap<u64, u128>,
    /// Stake behind the provider, by delegator.
    stake: BTreeMap<Address, u128>,
    redeemed: u128,
    burned: u128,
    evidence: BTreeSet<Hash>,
    last_evidence: Option<Evidence>,
}

fn bps(x: u128, b: u16) -> u128 {
    x * u128::from(b) / 10_000
}

fn setup() -> (World, Model) {
    let w = World::new(Params {
        earnings_lock_blocks: LOCK,
        ..Params::default()
    });
    let s = w.state();
    let p = w.provider.public();
    let accounts = [
        w.provider.public(),
        w.payer.public(),
        w.reporter.public(),
        w.stranger.public(),
        w.chain.proposer,
    ];
    let m = Model {
        height: s.height(),
        bal: accounts.iter().map(|a| (*a, s.balance(a).0)).collect(),
        locked: BTreeMap::new(),
        stake: [p, w.delegator.public()]
            .iter()
            .map(|d| (*d, s.stake(&p, d).0))
            .collect(),
        redeemed: 0,
        burned: s.supply().burned.0,
        evidence: BTreeSet::new(),
        last_evidence: None,
    };
    (w, m)
}

/// Signs the op's transaction and applies it to the model: `(tx, included, succeeds)`.
fn step(w: &mut World, m: &mut Model, op: &Op) -> (SignedTx, bool, bool) {
    let p = w.provider.public();
    let height = m.height + 1;
    let (signer, body) = match op {
        Op::Redeem { amount } => {
            let v = Voucher {
                chain_id: agora_testkit::TEST_CHAIN.into(),
                channel: w.channel,
                cumulative: Amount(m.redeemed + amount),
                per_model: vec![(Hash([3; 32]), Amount(m.redeemed + amount))],
            }
            .sign(&w.payer);
            (w.provider.clone(), TxBody::RedeemVoucher(v))
        }
        Op::Audit {
            charged,
            real_channel,
            verdicts,
            self_report,
            repeat,
        } => {
            let evidence = match (&m.last_evidence, repeat) {
                (Some(e), true) => e.clone(),
                _ => {
                    let mut r = w.receipt(*charged).receipt;
                    if !real_channel {
                        r.channel = Hash([77; 32]);
                    }
                    let r = r.sign(&w.provider);
                    let v = &w.validators;
                    match verdicts {
                        0 => failed_audit(&r, &[&v[0], &v[1]]),
                        1 => failed_audit(&r, &[&v[2]]),
                        2 => failed_audit(&r, &[&v[0], &w.stranger]),
                        3 => Evidence::FailedAudit {
                            receipt: Box::new(r.clone()),
                            verdicts: vec![verdict(&v[1], &r, true), verdict(&v[2], &r, false)],
                        },
                        _ => failed_audit(&r, &[&v[1], &v[1]]),
                    }
                }
            };
            m.last_evidence = Some(evidence.clone());
            let reporter = if *self_report {
                w.provider.clone()
            } else {
                w.reporter.clone()
            };
            (reporter, TxBody::Slash(evidence))
        }
        Op::Transfer { amount } => (
            w.provider.clone(),
            TxBody::Transfer {
                to: w.stranger.public(),
                amount: Amount(*amount),
            },
        ),
        Op::Bond { amount } => (
            w.provider.clone(),
            TxBody::Bond {
                target: p,
                amount: Amount(*amount),
            },
        ),
    };
    let a = signer.public();
    let stx = w.f.sign(&signer, body);
    if m.bal[&a] < FEE {
        // Locked earnings cannot pay a fee: the transaction is not includable.
        w.f.rollback(&a);
        return (stx, false, false);
    }
    *m.bal.get_mut(&a).expect("tracked") -= FEE;
    m.burned += FEE / 2;
    *m.bal.get_mut(&w.chain.proposer).expect("tracked") += FEE - FEE / 2;
    let ok = match (&stx.tx.body, op) {
        (TxBody::RedeemVoucher(_), Op::Redeem { amount }) => {
            if *amount == 0 || m.redeemed + amount > DEPOSIT {
                false
            } else {
                m.redeemed += amount;
                let share = amount - bps(*amount, 100);
                if share > 0 {
                    *m.locked.entry(height + LOCK).or_insert(0) += share;
                }
                true
            }
        }
        (TxBody::Slash(e), Op::Audit { .. }) => {
            let Evidence::FailedAudit { receipt, verdicts } = e else {
                unreachable!()
            };
            let valid = verdicts.len() == 2
                && verdicts.iter().all(|v| v.verdict.failed)
                && verdicts[0].auditor != verdicts[1].auditor
                && verdicts
                    .iter()
                    .all(|v| w.validators.iter().any(|k| k.public() == v.auditor));
            if !valid || a == p || m.evidence.contains(&e.id()) {
                false
            } else {
                let mut slashed = 0;
                for s in m.stake.values_mut() {
                    let cut = bps(*s, 1_000);
                    *s -= cut;
                    slashed += cut;
                }
                let reward = bps(slashed, 1_000);
                *m.bal.get_mut(&a).expect("tracked") += reward;
                m.burned += slashed - reward;
                // Forfeiture: at most charged, what the channel paid, and what the provider
                // holds; locked first (soonest first), then liquid.
                let r = &receipt.receipt;
                if r.channel == w.channel {
                    let held = m.locked.values().sum::<u128>() + m.bal[&p];
                    let amount = r.charged.0.min(m.redeemed).min(held);
                    let mut left = amount;
                    for v in m.locked.values_mut() {
                        let cut = (*v).min(left);
                        *v -= cut;
                        left -= cut;
                    }
                    m.locked.retain(|_, v| *v > 0);
                    *m.bal.get_mut(&p).expect("tracked") -= left;
                    *m.bal.get_mut(&w.payer.public()).expect("tracked") += amount;
                    assert!(amount <= r.charged.0);
                }
                m.evidence.insert(e.id());
                true
            }
        }
        (TxBody::Transfer { to, amount }, _) => {
            if m.bal[&p] < amount.0 {
                false
            } else {
                *m.bal.get_mut(&p).expect("tracked") -= amount.0;
                *m.bal.get_mut(to).expect("tracked") += amount.0;
                true
            }
        }
        (TxBody::Bond { amount, .. }, _) => {
            if m.bal[&p] < amount.0 {
                false
            } else {
                *m.bal.get_mut(&p).expect("tracked") -= amount.0;
                *m.stake.get_mut(&p).expect("tracked") += amount.0;
                true
            }
        }
        _ => unreachable!(),
    };
    (stx, true, ok)
}

fn compare(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let s = w.state();
    let p = w.provider.public();
    for (a, b) in &m.bal {
        prop_assert_eq!(s.balance(a).0, *b, "balance of {:?}", a);
    }
    let locked: Vec<(u64, Amount)> = m.locked.iter().map(|(h, a)| (*h, Amount(*a))).collect();
    prop_assert_eq!(s.locked_of(&p), &locked[..]);
    for (d, v) in &m.stake {
        prop_assert_eq!(s.stake(&p, d).0, *v, "stake of {:?}", d);
    }
    prop_assert_eq!(s.supply().burned.0, m.burned);
    prop_assert_eq!(s.circulating_total(), s.supply().expected_total());
    prop_assert_eq!(
        s.channel(&w.channel).expect("channel").redeemed.0,
        m.redeemed
    );
    Ok(())
}

fn run(blocks: &[Vec<Op>]) -> Result<Hash, TestCaseError> {
    let (mut w, mut m) = setup();
    compare(&w, &m)?;
    for ops in blocks {
        let mut txs = vec![];
        let mut expect = vec![];
        for op in ops {
            let (stx, included, ok) = step(&mut w, &mut m, op);
            expect.push((stx.id(), included, ok));
            txs.push(stx);
        }
        let built = w.chain.produce(txs);
        m.height += 1;
        let due: Vec<u64> = m.locked.range(..=m.height).map(|(h, _)| *h).collect();
        for h in due {
            let v = m.locked.remove(&h).expect("due");
            *m.bal.get_mut(&w.provider.public()).expect("tracked") += v;
        }
        for (id, included, ok) in expect {
            let r = built.applied.receipts.iter().find(|r| r.tx == id);
            prop_assert_eq!(r.is_some(), included, "inclusion");
            if let Some(r) = r {
                prop_assert_eq!(r.outcome == Outcome::Success, ok, "outcome {:?}", r.outcome);
            }
        }
        compare(&w, &m)?;
    }
    Ok(w.state().root())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn failed_audits_and_locked_earnings_match_the_reference_model(
        blocks in proptest::collection::vec(
            prop_oneof![1 => Just(vec![]), 4 => proptest::collection::vec(op(), 1..4)],
            1..30,
        )
    ) {
        let a = run(&blocks)?;
        prop_assert_eq!(a, run(&blocks)?, "the same blocks give the same root");
    }
}
