//! Issue 14, "Strangers on the payment path": each test plays a party that would profit from a
//! rule the ledger did not enforce, and checks that the lie is refused and moves nothing.

use agora_ledger::channels::channel_id;
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, provider_info, test_genesis, test_keys};
use agora_types::tx::claim_message;
use agora_types::{
    Amount, DatasetInfo, Evidence, Hash, ModelRegistration, Outcome, SecretKey, SignDomain, TxBody,
    Voucher,
};

const FEE: u128 = 1_000;

fn outcome(b: &agora_ledger::Built, i: usize) -> String {
    match &b.applied.receipts[i].outcome {
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Success => "success".into(),
    }
}

fn model(sha256: Hash, name: &str, royalty_bps: u16) -> ModelRegistration {
    ModelRegistration {
        sha256,
        name: name.into(),
        family: "llama".into(),
        kind: agora_types::ModelKind::Chat,
        license: "apache-2.0".into(),
        royalty_bps,
    }
}

/// A chain with `model` registered by `owner` (10% royalty) and `provider` registered with
/// `provider_bond` self-bonded.
fn world(
    owner: &SecretKey,
    provider: &SecretKey,
    model_id: Hash,
    provider_bond: Amount,
) -> (Chain, TxFactory) {
    let keys = test_keys(6);
    let mut chain = Chain::new(&test_genesis(
        &keys,
        Amount::from_agr(1_000),
        agora_ledger::Params::default(),
    ));
    let mut f = TxFactory::new(TEST_CHAIN, Amount(FEE));
    let b = chain.produce(vec![
        f.sign(owner, TxBody::RegisterModel(model(model_id, "m", 1_000))),
        f.sign(
            provider,
            TxBody::Bond {
                target: provider.public(),
                amount: provider_bond,
            },
        ),
    ]);
    assert_eq!(
        (outcome(&b, 0), outcome(&b, 1)),
        ("success".into(), "success".into())
    );
    let b = chain.produce(vec![
        f.sign(provider, TxBody::RegisterProvider(provider_info(model_id))),
    ]);
    assert_eq!(outcome(&b, 0), "success");
    (chain, f)
}

/// Royalties are not voluntary: a payer who signs a voucher whose per-model split is empty, or
/// covers only part of the increase, has it refused, and nobody is paid; only a split covering
/// the whole increase pays (and then the owner gets its royalty).
#[test]
fn a_payers_voucher_with_an_empty_or_short_split_is_refused_and_pays_nobody() {
    let keys = test_keys(6);
    let (payer, provider, owner) = (&keys[0], &keys[1], &keys[2]);
    let model_id = Hash([3; 32]);
    let (mut chain, mut f) = world(owner, provider, model_id, Amount::from_agr(100));
    let treasury = chain.state.params().treasury;
    let nonce = f.next_nonce(&payer.public());
    let b = chain.produce(vec![f.sign(
        payer,
        TxBody::OpenChannel {
            provider: provider.public(),
            deposit: Amount(1_000_000),
            expiry_height: 100,
        },
    )]);
    assert_eq!(outcome(&b, 0), "success");
    let id = channel_id(&payer.public(), &provider.public(), nonce);
    let voucher = |cumulative: u128, split: &[(Hash, u128)]| {
        Voucher {
            chain_id: TEST_CHAIN.into(),
            channel: id,
            cumulative: Amount(cumulative),
            per_model: split.iter().map(|(m, a)| (*m, Amount(*a))).collect(),
        }
        .sign(payer)
    };
    let balances = |c: &Chain| {
        (
            c.state.balance(&provider.public()),
            c.state.balance(&owner.public()),
            c.state.balance(&treasury),
        )
    };

    let (provider_before, owner_before, treasury_before) = balances(&chain);
    let b = chain.produce(vec![
        f.sign(provider, TxBody::RedeemVoucher(voucher(400_000, &[]))),
        f.sign(
            provider,
            TxBody::RedeemVoucher(voucher(400_000, &[(model_id, 100_000)])),
        ),
    ]);
    for i in 0..2 {
        assert!(
            outcome(&b, i).contains("must sum to exactly"),
            "voucher {i}: {}",
            outcome(&b, i)
        );
    }
    // Nothing moved but the provider's two fees.
    assert_eq!(
        balances(&chain),
        (
            Amount(provider_before.0 - 2 * FEE),
            owner_before,
            treasury_before
        )
    );
    let c = chain.state.channel(&id).expect("channel");
    assert_eq!(c.redeemed, Amount::ZERO);
    assert!(c.redeemed_per_model.is_empty());

    // A split naming the whole increase pays: 10% royalty to the owner, 1% to the treasury.
    let b = chain.produce(vec![f.sign(
        provider,
        TxBody::RedeemVoucher(voucher(400_000, &[(model_id, 400_000)])),
    )]);
    assert_eq!(outcome(&b, 0), "success");
    assert_eq!(
        chain.state.balance(&owner.public()).0 - owner_before.0,
        40_000
    );
    assert_eq!(chain.state.balance(&treasury).0 - treasury_before.0, 4_000);
    // And the next increase must be covered again: 100_000 more with only 50_000 named.
    let b = chain.produce(vec![f.sign(
        provider,
        TxBody::RedeemVoucher(voucher(500_000, &[(model_id, 450_000)])),
    )]);
    assert!(
        outcome(&b, 0).contains("must sum to exactly"),
        "{}",
        outcome(&b, 0)
    );
    assert_eq!(
        chain.state.channel(&id).expect("channel").redeemed.0,
        400_000
    );
}

