//! API keys and what each customer has spent.
//!
//! A key maps to a ledger account (the customer's identity, and where their prepaid credit came
//! from) and a credit line in base units. A transfer from that account to the gateway's account,
//! once final, adds its amount to the credit (`deposit_block`, fed by the gateway's watcher). Keys are stored only as sha256 digests. Every completion
//! charges its customer exactly what its providers were paid (see `relay`). The book is written
//! to disk (write-then-rename) by one writer as soon as it changes, each write covering every
//! change since the last (group commit), and a completion's final event waits until its charge
//! is on disk ([`Customers::wait_durable`]): a crash loses no charge a customer was told of, and
//! never a key. (It once was written once a second; the chaos suite's gateway SIGKILL found
//! customers billed less than their responses said.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use agora_types::{Address, Amount};
use serde::{Deserialize, Serialize};

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
    /// Keys issued on their account's signed request (`POST /v1/keys`), one per account.
    #[serde(default)]
    requested: Vec<(Address, Requested)>,
}

/// The key an account asked for itself, and when it last asked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Requested {
    /// The signed request's time; a request not later than this is a replay.
    at_ms: u64,
    key: KeyHash,
}

/// Most keys issued on request that wait for their first deposit; past it the oldest of those
/// asked for over [`UNFUNDED_TTL_MS`] ago are dropped, else new requests wait (a stranger can
/// make accounts for free, so keys without money must not grow the book without end).
pub const MAX_UNFUNDED_KEYS: usize = 1_024;
/// How long a requested key without credit is kept for sure.
pub const UNFUNDED_TTL_MS: u64 = 3_600_000;

/// Why a signed key request was refused by the book.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error(
        "this account's last key request was signed at {last_ms} ms; a new one must be signed later"
    )]
    Replayed { last_ms: u64 },
    #[error("the account's current key has requests running; ask again when they finish")]
    Busy,
    #[error("that key is taken; choose another (a fresh random one)")]
    Taken,
    #[error("{MAX_UNFUNDED_KEYS} keys are waiting for their first deposit; try again later")]
    Full,
    #[error("the key book could not be written: {0}")]
    Io(String),
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
    /// Keys issued on request, per account. Locked only with `by_key` locked.
    requested: Mutex<BTreeMap<Address, Requested>>,
    /// Held while the book is written (taken before `by_key`, never inside it).
    writing: Mutex<()>,
    path: Option<PathBuf>,
    dirty: std::sync::atomic::AtomicBool,
    /// Counts charges; taken with `by_key` locked, so a snapshot knows which it holds.
    charges: std::sync::atomic::AtomicU64,
    /// The count of charges the book on disk holds.
    persisted: tokio::sync::watch::Sender<u64>,
    /// Wakes the writer.
    wanted: tokio::sync::Notify,
}

/// How long a completion waits for its charge to reach the disk.
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn key_hash(key: &str) -> KeyHash {
    agora_market::keys::key_digest(key)
}

