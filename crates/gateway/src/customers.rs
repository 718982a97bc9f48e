//! API keys and what each customer has spent.
//!
//! A key maps to a ledger account (the customer's identity, and where their prepaid credit came
//! from) and a credit line in base units. A transfer from that account to the gateway's account,
//! once final, adds its amount to the credit (`deposit_block`, fed by the gateway's watcher). Keys are stored only as sha256 digests. Every completion
//! charges its customer exactly what its providers were paid (see `relay`). The book is written
//! to disk (write-then-rename) at most once a second and on shutdown; a crash loses at most the
//! last second of metering, never a key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use agora_types::{Address, Amount};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Digest of an API key.
pub type KeyHash = [u8; 32];

/// One customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub account: Address,
    /// Prepaid credit.
    pub credit: Amount,
    /// Charged so far.
    pub spent: Amount,
    /// What an agent's key may not exceed besides its credit.
    #[serde(default)]
    pub limits: Limits,
}

/// Spending limits of a key beyond its credit (an agent's key carries them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most one request may cost, failovers included, checked against its worst case
    /// before any work is bought.
    pub per_request: Option<Amount>,
    /// Unix time (seconds) from which the key is refused.
    pub expires_at: Option<u64>,
}

impl Customer {
    pub fn remaining(&self) -> Amount {
        self.credit.saturating_sub(self.spent)
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Book {
    customers: Vec<(String, Customer)>,
    /// The last block scanned for deposits (credits and this height are written together, so
    /// a crash can neither lose nor repeat a deposit).
    #[serde(default)]
    deposits_scanned: Option<u64>,
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
    NoCredit {
        remaining: Amount,
    },
    /// The key's `expires_at` has passed.
    Expired {
        at: u64,
    },
    /// The request's worst case (with what it already cost) is over the key's per-request cap.
    OverCap {
        cap: Amount,
        need: Amount,
    },
}

/// All customers of this gateway.
///
/// Credit is held before a completion's work is bought (the most it can cost at the chosen
/// provider's price) and settled to the exact charge when the attempt ends, so a key never
/// spends more than it has, however many completions it runs at once. Holds live in memory
/// only: after a crash nothing is held and nothing was charged for the interrupted work.
pub struct Customers {
    by_key: Mutex<BTreeMap<KeyHash, Customer>>,
    /// Credit held by running completions, per key. Locked only with `by_key` locked.
    held: Mutex<BTreeMap<KeyHash, Amount>>,
    /// Read and written only with `by_key` locked.
    scanned: Mutex<Option<u64>>,
    path: Option<PathBuf>,
    dirty: std::sync::atomic::AtomicBool,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn key_hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

impl Customers {
    /// Loads the book at `path` (an absent file is an empty book).
    pub fn open(path: Option<PathBuf>) -> std::io::Result<Customers> {
        let mut by_key = BTreeMap::new();
        let mut scanned = None;
        if let Some(p) = &path {
            let book: Book = crate::durable::read_json_or_default(p)?;
            scanned = book.deposits_scanned;
            for (hex_hash, c) in book.customers {
                let mut h = [0u8; 32];
                if hex::decode_to_slice(&hex_hash, &mut h).is_ok() {
                    by_key.insert(h, c);
                }
            }
        }
        Ok(Customers {
            by_key: Mutex::new(by_key),
            held: Mutex::new(BTreeMap::new()),
            scanned: Mutex::new(scanned),
            path,
            dirty: false.into(),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyHash, Customer>> {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) `key` for a customer.
    pub fn insert(&self, key: &str, customer: Customer) {
        self.map().insert(key_hash(key), customer);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Creates a fresh random key for a customer and returns it.
    pub fn create(&self, name: &str, account: Address, credit: Amount) -> String {
        let key = format!("sk-agora-{}", hex::encode(rand::random::<[u8; 24]>()));
        self.insert(
            &key,
            Customer {
                name: name.into(),
                account,
                credit,
                spent: Amount::ZERO,
                limits: Limits::default(),
            },
        );
        key
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyHash, Amount>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The customer behind a bearer token, if it may spend (has credit that is neither spent nor
    /// held).
    pub fn authorize(&self, key: Option<&str>) -> Result<(KeyHash, Customer), AuthError> {
        let key = key.ok_or(AuthError::Missing)?;
        let h = key_hash(key);
        let map = self.map();
        let c = map.get(&h).cloned().ok_or(AuthError::Unknown)?;
        if let Some(at) = c.limits.expires_at
            && now_secs() >= at
        {
            return Err(AuthError::Expired { at });
        }
        let free = c.remaining().saturating_sub(self.held_locked(&h));
        if free.is_zero() {
            return Err(AuthError::NoCredit { remaining: free });
        }
        Ok((h, c))
    }

    /// Holds `amount` of the key's free credit for a completion that has already cost
    /// `already`, or refuses when less is free or the two together are over the key's
    /// per-request cap.
    pub fn hold(&self, key: &KeyHash, amount: Amount, already: Amount) -> Result<(), AuthError> {
        let map = self.map();
        let c = map.get(key).ok_or(AuthError::Unknown)?;
        if let Some(cap) = c.limits.per_request {
            let need = already.checked_add(amount).unwrap_or(Amount(u128::MAX));
            if need > cap {
                return Err(AuthError::OverCap { cap, need });
            }
        }
        let held = self.held_locked(key);
        let free = c.remaining().saturating_sub(held);
        let mut holds = self.holds();
        if amount > free {
            return Err(AuthError::NoCredit { remaining: free });
        }
        holds.insert(*key, held.checked_add(amount).unwrap_or(Amount(u128::MAX)));
        Ok(())
    }

    /// Ends a hold of `held`, charging `charged` of it (a charge above the hold is capped at it:
    /// the relay never pays more than it held).
    pub fn settle(&self, key: &KeyHash, held: Amount, charged: Amount) {
        let mut map = self.map();
        {
            let mut holds = self.holds();
            if let Some(h) = holds.get_mut(key) {
                *h = h.saturating_sub(held);
                if h.is_zero() {
                    holds.remove(key);
                }
            }
        }
        let charged = charged.min(held);
        if charged.is_zero() {
            return;
        }
        if let Some(c) = map.get_mut(key) {
            c.spent = c.spent.checked_add(charged).unwrap_or(c.spent);
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Credit held by running completions of `key`.
    pub fn held(&self, key: &KeyHash) -> Amount {
        let _map = self.map();
        self.held_locked(key)
    }

    /// Credit held for `key`; call with `by_key` locked (holds change only under it).
    fn held_locked(&self, key: &KeyHash) -> Amount {
        self.holds().get(key).copied().unwrap_or_default()
    }

    /// The last block scanned for deposits (`None` before the first scan).
    pub fn deposits_scanned(&self) -> Option<u64> {
        let _map = self.map();
        *self.scanned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Credits the deposits found in block `height` (sender account, amount) and records the
    /// block as scanned, atomically. A deposit goes to the sender's key with the lowest digest;
    /// one from an account with no key is not credited (returned, for the operator).
    pub fn deposit_block(
        &self,
        height: u64,
        deposits: &[(Address, Amount)],
    ) -> Vec<(Address, Amount)> {
        let mut map = self.map();
        let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        if scanned.is_some_and(|s| height <= s) {
            return Vec::new();
        }
        let mut unclaimed = Vec::new();
        for (account, amount) in deposits {
            match map.values_mut().find(|c| c.account == *account) {
                Some(c) => c.credit = c.credit.checked_add(*amount).unwrap_or(c.credit),
                None => unclaimed.push((*account, *amount)),
            }
        }
        *scanned = Some(height);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        unclaimed
    }

    pub fn get(&self, key: &KeyHash) -> Option<Customer> {
        self.map().get(key).cloned()
    }

    /// Total charged to all customers.
    pub fn total_spent(&self) -> Amount {
        self.map()
            .values()
            .fold(Amount::ZERO, |a, c| a.checked_add(c.spent).unwrap_or(a))
    }

    /// Writes the book if it changed.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let book = {
            let map = self.map();
            Book {
                customers: map
                    .iter()
                    .map(|(h, c)| (hex::encode(h), c.clone()))
                    .collect(),
                deposits_scanned: *self.scanned.lock().unwrap_or_else(|e| e.into_inner()),
            }
        };
        let bytes = serde_json::to_vec_pretty(&book).map_err(std::io::Error::other)?;
        crate::durable::write_atomically(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(limits: Limits) -> Customer {
        Customer {
            name: "agent".into(),
            account: agora_types::SecretKey::from_test_seed("agent").public(),
            credit: Amount(1_000),
            spent: Amount::ZERO,
            limits,
        }
    }

    #[test]
    fn a_per_request_cap_counts_what_the_request_already_cost() {
        let book = Customers::open(None).unwrap();
        book.insert(
            "k",
            customer(Limits {
                per_request: Some(Amount(100)),
                expires_at: None,
            }),
        );
        let k = key_hash("k");
        assert_eq!(
            book.hold(&k, Amount(101), Amount::ZERO),
            Err(AuthError::OverCap {
                cap: Amount(100),
                need: Amount(101)
            })
        );
        assert_eq!(book.held(&k), Amount::ZERO, "a refused hold holds nothing");
        // A failover's second attempt: 60 already paid, 50 more may cost: over the cap.
        assert!(matches!(
            book.hold(&k, Amount(50), Amount(60)),
            Err(AuthError::OverCap { .. })
        ));
        assert!(book.hold(&k, Amount(40), Amount(60)).is_ok());
    }

    #[test]
    fn an_expired_key_is_refused() {
        let book = Customers::open(None).unwrap();
        book.insert(
            "old",
            customer(Limits {
                per_request: None,
                expires_at: Some(1),
            }),
        );
        book.insert("new", customer(Limits::default()));
        assert_eq!(
            book.authorize(Some("old")).unwrap_err(),
            AuthError::Expired { at: 1 }
        );
        assert!(book.authorize(Some("new")).is_ok());
    }
}
