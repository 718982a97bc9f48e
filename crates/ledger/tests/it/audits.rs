//! Failed audits, the earnings lock and receipt commitments. Each `a_*` test plays a liar (a
//! provider, a reporter, a validator, a stranger) against one rule and checks that the lie is
//! refused with its own error and moves nothing; the others check what an accepted failed audit
//! does, to the base unit, and that supply is conserved after every case.

use agora_ledger::audit::{beacon, on_probation, receipts_root, selected};
use agora_ledger::channels::channel_id;
use agora_ledger::genesis::GenesisValidator;
use agora_ledger::{Built, Event, Params, State};
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis};
use agora_types::receipt::{InferenceReceipt, SignedReceipt};
use agora_types::{
    Amount, AuditVerdict, Evidence, Hash, ModelRegistration, Outcome, Price, SecretKey,
    SignedVerdict, TxBody, Voucher, receipt_id,
};

pub(crate) const FEE: u128 = 1_000;
const DEPOSIT: u128 = 10_000_000;
const MODEL: Hash = Hash([3; 32]);

pub(crate) struct World {
    pub chain: Chain,
    pub f: TxFactory,
    pub payer: SecretKey,
    pub provider: SecretKey,
    pub reporter: SecretKey,
    pub stranger: SecretKey,
    pub delegator: SecretKey,
    /// Active validators (registered at genesis with enough stake).
    pub validators: Vec<SecretKey>,
    pub channel: Hash,
    /// The payer's last voucher total on `channel`.
    pub cumulative: u128,
    next_request: u64,
}

pub(crate) fn key(name: &str) -> SecretKey {
    SecretKey::from_test_seed(&format!("audits-{name}"))
}

pub(crate) fn outcome(b: &Built, i: usize) -> String {
    match &b.applied.receipts[i].outcome {
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Success => "success".into(),
    }
}

impl World {
    /// A chain with three active validators, a registered provider (the minimum stake
    /// self-bonded, 1 AGR delegated), a model without royalty, and a channel from `payer` to
    /// the provider.
    pub fn new(params: Params) -> World {
        let names = ["payer", "provider", "reporter", "stranger", "delegator"];
        let keys: Vec<SecretKey> = names.iter().map(|n| key(n)).collect();
        let validators: Vec<SecretKey> = (0..3).map(|i| key(&format!("validator-{i}"))).collect();
        let mut genesis = test_genesis(&keys, Amount::from_agr(1_000), params);
        for v in &validators {
            genesis
                .accounts
                .push(agora_ledger::genesis::GenesisAccount {
                    address: v.public(),
                    balance: Amount::from_agr(10),
                });
            genesis.validators.push(GenesisValidator {
                address: v.public(),
                stake: Amount::from_agr(10_000),
            });
        }
        let mut chain = Chain::new(&genesis);
        let mut f = TxFactory::new(TEST_CHAIN, Amount(FEE));
        let (payer, provider) = (keys[0].clone(), keys[1].clone());
        let min = chain.state.params().min_provider_stake;
        let b = chain.produce(vec![
            f.sign(
                &keys[2],
                TxBody::RegisterModel(ModelRegistration {
                    sha256: MODEL,
                    name: "m".into(),
                    family: "llama".into(),
                    kind: agora_types::ModelKind::Chat,
                    license: "apache-2.0".into(),
                    royalty_bps: 0,
                }),
            ),
            f.sign(
                &provider,
                TxBody::Bond {
                    target: provider.public(),
                    amount: min,
                },
            ),
        ]);
        assert!((0..2).all(|i| outcome(&b, i) == "success"));
        let b = chain.produce(vec![f.sign(
            &provider,
            TxBody::RegisterProvider(agora_testkit::provider_info(MODEL)),
        )]);
        assert_eq!(outcome(&b, 0), "success");
        let nonce = f.next_nonce(&payer.public());
        let b = chain.produce(vec![
            f.sign(
                &payer,
                TxBody::OpenChannel {
                    provider: provider.public(),
                    deposit: Amount(DEPOSIT),
                    expiry_height: 1_000_000,
                },
            ),
            f.sign(
                &keys[4],
                TxBody::Bond {
                    target: provider.public(),
                    amount: Amount::from_agr(1),
                },
            ),
        ]);
        assert!((0..2).all(|i| outcome(&b, i) == "success"));
        let channel = channel_id(&payer.public(), &provider.public(), nonce);
        World {
            chain,
            f,
            payer,
            provider,
            reporter: keys[2].clone(),
            stranger: keys[3].clone(),
            delegator: keys[4].clone(),
            validators,
            channel,
            cumulative: 0,
            next_request: 0,
        }
    }