impl Customers {
    /// Loads the book at `path` (an absent file is an empty book).
    pub fn open(path: Option<PathBuf>) -> std::io::Result<Customers> {
        let mut by_key = BTreeMap::new();
        let mut scanned = None;
        let mut requested = BTreeMap::new();
        if let Some(p) = &path {
            let book: Book = crate::durable::read_json_or_default(p)?;
            scanned = book.deposits_scanned;
            requested = book.requested.into_iter().collect();
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
            requested: Mutex::new(requested),
            writing: Mutex::new(()),
            path,
            dirty: false.into(),
            charges: 0.into(),
            persisted: tokio::sync::watch::Sender::new(0),
            wanted: tokio::sync::Notify::new(),
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
        let key = agora_market::keys::new_api_key();
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

    /// Makes the key whose digest `request` carries good for its account, with its limits, on
    /// the account's signed request (checked by the caller: signature, gateway, time), at the
    /// gateway's `now_ms`. A later request of the same account replaces its key, which keeps
    /// the credit and spend; an earlier or equal one is a replay; a digest that is already
    /// another key's is refused (it would take that customer's record). The book is written
    /// before this returns, so a key the customer was told is good survives a crash.
    pub fn issue(
        &self,
        request: &agora_market::keys::KeyRequest,
        now_ms: u64,
    ) -> Result<Customer, IssueError> {
        let hash = request.key_sha256;
        let mut map = self.map();
        let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        let previous = requested.get(&request.account).copied();
        if let Some(p) = previous {
            if request.at_ms <= p.at_ms {
                return Err(IssueError::Replayed { last_ms: p.at_ms });
            }
            // A completion of the old key settles against it; moving its record mid-request
            // would lose that charge.
            if !self.held_locked(&p.key).is_zero() {
                return Err(IssueError::Busy);
            }
        }
        if map.contains_key(&hash) && previous.is_none_or(|p| p.key != hash) {
            return Err(IssueError::Taken);
        }
        let old = previous.and_then(|p| map.get(&p.key).cloned());
        let funded = |c: &Customer| !c.credit.is_zero() || !c.spent.is_zero();
        if old.as_ref().is_none_or(|c| !funded(c)) {
            let unfunded = |map: &BTreeMap<KeyHash, Customer>, r: &Requested| {
                map.get(&r.key).is_some_and(|c| !funded(c))
            };
            let count = requested.values().filter(|r| unfunded(&map, r)).count();
            if count >= MAX_UNFUNDED_KEYS {
                let stale: Vec<(Address, KeyHash)> = requested
                    .iter()
                    .filter(|(_, r)| {
                        unfunded(&map, r) && now_ms.saturating_sub(r.at_ms) > UNFUNDED_TTL_MS
                    })
                    .map(|(a, r)| (*a, r.key))
                    .collect();
                if stale.is_empty() {
                    return Err(IssueError::Full);
                }
                for (account, key) in stale {
                    requested.remove(&account);
                    map.remove(&key);
                }
            }
        }
        let customer = Customer {
            name: request.name.clone(),
            account: request.account,
            credit: old.as_ref().map_or(Amount::ZERO, |c| c.credit),
            spent: old.as_ref().map_or(Amount::ZERO, |c| c.spent),
            limits: Limits {
                per_request: request.per_request_cap,
                expires_at: request.expires_at,
            },
        };
        if let Some(p) = previous {
            map.remove(&p.key);
        }
        map.insert(hash, customer.clone());
        requested.insert(
            request.account,
            Requested {
                at_ms: request.at_ms,
                key: hash,
            },
        );
        drop(requested);
        drop(map);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        // On failure the key stays in memory (the book is retried by the next flush) but the
        // customer is told it failed; a new signed request replaces it.
        self.persist().map_err(|e| IssueError::Io(e.to_string()))?;
        Ok(customer)
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
        self.charges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(map);
        self.wanted.notify_one();
    }

    /// Waits until every charge settled so far is in the book on disk (at once without a
    /// book file). Gives up after `DURABLE_WAIT`, logging it, so a failing disk slows
    /// completions instead of stopping them.
    pub async fn wait_durable(&self) {
        if self.path.is_none() {
            return;
        }
        let target = self.charges.load(std::sync::atomic::Ordering::Relaxed);
        let mut on_disk = self.persisted.subscribe();
        let waited = tokio::time::timeout(DURABLE_WAIT, on_disk.wait_for(|n| *n >= target)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::error!(target: "agora::gateway", "a charge is not on disk after {DURABLE_WAIT:?}: the customer book cannot be written");
        }
    }

    /// The book's one writer: writes whenever the book changed (woken by each charge, and
    /// once a second for everything else), until the task is dropped.
    pub async fn write_loop(self: std::sync::Arc<Self>) {
        loop {
            tokio::select! {
                () = self.wanted.notified() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            if let Err(e) = self.flush() {
                tracing::error!(target: "agora::gateway", error = %e, "cannot write the customer book");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
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
    /// block as scanned, atomically. A deposit goes to the key the sender asked for itself
    /// (`issue`), else to the sender's key with the lowest digest; one from an account with no
    /// key is not credited (returned, for the operator).
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
        let requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        let mut unclaimed = Vec::new();
        for (account, amount) in deposits {
            let own = requested.get(account).map(|r| r.key);
            let target = match own.filter(|k| map.contains_key(k)) {
                Some(k) => map.get_mut(&k),
                None => map.values_mut().find(|c| c.account == *account),
            };
            match target {
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
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.persist()
    }

    /// Writes the book now. One writer at a time, each with a snapshot taken after the previous
    /// write, so an older snapshot never overwrites a newer one.
    fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let (book, charges) = {
            let map = self.map();
            self.dirty
                .store(false, std::sync::atomic::Ordering::Relaxed);
            let charges = self.charges.load(std::sync::atomic::Ordering::Relaxed);
            (
                Book {
                    customers: map
                        .iter()
                        .map(|(h, c)| (hex::encode(h), c.clone()))
                        .collect(),
                    deposits_scanned: *self.scanned.lock().unwrap_or_else(|e| e.into_inner()),
                    requested: self
                        .requested
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(a, r)| (*a, *r))
                        .collect(),
                },
                charges,
            )
        };
        let written = serde_json::to_vec_pretty(&book)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::durable::write_atomically(path, &bytes));
        if written.is_err() {
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            self.persisted.send_if_modified(|n| {
                let newer = charges > *n;
                if newer {
                    *n = charges;
                }
                newer
            });
        }
        written
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

    fn ask(account: &agora_types::SecretKey, at_ms: u64) -> agora_market::keys::KeyRequest {
        agora_market::keys::KeyRequest {
            account: account.public(),
            gateway: agora_types::SecretKey::from_test_seed("gateway").public(),
            name: "k".into(),
            key_sha256: key_hash(&format!("sk-{}-{at_ms}", account.public())),
            per_request_cap: None,
            expires_at: None,
            at_ms,
        }
    }

    #[test]
    fn keys_waiting_for_a_deposit_are_bounded_and_the_stale_ones_make_room() {
        let book = Customers::open(None).unwrap();
        let t0 = 1_000_000;
        let accounts: Vec<_> = (0..=MAX_UNFUNDED_KEYS)
            .map(|i| agora_types::SecretKey::from_test_seed(&format!("a{i}")))
            .collect();
        for a in &accounts[..MAX_UNFUNDED_KEYS] {
            book.issue(&ask(a, t0), t0).unwrap();
        }
        let last = &accounts[MAX_UNFUNDED_KEYS];
        assert_eq!(
            book.issue(&ask(last, t0 + 1), t0 + 1),
            Err(IssueError::Full)
        );
        // One of them deposits: a funded key no longer counts, so there is room.
        book.deposit_block(1, &[(accounts[0].public(), Amount(5))]);
        let c = book.issue(&ask(last, t0 + 2), t0 + 2).unwrap();
        assert!(c.credit.is_zero());
        // Full again; an hour later the unfunded ones are dropped, the funded one is kept.
        let late = agora_types::SecretKey::from_test_seed("late");
        let later = t0 + 2 + UNFUNDED_TTL_MS + 1;
        assert_eq!(
            book.issue(&ask(&late, t0 + 3), t0 + 3),
            Err(IssueError::Full)
        );
        book.issue(&ask(&late, later), later).unwrap();
        let keys = book.map().len();
        assert_eq!(keys, 2, "the funded key and the new one");
        assert!(
            book.map()
                .values()
                .any(|c| c.account == accounts[0].public())
        );
    }

    #[test]
    fn an_issued_key_and_its_request_time_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let agent = agora_types::SecretKey::from_test_seed("agent");
        let key = format!("sk-{}-10", agent.public());
        {
            let book = Customers::open(Some(path.clone())).unwrap();
            book.issue(&ask(&agent, 10), 10).unwrap(); // no flush: issue writes the book itself
        }
        let book = Customers::open(Some(path)).unwrap();
        book.deposit_block(1, &[(agent.public(), Amount(7))]);
        assert_eq!(book.authorize(Some(&key)).unwrap().1.credit, Amount(7));
        assert_eq!(
            book.issue(&ask(&agent, 10), 20),
            Err(IssueError::Replayed { last_ms: 10 }),
            "a replay after the restart is still one"
        );
    }

    #[test]
    fn a_request_cannot_take_another_customers_key() {
        let book = Customers::open(None).unwrap();
        book.insert("sk-victim", customer(Limits::default()));
        let thief = agora_types::SecretKey::from_test_seed("thief");
        let mut req = ask(&thief, 5);
        req.key_sha256 = key_hash("sk-victim");
        assert_eq!(book.issue(&req, 5), Err(IssueError::Taken));
        let victim = book.get(&key_hash("sk-victim")).unwrap();
        assert_eq!(victim.account, customer(Limits::default()).account);
        assert_eq!(victim.credit, Amount(1_000));
    }
}
