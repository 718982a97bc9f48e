//! Consensus equivocation evidence (`Evidence::ConflictingVotes`): what slashes, what does not.
//!
//! Votes are signed here the way commonware simplex signs them (raw ed25519 over
//! [`vote_message`]); `agora-consensus` has the test that real simplex votes verify too.

use agora_ledger::error::SlashError;
use agora_ledger::slashing::{check_evidence, consensus_namespace, vote_message};
use agora_ledger::{Params, State};
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::{
    Amount, ConsensusVote, Decode, Encode, Evidence, Hash, Outcome, SecretKey, Signature, TxBody,
    VoteKind,
};

fn validator() -> SecretKey {
    // The genesis validator of `test_genesis`.
    SecretKey::from_test_seed("validator-0")
}

fn sign_vote(
    key: &SecretKey,
    chain_id: &str,
    epoch: u64,
    view: u64,
    kind: VoteKind,
    parent_view: u64,
    payload: Hash,
) -> ConsensusVote {
    let mut vote = ConsensusVote {
        kind,
        parent_view,
        payload,
        signature: Signature([0; 64]),
    };
    let msg = vote_message(&consensus_namespace(chain_id), epoch, view, &vote);
    let signing = ed25519_zebra::SigningKey::from(key.to_bytes());
    vote.signature = Signature(signing.sign(&msg).to_bytes());
    vote
}

fn notarize(key: &SecretKey, view: u64, payload: u8) -> ConsensusVote {
    sign_vote(
        key,
        TEST_CHAIN,
        0,
        view,
        VoteKind::Notarize,
        view - 1,
        Hash([payload; 32]),
    )
}

fn evidence(offender: &SecretKey, view: u64, a: ConsensusVote, b: ConsensusVote) -> Evidence {
    Evidence::ConflictingVotes {
        offender: offender.public(),
        epoch: 0,
        view,
        vote_a: a,
        vote_b: b,
    }
}

fn setup() -> (Chain, TxFactory, SecretKey) {
    let keys = test_keys(1);
    let chain = Chain::new(&test_genesis(
        &keys,
        Amount::from_agr(1_000),
        Params::default(),
    ));
    let f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    (chain, f, keys[0].clone())
}

fn outcome(chain: &mut Chain, f: &mut TxFactory, reporter: &SecretKey, e: Evidence) -> String {
    let built = chain.produce(vec![f.sign(reporter, TxBody::Slash(e))]);
    assert!(built.rejected.is_empty(), "slash tx not included");
    match &built.applied.receipts[0].outcome {
        Outcome::Success => "success".into(),
        Outcome::Failed { message, .. } => message.clone(),
    }
}

fn stake(state: &State) -> Amount {
    state.total_stake(&validator().public())
}

#[test]
fn conflicting_notarizes_slash_and_jail_once_per_round() {
    let (mut chain, mut f, reporter) = setup();
    let v = validator();
    let before = stake(&chain.state);
    let e = evidence(&v, 5, notarize(&v, 5, 1), notarize(&v, 5, 2));
    assert_eq!(outcome(&mut chain, &mut f, &reporter, e.clone()), "success");
    let fraction = chain.state.params().slash_fraction_bps;
    assert_eq!(
        stake(&chain.state),
        before.saturating_sub(before.mul_bps(fraction))
    );
    let jailed = chain.state.validator(&v.public()).unwrap().jailed_until;
    assert!(jailed > chain.state.height(), "offender not jailed");
    let after_first = stake(&chain.state);

    // The same evidence, the same votes swapped, and another conflicting pair of the same
    // round: all the same offence.
    let Evidence::ConflictingVotes { vote_a, vote_b, .. } = e.clone() else {
        unreachable!()
    };
    for again in [
        e,
        evidence(&v, 5, vote_b, vote_a),
        evidence(&v, 5, notarize(&v, 5, 3), notarize(&v, 5, 4)),
    ] {
        assert!(outcome(&mut chain, &mut f, &reporter, again).contains("already slashed"));
        assert_eq!(stake(&chain.state), after_first);
    }

    // Another round is another offence.
    let e = evidence(&v, 6, notarize(&v, 6, 1), notarize(&v, 6, 2));
    assert_eq!(outcome(&mut chain, &mut f, &reporter, e), "success");
    assert!(stake(&chain.state) < after_first);
    assert_eq!(
        chain.state.circulating_total(),
        chain.state.supply().expected_total()
    );
}

#[test]
fn nullify_and_finalize_in_one_round_or_two_finalizes_slash() {
    let (mut chain, mut f, reporter) = setup();
    let v = validator();
    let nullify = sign_vote(&v, TEST_CHAIN, 0, 9, VoteKind::Nullify, 0, Hash::ZERO);
    let fin = |p| sign_vote(&v, TEST_CHAIN, 0, 9, VoteKind::Finalize, 8, Hash([p; 32]));
    let e = evidence(&v, 9, fin(1), nullify);
    assert_eq!(outcome(&mut chain, &mut f, &reporter, e), "success");
    let fin = |p| sign_vote(&v, TEST_CHAIN, 0, 10, VoteKind::Finalize, 9, Hash([p; 32]));
    let e = evidence(&v, 10, fin(1), fin(2));
    assert_eq!(outcome(&mut chain, &mut f, &reporter, e), "success");
}

