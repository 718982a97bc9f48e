//! The application side of block production: what a proposer and every replica do with blocks.
//!
//! `propose` builds a block from the mempool on top of the committed state; `verify` checks a
//! proposed block by applying it to a scratch copy; `finalize` persists and applies a finalized
//! block. Today one in-process producer calls `propose` then `finalize`; the BFT engine drives
//! the same three calls.

use crate::mempool::{AdmitError, Mempool};
use crate::store::{Store, StoreError};
use agora_ledger::{Applied, BlockContext, BlockError, Built, State};
use agora_types::{Address, Block, Hash, SignedTx};

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

pub struct Chain {
    store: Store,
    state: State,
    mempool: Mempool,
    /// The last block this node proposed, with the state it leads to, so finalizing our own
    /// proposal does not apply it twice.
    proposed: Option<(Hash, Built)>,
    max_block_txs: usize,
}

impl Chain {
    pub fn new(store: Store, state: State, mempool: Mempool, max_block_txs: usize) -> Chain {
        Chain {
            store,
            state,
            mempool,
            proposed: None,
            max_block_txs,
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

    pub fn submit(&mut self, stx: SignedTx) -> Result<Hash, AdmitError> {
        self.mempool.admit(&self.state, stx)
    }

    pub fn propose(&mut self, timestamp_ms: u64, proposer: Address) -> Block {
        let candidates = self.mempool.candidates(&self.state, self.max_block_txs);
        let built = agora_ledger::build_block(
            &self.state,
            &BlockContext {
                timestamp_ms,
                proposer,
            },
            candidates,
        );
        for (stx, error) in &built.rejected {
            tracing::debug!(target: "agora::chain", tx = %stx.id(), %error, "dropped from mempool");
            self.mempool.remove(stx);
        }
        let block = built.block.clone();
        self.proposed = Some((block.id(), built));
        block
    }

    pub fn verify(&self, block: &Block) -> Result<(), BlockError> {
        agora_ledger::apply_block(&self.state, block).map(|_| ())
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
    ) -> Result<(), FinalizeError> {
        if block.header.height <= self.state.height() {
            return Ok(());
        }
        self.store.commit_block(block, applied)?;
        self.state = state.clone();
        self.mempool.prune(&self.state);
        Ok(())
    }

    pub fn finalize(&mut self, block: &Block) -> Result<Applied, FinalizeError> {
        let (next, applied) = match self.proposed.take() {
            Some((id, built)) if id == block.id() => (built.state, built.applied),
            _ => agora_ledger::apply_block(&self.state, block)?,
        };
        self.store.commit_block(block, &applied)?;
        self.state = next;
        self.mempool.prune(&self.state);
        Ok(applied)
    }
}
