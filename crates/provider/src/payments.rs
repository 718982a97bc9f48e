//! The provider's side of payment channels: what each channel owes, the best voucher held for it,
//! and how much unpaid work it may run up before streaming pauses.
//!
//! Pay-as-you-stream: the provider adds the cost of every frame it sends to the channel's `owed`;
//! the payer answers with cumulative vouchers. Before sending more, the provider waits until
//! `owed - best voucher <= credit_limit`, so at most `credit_limit` (plus one frame) is ever at
//! risk for the provider, and the payer never pays for a token it has not received. The best
//! voucher per channel is written to disk (write-then-rename) before it is acknowledged, so a
//! provider killed at any moment still redeems everything it was paid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use agora_ledger::state::Channel;
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
    #[error("channel {channel} has {unspent} left, not enough for more work")]
    Exhausted { channel: Hash, unspent: Amount },
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
}

impl ChannelBook {
    pub fn paid(&self) -> Amount {
        self.best
            .as_ref()
            .map_or(Amount::ZERO, |v| v.voucher.cumulative)
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    vouchers: Vec<SignedVoucher>,
}

/// Every channel this provider serves.
pub struct Payments {
    me: Address,
    chain_id: String,
    chain: ChainClient,
    credit_limit: Amount,
    voucher_wait: Duration,
    books: Mutex<BTreeMap<Hash, ChannelBook>>,
    paid: Notify,
    state_path: Option<PathBuf>,
    /// Serialises disk writes (the books lock is never held across IO).
    disk: tokio::sync::Mutex<()>,
}

impl Payments {
    pub fn new(
        me: Address,
        chain_id: String,
        chain: ChainClient,
        credit_limit: Amount,
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
            voucher_wait,
            books: Mutex::new(books),
            paid: Notify::new(),
            state_path,
            disk: tokio::sync::Mutex::new(()),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, BTreeMap<Hash, ChannelBook>> {
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
        let books = self.books();
        let b = books
            .get(channel)
            .ok_or(PaymentError::UnknownChannel(*channel))?;
        if b.payer != Some(*payer) {
            return Err(PaymentError::WrongParty {
                channel: *channel,
                what: "payer",
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

    fn refresh(&self, id: &Hash, c: &Channel) {
        let mut books = self.books();
        let b = books.entry(*id).or_default();
        if c.provider != self.me {
            b.payer = None;
            return;
        }
        if c.settled || c.close_deadline.is_some() {
            b.payer = None;
            b.deposit = Amount::ZERO;
            return;
        }
        b.payer = Some(c.payer);
        b.deposit = c.deposit;
        if c.redeemed > b.redeemed {
            b.redeemed = c.redeemed;
        }
        if b.owed < c.redeemed {
            b.owed = c.redeemed;
        }
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
        let deadline = tokio::time::Instant::now() + self.voucher_wait;
        loop {
            let notified = self.paid.notified();
            {
                let books = self.books();
                let b = books
                    .get(channel)
                    .ok_or(PaymentError::UnknownChannel(*channel))?;
                if b.owed.saturating_sub(b.paid()) <= self.credit_limit {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PaymentError::Unpaid(self.voucher_wait));
            }
        }
    }

    /// Takes a voucher from the payer: it must be signed by the channel's payer, for this chain,
    /// cumulative above the best one held and within the deposit. Stored on disk before `Ok`.
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
        {
            let mut books = self.books();
            let b = books.get_mut(&id).ok_or(PaymentError::UnknownChannel(id))?;
            let payer = b.payer.ok_or(PaymentError::Closed(id))?;
            let v = &sv.voucher;
            if v.chain_id != self.chain_id {
                return Err(PaymentError::BadVoucher(
                    "voucher is for another chain".into(),
                ));
            }
            sv.verify(&payer)
                .map_err(|_| PaymentError::BadVoucher("signature is not the payer's".into()))?;
            if v.cumulative > b.deposit {
                return Err(PaymentError::BadVoucher(format!(
                    "cumulative {} exceeds the deposit {}",
                    v.cumulative, b.deposit
                )));
            }
            let mut sum = Amount::ZERO;
            let mut last: Option<Hash> = None;
            for (m, a) in &v.per_model {
                if last.is_some_and(|l| l >= *m) {
                    return Err(PaymentError::BadVoucher("per-model list not sorted".into()));
                }
                last = Some(*m);
                sum = sum
                    .checked_add(*a)
                    .ok_or_else(|| PaymentError::BadVoucher("per-model overflow".into()))?;
            }
            if sum > v.cumulative {
                return Err(PaymentError::BadVoucher(
                    "per-model amounts exceed the total".into(),
                ));
            }
            if v.cumulative <= b.paid() {
                // Late or duplicate: harmless, nothing to store.
                return Ok(b.paid());
            }
            b.best = Some(sv.clone());
        }
        self.persist().await;
        self.paid.notify_waiters();
        Ok(sv.voucher.cumulative)
    }

    /// Writes the unredeemed vouchers. The snapshot is taken under the disk lock, so the last
    /// write always holds the newest state.
    async fn persist(&self) {
        let Some(path) = &self.state_path else {
            return;
        };
        let _guard = self.disk.lock().await;
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
        if let Err(e) = res {
            tracing::error!(target: "agora::provider", error = %e, path = %path.display(), "cannot persist vouchers");
        }
    }

    /// Vouchers worth redeeming: better than what the ledger paid.
    pub fn redeemable(&self) -> Vec<SignedVoucher> {
        self.books()
            .values()
            .filter(|b| b.paid() > b.redeemed)
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