    /// The provider redeems `amount` more on the channel (the payer signed it).
    pub fn redeem(&mut self, amount: u128) -> Built {
        self.cumulative += amount;
        let v = Voucher {
            chain_id: TEST_CHAIN.into(),
            channel: self.channel,
            cumulative: Amount(self.cumulative),
            per_model: vec![(MODEL, Amount(self.cumulative))],
        }
        .sign(&self.payer);
        let provider = self.provider.clone();
        let b = self.produce(&provider, TxBody::RedeemVoucher(v));
        assert_eq!(outcome(&b, 0), "success");
        b
    }

    /// A receipt the provider signs for a job on its channel that charged `charged`.
    pub fn receipt(&mut self, charged: u128) -> SignedReceipt {
        self.next_request += 1;
        InferenceReceipt {
            chain_id: TEST_CHAIN.into(),
            request_id: Hash::of(
                agora_types::HashDomain::Request,
                &self.next_request.to_le_bytes(),
            ),
            provider: self.provider.public(),
            payer: self.payer.public(),
            channel: self.channel,
            model: MODEL,
            seed: 1,
            params_hash: Hash([4; 32]),
            work_hash: Hash([5; 32]),
            continuation_hash: Hash([6; 32]),
            prompt_hash: Hash([7; 32]),
            engine: "test".into(),
            prompt_tokens: 10,
            completion_tokens: 10,
            continuation_tokens: 0,
            price: Price {
                input_per_million: Amount(1),
                output_per_million: Amount(1),
            },
            charged: Amount(charged),
            output_hash: Hash([8; 32]),
            time_ms: 0,
            complete: true,
            proof_hash: Hash([9; 32]),
        }
        .sign(&self.provider)
    }

    /// Builds a block with one transaction and returns it (the tx must be included).
    pub fn produce(&mut self, signer: &SecretKey, body: TxBody) -> Built {
        let stx = self.f.sign(signer, body);
        let b = self.chain.produce(vec![stx]);
        assert!(b.rejected.is_empty(), "{:?}", b.rejected);
        b
    }

    pub fn report(&mut self, reporter: &SecretKey, evidence: Evidence) -> String {
        let b = self.produce(reporter, TxBody::Slash(evidence));
        outcome(&b, 0)
    }

    pub fn state(&self) -> &State {
        &self.chain.state
    }
}

pub(crate) fn verdict(auditor: &SecretKey, receipt: &SignedReceipt, failed: bool) -> SignedVerdict {
    AuditVerdict {
        chain_id: TEST_CHAIN.into(),
        receipt: receipt_id(receipt),
        failed,
        detail: Hash([11; 32]),
    }
    .sign(auditor)
}

pub(crate) fn failed_audit(receipt: &SignedReceipt, auditors: &[&SecretKey]) -> Evidence {
    Evidence::FailedAudit {
        receipt: Box::new(receipt.clone()),
        verdicts: auditors.iter().map(|a| verdict(a, receipt, true)).collect(),
    }
}

/// Everything a refused report must leave as it was (the reporter's fee aside).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    provider_balance: Amount,
    provider_locked: Vec<(u64, Amount)>,
    payer_balance: Amount,
    stake: Amount,
    jailed_until: u64,
    probation: Option<u64>,
}

fn snapshot(w: &World) -> Snapshot {
    let p = w.provider.public();
    Snapshot {
        provider_balance: w.state().balance(&p),
        provider_locked: w.state().locked_of(&p).to_vec(),
        payer_balance: w.state().balance(&w.payer.public()),
        stake: w.state().total_stake(&p),
        jailed_until: w.state().provider(&p).expect("provider").jailed_until,
        probation: w.state().probation_until(&p),
    }
}

pub(crate) fn assert_supply(state: &State) {
    assert_eq!(
        state.circulating_total(),
        state.supply().expected_total(),
        "supply is not conserved"
    );
}

