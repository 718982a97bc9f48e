//! The application side of simplex: propose, verify and finalize ledger blocks.
//!
//! ```text
//!   simplex ──► marshal::Inline ──► LedgerApp::propose(parent ancestry)   build from the mempool
//!                                  LedgerApp::verify(block, parent, ..)  apply to a scratch state
//!   marshal (finalized, in height order, at least once)
//!          ──► LedgerApp::report(Update::Block) ──► Host::commit ──► ack
//! ```
//!
//! Speculative states live in a map `digest -> state after that block` for every block this
//! validator built or verified above the finalized tip; a parent it has not seen (after a restart,
//! or a fork it missed) is rebuilt by replaying the ancestry marshal streams back to a known
//! state. Anything at or below the finalized height that is not the finalized block is a
//! conflicting fork and fails verification. Finalization prunes the map.
//!
//! Determinism: verdicts depend only on the block, its ancestry and the ledger; the proposer's
//! timestamp comes from the runtime clock of the proposer (the deterministic clock in tests).

use crate::block::{ChainBlock, Digest, digest_of};
use agora_ledger::slashing::check_report;
use agora_ledger::{Applied, BlockContext, State, TxError};
use agora_types::{Address, Block, Evidence, Hash, SecretKey, SignedTx, Tx, TxBody};
use commonware_actor::Feedback;
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::scheme::ed25519;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::{Application, Heightable, Reporter};
use commonware_cryptography::{Digested, Digestible};
use commonware_runtime::Clock;
use commonware_utils::Acknowledgement;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

/// The consensus public key (ed25519, the same bytes as an Agora address).
pub type ValidatorKey = commonware_cryptography::ed25519::PublicKey;

/// The consensus context simplex hands the application.
pub type ConsensusContext = Context<Digest, ValidatorKey>;

/// Persisting a finalized block failed; consensus stops delivering until it succeeds.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("storage: {0}")]
    Storage(String),
}

/// What the application needs from the node that hosts it: pending transactions and durable
/// storage of finalized blocks. The node implements this over its store and mempool; tests use
/// [`crate::MemHost`].
pub trait Host: Clone + Send + Sync + 'static {
    /// Up to `max` pending transactions that can apply in order on top of `state`.
    fn candidates(&self, state: &State, max: usize) -> Vec<SignedTx>;
    /// Whether any transaction is pending.
    fn has_pending(&self) -> bool;
    /// Transactions the block builder found can never apply (bad signature, fee, ...).
    fn discard(&self, rejected: &[(SignedTx, TxError)]);
    /// For each transaction, whether this validator already checked its signature (it sits in
    /// the mempool, which checks signatures at admission); those are not checked again when a
    /// block is built or verified. Only `true` for a transaction with the same id (which
    /// commits to the signature).
    fn signatures_checked(&self, txs: &[SignedTx]) -> Vec<bool> {
        vec![false; txs.len()]
    }
    /// Persists a finalized block and the state it leads to. Called in height order; a height
    /// may be delivered again after a restart and must then be a no-op.
    fn commit(&self, block: &Block, state: &State, applied: &Applied) -> Result<(), CommitError>;
    /// Persists the epoch this validator entered last; a restarted validator reads it back
    /// with [`Host::current_epoch`] (its latest state is past the boundary that fixed the
    /// committee, so the committee cannot be recomputed from it).
    fn save_epoch(&self, epoch: &EpochStart) -> Result<(), CommitError>;
    /// The epoch last saved with [`Host::save_epoch`].
    fn current_epoch(&self) -> Option<EpochStart>;
}

/// An epoch the running validator enters: its number, its committee (sorted the way simplex
/// orders participants) and the digest of the block it builds on (the last block of the
/// previous epoch, or the genesis anchor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u64,
    pub members: Vec<ValidatorKey>,
    pub floor: Digest,
}

