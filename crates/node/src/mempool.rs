//! Pending transactions, ordered per account by nonce, with size limits.
//!
//! Admission checks everything that can be checked against the current state (size, chain id,
//! fee, signature, nonce not in the past, enough balance for the fee); a transaction whose nonce
//! is ahead of the account's waits for the gap to fill, up to a per-account limit.

use agora_ledger::{State, TxError, check_tx_static};
use agora_types::{Address, Hash, SignedTx};
use std::collections::{BTreeMap, BTreeSet};

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
    #[error("the mempool is full ({0} transactions); try again shortly")]
    Full(usize),
}

pub struct Mempool {
    by_sender: BTreeMap<(Address, u64), SignedTx>,
    ids: BTreeSet<Hash>,
    max_txs: usize,
    max_per_account: u64,
}

impl Mempool {
    pub fn new(max_txs: usize, max_per_account: u64) -> Self {
        Mempool {
            by_sender: BTreeMap::new(),
            ids: BTreeSet::new(),
            max_txs,
            max_per_account,
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

    pub fn admit(&mut self, state: &State, stx: SignedTx) -> Result<Hash, AdmitError> {
        check_tx_static(state, &stx)?;
        let id = stx.id();
        if self.ids.contains(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        let acct = state.account(&stx.tx.signer);
        let nonce = stx.tx.nonce;
        if nonce < acct.nonce {
            return Err(AdmitError::NonceUsed {
                next: acct.nonce,
                got: nonce,
            });
        }
        if nonce >= acct.nonce + self.max_per_account {
            return Err(AdmitError::NonceGap {
                next: acct.nonce,
                got: nonce,
            });
        }
        if self.by_sender.contains_key(&(stx.tx.signer, nonce)) {
            return Err(AdmitError::NonceUsed {
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
        if self.by_sender.len() >= self.max_txs {
            return Err(AdmitError::Full(self.max_txs));
        }
        stx.verify_signature().map_err(|_| TxError::BadSignature)?;
        self.ids.insert(id);
        self.by_sender.insert((stx.tx.signer, nonce), stx);
        Ok(id)
    }

    /// Up to `max` transactions in an order that can apply: each account's in nonce order,
    /// stopping at a gap.
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
            if *nonce == next {
                out.push(stx.clone());
                expected = Some((*sender, next + 1));
            } else {
                expected = Some((*sender, u64::MAX));
            }
        }
        out
    }

    /// Drops everything the new state has made stale (included or now-invalid nonces).
    pub fn prune(&mut self, state: &State) {
        let stale: Vec<(Address, u64)> = self
            .by_sender
            .keys()
            .filter(|(a, n)| *n < state.account(a).nonce)
            .copied()
            .collect();
        for k in stale {
            if let Some(stx) = self.by_sender.remove(&k) {
                self.ids.remove(&stx.id());
            }
        }
    }

    /// Removes one transaction (e.g. rejected by the block builder).
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
