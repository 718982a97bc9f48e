//! The provider's side of payment channels: what each channel owes, the best voucher held for it,
//! and how much unpaid work it may run up before streaming pauses.
//!
//! Pay-as-you-stream: the provider adds the cost of every frame it sends to the channel's `owed`;
//! the payer answers with cumulative vouchers. Before sending more, the provider waits until
//! `owed - best voucher <= credit_limit`, so at most `credit_limit` (plus one frame) is ever at
//! risk for the provider, and the payer never pays for a token it has not received. The best
//! voucher per channel is written to disk (write-then-rename) before it is acknowledged, so a
//! provider killed at any moment still redeems everything it was paid.
//!
//! A voucher is accepted only if the ledger would pay it: [`ChannelBook::judge`] runs the
//! ledger's own check (`agora_ledger::channels::check_voucher`) on the channel as it will stand
//! once the best voucher held is redeemed, so a voucher that replaces it is redeemable whether
//! or not the earlier one was redeemed first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_ledger::channels::check_voucher;
use agora_ledger::error::RedeemError;
use agora_ledger::state::Channel;
use agora_types::tx::limits::MAX_MODELS_PER_VOUCHER;
use agora_types::{Address, Amount, Hash, SignedVoucher};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::chain::ChainClient;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("channel {0} is not open on the ledger")]
    UnknownChannel(Hash),
    #[error("channel {channel} belongs to another {what}")]
    WrongParty { channel: Hash, what: &'static str },
    #[error("channel {0} is closing or settled")]
    Closed(Hash),
    #[error(
        "channel {channel} expires at height {expiry_height}, too soon for more work (the ledger is at {height}, the challenge period is {challenge} blocks)"
    )]
    Expiring {
        channel: Hash,
        expiry_height: u64,
        height: u64,
        challenge: u64,
    },
    #[error("channel {channel} has {unspent} left, not enough for more work")]
    Exhausted { channel: Hash, unspent: Amount },
    #[error("payer {payer} leaves {unpaid} unpaid across its channels; the limit is {limit}")]
    PayerOwes {
        payer: Address,
        unpaid: Amount,
        limit: Amount,
    },
    #[error("no voucher arrived within {0:?} for the work already delivered")]
    Unpaid(Duration),
    #[error("voucher refused: {0}")]
    BadVoucher(String),
    #[error("ledger: {0}")]
    Ledger(String),
}

/// One channel as the provider tracks it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChannelBook {
    pub payer: Option<Address>,
    pub deposit: Amount,
    /// Cost of all work delivered on this channel (every job, every frame).
    pub owed: Amount,
    /// The highest voucher received.
    pub best: Option<SignedVoucher>,
    /// What the ledger has paid out of this channel so far.
    pub redeemed: Amount,
    /// The ledger's per-model figures of `redeemed`, as last read.
    #[serde(default)]
    pub redeemed_per_model: BTreeMap<Hash, Amount>,
    /// The channel's expiry height on the ledger (0: not read yet).
    #[serde(default)]
    pub expiry_height: u64,
    /// The ledger shows the channel closing or settled: no more work, redeem at once.
    #[serde(default)]
    pub closed: bool,
    /// The ledger shows it settled: nothing more can be redeemed (the payer stays recorded, so
    /// what it left unpaid still counts against it).
    #[serde(default)]
    pub settled: bool,
    /// The cumulative of a voucher the ledger refused to redeem: it is never sent again.
    #[serde(default)]
    pub refused: Option<Amount>,
    /// Work charged but forgiven after cancelled streams (frames in flight when the requester
    /// left, which it never received and so never paid for).
    #[serde(default)]
    pub forgiven: Amount,
}

/// What a voucher that the ledger would pay is worth to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It pays more than anything held: keep it.
    Better,
    /// It pays nothing new (late or duplicate): nothing to store; the payer is told this figure.
    Stale(Amount),
}

impl ChannelBook {
    pub fn paid(&self) -> Amount {
        self.best
            .as_ref()
            .map_or(Amount::ZERO, |v| v.voucher.cumulative)
    }