fn conflicting_claims(offender: &SecretKey) -> Evidence {
    let subject = Hash([1; 32]);
    let (a, b) = (Hash([2; 32]), Hash([3; 32]));
    Evidence::ConflictingClaims {
        offender: offender.public(),
        subject,
        claim_a: a,
        signature_a: offender.sign(SignDomain::Claim, &claim_message(&subject, &a)),
        claim_b: b,
        signature_b: offender.sign(SignDomain::Claim, &claim_message(&subject, &b)),
    }
}

/// A slashing reporter may not be the offender: an offender racing to report itself (to pocket
/// the reporter's share of its own slash and use up the evidence) collects nothing, loses no
/// stake, is not jailed, and the evidence stays usable by an honest reporter.
#[test]
fn an_offender_reporting_itself_collects_nothing() {
    let keys = test_keys(6);
    let (owner, offender, reporter) = (&keys[2], &keys[1], &keys[3]);
    let model_id = Hash([3; 32]);
    let (mut chain, mut f) = world(owner, offender, model_id, Amount::from_agr(100));
    let evidence = conflicting_claims(offender);
    let stake_before = chain.state.stake(&offender.public(), &offender.public());
    let balance_before = chain.state.balance(&offender.public());
    let burned_before = chain.state.supply().burned;

    let b = chain.produce(vec![f.sign(offender, TxBody::Slash(evidence.clone()))]);
    assert!(
        outcome(&b, 0).contains("may not report itself"),
        "{}",
        outcome(&b, 0)
    );
    assert_eq!(
        chain.state.stake(&offender.public(), &offender.public()),
        stake_before
    );
    assert_eq!(
        chain.state.balance(&offender.public()),
        Amount(balance_before.0 - FEE)
    );
    // Only half the fee is burned; no slash burned anything.
    assert_eq!(chain.state.supply().burned.0, burned_before.0 + FEE / 2);
    assert!(!chain.state.evidence_used(&evidence.id()));
    assert_eq!(
        chain
            .state
            .provider(&offender.public())
            .expect("provider")
            .jailed_until,
        0
    );

    // An honest reporter can still use the same evidence.
    let b = chain.produce(vec![f.sign(reporter, TxBody::Slash(evidence.clone()))]);
    assert_eq!(outcome(&b, 0), "success");
    assert!(chain.state.evidence_used(&evidence.id()));
    assert!(chain.state.stake(&offender.public(), &offender.public()) < stake_before);
}