/// Submits `evidence` from `reporter`, expects `expected` in the failure message, and checks
/// that nothing moved but the reporter's fee, and that the evidence id stays unused.
fn refused(w: &mut World, reporter: &SecretKey, evidence: Evidence, expected: &str) {
    let before = snapshot(w);
    let reporter_before = w.state().balance(&reporter.public());
    let burned_before = w.state().supply().burned;
    let message = w.report(reporter, evidence.clone());
    assert!(
        message.contains(expected),
        "expected {expected:?}, got {message:?}"
    );
    let mut after = snapshot(w);
    if reporter.public() == w.provider.public() {
        after.provider_balance = Amount(after.provider_balance.0 + FEE);
    }
    assert_eq!(after, before, "a refused report moved something");
    if reporter.public() != w.provider.public() {
        assert_eq!(
            w.state().balance(&reporter.public()).0,
            reporter_before.0 - FEE
        );
    }
    assert_eq!(w.state().supply().burned.0, burned_before.0 + FEE / 2);
    assert!(!w.state().evidence_used(&evidence.id()));
    assert_supply(w.state());
}

/// A world where the provider has earned `earned` (locked) on a job, and the receipt for it.
fn world_with_job(earned: u128) -> (World, SignedReceipt) {
    let mut w = World::new(Params::default());
    w.redeem(earned);
    let r = w.receipt(earned);
    (w, r)
}

#[test]
fn a_provider_cannot_be_slashed_with_a_receipt_it_did_not_sign() {
    let (mut w, mut r) = world_with_job(100_000);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    // The stranger signs a receipt naming the provider; and a signature byte flipped.
    let forged = SignedReceipt {
        signature: w
            .stranger
            .sign(agora_types::SignDomain::Receipt, b"anything"),
        ..r.clone()
    };
    refused(
        &mut w,
        &reporter,
        failed_audit(&forged, &[&v[0], &v[1]]),
        "not its provider's",
    );
    r.signature.0[5] ^= 1;
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &v[1]]),
        "not its provider's",
    );
    // A field changed after signing: the auditors' verdicts are on the changed receipt.
    let (mut w, mut r) = world_with_job(100_000);
    r.receipt.charged = Amount(1_000_000);
    let v = w.validators.clone();
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &v[1]]),
        "not its provider's",
    );
}

#[test]
fn a_receipt_from_another_chain_is_refused() {
    let (mut w, r) = world_with_job(100_000);
    let mut other = r.receipt.clone();
    other.chain_id = "agora-other".into();
    let other = other.sign(&w.provider);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    refused(
        &mut w,
        &reporter,
        failed_audit(&other, &[&v[0], &v[1]]),
        "receipt is for chain",
    );
    // Verdicts made for another chain do not count here either.
    let mut e = failed_audit(&r, &[&v[0], &v[1]]);
    if let Evidence::FailedAudit { verdicts, .. } = &mut e {
        verdicts[1] = AuditVerdict {
            chain_id: "agora-other".into(),
            ..verdicts[1].verdict.clone()
        }
        .sign(&v[1]);
    }
    refused(&mut w, &reporter, e, "verdict 1 is for chain");
}

#[test]
fn verdicts_from_non_validators_or_jailed_validators_do_not_count() {
    let (mut w, r) = world_with_job(100_000);
    let (reporter, stranger, v) = (w.reporter.clone(), w.stranger.clone(), w.validators.clone());
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &stranger]),
        "verdict 1 is not by an active validator",
    );
    // The payer (who would get the forfeited payment) is no auditor either.
    let payer = w.payer.clone();
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&payer, &v[1]]),
        "verdict 0 is not by an active validator",
    );
    // A validator jailed for equivocation leaves the active set: its verdict no longer counts.
    let subject = Hash([1; 32]);
    let claim = |c: Hash| {
        v[2].sign(
            agora_types::SignDomain::Claim,
            &agora_types::tx::claim_message(&subject, &c),
        )
    };
    let equivocation = Evidence::ConflictingClaims {
        offender: v[2].public(),
        subject,
        claim_a: Hash([2; 32]),
        signature_a: claim(Hash([2; 32])),
        claim_b: Hash([3; 32]),
        signature_b: claim(Hash([3; 32])),
    };
    assert_eq!(w.report(&reporter, equivocation), "success");
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &v[2]]),
        "verdict 1 is not by an active validator",
    );
    // The two others still can.
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
}