impl EpochStart {
    /// `epoch (u64 LE) || floor digest (32) || member keys (32 each)`, for a host to persist.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.epoch.to_le_bytes().to_vec();
        bytes.extend_from_slice(self.floor.as_ref());
        for key in &self.members {
            bytes.extend_from_slice(key.as_ref());
        }
        bytes
    }

    /// The inverse of [`EpochStart::to_bytes`]; `None` for a damaged record.
    pub fn from_bytes(bytes: &[u8]) -> Option<EpochStart> {
        use commonware_codec::DecodeExt as _;
        let (epoch, rest) = bytes.split_at_checked(8)?;
        let (floor, keys) = rest.split_at_checked(32)?;
        if keys.is_empty() || keys.len() % 32 != 0 {
            return None;
        }
        let members = keys
            .chunks_exact(32)
            .map(|k| ValidatorKey::decode(bytes::Bytes::copy_from_slice(k)).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(EpochStart {
            epoch: u64::from_le_bytes(epoch.try_into().ok()?),
            floor: Digest::decode(bytes::Bytes::copy_from_slice(floor)).ok()?,
            members,
        })
    }
}

/// Called with the next epoch when the last block of an epoch is finalized, before the block
/// is acknowledged (the engine installs the new committee's scheme and switches engines).
pub type EpochListener = Arc<dyn Fn(EpochStart) + Send + Sync>;

/// The committee of the epoch after `state` (the last block of an epoch): its active set, or
/// `previous` unchanged when no validator qualifies (an empty committee would halt the chain;
/// every replica falls back the same way).
pub fn next_committee(state: &State, previous: &[ValidatorKey]) -> Vec<ValidatorKey> {
    match crate::validators::committee_keys(state) {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(target: "agora::consensus", %error, height = state.height(),
                "no valid committee at the epoch boundary; the current one continues");
            previous.to_vec()
        }
    }
}

/// Proposer pacing.
#[derive(Debug, Clone, Copy)]
pub struct AppConfig {
    /// Most transactions in one block.
    pub max_block_txs: usize,
    /// With an empty mempool the proposer waits this long for work, then proposes an empty
    /// block (so finality keeps a heartbeat without spamming empty blocks).
    pub idle_block_interval: Duration,
    /// How often the waiting proposer looks at the mempool.
    pub poll_interval: Duration,
    /// A proposal stamped more than this ahead of the verifier's clock gets no vote (so a
    /// proposer cannot push block time into the future; see [`timestamp_acceptable`]).
    pub max_future_drift: Duration,
}

/// Whether a proposal's timestamp is acceptable to a verifier whose clock reads `now_ms`: not
/// more than `max_future_drift` ahead. (The ledger separately requires timestamps never to go
/// backwards.) This is a voting rule, not a validity rule: finalized blocks are applied whatever
/// the local clock says, so replay and catch-up stay deterministic.
pub fn timestamp_acceptable(timestamp_ms: u64, now_ms: u64, max_future_drift: Duration) -> bool {
    let drift = u64::try_from(max_future_drift.as_millis()).unwrap_or(u64::MAX);
    timestamp_ms <= now_ms.saturating_add(drift)
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            max_block_txs: 10_000,
            idle_block_interval: Duration::from_millis(1_000),
            poll_interval: Duration::from_millis(5),
            max_future_drift: Duration::from_secs(5),
        }
    }
}

struct Speculative {
    state: Arc<State>,
    applied: Arc<Applied>,
}

struct Forks {
    finalized: Arc<State>,
    above: BTreeMap<Digest, Speculative>,
}

impl Forks {
    fn finalized_digest(&self) -> Digest {
        digest_of(&self.finalized.last_block())
    }

    fn lookup(&self, digest: &Digest) -> Option<Arc<State>> {
        if *digest == self.finalized_digest() {
            return Some(self.finalized.clone());
        }
        self.above.get(digest).map(|s| s.state.clone())
    }
}

/// The validator set of each epoch, as this validator learned it from finalized boundaries.
pub type Schedule = BTreeMap<u64, Vec<ValidatorKey>>;

