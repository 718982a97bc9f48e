//! An in-memory [`Host`]: a [`Mempool`] plus the list of finalized blocks and state roots.
//!
//! Used by the simulation tests and the in-process benchmark; the node implements [`Host`] over
//! its redb store instead.

use crate::app::{CommitError, EpochStart, Host};
use crate::gossip::Verdict;
use crate::mempool::{AdmitError, Mempool, MempoolLimits};
use agora_ledger::{Applied, Event, State, TxError};
use agora_types::{Address, Amount, Block, Hash, SignedTx};
use futures::channel::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

/// One finalized block as the host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub height: u64,
    pub id: Hash,
    pub state_root: Hash,
    pub txs: Vec<Hash>,
    pub timestamp_ms: u64,
    /// The validator that proposed the block.
    pub proposer: Address,
    /// `(offender, amount)` of every slash the block carried out.
    pub slashed: Vec<(Address, Amount)>,
}

/// Called with every newly committed block (instrumentation: the benchmark timestamps here).
pub type CommitHook = Arc<dyn Fn(&Block) + Send + Sync>;

struct Inner {
    hook: Option<CommitHook>,
    gossip: Option<mpsc::UnboundedSender<SignedTx>>,
    mempool: Mempool,
    finalized: Vec<Finalized>,
    state: Arc<State>,
    epoch: Option<EpochStart>,
}

#[derive(Clone)]
pub struct MemHost {
    inner: Arc<Mutex<Inner>>,
}

impl MemHost {
    pub fn new(genesis: State, limits: MempoolLimits) -> MemHost {
        MemHost {
            inner: Arc::new(Mutex::new(Inner {
                hook: None,
                gossip: None,
                mempool: Mempool::new(limits),
                finalized: Vec::new(),
                state: Arc::new(genesis),
                epoch: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a hook called after each newly committed block.
    pub fn set_commit_hook(&self, hook: CommitHook) {
        self.lock().hook = Some(hook);
    }

    /// Sends every transaction [`MemHost::submit`] admits to `outbox` (the validator's gossip
    /// task), replacing any earlier outbox (a restarted validator installs a new one).
    pub fn set_gossip(&self, outbox: mpsc::UnboundedSender<SignedTx>) {
        self.lock().gossip = Some(outbox);
    }

    /// Admits a transaction against the last finalized state (a client submission: gossiped
    /// on to the other validators when admitted).
    pub fn submit(&self, stx: SignedTx) -> Result<Hash, AdmitError> {
        let mut inner = self.lock();
        let state = inner.state.clone();
        let id = inner.mempool.admit(&state, stx.clone())?;
        if let Some(outbox) = &inner.gossip {
            let _ = outbox.unbounded_send(stx);
        }
        Ok(id)
    }

    /// Admits client submissions arriving together, their signatures checked in one batch
    /// verification (about a quarter of the cost of checking them one by one here); each
    /// admitted transaction is gossiped like [`MemHost::submit`]'s.
    pub fn submit_batch(&self, txs: Vec<SignedTx>) -> Vec<Result<Hash, AdmitError>> {
        let bad = crate::gossip::bad_signatures(&txs);
        let mut inner = self.lock();
        let state = inner.state.clone();
        txs.into_iter()
            .enumerate()
            .map(|(i, stx)| {
                if bad.contains(&i) {
                    return Err(AdmitError::Invalid(TxError::BadSignature));
                }
                let id = inner.mempool.admit_signature_checked(&state, stx.clone())?;
                if let Some(outbox) = &inner.gossip {
                    let _ = outbox.unbounded_send(stx);
                }
                Ok(id)
            })
            .collect()
    }

    /// Admits a transaction that arrived by gossip, its signature already checked in the
    /// gossip batch (not sent on again).
    pub fn admit_gossiped(&self, stx: SignedTx) -> Verdict {
        let mut inner = self.lock();
        let state = inner.state.clone();
        match inner.mempool.admit_signature_checked(&state, stx) {
            Ok(_) => Verdict::Accepted,
            Err(AdmitError::Invalid(
                TxError::BadSignature | TxError::WrongChain { .. } | TxError::TooLarge { .. },
            )) => Verdict::Offending,
            Err(_) => Verdict::Ignored,
        }
    }

    pub fn pending(&self) -> usize {
        self.lock().mempool.len()
    }

    /// Every finalized block so far, in height order.
    pub fn finalized(&self) -> Vec<Finalized> {
        self.lock().finalized.clone()
    }

    pub fn height(&self) -> u64 {
        self.lock().state.height()
    }

    /// The last finalized state.
    pub fn state(&self) -> Arc<State> {
        self.lock().state.clone()
    }
}

impl Host for MemHost {
    fn candidates(&self, state: &State, max: usize) -> Vec<SignedTx> {
        self.lock().mempool.candidates(state, max)
    }

    fn has_pending(&self) -> bool {
        !self.lock().mempool.is_empty()
    }

    fn signatures_checked(&self, txs: &[SignedTx]) -> Vec<bool> {
        let inner = self.lock();
        txs.iter()
            .map(|stx| inner.mempool.contains(&stx.id()))
            .collect()
    }

    fn discard(&self, rejected: &[(SignedTx, TxError)]) {
        let mut inner = self.lock();
        for (stx, _) in rejected {
            inner.mempool.remove(stx);
        }
    }

    fn commit(&self, block: &Block, state: &State, applied: &Applied) -> Result<(), CommitError> {
        let mut inner = self.lock();
        if block.header.height <= inner.state.height() {
            return Ok(());
        }
        inner.finalized.push(Finalized {
            height: block.header.height,
            id: block.id(),
            state_root: state.root(),
            txs: block.txs.iter().map(SignedTx::id).collect(),
            timestamp_ms: block.header.timestamp_ms,
            proposer: block.header.proposer,
            slashed: applied
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Slashed {
                        offender, slashed, ..
                    } => Some((*offender, *slashed)),
                    _ => None,
                })
                .collect(),
        });
        inner.mempool.prune(state);
        inner.state = Arc::new(state.clone());
        let hook = inner.hook.clone();
        drop(inner);
        if let Some(hook) = hook {
            hook(block);
        }
        Ok(())
    }

    fn save_epoch(&self, epoch: &EpochStart) -> Result<(), CommitError> {
        self.lock().epoch = Some(epoch.clone());
        Ok(())
    }

    fn current_epoch(&self) -> Option<EpochStart> {
        self.lock().epoch.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_ledger::Params;
    use agora_testkit::{TxFactory, test_genesis, test_keys};
    use agora_types::{Amount, TxBody};

    #[test]
    fn batch_submission_rejects_exactly_the_forged_signatures() {
        let keys = test_keys(3);
        let genesis = test_genesis(&keys, Amount::from_agr(100), Params::default())
            .into_state()
            .unwrap();
        let host = MemHost::new(genesis.clone(), MempoolLimits::default());
        let mut txs = TxFactory::new(genesis.chain_id(), genesis.params().min_fee);
        let mut batch: Vec<SignedTx> = keys
            .iter()
            .map(|k| {
                txs.sign(
                    k,
                    TxBody::Transfer {
                        to: k.public(),
                        amount: Amount::from_agr(1),
                    },
                )
            })
            .collect();
        batch[1].signature = batch[0].signature;
        let results = host.submit_batch(batch);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1], Err(AdmitError::Invalid(TxError::BadSignature)));
        assert_eq!(host.pending(), 2);
    }
}