/// A registered provider may not unbond below the provider minimum: it would keep taking
/// channels (and payments) with nothing at stake. Stake above the minimum stays free, and so
/// do delegators and accounts that are not providers.
#[test]
fn a_registered_provider_cannot_unbond_below_the_minimum_stake() {
    let keys = test_keys(6);
    let (owner, provider, delegator, plain) = (&keys[2], &keys[1], &keys[4], &keys[5]);
    let model_id = Hash([3; 32]);
    let min = agora_ledger::Params::default().min_provider_stake;
    let (mut chain, mut f) = world(owner, provider, model_id, Amount(min.0 + 500));
    let b = chain.produce(vec![
        f.sign(
            delegator,
            TxBody::Bond {
                target: provider.public(),
                amount: Amount(7_000),
            },
        ),
        f.sign(
            plain,
            TxBody::Bond {
                target: plain.public(),
                amount: Amount(9_000),
            },
        ),
    ]);
    assert_eq!(
        (outcome(&b, 0), outcome(&b, 1)),
        ("success".into(), "success".into())
    );
    let me = provider.public();
    let total_before = chain.state.total_stake(&me);

    // Everything at once, then one unit more than the surplus: both refused, nothing moves.
    let b = chain.produce(vec![
        f.sign(
            provider,
            TxBody::Unbond {
                target: me,
                amount: Amount(min.0 + 500),
            },
        ),
        f.sign(
            provider,
            TxBody::Unbond {
                target: me,
                amount: Amount(501),
            },
        ),
    ]);
    for i in 0..2 {
        assert!(
            outcome(&b, i).contains("below the provider minimum"),
            "unbond {i}: {}",
            outcome(&b, i)
        );
    }
    assert_eq!(chain.state.stake(&me, &me), Amount(min.0 + 500));
    assert_eq!(chain.state.total_stake(&me), total_before);
    assert!(chain.state.unbonding_of(&me).is_empty());

    // The surplus may go, leaving exactly the minimum; delegators and non-providers are free.
    let b = chain.produce(vec![
        f.sign(
            provider,
            TxBody::Unbond {
                target: me,
                amount: Amount(500),
            },
        ),
        f.sign(
            delegator,
            TxBody::Unbond {
                target: me,
                amount: Amount(7_000),
            },
        ),
        f.sign(
            plain,
            TxBody::Unbond {
                target: plain.public(),
                amount: Amount(9_000),
            },
        ),
    ]);
    for i in 0..3 {
        assert_eq!(outcome(&b, i), "success", "unbond {i}");
    }
    assert_eq!(chain.state.stake(&me, &me), min);
    let b = chain.produce(vec![f.sign(
        provider,
        TxBody::Unbond {
            target: me,
            amount: Amount(1),
        },
    )]);
    assert!(
        outcome(&b, 0).contains("below the provider minimum"),
        "{}",
        outcome(&b, 0)
    );
    assert_eq!(chain.state.stake(&me, &me), min);
}

/// A model's sha256 (and a dataset's content hash) belongs to whoever registered it first: a
/// stranger re-registering it (to take the royalties, or change them) is refused, and so is the
/// owner itself (a registration is not an update). The record keeps the first registrant.
#[test]
fn a_second_registration_of_a_model_or_dataset_is_refused_and_the_first_owner_keeps_it() {
    let keys = test_keys(6);
    let (owner, provider, mallory) = (&keys[2], &keys[1], &keys[4]);
    let model_id = Hash([3; 32]);
    let (mut chain, mut f) = world(owner, provider, model_id, Amount::from_agr(100));
    let record_before = chain.state.model(&model_id).expect("model").clone();
    assert_eq!(record_before.owner, owner.public());
    let data = |name: &str| DatasetInfo {
        content_hash: Hash([8; 32]),
        name: name.into(),
        license: "cc-by-4.0".into(),
    };
    let b = chain.produce(vec![f.sign(owner, TxBody::RegisterDataset(data("d")))]);
    assert_eq!(outcome(&b, 0), "success");
    let dataset_before = chain
        .state
        .dataset(&Hash([8; 32]))
        .expect("dataset")
        .clone();
    assert_eq!(dataset_before.owner, owner.public());

    let b = chain.produce(vec![
        f.sign(
            mallory,
            TxBody::RegisterModel(model(model_id, "mine now", 3_000)),
        ),
        f.sign(owner, TxBody::RegisterModel(model(model_id, "m2", 0))),
        f.sign(mallory, TxBody::RegisterDataset(data("mine now"))),
        f.sign(owner, TxBody::RegisterDataset(data("d2"))),
    ]);
    for i in 0..4 {
        assert!(
            outcome(&b, i).contains("already registered"),
            "registration {i}: {}",
            outcome(&b, i)
        );
    }
    assert_eq!(chain.state.model(&model_id), Some(&record_before));
    assert_eq!(chain.state.dataset(&Hash([8; 32])), Some(&dataset_before));
}
