//! Audits on the ledger: receipt commitments, the audit beacon, who audits what, probation, and
//! the checks on failed-audit evidence.
//!
//! ```text
//!  gateway: receipts_root(ids) ──► CommitReceipts{root, count} ──► included in block B (height h)
//!  beacon = beacon(id(B), root)          id(B) commits to B's state root, timestamp, proposer
//!                                        and every tx in it: unknown until B exists
//!  each receipt id in the batch:
//!    selected(beacon, id, audit_bps, on_probation(provider))   (3%, or always on probation)
//!    auditors(beacon, id, active validators - provider, 3)     (first audit + 2 re-audits)
//!  2+ failing verdicts ──► Slash(FailedAudit) ──► slash, forfeit the job's payment, probation
//! ```
//!
//! Why the beacon is the id of the block that included the commitment: the provider signed its
//! receipt before the gateway committed it, and the committer sends its commitment before the
//! block exists, so neither can know the draw when it acts; the id is over the whole header
//! (state root, timestamp, proposer, tx root). What it does not stop: a block's proposer can try
//! several blocks (transaction order, timestamp) to steer the draw for a commitment it includes;
//! a VRF or threshold beacon from consensus would close that.
//!
//! The ledger keeps only the id of the last block; auditors read the id of the block at a
//! commitment's height ([`Commitment::height`]) from a node, as they read the batch itself from
//! the gateway.

use crate::epochs;
use crate::error::{CommitError, SlashError};
use crate::events::Event;
use crate::state::{Commitment, State};
use agora_types::audit::{SignedVerdict, receipt_id};
use agora_types::receipt::SignedReceipt;
use agora_types::tx::limits::{MAX_AUDIT_VERDICTS, MAX_COMMITTED_RECEIPTS};
use agora_types::{Address, Hash, HashDomain};
use std::collections::BTreeSet;

/// Failing verdicts from distinct active validators a failed audit needs: the first audit and
/// one of the two re-audits (verification.md §6.1, L3: "2 of 3").
pub const MIN_FAILING_VERDICTS: usize = 2;

/// The audit beacon of a batch of receipts: drawn from the id of the block that included the
/// commitment and the committed root.
pub fn beacon(block_id_at_commit_height: Hash, root: Hash) -> Hash {
    Hash::of_parts(
        HashDomain::AuditBeacon,
        &[b"beacon", &block_id_at_commit_height.0, &root.0],
    )
}

/// Whether the receipt `receipt_id` is audited: always while its provider is on probation,
/// otherwise with probability `audit_bps / 10,000`, from the first 8 bytes of
/// `H(beacon, receipt_id)` read as a little-endian integer `x`: selected iff
/// `x * 10,000 < audit_bps * 2^64` (exact up to 2^-64).
pub fn selected(beacon: Hash, receipt_id: Hash, audit_bps: u16, on_probation: bool) -> bool {
    if on_probation {
        return true;
    }
    let h = Hash::of_parts(
        HashDomain::AuditBeacon,
        &[b"select", &beacon.0, &receipt_id.0],
    );
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    let x = u128::from(u64::from_le_bytes(first));
    x * 10_000 < u128::from(audit_bps.min(10_000)) << 64
}