#[test]
fn the_same_validator_twice_or_only_one_failing_verdict_is_not_enough() {
    let (mut w, r) = world_with_job(100_000);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &v[0]]),
        "verdict 1 is by an auditor who already signed",
    );
    // The same validator with a different report hash is still the same validator.
    let mut e = failed_audit(&r, &[&v[0], &v[1]]);
    if let Evidence::FailedAudit { verdicts, .. } = &mut e {
        verdicts[1] = AuditVerdict {
            detail: Hash([99; 32]),
            ..verdicts[0].verdict.clone()
        }
        .sign(&v[0]);
    }
    refused(&mut w, &reporter, e, "already signed");
    refused(&mut w, &reporter, failed_audit(&r, &[&v[0]]), "1 verdicts");
    refused(&mut w, &reporter, failed_audit(&r, &[]), "0 verdicts");
    // More than the limit cannot even be encoded into a valid transaction (the decoder bounds
    // the list), and the ledger refuses it if handed one.
    let nine: Vec<&SecretKey> = std::iter::repeat_n(&v[0], 9).collect();
    refused(&mut w, &reporter, failed_audit(&r, &nine), "9 verdicts");
}

#[test]
fn a_verdict_for_another_receipt_or_a_passing_verdict_is_not_a_failure() {
    let (mut w, r) = world_with_job(100_000);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    let other = w.receipt(100_000);
    let e = Evidence::FailedAudit {
        receipt: Box::new(r.clone()),
        verdicts: vec![verdict(&v[0], &r, true), verdict(&v[1], &other, true)],
    };
    refused(&mut w, &reporter, e, "verdict 1 is about another receipt");
    let e = Evidence::FailedAudit {
        receipt: Box::new(r.clone()),
        verdicts: vec![verdict(&v[0], &r, true), verdict(&v[1], &r, false)],
    };
    refused(
        &mut w,
        &reporter,
        e,
        "verdict 1 does not say the audit failed",
    );
    // A passing verdict re-labelled as failing no longer carries its auditor's signature.
    let mut flipped = verdict(&v[1], &r, false);
    flipped.verdict.failed = true;
    let e = Evidence::FailedAudit {
        receipt: Box::new(r.clone()),
        verdicts: vec![verdict(&v[0], &r, true), flipped],
    };
    refused(
        &mut w,
        &reporter,
        e,
        "verdict 1's signature is not its auditor's",
    );
    // A verdict claiming to be another validator's.
    let mut borrowed = verdict(&v[0], &r, true);
    borrowed.auditor = v[2].public();
    let e = Evidence::FailedAudit {
        receipt: Box::new(r.clone()),
        verdicts: vec![verdict(&v[1], &r, true), borrowed],
    };
    refused(&mut w, &reporter, e, "verdict 1's signature");
}

#[test]
fn an_offender_reporting_itself_or_auditing_itself_is_refused() {
    let (mut w, r) = world_with_job(100_000);
    let (provider, reporter, v) = (w.provider.clone(), w.reporter.clone(), w.validators.clone());
    refused(
        &mut w,
        &provider,
        failed_audit(&r, &[&v[0], &v[1]]),
        "may not report itself",
    );
    // A provider's own verdict on its receipt is not an independent audit.
    refused(
        &mut w,
        &reporter,
        failed_audit(&r, &[&v[0], &provider]),
        "verdict 1 is signed by the offender itself",
    );
    // And the evidence stays usable by an honest reporter; a validator that signed a verdict
    // may report it.
    assert_eq!(
        w.report(&v[0], failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
}

#[test]
fn the_same_receipt_is_slashed_once_whatever_verdicts_prove_it() {
    let (mut w, r) = world_with_job(100_000);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    let after_first = snapshot(&w);
    for again in [
        failed_audit(&r, &[&v[0], &v[1]]),
        failed_audit(&r, &[&v[1], &v[2]]),
        failed_audit(&r, &[&v[2], &v[0], &v[1]]),
    ] {
        assert!(w.report(&reporter, again).contains("already slashed"));
        assert_eq!(snapshot(&w), after_first);
    }
    // Another receipt of the same provider is another offence.
    let r2 = w.receipt(50_000);
    assert_eq!(
        w.report(&reporter, failed_audit(&r2, &[&v[1], &v[2]])),
        "success"
    );
    assert_supply(w.state());
}

#[test]
fn an_unregistered_offender_cannot_be_reported() {
    let mut w = World::new(Params::default());
    let (reporter, stranger, v) = (w.reporter.clone(), w.stranger.clone(), w.validators.clone());
    // The stranger has stake (so a slash would have something to take) but is no provider.
    let b = w.produce(
        &stranger,
        TxBody::Bond {
            target: stranger.public(),
            amount: Amount::from_agr(100),
        },
    );
    assert_eq!(outcome(&b, 0), "success");
    let mut receipt = w.receipt(100).receipt;
    receipt.provider = stranger.public();
    let r = receipt.sign(&stranger);
    let stake = w.state().total_stake(&stranger.public());
    let message = w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]]));
    assert!(message.contains("not a registered provider"), "{message}");
    assert_eq!(w.state().total_stake(&stranger.public()), stake);
    assert_supply(w.state());
}

