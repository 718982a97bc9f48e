//! Equivocation evidence: simplex's conflicting-vote activity turned into ledger slashing.
//!
//! ```text
//!  simplex batcher ── ConflictingNotarize / ConflictingFinalize / NullifyFinalize ──►
//!     EvidenceReporter ── agora_types::Evidence::ConflictingVotes ──► LedgerApp (pending)
//!  next time this validator leads: check_evidence on the parent state, then a Slash
//!     transaction signed by this validator (the reporter) is appended to its block
//!  the ledger re-checks both signatures on every replica and slashes + jails (once per round)
//! ```
//!
//! Simplex reports a conflict when a peer's second vote in a round contradicts its first; the
//! second vote's signature may not have been verified yet, so pending evidence is checked with
//! [`agora_ledger::slashing::check_evidence`] before it goes into a block.

use crate::app::{Host, LedgerApp, ValidatorKey};
use crate::block::Digest;
use agora_types::{ConsensusVote, Evidence, Hash, PublicKey, Signature, VoteKind};
use commonware_actor::Feedback;
use commonware_codec::types::lazy::Lazy;
use commonware_codec::{Encode, Read};
use commonware_consensus::Reporter;
use commonware_consensus::simplex::scheme::ed25519;
use commonware_consensus::simplex::types::{Activity, Finalize, Notarize, Nullify};
use commonware_utils::ordered::Set;

type Scheme = ed25519::Scheme;

/// The evidence a conflicting-vote activity proves, or `None` for any other activity (or a
/// signer index outside `participants`).
pub fn from_activity(
    activity: &Activity<Scheme, Digest>,
    participants: &Set<ValidatorKey>,
) -> Option<Evidence> {
    // The activity types keep their two votes private; their encoding is the two votes.
    let (a, b) = match activity {
        Activity::ConflictingNotarize(c) => {
            let mut buf = c.encode();
            let a = Notarize::<Scheme, Digest>::read_cfg(&mut buf, &()).ok()?;
            let b = Notarize::<Scheme, Digest>::read_cfg(&mut buf, &()).ok()?;
            (notarize(&a)?, notarize(&b)?)
        }
        Activity::ConflictingFinalize(c) => {
            let mut buf = c.encode();
            let a = Finalize::<Scheme, Digest>::read_cfg(&mut buf, &()).ok()?;
            let b = Finalize::<Scheme, Digest>::read_cfg(&mut buf, &()).ok()?;
            (finalize(&a)?, finalize(&b)?)
        }
        Activity::NullifyFinalize(c) => {
            let mut buf = c.encode();
            let a = Nullify::<Scheme>::read_cfg(&mut buf, &()).ok()?;
            let b = Finalize::<Scheme, Digest>::read_cfg(&mut buf, &()).ok()?;
            (nullify(&a)?, finalize(&b)?)
        }
        _ => return None,
    };
    let (signer_a, round, vote_a) = a;
    let (signer_b, _, vote_b) = b;
    if signer_a != signer_b {
        return None;
    }
    let key = participants.get(signer_a as usize)?;
    let mut offender = [0u8; 32];
    offender.copy_from_slice(key.as_ref());
    Some(Evidence::ConflictingVotes {
        offender: PublicKey(offender),
        epoch: round.0,
        view: round.1,
        vote_a,
        vote_b,
    })
}

type Parts = (u32, (u64, u64), ConsensusVote);

fn signature(s: &Lazy<commonware_cryptography::ed25519::Signature>) -> Option<Signature> {
    let bytes: &[u8] = s.get()?.as_ref();
    Some(Signature(bytes.try_into().ok()?))
}

fn proposal_vote(
    kind: VoteKind,
    proposal: &commonware_consensus::simplex::types::Proposal<Digest>,
    signer: u32,
    sig: Signature,
) -> Option<Parts> {
    let mut payload = [0u8; 32];
    payload.copy_from_slice(proposal.payload.as_ref());
    Some((
        signer,
        (proposal.round.epoch().get(), proposal.round.view().get()),
        ConsensusVote {
            kind,
            parent_view: proposal.parent.get(),
            payload: Hash(payload),
            signature: sig,
        },
    ))
}

fn notarize(n: &Notarize<Scheme, Digest>) -> Option<Parts> {
    let sig = signature(&n.attestation.signature)?;
    proposal_vote(
        VoteKind::Notarize,
        &n.proposal,
        n.attestation.signer.get(),
        sig,
    )
}

fn finalize(f: &Finalize<Scheme, Digest>) -> Option<Parts> {
    let sig = signature(&f.attestation.signature)?;
    proposal_vote(
        VoteKind::Finalize,
        &f.proposal,
        f.attestation.signer.get(),
        sig,
    )
}

fn nullify(n: &Nullify<Scheme>) -> Option<Parts> {
    Some((
        n.attestation.signer.get(),
        (n.round.epoch().get(), n.round.view().get()),
        ConsensusVote {
            kind: VoteKind::Nullify,
            parent_view: 0,
            payload: Hash::ZERO,
            signature: signature(&n.attestation.signature)?,
        },
    ))
}

