//! The ledger state: typed ordered maps, a record of what each block touched, and the state root.
//!
//! ## State root
//! Every record has a key (`StateKey`, a prefix byte then its fields) and a canonical value
//! encoding. A leaf is `H_leaf(key || value)`; the root is a binary Merkle tree over all leaves in
//! key order (odd nodes carried up). A light client holding a root can check a balance with the
//! leaf and its sibling path, and absence with the two neighbouring leaves. Leaves are cached and
//! only touched records are re-hashed per block; the tree above the leaves is rebuilt per block
//! (O(n) 32-byte hashes: about 1 ms per 10k records here), which is simple and plenty for now. A
//! sparse Merkle tree would make it O(touched * log n) when state grows large.
//!
//! Everything is a `BTreeMap`: iteration order is part of consensus.

use crate::params::Params;
use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::hash::{Hash, HashDomain, merkle_root};
use agora_types::{Address, Amount, DatasetInfo, ModelRegistration, ProviderInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

mod encoding;
mod markets;
use encoding::{decode_locked, encode_locked};
pub use markets::{BondRow, MarketRecord, Member, RevealedWeights, WeightCommit};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorRecord {
    pub registered_at: u64,
    pub jailed_until: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub info: ProviderInfo,
    pub registered_at: u64,
    pub jailed_until: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub info: ModelRegistration,
    pub owner: Address,
    pub registered_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub info: DatasetInfo,
    pub owner: Address,
    pub registered_at: u64,
}

/// A one-way payment channel from a payer to a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub payer: Address,
    pub provider: Address,
    pub deposit: Amount,
    /// Total already paid out of the deposit (the last redeemed voucher's cumulative amount).
    pub redeemed: Amount,
    /// Per-model cumulative amounts already redeemed (for royalties).
    pub redeemed_per_model: BTreeMap<Hash, Amount>,
    pub opened_at: u64,
    pub expiry_height: u64,
    /// Set when a close was requested: the first height at which the channel may be settled.
    pub close_deadline: Option<u64>,
    pub settled: bool,
}

impl Channel {
    /// Deposit not yet paid out: what a settle would refund.
    pub fn unspent(&self) -> Amount {
        self.deposit.saturating_sub(self.redeemed)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    pub genesis: Amount,
    pub minted: Amount,
    pub burned: Amount,
}

impl Supply {
    /// genesis + minted - burned: what every balance, stake and escrow must add up to.
    pub fn expected_total(&self) -> Option<Amount> {
        self.genesis
            .checked_add(self.minted)?
            .checked_sub(self.burned)
    }
}

/// Chain-level values that are not per-account records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub chain_id: String,
    pub height: u64,
    pub last_timestamp_ms: u64,
    pub supply: Supply,
    pub params: Params,
}

/// A gateway's commitment to a batch of receipts (`TxBody::CommitReceipts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// The height of the block that included it: that block's id is the audit beacon.
    pub height: u64,
    /// How many receipts the root stands for.
    pub count: u32,
}

/// Most entries in one provider's queue of locked earnings (`earnings`); more are merged into
/// the last one, which then unlocks at the later of the two heights.
pub const MAX_LOCKED_ENTRIES: usize = 64;

/// The key of one record in the state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateKey {
    Meta,
    Account(Address),
    /// (target, delegator): stake bonded by `delegator` behind `target`.
    Stake(Address, Address),
    /// (delegator, target, release height).
    Unbonding(Address, Address, u64),
    Validator(Address),
    Provider(Address),
    Model(Hash),
    Dataset(Hash),
    Channel(Hash),
    /// An offence already slashed.
    Evidence(Hash),
    /// A provider's locked earnings: (unlock height, amount) entries.
    Locked(Address),
    /// The height until which a provider is on probation (every receipt audited).
    Probation(Address),
    /// (committer, root): a commitment to a batch of receipts.
    Commitment(Address, Hash),
    /// A market, by id.
    Market(Hash),
    /// (market, validator): weights committed to and not yet revealed.
    WeightCommit(Hash, Address),
    /// (market, validator): revealed weights.
    Weights(Hash, Address),
    /// (market, validator): bonds in the market's members.
    Bonds(Hash, Address),
}