#[test]
fn a_failed_audit_slashes_pays_the_reporter_forfeits_the_payment_and_starts_probation() {
    let mut w = World::new(Params::default());
    let p = w.provider.public();
    let params = w.state().params().clone();
    // Two jobs paid; the provider also unbonds some delegated stake (still slashable).
    w.redeem(300_000);
    w.redeem(200_000);
    let delegator = w.delegator.clone();
    let b = w.produce(
        &delegator,
        TxBody::Unbond {
            target: p,
            amount: Amount(600_000_000),
        },
    );
    assert_eq!(outcome(&b, 0), "success");
    let locked_before = w.state().locked_total(&p);
    // 1% protocol fee: 297_000 + 198_000 locked.
    assert_eq!(locked_before, Amount(495_000));
    let own = w.state().stake(&p, &p);
    let delegated = w.state().stake(&p, &delegator.public());
    let unbonding: u128 = w
        .state()
        .unbonding_of(&delegator.public())
        .iter()
        .map(|(_, _, a)| a.0)
        .sum();
    let expected_slash = own.mul_bps(params.audit_slash_bps).0
        + delegated.mul_bps(params.audit_slash_bps).0
        + Amount(unbonding).mul_bps(params.audit_slash_bps).0;
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    let reporter_before = w.state().balance(&reporter.public());
    let payer_before = w.state().balance(&w.payer.public());
    let provider_balance_before = w.state().balance(&p);
    let burned_before = w.state().supply().burned;

    let r = w.receipt(300_000);
    let b = w.produce(&reporter, TxBody::Slash(failed_audit(&r, &[&v[0], &v[1]])));
    assert_eq!(outcome(&b, 0), "success");
    let height = w.state().height();
    let reward = Amount(expected_slash).mul_bps(params.slash_reporter_bps).0;
    // The stake: a tenth of each entry, bonded and unbonding, own and delegated.
    assert_eq!(
        w.state().stake(&p, &p),
        own.saturating_sub(own.mul_bps(1_000))
    );
    assert_eq!(
        w.state().stake(&p, &delegator.public()),
        delegated.saturating_sub(delegated.mul_bps(1_000))
    );
    // The reporter's share, the rest burned (with half the reporter's fee).
    assert_eq!(
        w.state().balance(&reporter.public()).0,
        reporter_before.0 - FEE + reward
    );
    assert_eq!(
        w.state().supply().burned.0,
        burned_before.0 + expected_slash - reward + FEE / 2
    );
    // The job's charge went back to the payer, all of it from the locked earnings (soonest
    // first), none from the balance.
    assert_eq!(
        w.state().balance(&w.payer.public()).0,
        payer_before.0 + 300_000
    );
    assert_eq!(w.state().locked_total(&p).0, locked_before.0 - 300_000);
    assert_eq!(w.state().balance(&p), provider_balance_before);
    // Jailed like any slash, and on probation.
    assert!(w.state().provider(&p).unwrap().jailed_until > height);
    assert_eq!(
        w.state().probation_until(&p),
        Some(height + params.probation_blocks)
    );
    assert!(on_probation(
        w.state(),
        &p,
        height + params.probation_blocks - 1
    ));
    assert!(!on_probation(
        w.state(),
        &p,
        height + params.probation_blocks
    ));
    assert!(!on_probation(w.state(), &reporter.public(), height));
    // On probation every receipt is selected, whatever the draw.
    assert!(selected(
        Hash::ZERO,
        receipt_id(&r),
        0,
        on_probation(w.state(), &p, height)
    ));
    // The events.
    let events = &b.applied.events;
    assert!(events.iter().any(|e| matches!(e,
        Event::Slashed { offender, slashed, reward: rw, .. }
            if *offender == p && slashed.0 == expected_slash && rw.0 == reward)));
    assert!(events.iter().any(|e| matches!(e,
        Event::AuditFailed { provider, receipt, forfeited, probation_until, .. }
            if *provider == p && *receipt == receipt_id(&r) && forfeited.0 == 300_000
                && *probation_until == height + params.probation_blocks)));
    assert_supply(w.state());
}