/// A simplex reporter that hands conflicting-vote evidence to the [`LedgerApp`] (which puts it
/// in a block when this validator leads). Every other activity is ignored; pair it with the
/// marshal reporter through `commonware_consensus::Reporters`.
#[derive(Clone)]
pub struct EvidenceReporter<H: Host> {
    app: LedgerApp<H>,
    participants: Set<ValidatorKey>,
}

impl<H: Host> EvidenceReporter<H> {
    pub fn new(app: LedgerApp<H>, participants: Set<ValidatorKey>) -> EvidenceReporter<H> {
        EvidenceReporter { app, participants }
    }
}

impl<H: Host> Reporter for EvidenceReporter<H> {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Some(evidence) = from_activity(&activity, &self.participants) {
            tracing::warn!(target: "agora::consensus", offender = %evidence.offender(),
                "validator signed conflicting votes; evidence queued for slashing");
            self.app.note_evidence(evidence);
        }
        Feedback::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::signer_of;
    use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
    use agora_ledger::slashing::{check_evidence, consensus_namespace};
    use agora_ledger::{Genesis, Params, State};
    use agora_types::{Amount, SecretKey};
    use commonware_consensus::simplex::types::{
        ConflictingFinalize, ConflictingNotarize, NullifyFinalize, Proposal,
    };
    use commonware_consensus::types::{Epoch, Round, View};
    use commonware_cryptography::{Hasher as _, Sha256, Signer as _};

    fn keys() -> Vec<SecretKey> {
        (0..4)
            .map(|i| SecretKey::from_test_seed(&format!("validator-{i}")))
            .collect()
    }

    fn state(keys: &[SecretKey]) -> State {
        Genesis {
            chain_id: "agora-evidence".into(),
            timestamp_ms: 0,
            params: Params::default(),
            accounts: vec![GenesisAccount {
                address: keys[0].public(),
                balance: Amount::from_agr(1),
            }],
            validators: keys
                .iter()
                .map(|k| GenesisValidator {
                    address: k.public(),
                    stake: Amount::from_agr(10_000),
                })
                .collect(),
        }
        .into_state()
        .unwrap()
    }

    fn digest(label: &[u8]) -> Digest {
        Sha256::hash(&[label])
    }

    /// Votes signed by simplex itself convert to evidence the ledger accepts (the ledger's
    /// rebuilt message bytes match commonware's), attributed to the right validator.
    #[test]
    fn real_simplex_conflicts_become_evidence_the_ledger_accepts() {
        let keys = keys();
        let state = state(&keys);
        let namespace = consensus_namespace(state.chain_id());
        let participants = Set::from_iter_dedup(keys.iter().map(|k| signer_of(k).public_key()));
        let offender = &keys[2];
        let scheme =
            ed25519::Scheme::signer(&namespace, participants.clone(), signer_of(offender)).unwrap();
        let round = Round::new(Epoch::new(3), View::new(700));
        let proposal = |p: &[u8]| Proposal::new(round, View::new(698), digest(p));
        let n = |p| Notarize::<Scheme, Digest>::sign(&scheme, proposal(p)).unwrap();
        let f = |p| Finalize::<Scheme, Digest>::sign(&scheme, proposal(p)).unwrap();
        let null = Nullify::<Scheme>::sign::<Digest>(&scheme, round).unwrap();
        let activities = [
            Activity::ConflictingNotarize(ConflictingNotarize::new(n(b"a"), n(b"b"))),
            Activity::ConflictingFinalize(ConflictingFinalize::new(f(b"a"), f(b"b"))),
            Activity::NullifyFinalize(NullifyFinalize::new(null, f(b"a"))),
        ];
        for activity in &activities {
            let evidence = from_activity(activity, &participants).expect("evidence");
            assert_eq!(evidence.offender(), offender.public());
            let Evidence::ConflictingVotes { epoch, view, .. } = &evidence else {
                panic!("wrong kind")
            };
            assert_eq!((*epoch, *view), (3, 700));
            assert_eq!(check_evidence(&state, &evidence), Ok(()));
        }
        // Signed under another namespace (another chain): converts, but does not verify.
        let foreign =
            ed25519::Scheme::signer(b"elsewhere", participants.clone(), signer_of(offender))
                .unwrap();
        let n = |p| Notarize::<Scheme, Digest>::sign(&foreign, proposal(p)).unwrap();
        let activity = Activity::ConflictingNotarize(ConflictingNotarize::new(n(b"a"), n(b"b")));
        let evidence = from_activity(&activity, &participants).unwrap();
        assert!(check_evidence(&state, &evidence).is_err());
        // Ordinary activity is no evidence.
        let activity =
            Activity::Notarize(Notarize::<Scheme, Digest>::sign(&scheme, proposal(b"a")).unwrap());
        assert!(from_activity(&activity, &participants).is_none());
    }
}