/// The whole ledger state.
#[derive(Clone, Debug)]
pub struct State {
    pub(crate) meta: Meta,
    pub(crate) accounts: BTreeMap<Address, Account>,
    pub(crate) stakes: BTreeMap<(Address, Address), Amount>,
    pub(crate) stake_totals: BTreeMap<Address, Amount>,
    pub(crate) unbonding: BTreeMap<(Address, Address, u64), Amount>,
    pub(crate) validators: BTreeMap<Address, ValidatorRecord>,
    pub(crate) providers: BTreeMap<Address, ProviderRecord>,
    pub(crate) models: BTreeMap<Hash, ModelRecord>,
    pub(crate) datasets: BTreeMap<Hash, DatasetRecord>,
    pub(crate) channels: BTreeMap<Hash, Channel>,
    pub(crate) evidence: BTreeSet<Hash>,
    /// Per provider, locked earnings as (unlock height, amount), unlock heights strictly
    /// increasing, at most [`MAX_LOCKED_ENTRIES`].
    pub(crate) locked: BTreeMap<Address, Vec<(u64, Amount)>>,
    /// (first unlock height, provider) for every non-empty queue in `locked`: which queues a
    /// block must release. Derived from `locked`, so not a record of its own in the root.
    pub(crate) unlock_index: BTreeSet<(u64, Address)>,
    pub(crate) probation: BTreeMap<Address, u64>,
    pub(crate) commitments: BTreeMap<(Address, Hash), Commitment>,
    pub(crate) markets: BTreeMap<Hash, MarketRecord>,
    /// model -> the market it belongs to. Derived from `markets`, so not a record of its own.
    pub(crate) model_markets: BTreeMap<Hash, Hash>,
    pub(crate) weight_commits: BTreeMap<(Hash, Address), WeightCommit>,
    pub(crate) weights: BTreeMap<(Hash, Address), RevealedWeights>,
    pub(crate) bonds: BTreeMap<(Hash, Address), BondRow>,
    /// The id of the last applied block: the next block's parent. Not part of the state root
    /// (a header cannot contain its own id); storage keeps it with the block.
    last_block: Hash,
    /// Records changed since the last `commit`.
    dirty: BTreeSet<StateKey>,
    /// Leaf hash of every record, by encoded key.
    leaves: BTreeMap<Vec<u8>, Hash>,
    root: Hash,
}

/// What a block changed, as encoded (key, value) pairs; `None` deletes. This is what storage
/// writes atomically together with the block.
pub type StateDiff = Vec<(Vec<u8>, Option<Vec<u8>>)>;

impl State {
    pub(crate) fn empty(meta: Meta) -> State {
        let mut s = State {
            meta,
            accounts: BTreeMap::new(),
            stakes: BTreeMap::new(),
            stake_totals: BTreeMap::new(),
            unbonding: BTreeMap::new(),
            validators: BTreeMap::new(),
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
            datasets: BTreeMap::new(),
            channels: BTreeMap::new(),
            evidence: BTreeSet::new(),
            locked: BTreeMap::new(),
            unlock_index: BTreeSet::new(),
            probation: BTreeMap::new(),
            commitments: BTreeMap::new(),
            markets: BTreeMap::new(),
            model_markets: BTreeMap::new(),
            weight_commits: BTreeMap::new(),
            weights: BTreeMap::new(),
            bonds: BTreeMap::new(),
            last_block: Hash::ZERO,
            dirty: BTreeSet::new(),
            leaves: BTreeMap::new(),
            root: Hash::ZERO,
        };
        s.touch(StateKey::Meta);
        s
    }