/// Epochs kept in [`LedgerApp::schedule`] (older ones are dropped: only the current one is
/// needed to run, and the host persists that).
pub const SCHEDULE_EPOCHS_KEPT: usize = 64;

/// Most equivocation evidence kept waiting for a block (more is dropped: one round's proof per
/// offender is enough to slash it).
pub const MAX_PENDING_EVIDENCE: usize = 1_024;
/// Most `Slash` transactions one proposal carries.
pub const MAX_SLASHES_PER_BLOCK: usize = 16;

/// Equivocation evidence this validator observed ([`crate::evidence`]) and has not seen
/// finalized yet, keyed by offence id, and the key its `Slash` transactions are signed with.
#[derive(Default)]
struct EvidenceBook {
    slasher: Option<SecretKey>,
    pending: BTreeMap<Hash, Evidence>,
}

/// The ledger as a simplex application (through marshal) and the reporter of finalized blocks.
#[derive(Clone)]
pub struct LedgerApp<H: Host> {
    host: H,
    config: AppConfig,
    forks: Arc<Mutex<Forks>>,
    schedule: Arc<Mutex<Schedule>>,
    evidence: Arc<Mutex<EvidenceBook>>,
    epoch_listener: Arc<Mutex<Option<EpochListener>>>,
}

impl<H: Host> LedgerApp<H> {
    /// `finalized` is the state after the last block the host committed (genesis state at
    /// first start).
    pub fn new(host: H, finalized: State, config: AppConfig) -> LedgerApp<H> {
        let mut schedule = Schedule::new();
        if finalized.height() == 0
            && let Ok(keys) = crate::validators::committee_keys(&finalized)
        {
            schedule.insert(0, keys);
        }
        LedgerApp {
            host,
            config,
            forks: Arc::new(Mutex::new(Forks {
                finalized: Arc::new(finalized),
                above: BTreeMap::new(),
            })),
            schedule: Arc::new(Mutex::new(schedule)),
            evidence: Arc::default(),
            epoch_listener: Arc::default(),
        }
    }