/// The auditors of `receipt_id`, in order: the first audits, the next two re-audit. Each
/// validator gets the score `H(beacon, receipt_id, address)` and the `n` lowest scores win
/// (rendezvous hashing), so the pick is distinct, deterministic, independent of the order of
/// `validators` (duplicates count once), and changes for every receipt. Callers pass the active
/// validator set without the receipt's provider (a provider never audits itself; the ledger
/// refuses its verdicts anyway). Returns fewer than `n` when there are fewer validators.
pub fn auditors(beacon: Hash, receipt_id: Hash, validators: &[Address], n: usize) -> Vec<Address> {
    let mut scored: Vec<(Hash, Address)> = validators
        .iter()
        .map(|v| {
            let score = Hash::of_parts(
                HashDomain::AuditBeacon,
                &[b"auditor", &beacon.0, &receipt_id.0, &v.0],
            );
            (score, *v)
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(n).map(|(_, v)| v).collect()
}

/// The root a gateway commits for a batch of receipt ids: the ids sorted ascending with
/// duplicates dropped, hashed as `H(count as u32 LE, id_1 || id_2 || ... )`. Sorted, so the same
/// set gives the same root whatever order the gateway saw the receipts in; `count` in the
/// commitment is the number of distinct ids. (A flat hash, not a Merkle tree: an auditor needs
/// the whole batch anyway to draw every receipt in it.)
pub fn receipts_root(ids: &[Hash]) -> Hash {
    let mut sorted = ids.to_vec();
    sorted.sort();
    sorted.dedup();
    let count = u32::try_from(sorted.len()).unwrap_or(u32::MAX);
    let mut concat = Vec::with_capacity(sorted.len() * 32);
    for id in &sorted {
        concat.extend_from_slice(&id.0);
    }
    Hash::of_parts(
        HashDomain::ReceiptCommitment,
        &[&count.to_le_bytes(), &concat],
    )
}

/// Whether `provider` is on probation at `height` (every one of its receipts is audited).
pub fn on_probation(state: &State, provider: &Address, height: u64) -> bool {
    state
        .probation_until(provider)
        .is_some_and(|until| until > height)
}

/// `CommitReceipts`: records (committer, root) -> (height, count). Keyed by the committer too,
/// so nobody can take a gateway's root first (say, from the mempool) and block or own its
/// commitment; auditors use the commitment of the receipt's payer. A second commitment of the
/// same root by the same account is refused: it would give the same batch a second beacon to
/// choose from.
pub(crate) fn commit_receipts(
    state: &mut State,
    height: u64,
    committer: &Address,
    root: Hash,
    count: u32,
) -> Result<Vec<Event>, CommitError> {
    if count == 0 || count > MAX_COMMITTED_RECEIPTS {
        return Err(CommitError::BadCount {
            count,
            max: MAX_COMMITTED_RECEIPTS,
        });
    }
    if root == Hash::ZERO {
        return Err(CommitError::ZeroRoot);
    }
    if let Some(c) = state.commitment(committer, &root) {
        return Err(CommitError::AlreadyCommitted { height: c.height });
    }
    state.insert_commitment(*committer, root, Commitment { height, count });
    Ok(vec![Event::ReceiptsCommitted {
        committer: *committer,
        root,
        count,
        height,
    }])
}

/// The checks on `Evidence::FailedAudit`, in order, each with its own error: the receipt is for
/// this chain, its provider (the offender) is a registered provider, the receipt was not slashed
/// before, its signature is the provider's; then between [`MIN_FAILING_VERDICTS`] and
/// `MAX_AUDIT_VERDICTS` verdicts, each for this chain, about this receipt, saying it failed, not
/// by the offender, by an auditor no earlier verdict names, who is in the active validator set
/// (`epochs::active_set` of the current state: registered, not jailed, enough stake, in the
/// top `max_validators`), and signed by that auditor.
///
/// Every verdict must be a failing one: evidence is a proof of fault, and a reporter holding a
/// passing verdict simply leaves it out; there is nothing for the ledger to weigh.
pub fn check_failed_audit(
    state: &State,
    id: &Hash,
    receipt: &SignedReceipt,
    verdicts: &[SignedVerdict],
) -> Result<(), SlashError> {
    let r = &receipt.receipt;
    if r.chain_id != state.chain_id() {
        return Err(SlashError::ReceiptWrongChain(r.chain_id.clone()));
    }
    if state.provider(&r.provider).is_none() {
        return Err(SlashError::NotAProvider);
    }
    if state.evidence_used(id) {
        return Err(SlashError::AlreadySlashed);
    }
    if !(MIN_FAILING_VERDICTS..=MAX_AUDIT_VERDICTS).contains(&verdicts.len()) {
        return Err(SlashError::VerdictCount {
            count: verdicts.len(),
            min: MIN_FAILING_VERDICTS,
            max: MAX_AUDIT_VERDICTS,
        });
    }
    if !receipt.verify() {
        return Err(SlashError::BadReceiptSignature);
    }
    let rid = receipt_id(receipt);
    let active: BTreeSet<Address> = epochs::active_set(state)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let mut seen = BTreeSet::new();
    for (index, sv) in verdicts.iter().enumerate() {
        let v = &sv.verdict;
        if v.chain_id != state.chain_id() {
            return Err(SlashError::VerdictWrongChain {
                index,
                chain: v.chain_id.clone(),
            });
        }
        if v.receipt != rid {
            return Err(SlashError::VerdictWrongReceipt { index });
        }
        if !v.failed {
            return Err(SlashError::VerdictNotFailed { index });
        }
        if sv.auditor == r.provider {
            return Err(SlashError::VerdictFromOffender { index });
        }
        if !seen.insert(sv.auditor) {
            return Err(SlashError::DuplicateAuditor { index });
        }
        if !active.contains(&sv.auditor) {
            return Err(SlashError::VerdictNotFromValidator { index });
        }
        sv.verify()
            .map_err(|_| SlashError::BadVerdictSignature { index })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> Hash {
        Hash::of(HashDomain::Request, &i.to_le_bytes())
    }

    #[test]
    fn selected_hits_about_audit_bps_and_always_on_probation() {
        let b = beacon(Hash([1; 32]), Hash([2; 32]));
        const N: u64 = 100_000;
        for bps in [0u16, 1, 300, 5_000, 9_999, 10_000, u16::MAX] {
            let hits = (0..N).filter(|i| selected(b, id(*i), bps, false)).count() as f64;
            let p = f64::from(bps.min(10_000)) / 10_000.0;
            let expected = p * N as f64;
            // Five standard deviations of a binomial, plus one for the edges.
            let bound = 5.0 * (N as f64 * p * (1.0 - p)).sqrt() + 1.0;
            assert!(
                (hits - expected).abs() <= bound,
                "bps {bps}: {hits} hits, expected {expected} +- {bound}"
            );
            assert!((0..1_000).all(|i| selected(b, id(i), bps, true)));
        }
        // At 3%: between 2.9% and 3.1% of 100,000 ids (5 sigma is 270).
        let hits = (0..N).filter(|i| selected(b, id(*i), 300, false)).count();
        assert!((2_900..=3_100).contains(&hits), "{hits}");
        // Another beacon draws another sample of about the same size.
        let b2 = beacon(Hash([1; 32]), Hash([3; 32]));
        let both = (0..N)
            .filter(|i| selected(b, id(*i), 300, false) && selected(b2, id(*i), 300, false))
            .count();
        assert!(both < 200, "{both}: the two draws are not independent");
    }

    #[test]
    fn auditors_are_distinct_deterministic_and_order_independent() {
        let validators: Vec<Address> = (0..10u8)
            .map(|i| Address::derived(&i.to_string()))
            .collect();
        let b = beacon(Hash([4; 32]), Hash([5; 32]));
        let mut counts = std::collections::BTreeMap::<Address, usize>::new();
        for i in 0..2_000 {
            let picked = auditors(b, id(i), &validators, 3);
            assert_eq!(picked.len(), 3);
            let distinct: BTreeSet<_> = picked.iter().collect();
            assert_eq!(distinct.len(), 3, "{picked:?}");
            assert!(picked.iter().all(|p| validators.contains(p)));
            let mut shuffled = validators.clone();
            shuffled.reverse();
            shuffled.rotate_left((i % 10) as usize);
            shuffled.push(validators[(i % 10) as usize]);
            assert_eq!(auditors(b, id(i), &shuffled, 3), picked);
            assert_eq!(auditors(b, id(i), &validators, 3), picked);
            *counts.entry(picked[0]).or_default() += 1;
        }
        // Every validator is first auditor for about a tenth of the receipts.
        assert_eq!(counts.len(), 10);
        assert!(
            counts.values().all(|c| (120..=280).contains(c)),
            "{counts:?}"
        );
        // Fewer validators than asked: all of them, once each.
        assert_eq!(auditors(b, id(1), &validators[..2], 3).len(), 2);
        assert!(auditors(b, id(1), &[], 3).is_empty());
        // The first pick does not depend on how many are asked for.
        assert_eq!(
            auditors(b, id(7), &validators, 1),
            auditors(b, id(7), &validators, 3)[..1]
        );
    }

    #[test]
    fn receipts_root_is_over_the_sorted_distinct_ids_and_their_count() {
        let ids: Vec<Hash> = (0..5).map(id).collect();
        let mut reordered = ids.clone();
        reordered.reverse();
        reordered.push(ids[2]);
        assert_eq!(receipts_root(&ids), receipts_root(&reordered));
        assert_ne!(receipts_root(&ids), receipts_root(&ids[..4]));
        assert_ne!(receipts_root(&[]), receipts_root(&ids[..1]));
        assert_ne!(receipts_root(&ids), Hash::ZERO);
        // The beacon changes with either input.
        let r = receipts_root(&ids);
        assert_ne!(beacon(Hash([1; 32]), r), beacon(Hash([2; 32]), r));
        assert_ne!(
            beacon(Hash([1; 32]), r),
            beacon(Hash([1; 32]), receipts_root(&ids[..3]))
        );
    }
}
