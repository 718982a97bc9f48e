//! Pending transactions for the proposer: per-account nonce order, size limits, eviction.
//!
//! Keyed by `(signer, nonce)` in a `BTreeMap`, so iteration order is deterministic. Unlike a
//! mempool that only ever builds on the committed state, this one is asked for candidates on top
//! of *speculative* states (a notarized but not yet finalized parent): transactions whose nonce
//! that state has already consumed are skipped, not treated as a gap, and they stay pending until
//! the block that includes them is finalized ([`Mempool::prune`]), so a nullified fork loses
//! nothing.
//!
//! When full, a transaction with a higher fee evicts the lowest-fee transaction that is the last
//! pending nonce of its account (evicting from the tail never opens a nonce gap).

use agora_ledger::{State, TxError, check_tx_static};
use agora_types::{Address, Amount, Hash, SignedTx};
use std::collections::{BTreeMap, BTreeSet};

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction {0} is already pending")]
    Duplicate(Hash),
    #[error("nonce {got} was already used; the account's next nonce is {next}")]
    NonceUsed { next: u64, got: u64 },
    #[error("nonce {got} is too far ahead of the account's next nonce {next}")]
    NonceGap { next: u64, got: u64 },
    #[error("the mempool is full ({0} transactions) and the fee does not beat the cheapest")]
    Full(usize),
}

/// Limits for a [`Mempool`].
#[derive(Debug, Clone, Copy)]
pub struct MempoolLimits {
    pub max_txs: usize,
    pub max_per_account: u64,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 200_000,
            max_per_account: 1_024,
        }
    }
}

pub struct Mempool {
    by_sender: BTreeMap<(Address, u64), SignedTx>,
    ids: BTreeSet<Hash>,
    limits: MempoolLimits,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            by_sender: BTreeMap::new(),
            ids: BTreeSet::new(),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.by_sender.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty()
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id)
    }

    /// Admits a transaction checked against `state` (normally the last finalized state).
    pub fn admit(&mut self, state: &State, stx: SignedTx) -> Result<Hash, AdmitError> {
        self.admit_inner(state, stx, true)
    }

    /// [`Mempool::admit`] for a transaction whose signature the caller has just checked (a
    /// gossip batch is verified in one batch before its transactions are admitted).
    pub fn admit_signature_checked(
        &mut self,
        state: &State,
        stx: SignedTx,
    ) -> Result<Hash, AdmitError> {
        self.admit_inner(state, stx, false)
    }

    fn admit_inner(
        &mut self,
        state: &State,
        stx: SignedTx,
        check_signature: bool,
    ) -> Result<Hash, AdmitError> {
        check_tx_static(state, &stx)?;
        let id = stx.id();
        if self.ids.contains(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        let acct = state.account(&stx.tx.signer);
        let nonce = stx.tx.nonce;
        if nonce < acct.nonce || self.by_sender.contains_key(&(stx.tx.signer, nonce)) {
            return Err(AdmitError::NonceUsed {
                next: acct.nonce,
                got: nonce,
            });
        }
        if nonce >= acct.nonce.saturating_add(self.limits.max_per_account) {
            return Err(AdmitError::NonceGap {
                next: acct.nonce,
                got: nonce,
            });
        }
        if acct.balance < stx.tx.fee {
            return Err(TxError::CannotPayFee {
                balance: acct.balance,
                fee: stx.tx.fee,
            }
            .into());
        }
        if check_signature {
            stx.verify_signature().map_err(|_| TxError::BadSignature)?;
        }
        if self.by_sender.len() >= self.limits.max_txs && !self.evict_for(stx.tx.fee) {
            return Err(AdmitError::Full(self.limits.max_txs));
        }
        self.ids.insert(id);
        self.by_sender.insert((stx.tx.signer, nonce), stx);
        Ok(id)
    }

    /// Evicts the cheapest account-tail transaction if it pays less than `fee`.
    fn evict_for(&mut self, fee: Amount) -> bool {
        let mut cheapest: Option<((Address, u64), Amount)> = None;
        let mut iter = self.by_sender.iter().peekable();
        while let Some((key, stx)) = iter.next() {
            let is_tail = iter.peek().is_none_or(|(next, _)| next.0 != key.0);
            if is_tail && cheapest.is_none_or(|(_, f)| stx.tx.fee < f) {
                cheapest = Some((*key, stx.tx.fee));
            }
        }
        match cheapest {
            Some((key, f)) if f < fee => {
                if let Some(stx) = self.by_sender.remove(&key) {
                    self.ids.remove(&stx.id());
                }
                true
            }
            _ => false,
        }
    }

    /// Up to `max` transactions that can apply in order on top of `state`: each account's
    /// next nonces, skipping those `state` already consumed, stopping at a gap.
    pub fn candidates(&self, state: &State, max: usize) -> Vec<SignedTx> {
        let mut out = Vec::new();
        let mut expected: Option<(Address, u64)> = None;
        for ((sender, nonce), stx) in &self.by_sender {
            if out.len() >= max {
                break;
            }
            let next = match expected {
                Some((a, n)) if a == *sender => n,
                _ => state.account(sender).nonce,
            };
            if *nonce < next {
                expected = Some((*sender, next));
            } else if *nonce == next {
                out.push(stx.clone());
                expected = Some((*sender, next + 1));
            } else {
                expected = Some((*sender, u64::MAX));
            }
        }
        out
    }

    /// Drops everything the finalized `state` made stale; returns how many.
    pub fn prune(&mut self, state: &State) -> usize {
        let mut stale = Vec::new();
        let mut current: Option<(Address, u64)> = None;
        for (a, n) in self.by_sender.keys() {
            let next = match current {
                Some((c, next)) if c == *a => next,
                _ => state.account(a).nonce,
            };
            current = Some((*a, next));
            if *n < next {
                stale.push((*a, *n));
            }
        }
        for k in &stale {
            if let Some(stx) = self.by_sender.remove(k) {
                self.ids.remove(&stx.id());
            }
        }
        stale.len()
    }

    /// Removes one transaction (e.g. one the block builder found can never apply).
    pub fn remove(&mut self, stx: &SignedTx) {
        if self
            .by_sender
            .remove(&(stx.tx.signer, stx.tx.nonce))
            .is_some()
        {
            self.ids.remove(&stx.id());
        }
    }
}