#[test]
fn forfeiture_never_exceeds_charged_what_the_channel_paid_or_what_the_provider_holds() {
    let (v0, v1) = (0, 1);
    // Charged above what the provider holds: it loses everything locked and liquid, and its
    // balance stops at zero.
    let mut w = World::new(Params::default());
    let p = w.provider.public();
    w.redeem(1_000_000);
    let provider = w.provider.clone();
    let liquid = w.state().balance(&p);
    let payer = w.payer.public();
    let b = w.produce(
        &provider,
        TxBody::Transfer {
            to: payer,
            amount: Amount(liquid.0 - FEE - 5_000),
        },
    );
    assert_eq!(outcome(&b, 0), "success");
    // Now 5_000 liquid and 990_000 locked; the receipt claims 10x what the channel paid.
    assert_eq!(w.state().balance(&p), Amount(5_000));
    let payer_before = w.state().balance(&payer);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    let r = w.receipt(10_000_000);
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[v0], &v[v1]])),
        "success"
    );
    // Capped by what the channel ever paid (1_000_000), not what the receipt claims; the
    // provider held 995_000, so that is all it loses.
    assert_eq!(w.state().balance(&payer).0 - payer_before.0, 995_000);
    assert_eq!(w.state().balance(&p), Amount::ZERO);
    assert!(w.state().locked_of(&p).is_empty());
    assert_supply(w.state());
    // A second failed receipt finds nothing left: nothing moves, nothing goes negative.
    let r2 = w.receipt(500);
    let payer_before = w.state().balance(&payer);
    assert_eq!(
        w.report(&reporter, failed_audit(&r2, &[&v[v0], &v[v1]])),
        "success"
    );
    assert_eq!(w.state().balance(&payer), payer_before);
    assert_eq!(w.state().balance(&p), Amount::ZERO);
    assert_supply(w.state());

    // A receipt naming a channel that is not this provider's with this payer: no forfeiture
    // (the job was not paid on this ledger), but the slash stands.
    let mut w = World::new(Params::default());
    let p = w.provider.public();
    w.redeem(1_000_000);
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    let mut receipt = w.receipt(400_000).receipt;
    receipt.channel = Hash([42; 32]);
    let r = receipt.sign(&w.provider);
    let locked = w.state().locked_total(&p);
    let stake = w.state().total_stake(&p);
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    assert_eq!(w.state().locked_total(&p), locked);
    assert!(w.state().total_stake(&p) < stake);
    // Nor when the receipt names the provider as its own payer (it would only unlock early).
    let mut receipt = w.receipt(400_000).receipt;
    receipt.payer = p;
    let r = receipt.sign(&w.provider);
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    assert_eq!(w.state().locked_total(&p), locked);
    // Another payer named on this provider's channel is not that channel's payer.
    let mut receipt = w.receipt(400_000).receipt;
    receipt.payer = w.stranger.public();
    let r = receipt.sign(&w.provider);
    let stranger_before = w.state().balance(&w.stranger.public());
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    assert_eq!(w.state().balance(&w.stranger.public()), stranger_before);
    assert_eq!(w.state().locked_total(&p), locked);
    assert_supply(w.state());
}