    fn evidence_book(&self) -> MutexGuard<'_, EvidenceBook> {
        self.evidence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key this validator signs `Slash` transactions with when it proposes (its own
    /// validator key: the reporter's reward goes to it and it pays the fee). Without one,
    /// evidence is collected but never proposed.
    pub fn set_slasher(&self, key: SecretKey) {
        self.evidence_book().slasher = Some(key);
    }

    /// Queues equivocation evidence for this validator's next proposal (ignored when the
    /// same offence is already queued or the queue is full).
    pub fn note_evidence(&self, evidence: Evidence) {
        let mut book = self.evidence_book();
        if book.pending.len() < MAX_PENDING_EVIDENCE {
            book.pending.entry(evidence.id()).or_insert(evidence);
        }
    }

    /// Evidence waiting to be proposed or finalized.
    pub fn pending_evidence(&self) -> Vec<Evidence> {
        self.evidence_book().pending.values().cloned().collect()
    }

    /// `Slash` transactions for the pending evidence that checks out on `state`, to append to
    /// `candidates` (shortened to leave room; the slasher's own candidates keep their nonces
    /// and the slashes take the next ones). Evidence that can never apply is dropped; evidence
    /// already used on `state` stays until finalization prunes it (`state` may be a fork).
    fn slash_txs(&self, state: &State, candidates: &mut Vec<SignedTx>) -> Vec<SignedTx> {
        let mut book = self.evidence_book();
        let Some(key) = book.slasher.clone() else {
            return Vec::new();
        };
        let mut usable = Vec::new();
        let mut dead = Vec::new();
        for (id, evidence) in &book.pending {
            // Evidence against ourselves is for others to report (the ledger refuses a
            // self-report), so it is dropped here rather than paid for in every block.
            match check_report(state, &key.public(), evidence) {
                Ok(()) if usable.len() < MAX_SLASHES_PER_BLOCK => usable.push(evidence.clone()),
                Ok(()) | Err(agora_ledger::error::SlashError::AlreadySlashed) => {}
                Err(error) => {
                    tracing::debug!(target: "agora::consensus", %error, "evidence dropped");
                    dead.push(*id);
                }
            }
        }
        for id in dead {
            book.pending.remove(&id);
        }
        drop(book);
        if usable.is_empty() {
            return Vec::new();
        }
        candidates.truncate(self.config.max_block_txs.saturating_sub(usable.len()));
        let me = key.public();
        let mut nonce = state.account(&me).nonce
            + candidates.iter().filter(|c| c.tx.signer == me).count() as u64;
        usable
            .into_iter()
            .map(|evidence| {
                let tx = Tx {
                    chain_id: state.chain_id().to_string(),
                    signer: me,
                    nonce,
                    fee: state.params().min_fee,
                    body: TxBody::Slash(evidence),
                };
                nonce += 1;
                tx.sign(&key)
            })
            .collect()
    }

    /// The validator set of every epoch this validator entered or whose boundary it finalized
    /// (the last [`SCHEDULE_EPOCHS_KEPT`]): epoch `e + 1` gets
    /// [`agora_ledger::epochs::active_set`] of the state after the last block of epoch `e`.
    pub fn schedule(&self) -> Schedule {
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the set of an epoch the engine enters (at start-up).
    pub fn record_epoch(&self, epoch: u64, members: Vec<ValidatorKey>) {
        let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        schedule.insert(epoch, members);
        while schedule.len() > SCHEDULE_EPOCHS_KEPT {
            schedule.pop_first();
        }
    }

    /// Installs the function told about each next epoch ([`EpochListener`]).
    pub fn on_epoch(&self, listener: EpochListener) {
        *self
            .epoch_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(listener);
    }

    /// When `state` is the last block of an epoch: records and persists the next epoch's set
    /// and tells the listener. `Err` when the set could not be persisted.
    fn note_epoch_boundary(&self, state: &State, digest: Digest) -> Result<(), CommitError> {
        let length = state.params().epoch_length_blocks;
        let height = state.height();
        if !agora_ledger::epochs::ends_epoch(height, length) {
            return Ok(());
        }
        let next_epoch = agora_ledger::epochs::epoch_of(height, length) + 1;
        let previous = self
            .schedule()
            .range(..next_epoch)
            .next_back()
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default();
        let members = next_committee(state, &previous);
        if members != previous {
            tracing::info!(target: "agora::consensus", epoch = next_epoch,
                members = members.len(), "the validator set changes at this epoch boundary");
        }
        let next = EpochStart {
            epoch: next_epoch,
            members,
            floor: digest,
        };
        self.host.save_epoch(&next)?;
        self.record_epoch(next_epoch, next.members.clone());
        let listener = self
            .epoch_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(listener) = listener {
            listener(next);
        }
        Ok(())
    }

    fn forks(&self) -> MutexGuard<'_, Forks> {
        // A panic while holding the lock leaves only caches behind; keep going.
        self.forks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last finalized state.
    pub fn finalized(&self) -> Arc<State> {
        self.forks().finalized.clone()
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    /// The state after `first`, replaying ancestors from the stream back to a known state.
    /// `None` when the ancestry leaves the finalized chain or ends early.
    async fn state_after(
        &self,
        first: Digested<ChainBlock>,
        ancestry: &mut (impl Ancestry<ChainBlock> + 'static),
    ) -> Option<Arc<State>> {
        let mut pending: Vec<Digested<ChainBlock>> = Vec::new();
        let mut cursor = first;
        let base = loop {
            let (known, finalized_height) = {
                let forks = self.forks();
                (forks.lookup(&cursor.digest()), forks.finalized.height())
            };
            if let Some(state) = known {
                break state;
            }
            if cursor.height().get() <= finalized_height {
                tracing::debug!(target: "agora::consensus", height = cursor.height().get(),
                    "ancestry conflicts with the finalized chain");
                return None;
            }
            pending.push(cursor);
            cursor = ancestry.next().await?;
        };
        let mut state = base;
        while let Some(next) = pending.pop() {
            let block = next.inner().block()?;
            let (after, applied) = match agora_ledger::apply_block(&state, block) {
                Ok(ok) => ok,
                Err(error) => {
                    tracing::debug!(target: "agora::consensus", %error, "ancestor does not apply");
                    return None;
                }
            };
            let after = Arc::new(after);
            self.forks().above.insert(
                next.digest(),
                Speculative {
                    state: after.clone(),
                    applied: Arc::new(applied),
                },
            );
            state = after;
        }
        Some(state)
    }

    /// Applies one finalized block; returns whether it may be acknowledged.
    fn finalize(&self, block: &Digested<ChainBlock>) -> bool {
        let Some(ledger_block) = block.inner().block() else {
            return true; // the genesis anchor
        };
        let height = ledger_block.header.height;
        let mut forks = self.forks();
        let finalized_height = forks.finalized.height();
        if height <= finalized_height {
            return true; // redelivered after a restart
        }
        if height != finalized_height + 1 {
            tracing::error!(target: "agora::consensus", height, finalized_height,
                "finalized block out of order");
            return false;
        }
        let (state, applied) = match forks.above.get(&block.digest()) {
            Some(s) => (s.state.clone(), s.applied.clone()),
            None => match agora_ledger::apply_block(&forks.finalized, ledger_block) {
                Ok((s, a)) => (Arc::new(s), Arc::new(a)),
                Err(error) => {
                    // Finalized by a quorum yet invalid here: our ledger diverged. Halt.
                    tracing::error!(target: "agora::consensus", height, %error,
                        "finalized block does not apply; halting delivery");
                    return false;
                }
            },
        };
        if let Err(error) = self.host.commit(ledger_block, &state, &applied) {
            tracing::error!(target: "agora::consensus", height, %error, "commit failed");
            return false;
        }
        self.evidence_book()
            .pending
            .retain(|id, _| !state.evidence_used(id));
        forks.finalized = state.clone();
        forks.above.retain(|_, s| s.state.height() > height);
        drop(forks);
        tracing::debug!(target: "agora::consensus", height, txs = ledger_block.txs.len(),
            "finalized");
        // Not acknowledged until the next set is persisted: a restart then recomputes it
        // from this block's state (see `engine::start`).
        if let Err(error) = self.note_epoch_boundary(&state, block.digest()) {
            tracing::error!(target: "agora::consensus", height, %error,
                "cannot persist the next validator set");
            return false;
        }
        true
    }
}

fn now_ms(clock: &impl Clock) -> u64 {
    clock
        .current()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn address_of(key: &ValidatorKey) -> Address {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key.as_ref());
    agora_types::PublicKey(bytes)
}

impl<E, H> Application<E> for LedgerApp<H>
where
    E: Clock + Send + Sync + 'static,
    H: Host,
{
    type SigningScheme = ed25519::Scheme;
    type Context = ConsensusContext;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (clock, context): (E, ConsensusContext),
        mut ancestry: impl Ancestry<ChainBlock>,
        _input: (),
    ) -> Option<Digested<ChainBlock>> {
        let parent = ancestry.next().await?;
        let state = self.state_after(parent, &mut ancestry).await?;
        // Wait (bounded) for work so an idle chain does not spin out empty blocks. Work means a
        // transaction that applies on top of the parent: the parent's own transactions stay
        // pending until it is finalized, and would otherwise trigger an empty block at once.
        let polls = (self.config.idle_block_interval.as_millis()
            / self.config.poll_interval.as_millis().max(1)) as u64;
        for _ in 0..polls {
            if self.host.has_pending() && !self.host.candidates(&state, 1).is_empty() {
                break;
            }
            clock.sleep(self.config.poll_interval).await;
        }
        let mut candidates = self.host.candidates(&state, self.config.max_block_txs);
        let slashes = self.slash_txs(&state, &mut candidates);
        // The slashes are new here: not vouched for, so the block builder checks them.
        let checked = self.host.signatures_checked(&candidates);
        candidates.extend(slashes);
        let built = agora_ledger::build_block_with(
            &state,
            &BlockContext {
                timestamp_ms: now_ms(&clock),
                proposer: address_of(&context.leader),
            },
            candidates,
            &|i, _| checked.get(i).copied().unwrap_or(false),
        );
        let dead: Vec<(SignedTx, TxError)> = built
            .rejected
            .into_iter()
            .filter(|(_, e)| !matches!(e, TxError::BadNonce { .. }))
            .collect();
        if !dead.is_empty() {
            self.host.discard(&dead);
        }
        let block = ChainBlock::new(built.block);
        let digest = block.digest();
        tracing::debug!(target: "agora::consensus", height = block.height().get(),
            txs = block.block().map_or(0, |b| b.txs.len()), "proposed");
        self.forks().above.insert(
            digest,
            Speculative {
                state: Arc::new(built.state),
                applied: Arc::new(built.applied),
            },
        );
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (clock, context): (E, ConsensusContext),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> bool {
        let Some(candidate) = ancestry.next().await else {
            return false;
        };
        let Some(block) = candidate.inner().block() else {
            return false; // the genesis anchor is never proposed
        };
        if block.header.proposer != address_of(&context.leader) {
            tracing::debug!(target: "agora::consensus", "block proposer is not the leader");
            return false;
        }
        if !timestamp_acceptable(
            block.header.timestamp_ms,
            now_ms(&clock),
            self.config.max_future_drift,
        ) {
            tracing::debug!(target: "agora::consensus", timestamp_ms = block.header.timestamp_ms,
                "proposal stamped too far in the future");
            return false;
        }
        if self.forks().above.contains_key(&candidate.digest()) {
            return true; // built or verified here already
        }
        let Some(parent) = ancestry.next().await else {
            return false;
        };
        let Some(state) = self.state_after(parent, &mut ancestry).await else {
            return false;
        };
        let checked = self.host.signatures_checked(&block.txs);
        match agora_ledger::apply_block_with(&state, block, &|i, _| {
            checked.get(i).copied().unwrap_or(false)
        }) {
            Ok((after, applied)) => {
                self.forks().above.insert(
                    candidate.digest(),
                    Speculative {
                        state: Arc::new(after),
                        applied: Arc::new(applied),
                    },
                );
                true
            }
            Err(error) => {
                tracing::debug!(target: "agora::consensus", %error, "rejected proposal");
                false
            }
        }
    }
}

impl<H: Host> Reporter for LedgerApp<H> {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, activity: Update<ChainBlock>) -> Feedback {
        if let Update::Block(block, ack) = activity
            && self.finalize(&block)
        {
            ack.acknowledge();
        }
        Feedback::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_epoch_reads_back_and_damage_is_refused() {
        use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
        let members: Vec<ValidatorKey> = (0..3)
            .map(|i| PrivateKey::from_seed(i).public_key())
            .collect();
        let epoch = EpochStart {
            epoch: 7,
            members,
            floor: ChainBlock::genesis().digest(),
        };
        let bytes = epoch.to_bytes();
        assert_eq!(EpochStart::from_bytes(&bytes), Some(epoch));
        assert_eq!(EpochStart::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(EpochStart::from_bytes(&bytes[..40]), None, "no members");
        assert_eq!(EpochStart::from_bytes(&[]), None);
    }

    #[test]
    fn future_timestamps_beyond_the_drift_get_no_vote() {
        let drift = Duration::from_secs(5);
        assert!(timestamp_acceptable(1_000, 1_000, drift));
        assert!(
            timestamp_acceptable(0, 1_000, drift),
            "past is the ledger's business"
        );
        assert!(timestamp_acceptable(6_000, 1_000, drift));
        assert!(!timestamp_acceptable(6_001, 1_000, drift));
        assert!(timestamp_acceptable(u64::MAX, u64::MAX - 1, drift));
        assert!(!timestamp_acceptable(u64::MAX, 0, Duration::ZERO));
    }
}