    // ---- reads ---------------------------------------------------------------------------

    pub fn chain_id(&self) -> &str {
        &self.meta.chain_id
    }
    pub fn height(&self) -> u64 {
        self.meta.height
    }
    pub fn last_block(&self) -> Hash {
        self.last_block
    }
    pub fn set_last_block(&mut self, id: Hash) {
        self.last_block = id;
    }
    pub fn last_timestamp_ms(&self) -> u64 {
        self.meta.last_timestamp_ms
    }
    pub fn params(&self) -> &Params {
        &self.meta.params
    }
    pub fn supply(&self) -> &Supply {
        &self.meta.supply
    }
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    /// The state root as of the last `commit` (the end of the last applied block).
    pub fn root(&self) -> Hash {
        self.root
    }
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).cloned().unwrap_or_default()
    }
    /// Every account, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }
    pub fn balance(&self, a: &Address) -> Amount {
        self.accounts.get(a).map(|x| x.balance).unwrap_or_default()
    }
    pub fn stake(&self, target: &Address, delegator: &Address) -> Amount {
        self.stakes
            .get(&(*target, *delegator))
            .copied()
            .unwrap_or_default()
    }
    /// All stake bonded behind `target` (not counting unbonding stake).
    pub fn total_stake(&self, target: &Address) -> Amount {
        self.stake_totals.get(target).copied().unwrap_or_default()
    }
    /// Unbonding entries of `delegator`: (target, release height, amount).
    pub fn unbonding_of(&self, delegator: &Address) -> Vec<(Address, u64, Amount)> {
        self.unbonding
            .range((*delegator, Address::default(), 0)..)
            .take_while(|((d, _, _), _)| d == delegator)
            .map(|((_, t, h), a)| (*t, *h, *a))
            .collect()
    }
    pub fn validator(&self, a: &Address) -> Option<&ValidatorRecord> {
        self.validators.get(a)
    }
    pub fn validators(&self) -> impl Iterator<Item = (&Address, &ValidatorRecord)> {
        self.validators.iter()
    }
    pub fn provider(&self, a: &Address) -> Option<&ProviderRecord> {
        self.providers.get(a)
    }
    pub fn providers(&self) -> impl Iterator<Item = (&Address, &ProviderRecord)> {
        self.providers.iter()
    }
    pub fn model(&self, id: &Hash) -> Option<&ModelRecord> {
        self.models.get(id)
    }
    pub fn dataset(&self, id: &Hash) -> Option<&DatasetRecord> {
        self.datasets.get(id)
    }
    pub fn channel(&self, id: &Hash) -> Option<&Channel> {
        self.channels.get(id)
    }
    /// The channels `payer` opened, in id order (a scan of every channel: for the RPC, not for
    /// transaction processing).
    pub fn channels_paid_by<'a>(
        &'a self,
        payer: &'a Address,
    ) -> impl Iterator<Item = (&'a Hash, &'a Channel)> + 'a {
        self.channels.iter().filter(move |(_, c)| c.payer == *payer)
    }
    pub fn evidence_used(&self, id: &Hash) -> bool {
        self.evidence.contains(id)
    }
    /// A provider's locked earnings: (unlock height, amount), soonest first. Not spendable;
    /// each entry joins the balance at the end of the block at its unlock height.
    pub fn locked_of(&self, provider: &Address) -> &[(u64, Amount)] {
        self.locked.get(provider).map(Vec::as_slice).unwrap_or(&[])
    }
    /// The sum of a provider's locked earnings.
    pub fn locked_total(&self, provider: &Address) -> Amount {
        self.locked_of(provider)
            .iter()
            .fold(Amount::ZERO, |t, (_, a)| Amount(t.0.saturating_add(a.0)))
    }
    /// The height until which `provider` is on probation (absent if it never was).
    pub fn probation_until(&self, provider: &Address) -> Option<u64> {
        self.probation.get(provider).copied()
    }
    /// The commitment `committer` made to `root`, if any.
    pub fn commitment(&self, committer: &Address, root: &Hash) -> Option<&Commitment> {
        self.commitments.get(&(*committer, *root))
    }

    pub fn market(&self, id: &Hash) -> Option<&MarketRecord> {
        self.markets.get(id)
    }
    pub fn markets(&self) -> impl Iterator<Item = (&Hash, &MarketRecord)> {
        self.markets.iter()
    }
    /// The market `model` belongs to, if any.
    pub fn market_of_model(&self, model: &Hash) -> Option<Hash> {
        self.model_markets.get(model).copied()
    }
    pub fn weight_commit(&self, market: &Hash, validator: &Address) -> Option<&WeightCommit> {
        self.weight_commits.get(&(*market, *validator))
    }
    pub fn revealed_weights(&self, market: &Hash, validator: &Address) -> Option<&RevealedWeights> {
        self.weights.get(&(*market, *validator))
    }
    pub fn bonds(&self, market: &Hash, validator: &Address) -> Option<&BondRow> {
        self.bonds.get(&(*market, *validator))
    }

    /// Sum of every balance, stake, unbonding entry, locked earning, market deposit and unspent
    /// channel deposit:
    /// must always equal `supply().expected_total()`.
    pub fn circulating_total(&self) -> Option<Amount> {
        let mut total = Amount::ZERO;
        for a in self.accounts.values() {
            total = total.checked_add(a.balance)?;
        }
        for s in self.stakes.values() {
            total = total.checked_add(*s)?;
        }
        for u in self.unbonding.values() {
            total = total.checked_add(*u)?;
        }
        for c in self.channels.values().filter(|c| !c.settled) {
            total = total.checked_add(c.unspent())?;
        }
        for (_, a) in self.locked.values().flatten() {
            total = total.checked_add(*a)?;
        }
        for m in self.markets.values() {
            total = total.checked_add(m.deposit)?;
        }
        Some(total)
    }

    // ---- writes (each marks its record dirty) --------------------------------------------

    pub(crate) fn touch(&mut self, key: StateKey) {
        self.dirty.insert(key);
    }

    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        self.touch(StateKey::Meta);
        &mut self.meta
    }

    pub(crate) fn account_mut(&mut self, a: &Address) -> &mut Account {
        self.touch(StateKey::Account(*a));
        self.accounts.entry(*a).or_default()
    }

    pub(crate) fn set_stake(&mut self, target: &Address, delegator: &Address, amount: Amount) {
        self.touch(StateKey::Stake(*target, *delegator));
        if amount.is_zero() {
            self.stakes.remove(&(*target, *delegator));
        } else {
            self.stakes.insert((*target, *delegator), amount);
        }
    }

    pub(crate) fn set_stake_total(&mut self, target: &Address, amount: Amount) {
        // Totals are derived from stakes, so they are not records of their own in the root.
        if amount.is_zero() {
            self.stake_totals.remove(target);
        } else {
            self.stake_totals.insert(*target, amount);
        }
    }

    pub(crate) fn set_unbonding(&mut self, key: (Address, Address, u64), amount: Amount) {
        self.touch(StateKey::Unbonding(key.0, key.1, key.2));
        if amount.is_zero() {
            self.unbonding.remove(&key);
        } else {
            self.unbonding.insert(key, amount);
        }
    }

    pub(crate) fn validator_mut(&mut self, a: &Address) -> Option<&mut ValidatorRecord> {
        self.touch(StateKey::Validator(*a));
        self.validators.get_mut(a)
    }

    pub(crate) fn insert_validator(&mut self, a: Address, r: ValidatorRecord) {
        self.touch(StateKey::Validator(a));
        self.validators.insert(a, r);
    }

    pub(crate) fn provider_mut(&mut self, a: &Address) -> Option<&mut ProviderRecord> {
        self.touch(StateKey::Provider(*a));
        self.providers.get_mut(a)
    }

    pub(crate) fn insert_provider(&mut self, a: Address, r: ProviderRecord) {
        self.touch(StateKey::Provider(a));
        self.providers.insert(a, r);
    }

    pub(crate) fn insert_model(&mut self, id: Hash, r: ModelRecord) {
        self.touch(StateKey::Model(id));
        self.models.insert(id, r);
    }

    pub(crate) fn insert_dataset(&mut self, id: Hash, r: DatasetRecord) {
        self.touch(StateKey::Dataset(id));
        self.datasets.insert(id, r);
    }

    pub(crate) fn channel_mut(&mut self, id: &Hash) -> Option<&mut Channel> {
        self.touch(StateKey::Channel(*id));
        self.channels.get_mut(id)
    }

    pub(crate) fn insert_channel(&mut self, id: Hash, c: Channel) {
        self.touch(StateKey::Channel(id));
        self.channels.insert(id, c);
    }

    pub(crate) fn insert_evidence(&mut self, id: Hash) {
        self.touch(StateKey::Evidence(id));
        self.evidence.insert(id);
    }

    /// Replaces a provider's locked-earnings queue (empty removes it) and keeps the unlock
    /// index in step.
    pub(crate) fn set_locked(&mut self, provider: &Address, queue: Vec<(u64, Amount)>) {
        self.touch(StateKey::Locked(*provider));
        if let Some(first) = self.locked.get(provider).and_then(|q| q.first()) {
            self.unlock_index.remove(&(first.0, *provider));
        }
        match queue.first() {
            Some(first) => {
                self.unlock_index.insert((first.0, *provider));
                self.locked.insert(*provider, queue);
            }
            None => {
                self.locked.remove(provider);
            }
        }
    }

    pub(crate) fn set_probation(&mut self, provider: &Address, until: u64) {
        self.touch(StateKey::Probation(*provider));
        self.probation.insert(*provider, until);
    }

    pub(crate) fn insert_commitment(&mut self, committer: Address, root: Hash, c: Commitment) {
        self.touch(StateKey::Commitment(committer, root));
        self.commitments.insert((committer, root), c);
    }

    pub(crate) fn market_mut(&mut self, id: &Hash) -> Option<&mut MarketRecord> {
        self.touch(StateKey::Market(*id));
        self.markets.get_mut(id)
    }

    pub(crate) fn insert_market(&mut self, id: Hash, m: MarketRecord) {
        self.touch(StateKey::Market(id));
        for model in &m.models {
            self.model_markets.insert(*model, id);
        }
        self.markets.insert(id, m);
    }

    pub(crate) fn set_weight_commit(
        &mut self,
        market: Hash,
        validator: Address,
        c: Option<WeightCommit>,
    ) {
        self.touch(StateKey::WeightCommit(market, validator));
        match c {
            Some(c) => self.weight_commits.insert((market, validator), c),
            None => self.weight_commits.remove(&(market, validator)),
        };
    }

    pub(crate) fn set_weights(&mut self, market: Hash, validator: Address, w: RevealedWeights) {
        self.touch(StateKey::Weights(market, validator));
        self.weights.insert((market, validator), w);
    }

    /// Replaces a validator's bonds in a market; an empty row removes the record.
    pub(crate) fn set_bonds(&mut self, market: Hash, validator: Address, row: BondRow) {
        self.touch(StateKey::Bonds(market, validator));
        if row.0.is_empty() {
            self.bonds.remove(&(market, validator));
        } else {
            self.bonds.insert((market, validator), row);
        }
    }

    // ---- root and persistence ------------------------------------------------------------

    /// Re-hashes the touched records, recomputes the root and returns what changed.
    pub fn commit(&mut self) -> (Hash, StateDiff) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut diff = Vec::with_capacity(dirty.len());
        for key in dirty {
            let key_bytes = key.encode();
            match self.record_bytes(&key) {
                Some(value) => {
                    let leaf = Hash::of_parts(HashDomain::StateLeaf, &[&key_bytes, &value]);
                    self.leaves.insert(key_bytes.clone(), leaf);
                    diff.push((key_bytes, Some(value)));
                }
                None => {
                    self.leaves.remove(&key_bytes);
                    diff.push((key_bytes, None));
                }
            }
        }
        let leaves: Vec<Hash> = self.leaves.values().copied().collect();
        self.root = merkle_root(HashDomain::StateNode, &leaves);
        (self.root, diff)
    }

    /// The leaf hashes in key order and the index of `key`'s leaf, for building a proof.
    pub fn leaf_proof_material(&self, key: &StateKey) -> Option<(usize, Vec<Hash>)> {
        let key_bytes = key.encode();
        let index = self.leaves.keys().position(|k| *k == key_bytes)?;
        Some((index, self.leaves.values().copied().collect()))
    }

    /// Every record, encoded: a full snapshot.
    pub fn all_records(&self) -> StateDiff {
        self.all_keys()
            .into_iter()
            .filter_map(|k| self.record_bytes(&k).map(|v| (k.encode(), Some(v))))
            .collect()
    }

    fn all_keys(&self) -> Vec<StateKey> {
        let mut keys = vec![StateKey::Meta];
        keys.extend(self.accounts.keys().map(|a| StateKey::Account(*a)));
        keys.extend(self.stakes.keys().map(|(t, d)| StateKey::Stake(*t, *d)));
        keys.extend(
            self.unbonding
                .keys()
                .map(|(d, t, h)| StateKey::Unbonding(*d, *t, *h)),
        );
        keys.extend(self.validators.keys().map(|a| StateKey::Validator(*a)));
        keys.extend(self.providers.keys().map(|a| StateKey::Provider(*a)));
        keys.extend(self.models.keys().map(|h| StateKey::Model(*h)));
        keys.extend(self.datasets.keys().map(|h| StateKey::Dataset(*h)));
        keys.extend(self.channels.keys().map(|h| StateKey::Channel(*h)));
        keys.extend(self.evidence.iter().map(|h| StateKey::Evidence(*h)));
        keys.extend(self.locked.keys().map(|a| StateKey::Locked(*a)));
        keys.extend(self.probation.keys().map(|a| StateKey::Probation(*a)));
        keys.extend(
            self.commitments
                .keys()
                .map(|(a, h)| StateKey::Commitment(*a, *h)),
        );
        keys.extend(self.markets.keys().map(|h| StateKey::Market(*h)));
        keys.extend(
            self.weight_commits
                .keys()
                .map(|(m, v)| StateKey::WeightCommit(*m, *v)),
        );
        keys.extend(self.weights.keys().map(|(m, v)| StateKey::Weights(*m, *v)));
        keys.extend(self.bonds.keys().map(|(m, v)| StateKey::Bonds(*m, *v)));
        keys
    }

    fn record_bytes(&self, key: &StateKey) -> Option<Vec<u8>> {
        match key {
            StateKey::Meta => Some(self.meta.encode()),
            StateKey::Account(a) => self.accounts.get(a).map(Encode::encode),
            StateKey::Stake(t, d) => self.stakes.get(&(*t, *d)).map(Encode::encode),
            StateKey::Unbonding(d, t, h) => self.unbonding.get(&(*d, *t, *h)).map(Encode::encode),
            StateKey::Validator(a) => self.validators.get(a).map(Encode::encode),
            StateKey::Provider(a) => self.providers.get(a).map(Encode::encode),
            StateKey::Model(h) => self.models.get(h).map(Encode::encode),
            StateKey::Dataset(h) => self.datasets.get(h).map(Encode::encode),
            StateKey::Channel(h) => self.channels.get(h).map(Encode::encode),
            StateKey::Evidence(h) => self.evidence.contains(h).then(Vec::new),
            StateKey::Locked(a) => self.locked.get(a).map(|q| encode_locked(q)),
            StateKey::Probation(a) => self.probation.get(a).map(Encode::encode),
            StateKey::Commitment(a, h) => self.commitments.get(&(*a, *h)).map(Encode::encode),
            StateKey::Market(h) => self.markets.get(h).map(Encode::encode),
            StateKey::WeightCommit(m, v) => self.weight_commits.get(&(*m, *v)).map(Encode::encode),
            StateKey::Weights(m, v) => self.weights.get(&(*m, *v)).map(Encode::encode),
            StateKey::Bonds(m, v) => self.bonds.get(&(*m, *v)).map(Encode::encode),
        }
    }

    /// Rebuilds a state from stored records (as written by `commit` diffs or `all_records`).
    pub fn from_records<I>(records: I) -> Result<State, DecodeError>
    where
        I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    {
        let mut meta = None;
        let mut rest = Vec::new();
        for (k, v) in records {
            let key = StateKey::decode(&k)?;
            if key == StateKey::Meta {
                meta = Some(Meta::decode(&v)?);
            } else {
                rest.push((key, v));
            }
        }
        let meta = meta.ok_or(DecodeError::Invalid {
            what: "state",
            reason: "no meta record",
        })?;
        let mut s = State::empty(meta);
        for (key, v) in rest {
            s.touch(key.clone());
            match key {
                StateKey::Meta => {}
                StateKey::Account(a) => {
                    s.accounts.insert(a, Account::decode(&v)?);
                }
                StateKey::Stake(t, d) => {
                    let amount = Amount::decode(&v)?;
                    s.stakes.insert((t, d), amount);
                    let total =
                        s.total_stake(&t)
                            .checked_add(amount)
                            .ok_or(DecodeError::Invalid {
                                what: "stake",
                                reason: "total overflows",
                            })?;
                    s.stake_totals.insert(t, total);
                }
                StateKey::Unbonding(d, t, h) => {
                    s.unbonding.insert((d, t, h), Amount::decode(&v)?);
                }
                StateKey::Validator(a) => {
                    s.validators.insert(a, ValidatorRecord::decode(&v)?);
                }
                StateKey::Provider(a) => {
                    s.providers.insert(a, ProviderRecord::decode(&v)?);
                }
                StateKey::Model(h) => {
                    s.models.insert(h, ModelRecord::decode(&v)?);
                }
                StateKey::Dataset(h) => {
                    s.datasets.insert(h, DatasetRecord::decode(&v)?);
                }
                StateKey::Channel(h) => {
                    s.channels.insert(h, Channel::decode(&v)?);
                }
                StateKey::Evidence(h) => {
                    s.evidence.insert(h);
                }
                StateKey::Locked(a) => {
                    let queue = decode_locked(&v)?;
                    if let Some(first) = queue.first() {
                        s.unlock_index.insert((first.0, a));
                    }
                    s.locked.insert(a, queue);
                }
                StateKey::Probation(a) => {
                    s.probation.insert(a, u64::decode(&v)?);
                }
                StateKey::Commitment(a, h) => {
                    s.commitments.insert((a, h), Commitment::decode(&v)?);
                }
                StateKey::Market(h) => {
                    let market = MarketRecord::decode(&v)?;
                    for model in &market.models {
                        s.model_markets.insert(*model, h);
                    }
                    s.markets.insert(h, market);
                }
                StateKey::WeightCommit(m, a) => {
                    s.weight_commits.insert((m, a), WeightCommit::decode(&v)?);
                }
                StateKey::Weights(m, a) => {
                    s.weights.insert((m, a), RevealedWeights::decode(&v)?);
                }
                StateKey::Bonds(m, a) => {
                    s.bonds.insert((m, a), BondRow::decode(&v)?);
                }
            }
        }
        s.commit();
        Ok(s)
    }
}