#[test]
fn locked_earnings_cannot_be_spent_or_staked_but_can_be_forfeited_and_unlock_at_the_stated_height()
{
    let params = Params {
        earnings_lock_blocks: 64,
        ..Params::default()
    };
    let mut w = World::new(params);
    let p = w.provider.public();
    let provider = w.provider.clone();
    // Spend the provider's liquid balance down to a few fees.
    let spare = w.state().balance(&p).0 - 10 * FEE;
    let stranger = w.stranger.public();
    w.produce(
        &provider,
        TxBody::Transfer {
            to: stranger,
            amount: Amount(spare),
        },
    );
    let b = w.redeem(1_000_000);
    let redeem_height = w.state().height();
    let unlock = agora_ledger::earnings::unlock_height(redeem_height, 64);
    // 64 / 32: two-block buckets.
    assert!((redeem_height + 64..redeem_height + 66).contains(&unlock));
    assert!(b.applied.events.iter().any(|e| matches!(e,
        Event::EarningsLocked { provider: who, amount, unlock_height }
            if *who == p && amount.0 == 990_000 && *unlock_height == unlock)));
    assert_eq!(w.state().locked_of(&p), &[(unlock, Amount(990_000))]);
    let liquid = w.state().balance(&p);
    assert!(liquid.0 < 10 * FEE);
    // Locked money cannot be transferred, bonded, or put into a channel.
    let b = w.produce(
        &provider,
        TxBody::Transfer {
            to: stranger,
            amount: Amount(100_000),
        },
    );
    assert!(outcome(&b, 0).contains("balance"), "{}", outcome(&b, 0));
    let b = w.produce(
        &provider,
        TxBody::Bond {
            target: p,
            amount: Amount(100_000),
        },
    );
    assert!(outcome(&b, 0).contains("balance"), "{}", outcome(&b, 0));
    let b = w.produce(
        &provider,
        TxBody::OpenChannel {
            provider: p,
            deposit: Amount(100_000),
            expiry_height: 1_000_000,
        },
    );
    assert!(outcome(&b, 0).contains("balance"), "{}", outcome(&b, 0));
    // Nor pay a fee: with the liquid balance spent, the provider's transaction is not includable.
    let rest = w.state().balance(&p).0 - FEE;
    w.produce(
        &provider,
        TxBody::Transfer {
            to: stranger,
            amount: Amount(rest),
        },
    );
    assert_eq!(w.state().balance(&p), Amount::ZERO);
    let stx = w.f.sign(&provider, TxBody::Withdraw);
    let b = w.chain.produce(vec![stx]);
    assert_eq!(b.rejected.len(), 1, "a fee paid from locked earnings");
    w.f.rollback(&p);
    assert_supply(w.state());
    // Still locked in the block before the unlock height; joins the balance at its end.
    while w.state().height() < unlock - 1 {
        w.chain.produce(vec![]);
    }
    assert_eq!(w.state().locked_total(&p), Amount(990_000));
    assert_eq!(w.state().balance(&p), Amount::ZERO);
    let b = w.chain.produce(vec![]);
    assert_eq!(w.state().height(), unlock);
    assert!(w.state().locked_of(&p).is_empty());
    assert_eq!(w.state().balance(&p), Amount(990_000));
    assert!(b.applied.events.iter().any(|e| matches!(e,
        Event::EarningsUnlocked { provider: who, amount } if *who == p && amount.0 == 990_000)));
    assert_supply(w.state());
    // Now it is spendable.
    let b = w.produce(
        &provider,
        TxBody::Transfer {
            to: stranger,
            amount: Amount(100_000),
        },
    );
    assert_eq!(outcome(&b, 0), "success");
}

#[test]
fn a_provider_earning_every_block_keeps_a_short_queue_and_each_amount_stays_locked_long_enough() {
    let lock = 320;
    let bucket = lock / 32;
    let mut w = World::new(Params {
        earnings_lock_blocks: lock,
        ..Params::default()
    });
    let p = w.provider.public();
    let start = w.state().balance(&p).0;
    let mut paid: Vec<(u64, u128)> = vec![];
    for i in 0..400u128 {
        w.redeem(1_000 + i);
        paid.push((w.state().height(), (1_000 + i) - (1_000 + i) / 100));
        let queue = w.state().locked_of(&p);
        assert!(queue.len() <= 33, "{} entries", queue.len());
        assert!(queue.windows(2).all(|x| x[0].0 < x[1].0));
    }
    let now = w.state().height();
    let unlocked = w.state().balance(&p).0 + 400 * FEE - start;
    let locked = w.state().locked_total(&p).0;
    let total: u128 = paid.iter().map(|(_, a)| a).sum();
    assert_eq!(locked + unlocked, total, "no earning lost or made up");
    // Nothing unlocked before `lock` blocks, everything by `lock + bucket`.
    let must_be_locked: u128 = paid
        .iter()
        .filter(|(h, _)| h + lock > now)
        .map(|(_, a)| a)
        .sum();
    let must_be_free: u128 = paid
        .iter()
        .filter(|(h, _)| h + lock + bucket <= now)
        .map(|(_, a)| a)
        .sum();
    assert!(locked >= must_be_locked, "{locked} < {must_be_locked}");
    assert!(unlocked >= must_be_free, "{unlocked} < {must_be_free}");
    assert!(unlocked > 0 && locked > 0);
    assert!(w.state().locked_of(&p).iter().all(|(u, _)| *u > now));
    assert_supply(w.state());
}

