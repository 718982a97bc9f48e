//! Reference-model property test: random sequences of every transaction kind, applied both to
//! the real ledger and to a plain-BTreeMap model of the rules, compared after every block.

use agora_ledger::channels::channel_id;
use agora_ledger::{Params, State};
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis};
use agora_types::tx::claim_message;
use agora_types::{
    Address, Amount, Evidence, HardwareSummary, Hash, ModelPrice, ModelRegistration, Outcome,
    ProviderInfo, SecretKey, SignDomain, TxBody, Voucher,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const USERS: usize = 4;
const PROVIDERS: usize = 2;
const FEE: u128 = 1_000;
const START: u128 = 1_000_000_000;
/// Blocks a provider's channel earnings stay locked (short, so runs see them unlock).
const LOCK: u64 = 4;

fn params() -> Params {
    Params {
        min_fee: Amount(FEE),
        unbonding_period_blocks: 3,
        channel_challenge_blocks: 2,
        min_provider_stake: Amount(1_000_000),
        min_validator_stake: Amount(1_000_000),
        jail_blocks: 5,
        earnings_lock_blocks: LOCK,
        ..Params::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    RegisterValidator {
        from: usize,
    },
    RegisterDataset {
        from: usize,
        id: u8,
        empty_name: bool,
    },
    RegisterModel {
        from: usize,
        id: u8,
        royalty: u16,
    },
    ReRegisterProvider {
        provider: usize,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: u128,
    },
    Bond {
        from: usize,
        provider: Option<usize>,
        amount: u128,
    },
    Unbond {
        from: usize,
        provider: Option<usize>,
        amount: u128,
    },
    /// A registered provider unbonding its own stake (refused below the provider minimum).
    ProviderUnbond {
        provider: usize,
        amount: u128,
    },
    Withdraw {
        from: usize,
    },
    Open {
        payer: usize,
        provider: usize,
        deposit: u128,
        expiry: u64,
    },
    TopUp {
        channel: usize,
        amount: u128,
    },
    Redeem {
        channel: usize,
        delta: u128,
        /// With `wrong_split`, the model's part of the increase (which may then be less or
        /// more than `delta`, and the voucher refused); otherwise the split names all of it.
        model_part: u128,
        wrong_split: bool,
        forge: bool,
    },
    ReplayVoucher {
        channel: usize,
    },
    Close {
        channel: usize,
        by_provider: bool,
    },
    Settle {
        channel: usize,
    },
    Slash {
        offender: usize,
        reporter: usize,
        repeat: bool,
        /// The offender signs the report itself (refused).
        self_report: bool,
    },
    BadSignature {
        from: usize,
    },
    WrongNonce {
        from: usize,
    },
    Empty,
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let p = 0..PROVIDERS;
    let amt = prop_oneof![0u128..10, 1u128..2_000_000, Just(START * 2)];
    prop_oneof![
        (u.clone(), 0..USERS + PROVIDERS, amt.clone())
            .prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        (u.clone(), proptest::option::of(p.clone()), amt.clone()).prop_map(
            |(from, provider, amount)| Op::Bond {
                from,
                provider,
                amount
            }
        ),
        (u.clone(), proptest::option::of(p.clone()), amt.clone()).prop_map(
            |(from, provider, amount)| Op::Unbond {
                from,
                provider,
                amount
            }
        ),
        (p.clone(), prop_oneof![0u128..10, 1u128..2_000_000])
            .prop_map(|(provider, amount)| Op::ProviderUnbond { provider, amount }),
        u.clone().prop_map(|from| Op::Withdraw { from }),
        (u.clone(), p.clone(), amt.clone(), 0u64..12).prop_map(
            |(payer, provider, deposit, expiry)| Op::Open {
                payer,
                provider,
                deposit,
                expiry
            }
        ),
        (0usize..6, amt.clone()).prop_map(|(channel, amount)| Op::TopUp { channel, amount }),
        (
            0usize..6,
            0u128..3_000_000,
            0u128..1_000_000,
            proptest::bool::weighted(0.2),
            proptest::bool::weighted(0.1)
        )
            .prop_map(
                |(channel, delta, model_part, wrong_split, forge)| Op::Redeem {
                    channel,
                    delta,
                    model_part,
                    wrong_split,
                    forge
                }
            ),
        (0usize..6).prop_map(|channel| Op::ReplayVoucher { channel }),
        (0usize..6, any::<bool>()).prop_map(|(channel, by_provider)| Op::Close {
            channel,
            by_provider
        }),
        (0usize..6).prop_map(|channel| Op::Settle { channel }),
        (
            p.clone(),
            u.clone(),
            proptest::bool::weighted(0.2),
            proptest::bool::weighted(0.2)
        )
            .prop_map(|(offender, reporter, repeat, self_report)| Op::Slash {
                offender,
                reporter,
                repeat,
                self_report
            }),
        u.clone().prop_map(|from| Op::BadSignature { from }),
        u.clone().prop_map(|from| Op::WrongNonce { from }),
        u.clone().prop_map(|from| Op::RegisterValidator { from }),
        (u.clone(), 0u8..4, proptest::bool::weighted(0.2)).prop_map(|(from, id, empty_name)| {
            Op::RegisterDataset {
                from,
                id,
                empty_name,
            }
        }),
        (u.clone(), 0u8..4, 0u16..4_000).prop_map(|(from, id, royalty)| Op::RegisterModel {
            from,
            id,
            royalty
        }),
        p.clone()
            .prop_map(|provider| Op::ReRegisterProvider { provider }),
        Just(Op::Empty),
    ]
}

#[derive(Clone, Debug)]
struct MChannel {
    id: Hash,
    payer: Address,
    payer_idx: usize,
    provider: Address,
    deposit: u128,
    redeemed: u128,
    redeemed_model: u128,
    expiry: u64,
    deadline: Option<u64>,
    settled: bool,
    last_voucher: Option<agora_types::SignedVoucher>,
}

/// The rules, written as plainly as possible.
#[derive(Clone, Debug, Default)]
struct Model {
    height: u64,
    bal: BTreeMap<Address, u128>,
    stake: BTreeMap<(Address, Address), u128>,
    unbonding: BTreeMap<(Address, Address, u64), u128>,
    /// (provider, unlock height) -> locked earnings, released at the end of that block.
    locked: BTreeMap<(Address, u64), u128>,
    jailed_until: BTreeMap<Address, u64>,
    validators: BTreeSet<Address>,
    datasets: BTreeSet<Hash>,
    models: BTreeSet<Hash>,
    channels: Vec<MChannel>,
    evidence: BTreeSet<Hash>,
    last_evidence: Option<Evidence>,
    genesis: u128,
    burned: u128,
}

impl Model {
    fn bal(&self, a: &Address) -> u128 {
        self.bal.get(a).copied().unwrap_or(0)
    }
    fn add(&mut self, a: &Address, v: u128) {
        *self.bal.entry(*a).or_insert(0) += v;
    }
    fn sub(&mut self, a: &Address, v: u128) -> bool {
        let b = self.bal(a);
        if b < v {
            return false;
        }
        self.bal.insert(*a, b - v);
        true
    }
    fn total(&self) -> u128 {
        self.bal.values().sum::<u128>()
            + self.stake.values().sum::<u128>()
            + self.unbonding.values().sum::<u128>()
            + self.locked.values().sum::<u128>()
            + self
                .channels
                .iter()
                .filter(|c| !c.settled)
                .map(|c| c.deposit - c.redeemed)
                .sum::<u128>()
    }
}

struct World {
    users: Vec<SecretKey>,
    providers: Vec<SecretKey>,
    model_owner: Address,
    model_id: Hash,
    proposer: Address,
}

fn setup() -> (World, Chain, TxFactory, Model) {
    let users: Vec<SecretKey> = (0..USERS)
        .map(|i| SecretKey::from_test_seed(&format!("u{i}")))
        .collect();
    let providers: Vec<SecretKey> = (0..PROVIDERS)
        .map(|i| SecretKey::from_test_seed(&format!("p{i}")))
        .collect();
    let all: Vec<SecretKey> = users.iter().chain(providers.iter()).cloned().collect();
    let genesis = test_genesis(&all, Amount(START), params());
    let mut chain = Chain::new(&genesis);
    let mut f = TxFactory::new(TEST_CHAIN, Amount(FEE));
    let model_info = ModelRegistration {
        sha256: Hash([7; 32]),
        name: "test-model".into(),
        family: "llama".into(),
        kind: agora_types::ModelKind::Chat,
        license: "apache-2.0".into(),
        royalty_bps: 500,
    };
    let model_owner = users[3].public();
    let mut txs = vec![f.sign(&users[3], TxBody::RegisterModel(model_info.clone()))];
    for p in &providers {
        txs.push(f.sign(
            p,
            TxBody::Bond {
                target: p.public(),
                amount: Amount(1_000_000),
            },
        ));
    }
    let b = chain.produce(txs);
    assert!(b.rejected.is_empty());
    let mut txs = vec![];
    for p in &providers {
        txs.push(f.sign(
            p,
            TxBody::RegisterProvider(ProviderInfo {
                peer_id: vec![1, 2, 3],
                endpoints: vec!["/ip4/127.0.0.1/tcp/1".into()],
                hardware: HardwareSummary {
                    accelerator: "cpu".into(),
                    memory_mib: 1024,
                    cpu_cores: 2,
                },
                models: vec![ModelPrice {
                    model: model_info.sha256,
                    input_per_million: Amount(10),
                    output_per_million: Amount(20),
                }],
            }),
        ));
    }
    let b = chain.produce(txs);
    assert!(
        b.applied
            .receipts
            .iter()
            .all(|r| r.outcome == Outcome::Success),
        "{:?}",
        b.applied.receipts
    );

    // The model starts from the real state after setup, then must track it exactly.
    let mut m = Model {
        height: chain.state.height(),
        genesis: chain.state.supply().genesis.0,
        ..Default::default()
    };
    for k in users.iter().chain(providers.iter()) {
        m.bal.insert(k.public(), chain.state.balance(&k.public()).0);
        for p in &providers {
            let s = chain.state.stake(&p.public(), &k.public()).0;
            if s > 0 {
                m.stake.insert((p.public(), k.public()), s);
            }
        }
    }
    let v0 = chain.proposer;
    m.bal.insert(v0, chain.state.balance(&v0).0);
    m.stake.insert((v0, v0), chain.state.stake(&v0, &v0).0);
    m.burned = chain.state.supply().burned.0;
    m.models.insert(model_info.sha256);
    m.validators.insert(v0);
    let world = World {
        users,
        providers,
        model_owner,
        model_id: model_info.sha256,
        proposer: v0,
    };
    (world, chain, f, m)
}

/// What the model expects of one op: the tx to submit, whether it is included, and whether its
/// action succeeds. The model's state is updated as the ledger should be.
fn step(
    w: &World,
    f: &mut TxFactory,
    m: &mut Model,
    op: &Op,
) -> Option<(agora_types::SignedTx, bool, bool)> {
    let height = m.height + 1;
    let params = params();
    let fee_payer_ok = |m: &Model, a: &Address| m.bal(a) >= FEE;
    let charge = |m: &mut Model, a: &Address| {
        m.sub(a, FEE);
        let burned = FEE * u128::from(params.fee_burn_bps) / 10_000;
        m.burned += burned;
        m.add(&w.proposer, FEE - burned);
    };
    let user = |i: usize| &w.users[i];
    match op.clone() {
        Op::Empty => None,
        Op::BadSignature { from } => {
            let mut stx = f.sign(user(from), TxBody::Withdraw);
            stx.signature.0[0] ^= 1;
            // Not included, so the factory's nonce must go back.
            f.rollback(&user(from).public());
            Some((stx, false, false))
        }
        Op::WrongNonce { from } => {
            let mut tx = f.sign(user(from), TxBody::Withdraw).tx;
            f.rollback(&user(from).public());
            tx.nonce += 5;
            Some((tx.sign(user(from)), false, false))
        }
        op => {
            let (signer, body) = body_for(w, m, &op);
            let a = signer.public();
            if !fee_payer_ok(m, &a) {
                let stx = f.sign(signer, body);
                f.rollback(&a);
                return Some((stx, false, false));
            }
            let stx = f.sign(signer, body);
            charge(m, &a);
            let ok = model_apply(w, m, height, &a, &stx, &op, &params);
            Some((stx, true, ok))
        }
    }
}

fn body_for<'a>(w: &'a World, m: &Model, op: &Op) -> (&'a SecretKey, TxBody) {
    let target = |p: Option<usize>, from: usize| match p {
        Some(i) => w.providers[i].public(),
        None => w.users[from].public(),
    };
    let chan = |i: usize| m.channels.get(i % m.channels.len().max(1));
    match op {
        Op::Transfer { from, to, amount } => {
            let to = if *to < USERS {
                w.users[*to].public()
            } else {
                w.providers[*to - USERS].public()
            };
            (
                &w.users[*from],
                TxBody::Transfer {
                    to,
                    amount: Amount(*amount),
                },
            )
        }
        Op::Bond {
            from,
            provider,
            amount,
        } => (
            &w.users[*from],
            TxBody::Bond {
                target: target(*provider, *from),
                amount: Amount(*amount),
            },
        ),
        Op::Unbond {
            from,
            provider,
            amount,
        } => (
            &w.users[*from],
            TxBody::Unbond {
                target: target(*provider, *from),
                amount: Amount(*amount),
            },
        ),
        Op::ProviderUnbond { provider, amount } => (
            &w.providers[*provider],
            TxBody::Unbond {
                target: w.providers[*provider].public(),
                amount: Amount(*amount),
            },
        ),
        Op::Withdraw { from } => (&w.users[*from], TxBody::Withdraw),
        Op::Open {
            payer,
            provider,
            deposit,
            expiry,
        } => (
            &w.users[*payer],
            TxBody::OpenChannel {
                provider: w.providers[*provider].public(),
                deposit: Amount(*deposit),
                expiry_height: m.height + 1 + *expiry,
            },
        ),
        Op::TopUp { channel, amount } => match chan(*channel) {
            Some(c) => (
                &w.users[c.payer_idx],
                TxBody::TopUpChannel {
                    channel: c.id,
                    amount: Amount(*amount),
                },
            ),
            None => (
                &w.users[0],
                TxBody::TopUpChannel {
                    channel: Hash([9; 32]),
                    amount: Amount(*amount),
                },
            ),
        },
        Op::Redeem {
            channel,
            delta,
            model_part,
            wrong_split,
            forge,
        } => match chan(*channel) {
            Some(c) => {
                let prov = w
                    .providers
                    .iter()
                    .find(|p| p.public() == c.provider)
                    .expect("provider");
                let cumulative = c.redeemed + delta;
                let model_amount =
                    c.redeemed_model + if *wrong_split { *model_part } else { *delta };
                let v = Voucher {
                    chain_id: TEST_CHAIN.into(),
                    channel: c.id,
                    cumulative: Amount(cumulative),
                    per_model: vec![(w.model_id, Amount(model_amount))],
                };
                let signer = if *forge { prov } else { &w.users[c.payer_idx] };
                (prov, TxBody::RedeemVoucher(v.sign(signer)))
            }
            None => (&w.providers[0], TxBody::Withdraw),
        },
        Op::ReplayVoucher { channel } => {
            match chan(*channel).and_then(|c| c.last_voucher.clone().map(|v| (c, v))) {
                Some((c, v)) => {
                    let prov = w
                        .providers
                        .iter()
                        .find(|p| p.public() == c.provider)
                        .expect("provider");
                    (prov, TxBody::RedeemVoucher(v))
                }
                None => (&w.users[0], TxBody::Withdraw),
            }
        }
        Op::Close {
            channel,
            by_provider,
        } => match chan(*channel) {
            Some(c) => {
                let who = if *by_provider {
                    w.providers
                        .iter()
                        .find(|p| p.public() == c.provider)
                        .expect("provider")
                } else {
                    &w.users[c.payer_idx]
                };
                (who, TxBody::CloseChannel { channel: c.id })
            }
            None => (
                &w.users[0],
                TxBody::CloseChannel {
                    channel: Hash([9; 32]),
                },
            ),
        },
        Op::Settle { channel } => match chan(*channel) {
            Some(c) => (
                &w.users[c.payer_idx],
                TxBody::SettleChannel { channel: c.id },
            ),
            None => (
                &w.users[0],
                TxBody::SettleChannel {
                    channel: Hash([9; 32]),
                },
            ),
        },
        Op::Slash {
            offender,
            reporter,
            repeat,
            self_report,
        } => {
            let evidence = match (&m.last_evidence, repeat) {
                (Some(e), true) => e.clone(),
                _ => {
                    let k = &w.providers[*offender];
                    let subject = Hash([m.height as u8; 32]);
                    let (a, b) = (Hash([1; 32]), Hash([2; 32]));
                    Evidence::ConflictingClaims {
                        offender: k.public(),
                        subject,
                        claim_a: a,
                        signature_a: k.sign(SignDomain::Claim, &claim_message(&subject, &a)),
                        claim_b: b,
                        signature_b: k.sign(SignDomain::Claim, &claim_message(&subject, &b)),
                    }
                }
            };
            let reporter = if *self_report {
                w.providers
                    .iter()
                    .find(|k| k.public() == evidence.offender())
                    .expect("offender is a provider")
            } else {
                &w.users[*reporter]
            };
            (reporter, TxBody::Slash(evidence))
        }
        Op::RegisterValidator { from } => (&w.users[*from], TxBody::RegisterValidator),
        Op::RegisterDataset {
            from,
            id,
            empty_name,
        } => (
            &w.users[*from],
            TxBody::RegisterDataset(agora_types::DatasetInfo {
                content_hash: Hash([200 + id; 32]),
                name: if *empty_name {
                    " ".into()
                } else {
                    "dataset".into()
                },
                license: "cc-by-4.0".into(),
            }),
        ),
        Op::RegisterModel { from, id, royalty } => (
            &w.users[*from],
            TxBody::RegisterModel(ModelRegistration {
                sha256: Hash([100 + id; 32]),
                name: "model".into(),
                family: "llama".into(),
                kind: agora_types::ModelKind::Chat,
                license: "apache-2.0".into(),
                royalty_bps: *royalty,
            }),
        ),
        Op::ReRegisterProvider { provider } => (
            &w.providers[*provider],
            TxBody::RegisterProvider(provider_info(w.model_id)),
        ),
        Op::BadSignature { .. } | Op::WrongNonce { .. } | Op::Empty => unreachable!(),
    }
}

#[allow(clippy::too_many_arguments)]
fn model_apply(
    w: &World,
    m: &mut Model,
    height: u64,
    a: &Address,
    stx: &agora_types::SignedTx,
    op: &Op,
    p: &Params,
) -> bool {
    match (&stx.tx.body, op) {
        (TxBody::Transfer { to, amount }, _) => {
            let amount = amount.0;
            if amount == 0 || m.bal(a) < amount {
                return false;
            }
            m.sub(a, amount);
            m.add(to, amount);
            true
        }
        (TxBody::Bond { target, amount }, _) => {
            let amount = amount.0;
            if amount == 0 {
                return false;
            }
            if target != a && m.jailed_until.get(target).copied().unwrap_or(0) > height {
                return false;
            }
            if !m.sub(a, amount) {
                return false;
            }
            *m.stake.entry((*target, *a)).or_insert(0) += amount;
            true
        }
        (TxBody::Unbond { target, amount }, _) => {
            let amount = amount.0;
            let bonded = m.stake.get(&(*target, *a)).copied().unwrap_or(0);
            if amount == 0 || bonded < amount {
                return false;
            }
            // Every provider is registered: its own stake keeps the provider minimum.
            let is_provider = w.providers.iter().any(|k| k.public() == *a);
            if target == a && is_provider && bonded - amount < p.min_provider_stake.0 {
                return false;
            }
            if bonded == amount {
                m.stake.remove(&(*target, *a));
            } else {
                m.stake.insert((*target, *a), bonded - amount);
            }
            *m.unbonding
                .entry((*a, *target, height + p.unbonding_period_blocks))
                .or_insert(0) += amount;
            true
        }
        (TxBody::Withdraw, _) => {
            let matured: Vec<_> = m
                .unbonding
                .iter()
                .filter(|((d, _, h), _)| d == a && *h <= height)
                .map(|(k, v)| (*k, *v))
                .collect();
            if matured.is_empty() {
                return false;
            }
            for (k, v) in matured {
                m.unbonding.remove(&k);
                m.add(a, v);
            }
            true
        }
        (
            TxBody::OpenChannel {
                provider,
                deposit,
                expiry_height,
            },
            Op::Open { payer, .. },
        ) => {
            let d = deposit.0;
            if d == 0
                || m.jailed_until.get(provider).copied().unwrap_or(0) > height
                || *expiry_height <= height
            {
                return false;
            }
            if !m.sub(a, d) {
                return false;
            }
            m.channels.push(MChannel {
                id: channel_id(a, provider, stx.tx.nonce),
                payer: *a,
                payer_idx: *payer,
                provider: *provider,
                deposit: d,
                redeemed: 0,
                redeemed_model: 0,
                expiry: *expiry_height,
                deadline: None,
                settled: false,
                last_voucher: None,
            });
            true
        }
        (TxBody::TopUpChannel { channel, amount }, _) => {
            let Some(i) = m.channels.iter().position(|c| c.id == *channel) else {
                return false;
            };
            let c = &m.channels[i];
            if amount.0 == 0 || c.settled || c.deadline.is_some() || c.payer != *a {
                return false;
            }
            if !m.sub(a, amount.0) {
                return false;
            }
            m.channels[i].deposit += amount.0;
            true
        }
        (TxBody::RedeemVoucher(sv), _) => {
            let Some(i) = m.channels.iter().position(|c| c.id == sv.voucher.channel) else {
                return false;
            };
            let c = m.channels[i].clone();
            let v = &sv.voucher;
            if c.settled
                || c.provider != *a
                || v.cumulative.0 <= c.redeemed
                || v.cumulative.0 > c.deposit
            {
                return false;
            }
            if sv.verify(&c.payer).is_err() {
                return false;
            }
            let increase = v.cumulative.0 - c.redeemed;
            let model_amount = v.per_model[0].1.0;
            if model_amount < c.redeemed_model {
                return false;
            }
            // Every unit of the increase is attributed to a model: no payment skips its royalty.
            if model_amount - c.redeemed_model != increase {
                return false;
            }
            let model_inc = increase;
            let royalty = model_inc * 500 / 10_000;
            let fee = increase * u128::from(p.protocol_fee_bps) / 10_000;
            // The provider's share is locked for LOCK blocks (not spendable meanwhile).
            *m.locked.entry((c.provider, height + LOCK)).or_insert(0) += increase - royalty - fee;
            m.add(&w.model_owner, royalty);
            m.add(&p.treasury, fee);
            let mc = &mut m.channels[i];
            mc.redeemed = v.cumulative.0;
            mc.redeemed_model = model_amount;
            mc.last_voucher = Some(sv.clone());
            true
        }
        (TxBody::CloseChannel { channel }, _) => {
            let Some(i) = m.channels.iter().position(|c| c.id == *channel) else {
                return false;
            };
            let c = &m.channels[i];
            if c.settled {
                return false;
            }
            let deadline = if *a == c.payer {
                if c.deadline.is_some() {
                    return false;
                }
                height + p.channel_challenge_blocks
            } else if *a == c.provider {
                height
            } else {
                return false;
            };
            let d = c.deadline.map_or(deadline, |x| x.min(deadline));
            m.channels[i].deadline = Some(d);
            true
        }
        (TxBody::SettleChannel { channel }, _) => {
            let Some(i) = m.channels.iter().position(|c| c.id == *channel) else {
                return false;
            };
            let c = m.channels[i].clone();
            if c.settled || (*a != c.payer && *a != c.provider) {
                return false;
            }
            let at = c
                .deadline
                .map_or(c.expiry + p.channel_challenge_blocks, |d| {
                    d.min(c.expiry + p.channel_challenge_blocks)
                });
            if height < at {
                return false;
            }
            m.add(&c.payer, c.deposit - c.redeemed);
            m.channels[i].settled = true;
            true
        }
        (TxBody::Slash(e), _) => {
            let id = e.id();
            m.last_evidence = Some(e.clone());
            let off = e.offender();
            if m.evidence.contains(&id) || off == *a {
                return false;
            }
            let keys: Vec<_> = m.stake.keys().filter(|(t, _)| *t == off).copied().collect();
            let ukeys: Vec<_> = m
                .unbonding
                .keys()
                .filter(|(_, t, _)| *t == off)
                .copied()
                .collect();
            if keys.is_empty() && ukeys.is_empty() {
                return false;
            }
            let mut slashed = 0;
            for k in keys {
                let v = m.stake[&k];
                let cut = v * u128::from(p.slash_fraction_bps) / 10_000;
                slashed += cut;
                if v - cut == 0 {
                    m.stake.remove(&k);
                } else {
                    m.stake.insert(k, v - cut);
                }
            }
            for k in ukeys {
                let v = m.unbonding[&k];
                let cut = v * u128::from(p.slash_fraction_bps) / 10_000;
                slashed += cut;
                if v - cut == 0 {
                    m.unbonding.remove(&k);
                } else {
                    m.unbonding.insert(k, v - cut);
                }
            }
            let reward = slashed * u128::from(p.slash_reporter_bps) / 10_000;
            m.add(a, reward);
            m.burned += slashed - reward;
            m.jailed_until.insert(off, height + p.jail_blocks);
            m.evidence.insert(id);
            true
        }
        (TxBody::RegisterValidator, _) => {
            if m.validators.contains(a)
                || m.stake.get(&(*a, *a)).copied().unwrap_or(0) < p.min_validator_stake.0
            {
                return false;
            }
            m.validators.insert(*a);
            true
        }
        (TxBody::RegisterDataset(info), _) => {
            if m.datasets.contains(&info.content_hash) || info.name.trim().is_empty() {
                return false;
            }
            m.datasets.insert(info.content_hash);
            true
        }
        (TxBody::RegisterModel(info), _) => {
            if m.models.contains(&info.sha256) || info.royalty_bps > p.max_royalty_bps {
                return false;
            }
            m.models.insert(info.sha256);
            true
        }
        (TxBody::RegisterProvider(_), _) => {
            if m.jailed_until.get(a).copied().unwrap_or(0) > height {
                return false;
            }
            m.stake.get(&(*a, *a)).copied().unwrap_or(0) >= p.min_provider_stake.0
        }
        _ => false,
    }
}

fn compare(m: &Model, s: &State) -> Result<(), TestCaseError> {
    for (a, b) in &m.bal {
        prop_assert_eq!(s.balance(a).0, *b, "balance of {:?}", a);
    }
    for ((t, d), v) in &m.stake {
        prop_assert_eq!(s.stake(t, d).0, *v, "stake {:?} <- {:?}", t, d);
    }
    let mut real_unbonding = 0u128;
    for k in m.bal.keys() {
        for (_, _, a) in s.unbonding_of(k) {
            real_unbonding += a.0;
        }
    }
    prop_assert_eq!(real_unbonding, m.unbonding.values().sum::<u128>());
    for (a, _) in m.bal.iter() {
        let model_locked: Vec<(u64, Amount)> = m
            .locked
            .iter()
            .filter(|((p, _), _)| p == a)
            .map(|((_, h), v)| (*h, Amount(*v)))
            .collect();
        prop_assert_eq!(
            s.locked_of(a),
            &model_locked[..],
            "locked earnings of {:?}",
            a
        );
    }
    for c in &m.channels {
        let r = s.channel(&c.id).expect("channel exists");
        prop_assert_eq!(r.deposit.0, c.deposit);
        prop_assert_eq!(r.redeemed.0, c.redeemed);
        prop_assert_eq!(r.settled, c.settled);
        // A voucher can never pay more than its channel's deposit.
        prop_assert!(r.redeemed <= r.deposit);
    }
    for v in &m.validators {
        prop_assert!(s.validator(v).is_some(), "validator {:?} missing", v);
    }
    prop_assert_eq!(s.validators().count(), m.validators.len());
    for id in 0..4u8 {
        prop_assert_eq!(
            s.dataset(&Hash([200 + id; 32])).is_some(),
            m.datasets.contains(&Hash([200 + id; 32]))
        );
        prop_assert_eq!(
            s.model(&Hash([100 + id; 32])).is_some(),
            m.models.contains(&Hash([100 + id; 32]))
        );
    }
    // Supply is conserved: genesis + minted - burned = everything held anywhere.
    let supply = s.supply();
    prop_assert_eq!(supply.burned.0, m.burned);
    prop_assert_eq!(s.circulating_total(), supply.expected_total());
    prop_assert_eq!(Some(Amount(m.total())), s.circulating_total());
    prop_assert_eq!(m.total(), m.genesis - m.burned);
    Ok(())
}

fn run(ops: &[Vec<Op>]) -> Result<Vec<Hash>, TestCaseError> {
    let (w, mut chain, mut f, mut m) = setup();
    compare(&m, &chain.state)?;
    let mut roots = vec![];
    for block_ops in ops {
        let mut txs = vec![];
        let mut expect = vec![];
        for op in block_ops {
            if let Some((stx, included, ok)) = step(&w, &mut f, &mut m, op) {
                expect.push((stx.id(), included, ok));
                txs.push(stx);
            }
        }
        let built = chain.produce(txs);
        m.height += 1;
        // Locked earnings due at this height join their balances at the end of the block.
        let due: Vec<_> = m
            .locked
            .keys()
            .filter(|(_, h)| *h <= m.height)
            .copied()
            .collect();
        for k in due {
            let v = m.locked.remove(&k).expect("due entry");
            m.add(&k.0, v);
        }
        for (id, included, ok) in expect {
            let receipt = built.applied.receipts.iter().find(|r| r.tx == id);
            prop_assert_eq!(receipt.is_some(), included, "inclusion of {:?}", id);
            if let Some(r) = receipt {
                prop_assert_eq!(r.outcome == Outcome::Success, ok, "outcome {:?}", r.outcome);
            }
        }
        compare(&m, &chain.state)?;
        roots.push(chain.state.root());
    }
    Ok(roots)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_reference_model(ops in proptest::collection::vec(proptest::collection::vec(op(), 1..4), 1..40)) {
        let roots_a = run(&ops)?;
        // The same block sequence gives the same state roots on every run.
        let roots_b = run(&ops)?;
        prop_assert_eq!(roots_a, roots_b);
    }
}

fn provider_info(model: Hash) -> ProviderInfo {
    ProviderInfo {
        peer_id: vec![1, 2, 3],
        endpoints: vec!["/ip4/127.0.0.1/tcp/1".into()],
        hardware: HardwareSummary {
            accelerator: "cpu".into(),
            memory_mib: 1024,
            cpu_cores: 2,
        },
        models: vec![ModelPrice {
            model,
            input_per_million: Amount(10),
            output_per_million: Amount(20),
        }],
    }
}
