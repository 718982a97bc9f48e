//! Hand-written scenarios for the rules the property test reaches only by chance.

use agora_ledger::channels::channel_id;
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::tx::claim_message;
use agora_types::{
    Amount, Evidence, Hash, ModelRegistration, Outcome, SignDomain, TxBody, Voucher,
};

fn failed(b: &agora_ledger::Built, i: usize) -> String {
    match &b.applied.receipts[i].outcome {
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Success => "success".into(),
    }
}

#[test]
fn vouchers_replayed_forged_over_deposit_or_after_settle_are_rejected() {
    let keys = test_keys(3);
    let (payer, provider, owner) = (&keys[0], &keys[1], &keys[2]);
    let params = agora_ledger::Params {
        channel_challenge_blocks: 1,
        ..Default::default()
    };
    let mut chain = Chain::new(&test_genesis(&keys, Amount::from_agr(1_000), params));
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    let model = Hash([3; 32]);
    let b = chain.produce(vec![
        f.sign(
            owner,
            TxBody::RegisterModel(ModelRegistration {
                sha256: model,
                name: "m".into(),
                family: "llama".into(),
                kind: agora_types::ModelKind::Chat,
                license: "apache-2.0".into(),
                royalty_bps: 1_000,
            }),
        ),
        f.sign(
            provider,
            TxBody::Bond {
                target: provider.public(),
                amount: Amount::from_agr(100),
            },
        ),
    ]);
    assert!(
        b.applied
            .receipts
            .iter()
            .all(|r| r.outcome == Outcome::Success)
    );
    chain.produce(vec![f.sign(
        provider,
        TxBody::RegisterProvider(agora_testkit::provider_info(model)),
    )]);
    let nonce = f.next_nonce(&payer.public());
    let open = f.sign(
        payer,
        TxBody::OpenChannel {
            provider: provider.public(),
            deposit: Amount(1_000_000),
            expiry_height: 100,
        },
    );
    chain.produce(vec![open]);
    let id = channel_id(&payer.public(), &provider.public(), nonce);
    let voucher = |cum: u128, m: u128| Voucher {
        chain_id: TEST_CHAIN.into(),
        channel: id,
        cumulative: Amount(cum),
        per_model: vec![(model, Amount(m))],
    };
    let provider_before = chain.state.balance(&provider.public());
    let owner_before = chain.state.balance(&owner.public());
    let good = voucher(400_000, 400_000).sign(payer);
    let b = chain.produce(vec![
        f.sign(provider, TxBody::RedeemVoucher(good.clone())),
        f.sign(provider, TxBody::RedeemVoucher(good.clone())),
        f.sign(
            provider,
            TxBody::RedeemVoucher(voucher(500_000, 400_000).sign(provider)),
        ),
        f.sign(
            provider,
            TxBody::RedeemVoucher(voucher(1_000_001, 400_000).sign(payer)),
        ),
    ]);
    assert_eq!(failed(&b, 0), "success");
    assert!(
        failed(&b, 1).contains("does not exceed"),
        "{}",
        failed(&b, 1)
    );
    assert!(failed(&b, 2).contains("not the payer"), "{}", failed(&b, 2));
    assert!(
        failed(&b, 3).contains("exceeds the deposit"),
        "{}",
        failed(&b, 3)
    );
    // 400_000 paid: 10% royalty to the owner, 1% protocol fee, the rest to the provider, locked
    // for `earnings_lock_blocks` (its balance only paid its four fees of 1_000).
    assert_eq!(
        chain.state.balance(&owner.public()).0 - owner_before.0,
        40_000
    );
    assert_eq!(
        chain.state.balance(&provider.public()).0 + 4_000,
        provider_before.0
    );
    assert_eq!(
        chain.state.locked_total(&provider.public()).0,
        400_000 - 40_000 - 4_000
    );

    let payer_before = chain.state.balance(&payer.public());
    chain.produce(vec![f.sign(payer, TxBody::CloseChannel { channel: id })]);
    chain.produce(vec![]);
    let b = chain.produce(vec![f.sign(payer, TxBody::SettleChannel { channel: id })]);
    assert_eq!(failed(&b, 0), "success");
    assert_eq!(
        chain.state.balance(&payer.public()).0,
        payer_before.0 - 2_000 + 600_000
    );
    let b = chain.produce(vec![f.sign(
        provider,
        TxBody::RedeemVoucher(voucher(600_000, 400_000).sign(payer)),
    )]);
    assert!(failed(&b, 0).contains("settled"), "{}", failed(&b, 0));
}

#[test]
fn slashed_unbonding_stake_is_never_withdrawable() {
    let keys = test_keys(2);
    let (offender, reporter) = (&keys[0], &keys[1]);
    let params = agora_ledger::Params {
        unbonding_period_blocks: 2,
        slash_fraction_bps: 5_000,
        ..Default::default()
    };
    let mut chain = Chain::new(&test_genesis(&keys, Amount::from_agr(1_000), params));
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    chain.produce(vec![f.sign(
        offender,
        TxBody::Bond {
            target: offender.public(),
            amount: Amount(1_000_000),
        },
    )]);
    chain.produce(vec![f.sign(
        offender,
        TxBody::Unbond {
            target: offender.public(),
            amount: Amount(400_000),
        },
    )]);
    let subject = Hash([1; 32]);
    let (a, b) = (Hash([2; 32]), Hash([3; 32]));
    let evidence = Evidence::ConflictingClaims {
        offender: offender.public(),
        subject,
        claim_a: a,
        signature_a: offender.sign(SignDomain::Claim, &claim_message(&subject, &a)),
        claim_b: b,
        signature_b: offender.sign(SignDomain::Claim, &claim_message(&subject, &b)),
    };
    let burned_before = chain.state.supply().burned;
    let built = chain.produce(vec![
        f.sign(reporter, TxBody::Slash(evidence.clone())),
        f.sign(reporter, TxBody::Slash(evidence)),
    ]);
    assert_eq!(failed(&built, 0), "success");
    assert!(failed(&built, 1).contains("already slashed"));
    // Half of 600_000 bonded and half of 400_000 unbonding are gone.
    assert_eq!(
        chain.state.stake(&offender.public(), &offender.public()),
        Amount(300_000)
    );
    let before = chain.state.balance(&offender.public());
    chain.produce(vec![]);
    let w = chain.produce(vec![f.sign(offender, TxBody::Withdraw)]);
    assert_eq!(failed(&w, 0), "success");
    assert_eq!(
        chain.state.balance(&offender.public()).0,
        before.0 - 1_000 + 200_000
    );
    assert!(chain.state.supply().burned.0 >= burned_before.0 + 450_000);
    assert_eq!(
        chain.state.circulating_total(),
        chain.state.supply().expected_total()
    );
}