    /// The channel as the ledger will see it once the best voucher held is redeemed.
    fn as_redeemed(&self, me: &Address, payer: Address) -> Channel {
        let mut per_model = self.redeemed_per_model.clone();
        for (m, a) in self.best.iter().flat_map(|b| &b.voucher.per_model) {
            let held = per_model.entry(*m).or_default();
            *held = (*held).max(*a);
        }
        Channel {
            payer,
            provider: *me,
            deposit: self.deposit,
            redeemed: self.redeemed.max(self.paid()),
            redeemed_per_model: per_model,
            opened_at: 0,
            expiry_height: u64::MAX,
            close_deadline: None,
            settled: false,
        }
    }

    /// Judges a voucher for channel `id` by the ledger's redeem check: the provider holds only
    /// what the ledger will pay (`is_registered`: the ledger's model registry).
    pub fn judge(
        &self,
        id: Hash,
        me: &Address,
        chain_id: &str,
        sv: &SignedVoucher,
        is_registered: impl Fn(&Hash) -> bool,
    ) -> Result<Verdict, PaymentError> {
        let payer = self
            .payer
            .filter(|_| !self.settled)
            .ok_or(PaymentError::Closed(id))?;
        let channel = self.as_redeemed(me, payer);
        match check_voucher(&channel, me, chain_id, sv, is_registered) {
            Ok(_) => Ok(Verdict::Better),
            Err(RedeemError::NotIncreasing { .. }) => Ok(Verdict::Stale(channel.redeemed)),
            Err(e) => Err(PaymentError::BadVoucher(e.to_string())),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    vouchers: Vec<SignedVoucher>,
}

/// Every channel's book, by channel id.
type Books = BTreeMap<Hash, ChannelBook>;

/// Every channel this provider serves.
pub struct Payments {
    me: Address,
    chain_id: String,
    chain: ChainClient,
    credit_limit: Amount,
    /// Unpaid work one payer may run up across all its channels, settled ones included.
    payer_limit: Amount,
    voucher_wait: Duration,
    books: Mutex<BTreeMap<Hash, ChannelBook>>,
    /// Models known to be in the ledger's registry (a registration is never withdrawn).
    registered: Mutex<BTreeSet<Hash>>,
    paid: Notify,
    /// The ledger's height and challenge period as last read by [`Payments::follow`] (0 before).
    tip: AtomicU64,
    challenge_blocks: AtomicU64,
    state_path: Option<PathBuf>,
    /// Serialises disk writes (the books lock is never held across IO) and holds the
    /// [`Payments::changes`] count the file on disk covers.
    disk: tokio::sync::Mutex<u64>,
    /// Changes to persist so far, counted after each is made in the books: a write whose
    /// snapshot was taken at count `n` covers every change numbered `n` or less.
    changes: AtomicU64,
}

impl Payments {
    pub fn new(
        me: Address,
        chain_id: String,
        chain: ChainClient,
        credit_limit: Amount,
        payer_limit: Amount,
        voucher_wait: Duration,
        state_path: Option<PathBuf>,
    ) -> Payments {
        let mut books = BTreeMap::new();
        if let Some(p) = &state_path {
            for v in load(p) {
                books.insert(
                    v.voucher.channel,
                    ChannelBook {
                        owed: v.voucher.cumulative,
                        best: Some(v),
                        ..ChannelBook::default()
                    },
                );
            }
        }
        Payments {
            me,
            chain_id,
            chain,
            credit_limit,
            payer_limit,
            voucher_wait,
            books: Mutex::new(books),
            registered: Mutex::new(BTreeSet::new()),
            paid: Notify::new(),
            tip: AtomicU64::new(0),
            challenge_blocks: AtomicU64::new(0),
            state_path,
            disk: tokio::sync::Mutex::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// The chain this provider's channels live on.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of one channel's book.
    pub fn book(&self, channel: &Hash) -> Option<ChannelBook> {
        self.books().get(channel).cloned()
    }

    /// Checks the channel on the ledger (first use, or when its deposit looks spent) and that it
    /// is ours and the payer's.
    pub async fn admit(&self, channel: &Hash, payer: &Address) -> Result<(), PaymentError> {
        let known = self.books().get(channel).cloned();
        let needs_refresh = match &known {
            None => true,
            Some(b) => b.payer.is_none() || b.owed >= b.deposit,
        };
        if needs_refresh {
            let c = self
                .chain
                .channel(channel)
                .await
                .map_err(|e| PaymentError::Ledger(e.to_string()))?
                .ok_or(PaymentError::UnknownChannel(*channel))?;
            self.refresh(channel, &c);
        }
        self.admissible(channel, payer)?;
        self.wait_payer(payer).await
    }

    /// The channel's own checks for new work: open, the payer's, not near expiry, not spent.
    fn admissible(&self, channel: &Hash, payer: &Address) -> Result<(), PaymentError> {
        let books = self.books();
        let b = books
            .get(channel)
            .ok_or(PaymentError::UnknownChannel(*channel))?;
        if b.closed {
            return Err(PaymentError::Closed(*channel));
        }
        if b.payer != Some(*payer) {
            return Err(PaymentError::WrongParty {
                channel: *channel,
                what: "payer",
            });
        }
        // Work must be redeemable: a channel near expiry can be settled by the payer before the
        // provider's voucher lands.
        let (height, challenge) = (
            self.tip.load(Ordering::Relaxed),
            self.challenge_blocks.load(Ordering::Relaxed),
        );
        if height.saturating_add(challenge) >= b.expiry_height {
            return Err(PaymentError::Expiring {
                channel: *channel,
                expiry_height: b.expiry_height,
                height,
                challenge,
            });
        }
        if b.owed >= b.deposit {
            return Err(PaymentError::Exhausted {
                channel: *channel,
                unspent: b.deposit.saturating_sub(b.owed),
            });
        }
        Ok(())
    }

    /// Waits (up to `voucher_wait`) until what `payer` leaves unpaid across all its channels is
    /// within the per-payer limit: a payer that abandons debt on one channel gets no work on the
    /// next, and an honest payer's vouchers in flight are waited for rather than refused.
    async fn wait_payer(&self, payer: &Address) -> Result<(), PaymentError> {
        let ready = |books: &Books| Ok(unpaid_of(books, payer) <= self.payer_limit);
        if self.wait_for(self.voucher_wait, ready).await? {
            return Ok(());
        }
        Err(PaymentError::PayerOwes {
            payer: *payer,
            unpaid: unpaid_of(&self.books(), payer),
            limit: self.payer_limit,
        })
    }

    /// Waits up to `wait` until `ready` holds on the books, re-checking whenever a voucher is
    /// taken or work forgiven; false when the time ran out.
    async fn wait_for(
        &self,
        wait: Duration,
        mut ready: impl FnMut(&Books) -> Result<bool, PaymentError>,
    ) -> Result<bool, PaymentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.paid.notified();
            let ok = ready(&self.books())?;
            if ok {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(false);
            }
        }
    }

    /// Takes the channel's state as read from the ledger; true when this read found it newly
    /// closing or settled.
    fn refresh(&self, id: &Hash, c: &Channel) -> bool {
        let mut books = self.books();
        let b = books.entry(*id).or_default();
        if c.provider != self.me {
            b.payer = None;
            return false;
        }
        let was_closed = b.closed;
        b.closed = c.settled || c.close_deadline.is_some();
        b.expiry_height = c.expiry_height;
        if c.settled {
            b.settled = true;
            b.payer.get_or_insert(c.payer);
            b.deposit = Amount::ZERO;
            return !was_closed;
        }
        b.payer = Some(c.payer);
        b.deposit = c.deposit;
        if c.redeemed > b.redeemed {
            b.redeemed = c.redeemed;
        }
        if b.owed < c.redeemed {
            b.owed = c.redeemed;
        }
        for (m, a) in &c.redeemed_per_model {
            let held = b.redeemed_per_model.entry(*m).or_default();
            *held = (*held).max(*a);
        }
        b.closed && !was_closed
    }

    /// Re-reads every channel still taking work (a block watcher: run once per block or so).
    /// Returns the channels whose held voucher must be redeemed now: newly closing (the payer
    /// can settle once the challenge period ends) or about to expire.
    pub async fn follow(&self) -> Result<Vec<Hash>, PaymentError> {
        let info = self
            .chain
            .info()
            .await
            .map_err(|e| PaymentError::Ledger(e.to_string()))?;
        self.tip.store(info.height, Ordering::Relaxed);
        self.challenge_blocks
            .store(info.channel_challenge_blocks, Ordering::Relaxed);
        let watched: Vec<Hash> = self
            .books()
            .iter()
            .filter(|(_, b)| b.payer.is_some() && !b.closed)
            .map(|(id, _)| *id)
            .collect();
        let mut urgent: Vec<Hash> = Vec::new();
        for id in watched {
            match self.chain.channel(&id).await {
                Ok(Some(c)) => {
                    if self.refresh(&id, &c) {
                        urgent.push(id);
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(PaymentError::Ledger(e.to_string())),
            }
        }
        let horizon = info
            .height
            .saturating_add(info.channel_challenge_blocks.saturating_mul(2));
        let expiring: Vec<Hash> = self
            .books()
            .iter()
            .filter(|(id, b)| {
                !urgent.contains(id) && b.expiry_height != 0 && horizon >= b.expiry_height
            })
            .filter(|(_, b)| b.paid() > b.redeemed)
            .map(|(id, _)| *id)
            .collect();
        urgent.extend(expiring);
        Ok(urgent)
    }

    /// A job on `channel` that had charged `job_owed` ended because its requester left: the
    /// frames in flight then were never received, so never paid. After [`CANCEL_GRACE`] for the
    /// payer's vouchers to catch up, what is still unpaid on the channel, up to the job's
    /// charge, is forgiven, so cancellations do not lock the channel; what a payer is forgiven
    /// beyond [`FORGIVEN_ALLOWANCE_BPS`] of what it paid still counts against it. Returns the
    /// amount forgiven.
    pub async fn requester_left(&self, channel: &Hash, job_owed: Amount) -> Amount {
        let caught_up = |books: &Books| Ok(books.get(channel).is_none_or(|b| b.paid() >= b.owed));
        // Caught up or not, the grace is over (the check never fails).
        let _ = self.wait_for(CANCEL_GRACE, caught_up).await;
        let forgiven = {
            let mut books = self.books();
            let Some(b) = books.get_mut(channel) else {
                return Amount::ZERO;
            };
            let amount = b.owed.saturating_sub(b.paid()).min(job_owed);
            b.owed = b.owed.saturating_sub(amount);
            b.forgiven = b.forgiven.checked_add(amount).unwrap_or(b.forgiven);
            amount
        };
        if !forgiven.is_zero() {
            tracing::debug!(target: "agora::provider", %channel, %forgiven, "forgave the frames of a cancelled stream");
            self.paid.notify_waiters();
        }
        forgiven
    }

    /// The ledger refused to redeem the voucher for `cumulative` on `channel`: never send it
    /// again (each try costs a fee and the ledger's state only moves on).
    pub async fn refused(&self, channel: &Hash, cumulative: Amount) {
        {
            let mut books = self.books();
            if let Some(b) = books.get_mut(channel) {
                b.refused = Some(b.refused.map_or(cumulative, |r| r.max(cumulative)));
            }
        }
        self.persist().await;
    }

    /// Adds `amount` of work about to be delivered; refused if the deposit can't cover it.
    pub fn charge(&self, channel: &Hash, amount: Amount) -> Result<(), PaymentError> {
        let mut books = self.books();
        let b = books
            .get_mut(channel)
            .ok_or(PaymentError::UnknownChannel(*channel))?;
        match b.owed.checked_add(amount) {
            Some(owed) if owed <= b.deposit => {
                b.owed = owed;
                Ok(())
            }
            _ => Err(PaymentError::Exhausted {
                channel: *channel,
                unspent: b.deposit.saturating_sub(b.owed),
            }),
        }
    }

    /// Waits until the channel's unpaid work is within the credit limit.
    pub async fn wait_paid(&self, channel: &Hash) -> Result<(), PaymentError> {
        let ready = |books: &Books| {
            let b = books
                .get(channel)
                .ok_or(PaymentError::UnknownChannel(*channel))?;
            let payer_ok = b
                .payer
                .is_none_or(|p| unpaid_of(books, &p) <= self.payer_limit);
            Ok(b.owed.saturating_sub(b.paid()) <= self.credit_limit && payer_ok)
        };
        if self.wait_for(self.voucher_wait, ready).await? {
            Ok(())
        } else {
            Err(PaymentError::Unpaid(self.voucher_wait))
        }
    }

    /// Takes a voucher from the payer if the ledger would pay it (see [`ChannelBook::judge`])
    /// and it is above the best one held. Stored on disk before `Ok`.
    pub async fn accept(&self, sv: SignedVoucher) -> Result<Amount, PaymentError> {
        let id = sv.voucher.channel;
        if self.books().get(&id).is_none_or(|b| b.payer.is_none()) {
            let c = self
                .chain
                .channel(&id)
                .await
                .map_err(|e| PaymentError::Ledger(e.to_string()))?
                .ok_or(PaymentError::UnknownChannel(id))?;
            self.refresh(&id, &c);
        }
        // The ledger's decoding refuses longer lists; bounded before any lookup.
        if sv.voucher.per_model.len() > MAX_MODELS_PER_VOUCHER {
            return Err(PaymentError::BadVoucher(format!(
                "{} models; a voucher names at most {MAX_MODELS_PER_VOUCHER}",
                sv.voucher.per_model.len()
            )));
        }
        // Every rule but the registry first, so only a voucher the payer signed costs lookups.
        if let Verdict::Stale(held) = self.judge(&sv, |_| true)? {
            return Ok(held);
        }
        self.learn_models(&sv.voucher.per_model).await?;
        let registered = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        {
            // Judged again under the same lock as the store: another voucher may have won meanwhile.
            let mut books = self.books();
            let b = books.get_mut(&id).ok_or(PaymentError::UnknownChannel(id))?;
            match b.judge(id, &self.me, &self.chain_id, &sv, |m| {
                registered.contains(m)
            })? {
                Verdict::Stale(held) => return Ok(held),
                Verdict::Better => b.best = Some(sv.clone()),
            }
        }
        self.persist().await;
        self.paid.notify_waiters();
        Ok(sv.voucher.cumulative)
    }

    fn judge(
        &self,
        sv: &SignedVoucher,
        is_registered: impl Fn(&Hash) -> bool,
    ) -> Result<Verdict, PaymentError> {
        let id = sv.voucher.channel;
        let books = self.books();
        let b = books.get(&id).ok_or(PaymentError::UnknownChannel(id))?;
        b.judge(id, &self.me, &self.chain_id, sv, is_registered)
    }

    /// Looks up on the ledger the voucher's models not yet known to be registered.
    async fn learn_models(&self, per_model: &[(Hash, Amount)]) -> Result<(), PaymentError> {
        let unknown: Vec<Hash> = {
            let known = self.registered.lock().unwrap_or_else(|e| e.into_inner());
            per_model
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| !known.contains(m))
                .collect()
        };
        for m in unknown {
            let record = self
                .chain
                .model(&m)
                .await
                .map_err(|e| PaymentError::Ledger(e.to_string()))?;
            if record.is_some() {
                self.registered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(m);
            }
        }
        Ok(())
    }

    /// Writes the unredeemed vouchers. The snapshot is taken under the disk lock, so the last
    /// write always holds the newest state. Concurrent callers share writes (group commit): one
    /// that finds its change already covered by a write made while it waited returns at once,
    /// so a burst of vouchers costs one fsync, not one each.
    async fn persist(&self) {
        let Some(path) = &self.state_path else {
            return;
        };
        let mine = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut on_disk = self.disk.lock().await;
        if *on_disk >= mine {
            return;
        }
        // Read before the snapshot: every change counted up to here is in the books already.
        let covers = self.changes.load(Ordering::SeqCst);
        let snap = Persisted {
            vouchers: self.redeemable(),
        };
        let bytes = serde_json::to_vec(&snap).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        let res = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, &bytes).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        match res {
            Ok(()) => *on_disk = covers,
            Err(e) => {
                tracing::error!(target: "agora::provider", error = %e, path = %path.display(), "cannot persist vouchers")
            }
        }
    }

    /// Vouchers worth redeeming: better than what the ledger paid and not refused by it.
    pub fn redeemable(&self) -> Vec<SignedVoucher> {
        self.books()
            .values()
            .filter(|b| b.paid() > b.redeemed)
            .filter(|b| b.refused.is_none_or(|r| b.paid() > r))
            .filter_map(|b| b.best.clone())
            .collect()
    }

    /// Records that the ledger paid up to `cumulative` on `channel`.
    pub async fn redeemed(&self, channel: &Hash, cumulative: Amount) {
        {
            let mut books = self.books();
            if let Some(b) = books.get_mut(channel)
                && cumulative > b.redeemed
            {
                b.redeemed = cumulative;
            }
        }
        self.persist().await;
    }
}

/// Share of what a payer has paid that may be forgiven after cancelled streams before the rest
/// counts as its debt (basis points).
pub const FORGIVEN_ALLOWANCE_BPS: u16 = 500;
/// How long a cancelled job waits for the payer's vouchers to catch up before the rest of it is
/// forgiven.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// What `payer` owes and has not covered with a voucher, over all its channels, plus what was
/// forgiven it beyond its allowance.
fn unpaid_of(books: &BTreeMap<Hash, ChannelBook>, payer: &Address) -> Amount {
    let add = |a: Amount, x: Amount| a.checked_add(x).unwrap_or(Amount(u128::MAX));
    let mine = || books.values().filter(|b| b.payer.as_ref() == Some(payer));
    let unpaid = mine()
        .map(|b| b.owed.saturating_sub(b.paid()))
        .fold(Amount::ZERO, add);
    let paid = mine().map(ChannelBook::paid).fold(Amount::ZERO, add);
    let forgiven = mine().map(|b| b.forgiven).fold(Amount::ZERO, add);
    add(
        unpaid,
        forgiven.saturating_sub(paid.mul_bps(FORGIVEN_ALLOWANCE_BPS)),
    )
}

fn load(path: &Path) -> Vec<SignedVoucher> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Persisted>(&bytes) {
            Ok(p) => p.vouchers,
            Err(e) => {
                tracing::error!(target: "agora::provider", error = %e, path = %path.display(), "voucher file unreadable; starting without it");
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{SecretKey, Voucher};

    const CHAIN: &str = "agora-test";
    const A: Hash = Hash([1; 32]);
    const B: Hash = Hash([2; 32]);
    const UNREGISTERED: Hash = Hash([9; 32]);

    fn voucher(payer: &SecretKey, cumulative: u128, per_model: &[(Hash, u128)]) -> SignedVoucher {
        Voucher {
            chain_id: CHAIN.into(),
            channel: Hash([7; 32]),
            cumulative: Amount(cumulative),
            per_model: per_model.iter().map(|(m, a)| (*m, Amount(*a))).collect(),
        }
        .sign(payer)
    }

    /// A channel with a deposit of 1,000 whose best voucher held pays 100, all for model A.
    fn book(payer: &SecretKey) -> ChannelBook {
        ChannelBook {
            payer: Some(payer.public()),
            deposit: Amount(1_000),
            owed: Amount(100),
            best: Some(voucher(payer, 100, &[(A, 100)])),
            redeemed: Amount::ZERO,
            redeemed_per_model: BTreeMap::new(),
            expiry_height: 1_000,
            closed: false,
            settled: false,
            refused: None,
            forgiven: Amount::ZERO,
        }
    }

    fn judge(b: &ChannelBook, me: &Address, sv: &SignedVoucher) -> Result<Verdict, PaymentError> {
        b.judge(Hash([7; 32]), me, CHAIN, sv, |m| *m == A || *m == B)
    }

    #[test]
    fn honest_vouchers_are_kept_and_late_ones_answered_with_what_is_held() {
        let payer = SecretKey::from_test_seed("payer");
        let me = SecretKey::from_test_seed("provider").public();
        let b = book(&payer);
        let more = voucher(&payer, 250, &[(A, 200), (B, 50)]);
        assert_eq!(judge(&b, &me, &more), Ok(Verdict::Better));
        let again = voucher(&payer, 100, &[(A, 100)]);
        assert_eq!(judge(&b, &me, &again), Ok(Verdict::Stale(Amount(100))));
    }

    /// The payer lies: each voucher below passed the provider's own checks before it used the
    /// ledger's (signed, sorted, per-model sum within the total, within the deposit, above the
    /// best held), but the ledger would refuse to pay it, so the provider refuses it too.
    #[test]
    fn vouchers_the_ledger_would_refuse_are_refused() {
        let payer = SecretKey::from_test_seed("payer");
        let me = SecretKey::from_test_seed("provider").public();
        let b = book(&payer);
        let registered = |m: &Hash| *m == A || *m == B;
        let liars = [
            // Model A's cumulative amount goes down from the 100 already held.
            (
                voucher(&payer, 200, &[(A, 50), (B, 150)]),
                RedeemError::ModelAmountDecreased(A),
            ),
            // Pays a model the ledger has never registered.
            (
                voucher(&payer, 200, &[(A, 100), (UNREGISTERED, 100)]),
                RedeemError::UnknownModel(UNREGISTERED),
            ),
        ];
        // The channel as a node reports it once the best voucher held is redeemed.
        let ledger = Channel {
            payer: payer.public(),
            provider: me,
            deposit: Amount(1_000),
            redeemed: Amount(100),
            redeemed_per_model: [(A, Amount(100))].into_iter().collect(),
            opened_at: 1,
            expiry_height: 1_000,
            close_deadline: None,
            settled: false,
        };
        for (sv, why) in liars {
            assert_eq!(
                check_voucher(&ledger, &me, CHAIN, &sv, registered),
                Err(why.clone())
            );
            assert_eq!(
                judge(&b, &me, &sv),
                Err(PaymentError::BadVoucher(why.to_string()))
            );
        }
        // And the rules the provider checked before still hold.
        let forged = voucher(&SecretKey::from_test_seed("mallory"), 200, &[(A, 200)]);
        assert_eq!(
            judge(&b, &me, &forged),
            Err(PaymentError::BadVoucher(
                RedeemError::BadSignature.to_string()
            ))
        );
        let greedy = voucher(&payer, 1_001, &[(A, 1_001)]);
        assert!(matches!(
            judge(&b, &me, &greedy),
            Err(PaymentError::BadVoucher(_))
        ));
        let unsorted = voucher(&payer, 300, &[(B, 100), (A, 200)]);
        assert!(matches!(
            judge(&b, &me, &unsorted),
            Err(PaymentError::BadVoucher(_))
        ));
        let mut closed = b.clone();
        closed.payer = None;
        assert!(matches!(
            judge(&closed, &me, &voucher(&payer, 200, &[(A, 200)])),
            Err(PaymentError::Closed(_))
        ));
    }
}

#[cfg(test)]
mod cancel_tests {
    use super::*;
    use agora_types::{SecretKey, Voucher};

    /// Concurrent vouchers share disk writes (group commit), yet each `persist` returns only
    /// once a file holding its voucher, or a better one, is on disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_voucher_is_on_disk_when_persist_returns_though_writes_are_shared() {
        let payer = SecretKey::from_test_seed("payer");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vouchers.json");
        let p = std::sync::Arc::new(Payments::new(
            SecretKey::from_test_seed("provider").public(),
            "agora-test".into(),
            ChainClient::new("http://127.0.0.1:9"),
            Amount(100),
            Amount(400),
            Duration::from_secs(1),
            Some(path.clone()),
        ));
        let ch = Hash([7; 32]);
        p.books().insert(
            ch,
            ChannelBook {
                payer: Some(payer.public()),
                deposit: Amount(1_000_000),
                expiry_height: u64::MAX,
                ..ChannelBook::default()
            },
        );
        let on_disk = |path: &Path| -> u128 {
            let snap: Persisted = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            snap.vouchers
                .iter()
                .map(|v| v.voucher.cumulative.0)
                .max()
                .unwrap_or(0)
        };
        let tasks: Vec<_> = (1..=48u128)
            .map(|k| {
                let (p, path) = (p.clone(), path.clone());
                tokio::spawn(async move {
                    let payer = SecretKey::from_test_seed("payer");
                    let sv = Voucher {
                        chain_id: "agora-test".into(),
                        channel: ch,
                        cumulative: Amount(k * 100),
                        per_model: vec![(Hash([1; 32]), Amount(k * 100))],
                    }
                    .sign(&payer);
                    {
                        let mut books = p.books();
                        let b = books.get_mut(&ch).unwrap();
                        if b.paid() < sv.voucher.cumulative {
                            b.best = Some(sv);
                        }
                    }
                    p.persist().await;
                    assert!(
                        on_disk(&path) >= k * 100,
                        "voucher {k} acknowledged before written"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(on_disk(&path), 4_800);
    }

    /// A payer that never pays cannot farm forgiveness: what it is forgiven beyond 5% of what it
    /// paid counts against it, and an honest payer's lost frames fit in the allowance.
    #[tokio::test]
    async fn forgiveness_for_cancelled_streams_is_bounded_by_what_the_payer_paid() {
        let payer = SecretKey::from_test_seed("payer");
        let me = SecretKey::from_test_seed("provider").public();
        let p = Payments::new(
            me,
            "agora-test".into(),
            ChainClient::new("http://127.0.0.1:9"),
            Amount(100),
            Amount(400),
            Duration::from_secs(1),
            None,
        );
        let ch = Hash([7; 32]);
        let paid = Voucher {
            chain_id: "agora-test".into(),
            channel: ch,
            cumulative: Amount(10_000),
            per_model: vec![(Hash([1; 32]), Amount(10_000))],
        }
        .sign(&payer);
        p.books().insert(
            ch,
            ChannelBook {
                payer: Some(payer.public()),
                deposit: Amount(1_000_000),
                owed: Amount(10_000),
                best: Some(paid),
                expiry_height: u64::MAX,
                ..ChannelBook::default()
            },
        );
        // An honest payer: 300 in flight when its client left, within 5% of 10,000 paid.
        p.charge(&ch, Amount(300)).unwrap();
        assert_eq!(p.requester_left(&ch, Amount(300)).await, Amount(300));
        assert_eq!(unpaid_of(&p.books(), &payer.public()), Amount::ZERO);
        assert!(p.wait_payer(&payer.public()).await.is_ok());
        // A payer that takes 1,000 a job and walks away each time: forgiven, but beyond the
        // allowance (500) it is debt, and past the limit (400) its jobs are refused.
        for _ in 0..2 {
            p.charge(&ch, Amount(1_000)).unwrap();
            p.requester_left(&ch, Amount(1_000)).await;
        }
        assert_eq!(unpaid_of(&p.books(), &payer.public()), Amount(2_300 - 500));
        assert!(matches!(
            p.wait_payer(&payer.public()).await,
            Err(PaymentError::PayerOwes { .. })
        ));
    }
}