#[test]
fn forged_misattributed_and_non_conflicting_evidence_is_rejected() {
    let (mut chain, mut f, reporter) = setup();
    let v = validator();
    let other = SecretKey::from_test_seed("someone-else");
    let before = stake(&chain.state);

    let mut forged = notarize(&v, 5, 2);
    forged.signature.0[10] ^= 1;
    let null = |key: &SecretKey, view| {
        sign_vote(key, TEST_CHAIN, 0, view, VoteKind::Nullify, 0, Hash::ZERO)
    };
    let fin = |view, p| {
        sign_vote(
            &v,
            TEST_CHAIN,
            0,
            view,
            VoteKind::Finalize,
            view - 1,
            Hash([p; 32]),
        )
    };
    let mut odd_nullify = null(&v, 5);
    odd_nullify.payload = Hash([1; 32]);
    let cases: Vec<(&str, Evidence, SlashError)> = vec![
        (
            "forged signature",
            evidence(&v, 5, notarize(&v, 5, 1), forged),
            SlashError::BadSignature,
        ),
        (
            "signed by another key",
            evidence(&v, 5, notarize(&v, 5, 1), notarize(&other, 5, 2)),
            SlashError::BadSignature,
        ),
        (
            "votes of another round than claimed",
            evidence(&v, 6, notarize(&v, 5, 1), notarize(&v, 5, 2)),
            SlashError::BadSignature,
        ),
        (
            "signed for another chain",
            evidence(
                &v,
                5,
                notarize(&v, 5, 1),
                sign_vote(
                    &v,
                    "other-chain",
                    0,
                    5,
                    VoteKind::Notarize,
                    4,
                    Hash([2; 32]),
                ),
            ),
            SlashError::BadSignature,
        ),
        (
            "a notarize relabelled as a finalize",
            evidence(&v, 5, fin(5, 1), {
                let mut n = notarize(&v, 5, 2);
                n.kind = VoteKind::Finalize;
                n
            }),
            SlashError::BadSignature,
        ),
        (
            "the same vote twice",
            evidence(&v, 5, notarize(&v, 5, 1), notarize(&v, 5, 1)),
            SlashError::NoConflict,
        ),
        (
            "notarize then nullify (an honest timeout)",
            evidence(&v, 5, notarize(&v, 5, 1), null(&v, 5)),
            SlashError::NoConflict,
        ),
        (
            "notarize and finalize of different proposals",
            evidence(&v, 5, notarize(&v, 5, 1), fin(5, 2)),
            SlashError::NoConflict,
        ),
        (
            "nullify with a payload",
            evidence(&v, 5, fin(5, 1), odd_nullify),
            SlashError::NoConflict,
        ),
        (
            "offender is not a validator",
            evidence(&other, 5, notarize(&other, 5, 1), notarize(&other, 5, 2)),
            SlashError::NotAValidator,
        ),
    ];
    for (what, e, expected) in cases {
        assert_eq!(
            check_evidence(&chain.state, &e),
            Err(expected.clone()),
            "{what}"
        );
        let message = outcome(&mut chain, &mut f, &reporter, e);
        assert_eq!(message, format!("slash: {expected}"), "{what}");
        assert_eq!(stake(&chain.state), before, "{what} slashed");
    }
    // None of the rejected attempts used up the round: real evidence for it still slashes.
    let e = evidence(&v, 5, notarize(&v, 5, 1), notarize(&v, 5, 2));
    assert_eq!(outcome(&mut chain, &mut f, &reporter, e), "success");
}

/// Every single-byte change of an encoded valid evidence either fails to decode (no panic) or
/// decodes to evidence the ledger rejects: nothing but the two real signatures slashes.
#[test]
fn every_one_byte_mutation_of_valid_evidence_is_rejected() {
    let (chain, _, _) = setup();
    let v = validator();
    let e = evidence(&v, 5, notarize(&v, 5, 1), notarize(&v, 5, 2));
    assert_eq!(check_evidence(&chain.state, &e), Ok(()));
    let bytes = e.encode();
    let mut decoded = 0;
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut m = bytes.clone();
            m[i] ^= flip;
            if let Ok(mutated) = Evidence::decode(&m) {
                decoded += 1;
                assert_ne!(mutated, e);
                assert!(
                    check_evidence(&chain.state, &mutated).is_err(),
                    "byte {i} ^ {flip:#x} still slashes"
                );
            }
        }
    }
    assert!(decoded > bytes.len(), "mutations barely decoded: {decoded}");
    // Truncated or extended input never decodes.
    assert!(Evidence::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Evidence::decode(&longer).is_err());
}
