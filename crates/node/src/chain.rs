//! The node's chain: the committed (finalized) state, the mempool and the store.
//!
//! Consensus (`validator.rs`) asks the mempool for candidates on top of its speculative states,
//! and hands finalized blocks to [`Chain::commit_finalized`], which persists them and prunes the
//! mempool. The mempool is the consensus crate's (per-account nonce order, size limits,
//! fee-based eviction of account tails).

use crate::store::{Store, StoreError};
use agora_consensus::mempool::{AdmitError, Mempool};
use agora_ledger::{Applied, State};
use agora_types::{Block, Hash, SignedTx};

pub struct Chain {
    store: Store,
    state: State,
    mempool: Mempool,
}

impl Chain {
    pub fn new(store: Store, state: State, mempool: Mempool) -> Chain {
        Chain {
            store,
            state,
            mempool,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Admits a transaction from a client (its signature is checked here).
    pub fn submit(&mut self, stx: SignedTx) -> Result<Hash, AdmitError> {
        self.mempool.admit(&self.state, stx)
    }

    /// Admits a transaction whose signature the caller already checked in a batch (gossip).
    pub fn submit_signature_checked(&mut self, stx: SignedTx) -> Result<Hash, AdmitError> {
        self.mempool.admit_signature_checked(&self.state, stx)
    }

    /// Removes a transaction the block builder found can never apply.
    pub fn discard(&mut self, stx: &SignedTx) {
        self.mempool.remove(stx);
    }

    /// Persists a block finalized by consensus, which already applied it (`state` is the state
    /// after it). A height at or below the stored tip is a redelivery and is skipped.
    pub fn commit_finalized(
        &mut self,
        block: &Block,
        state: &State,
        applied: &Applied,
    ) -> Result<(), StoreError> {
        if block.header.height <= self.state.height() {
            return Ok(());
        }
        self.store.commit_block(block, applied)?;
        self.state = state.clone();
        self.mempool.prune(&self.state);
        Ok(())
    }
}