#[test]
fn commitments_are_recorded_per_committer_once_and_bounded() {
    let mut w = World::new(Params::default());
    let (payer, stranger) = (w.payer.clone(), w.stranger.clone());
    let ids: Vec<Hash> = (0..3).map(|_| receipt_id(&w.receipt(10))).collect();
    let root = receipts_root(&ids);
    let b = w.produce(&payer, TxBody::CommitReceipts { root, count: 3 });
    assert_eq!(outcome(&b, 0), "success");
    let height = w.state().height();
    let c = w
        .state()
        .commitment(&payer.public(), &root)
        .copied()
        .expect("recorded");
    assert_eq!((c.height, c.count), (height, 3));
    assert!(b.applied.events.iter().any(|e| matches!(e,
        Event::ReceiptsCommitted { committer, root: r, count: 3, height: h }
            if *committer == payer.public() && *r == root && *h == height)));
    // The beacon is the id of the block that included it: not known before that block.
    let beacon_now = beacon(b.block.id(), root);
    assert_ne!(beacon_now, beacon(b.block.header.parent, root));
    // A second commitment of the same root by the same gateway (a second draw) is refused.
    let b = w.produce(&payer, TxBody::CommitReceipts { root, count: 3 });
    assert!(
        outcome(&b, 0).contains("already committed"),
        "{}",
        outcome(&b, 0)
    );
    assert_eq!(
        w.state().commitment(&payer.public(), &root).unwrap().height,
        height
    );
    // A stranger copying the root gets its own record and takes nothing from the gateway's.
    let b = w.produce(&stranger, TxBody::CommitReceipts { root, count: 3 });
    assert_eq!(outcome(&b, 0), "success");
    assert_eq!(
        w.state().commitment(&payer.public(), &root).unwrap().height,
        height
    );
    // Counts outside 1..=65,536 and the zero root are refused.
    for (root, count, expected) in [
        (Hash([1; 32]), 0, "1 to 65536 receipts"),
        (Hash([1; 32]), 65_537, "1 to 65536 receipts"),
        (Hash::ZERO, 1, "zero root"),
    ] {
        let b = w.produce(&payer, TxBody::CommitReceipts { root, count });
        assert!(outcome(&b, 0).contains(expected), "{}", outcome(&b, 0));
        assert_eq!(
            b.applied.receipts[0].outcome,
            Outcome::Failed {
                code: 900,
                message: outcome(&b, 0),
            }
        );
    }
    let b = w.produce(
        &payer,
        TxBody::CommitReceipts {
            root: Hash([1; 32]),
            count: 65_536,
        },
    );
    assert_eq!(outcome(&b, 0), "success");
    assert_supply(w.state());
}

#[test]
fn new_records_survive_a_round_trip_through_storage() {
    let mut w = World::new(Params {
        earnings_lock_blocks: 40,
        ..Params::default()
    });
    w.redeem(123_456);
    let (payer, reporter, v) = (w.payer.clone(), w.reporter.clone(), w.validators.clone());
    w.produce(
        &payer,
        TxBody::CommitReceipts {
            root: Hash([5; 32]),
            count: 9,
        },
    );
    let r = w.receipt(1_000);
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    w.redeem(1_000);
    let records = w
        .state()
        .all_records()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap()));
    let back = State::from_records(records).expect("decodes");
    assert_eq!(back.root(), w.state().root());
    let p = w.provider.public();
    assert_eq!(back.locked_of(&p), w.state().locked_of(&p));
    assert_eq!(back.probation_until(&p), w.state().probation_until(&p));
    // The rebuilt unlock index releases the same entries.
    let mut chain = Chain {
        state: back.clone(),
        proposer: w.chain.proposer,
        time_ms: w.chain.time_ms,
    };
    let lock = w.state().params().earnings_lock_blocks;
    for _ in 0..lock + 5 {
        chain.produce(vec![]);
        w.chain.produce(vec![]);
        assert_eq!(chain.state.root(), w.chain.state.root());
    }
    assert!(chain.state.locked_of(&p).is_empty());
}
