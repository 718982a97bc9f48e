//! The gateway's side of payment channels: one channel per provider, funded from the gateway's
//! account, and a cumulative voucher signed for exactly the work received so far.
//!
//! The gateway never signs for a frame before it has the frame, so it never pays for undelivered
//! tokens; the provider never streams more than its credit limit ahead of the vouchers it holds.
//! Vouchers go out on the overlay's RPC protocol, coalesced: when several frames arrive while a
//! voucher is in flight, the next voucher covers them all.
//!
//! Closing: on shutdown the gateway waits (bounded) for its last vouchers to be acknowledged and
//! sends `CloseChannel` for each channel; the ledger then gives the provider the challenge period
//! to redeem. `settle_due` (run periodically) sends `SettleChannel`, which refunds the unspent
//! deposit, once the deadline has passed and the provider has redeemed everything signed, or one
//! more challenge period later if it has not. Every channel the gateway opens is written to a
//! journal (write, fsync, rename) before it is used, so channels of a gateway that crashed are
//! found, closed and settled by the next start (`recover`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_market::protocol::{RpcReply, RpcRequest};
use agora_market::{ChainError, TxSender};
use agora_p2p::{Handle, PeerId};
use agora_types::{Address, Amount, Hash, TxBody, Voucher};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Channel funding policy.
#[derive(Debug, Clone)]
pub struct PayerSettings {
    /// Deposit of a new channel (and of each top-up).
    pub deposit: Amount,
    /// Top up when less than this is left unspent.
    pub low_water: Amount,
    /// Channel lifetime in blocks.
    pub expiry_blocks: u64,
    /// The channel journal (`None`: in memory only, channels of a crashed run stay open until
    /// they expire).
    pub journal: Option<PathBuf>,
}

impl Default for PayerSettings {
    fn default() -> Self {
        Self {
            deposit: Amount::from_agr(10),
            low_water: Amount::from_agr(2),
            expiry_blocks: 1_000_000,
            journal: None,
        }
    }
}

/// One open channel to one provider.
pub struct OpenChannel {
    pub id: Hash,
    pub provider: Address,
    peer: PeerId,
    inner: Mutex<ChannelState>,
    dirty: Notify,
}

#[derive(Debug, Default, Clone)]
struct ChannelState {
    deposit: Amount,
    /// Cost of all work received on this channel.
    cumulative: Amount,
    per_model: BTreeMap<Hash, Amount>,
    /// The highest cumulative the provider acknowledged.
    acked: Amount,
}

impl OpenChannel {
    /// Adds `amount` of received work on `model`.
    pub fn add(&self, model: Hash, amount: Amount) {
        if amount.is_zero() {
            return;
        }
        {
            let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            s.cumulative = s.cumulative.checked_add(amount).unwrap_or(s.cumulative);
            let m = s.per_model.entry(model).or_insert(Amount::ZERO);
            *m = m.checked_add(amount).unwrap_or(*m);
        }
        self.dirty.notify_one();
    }

    /// What the gateway locked in the channel.
    pub fn deposit(&self) -> Amount {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).deposit
    }

    /// Total signed for so far.
    pub fn cumulative(&self) -> Amount {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cumulative
    }

    /// Highest cumulative the provider acknowledged.
    pub fn acked(&self) -> Amount {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).acked
    }

    fn unspent(&self) -> Amount {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.deposit.saturating_sub(s.cumulative)
    }
}

/// A channel the gateway asked to close and has not settled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingChannel {
    pub id: Hash,
    pub provider: Address,
    /// The last cumulative voucher signed on it (what the provider may still redeem).
    pub signed: Amount,
}

/// An `OpenChannel` journaled before it was sent and not yet seen final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOpen {
    pub id: Hash,
    pub provider: Address,
    /// After this height it can no longer matter (the channel, if it landed, has expired).
    pub expiry_height: u64,
}

/// What the journal file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    open: Vec<ClosingChannel>,
    closing: Vec<ClosingChannel>,
    #[serde(default)]
    pending: Vec<PendingOpen>,
}

/// One provider's place in the payer. Its own lock serialises that provider's open (one pending
/// open per provider), so no request waits behind another provider's open.
#[derive(Default)]
struct Slot {
    channel: tokio::sync::Mutex<Option<Arc<OpenChannel>>>,
    /// A background top-up is under way.
    topping_up: std::sync::atomic::AtomicBool,
}

/// Opens, funds and pays channels.
pub struct Payer {
    sender: Arc<TxSender>,
    net: Handle,
    settings: PayerSettings,
    slots: Mutex<BTreeMap<Address, Arc<Slot>>>,
    /// Every open channel, by provider (read by `channels`, the journal and `close_all`).
    channels: tokio::sync::Mutex<BTreeMap<Address, Arc<OpenChannel>>>,
    /// Opens sent, or about to be, whose outcome this run has not seen.
    pending: Mutex<BTreeMap<Hash, PendingOpen>>,
    /// Channels this run closed, for the streams still paying on them.
    draining: Mutex<BTreeMap<Hash, Arc<OpenChannel>>>,
    closing: tokio::sync::Mutex<BTreeMap<Hash, ClosingChannel>>,
    /// Serialises journal writes.
    disk: tokio::sync::Mutex<()>,
}

impl Payer {
    pub fn new(sender: Arc<TxSender>, net: Handle, settings: PayerSettings) -> Arc<Payer> {
        Arc::new(Payer {
            sender,
            net,
            settings,
            slots: Mutex::new(BTreeMap::new()),
            channels: tokio::sync::Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(BTreeMap::new()),
            closing: tokio::sync::Mutex::new(BTreeMap::new()),
            disk: tokio::sync::Mutex::new(()),
        })
    }

    pub fn address(&self) -> Address {
        self.sender.address()
    }

    /// The chain this payer's channels live on.
    pub fn chain_id(&self) -> &str {
        self.sender.chain_id()
    }

    /// Every channel opened by this gateway run.
    pub async fn channels(&self) -> Vec<Arc<OpenChannel>> {
        self.channels.lock().await.values().cloned().collect()
    }

    fn slot(&self, provider: &Address) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*provider)
            .or_default()
            .clone()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<Hash, PendingOpen>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel to `provider`. A request waits only when there is none yet (behind at most
    /// that provider's one pending open) or when the channel has nothing left; below the
    /// low-water mark it is topped up in the background, ahead of need.
    pub async fn channel_to(
        self: &Arc<Self>,
        provider: Address,
        peer: PeerId,
    ) -> Result<Arc<OpenChannel>, ChainError> {
        let slot = self.slot(&provider);
        let mut held = slot.channel.lock().await;
        if let Some(c) = held.as_ref() {
            let c = c.clone();
            if c.unspent().is_zero() {
                self.top_up(&c).await?;
            } else if c.unspent() < self.settings.low_water
                && !slot
                    .topping_up
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let (me, slot, ch) = (self.clone(), slot.clone(), c.clone());
                tokio::spawn(async move {
                    if let Err(e) = me.top_up(&ch).await {
                        tracing::warn!(target: "agora::gateway", channel = %ch.id, error = %e, "top-up failed");
                    }
                    slot.topping_up
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return Ok(c);
        }
        let c = self.open(provider, peer).await?;
        *held = Some(c.clone());
        Ok(c)
    }

    async fn top_up(&self, c: &OpenChannel) -> Result<(), ChainError> {
        self.sender
            .send(TxBody::TopUpChannel {
                channel: c.id,
                amount: self.settings.deposit,
            })
            .await?;
        let mut s = c.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.deposit = s
            .deposit
            .checked_add(self.settings.deposit)
            .unwrap_or(s.deposit);
        Ok(())
    }

    /// Opens a channel to `provider`, journaled as pending before the transaction is sent, so
    /// one that lands after we stopped waiting (or after a crash) is found and closed.
    async fn open(
        self: &Arc<Self>,
        provider: Address,
        peer: PeerId,
    ) -> Result<Arc<OpenChannel>, ChainError> {
        let height = self.sender.chain().info().await?.height;
        let expiry_height = height + self.settings.expiry_blocks;
        let me = self.sender.address();
        let journal = self.clone();
        let recorded: Arc<Mutex<Option<Hash>>> = Arc::default();
        let recorded_in = recorded.clone();
        let sent = self
            .sender
            .send_after(
                TxBody::OpenChannel {
                    provider,
                    deposit: self.settings.deposit,
                    expiry_height,
                },
                |nonce| async move {
                    let id = agora_ledger::channels::channel_id(&me, &provider, nonce);
                    *recorded_in.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
                    journal.pending().insert(
                        id,
                        PendingOpen {
                            id,
                            provider,
                            expiry_height,
                        },
                    );
                    journal.write_journal().await.map_err(|e| e.to_string())
                },
            )
            .await;
        let nonce = match sent {
            Ok((_, nonce)) => nonce,
            // Not final yet: it may still land; the pending entry stays for `settle_due`.
            Err(e @ ChainError::NotFinal(..)) => return Err(e),
            Err(e) => {
                // Not sent, refused, or failed on the ledger: it created nothing.
                let id = *recorded.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = id {
                    self.pending().remove(&id);
                    let _ = self.write_journal().await;
                }
                return Err(e);
            }
        };
        let id = agora_ledger::channels::channel_id(&me, &provider, nonce);
        let c = Arc::new(OpenChannel {
            id,
            provider,
            peer,
            inner: Mutex::new(ChannelState {
                deposit: self.settings.deposit,
                ..ChannelState::default()
            }),
            dirty: Notify::new(),
        });
        self.channels.lock().await.insert(provider, c.clone());
        self.pending().remove(&id);
        // Journaled as open before first use: a crash from here on leaves a channel the next
        // run closes.
        if let Err(e) = self.write_journal().await {
            tracing::error!(target: "agora::gateway", channel = %id, error = %e, "cannot write the channel journal");
        }
        tokio::spawn(self.clone().voucher_pump(c.clone()));
        tracing::info!(target: "agora::gateway", channel = %id, %provider, "channel opened");
        Ok(c)
    }

    /// Opens journaled but not seen final.
    pub fn pending_opens(&self) -> Vec<PendingOpen> {
        self.pending().values().cloned().collect()
    }

    /// Channels asked to close and not yet settled.
    pub async fn closing(&self) -> Vec<ClosingChannel> {
        let live = self
            .draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.closing
            .lock()
            .await
            .values()
            .map(|c| {
                // A stream still in flight when the close was sent keeps paying on the
                // channel: what was signed is its latest total.
                let mut c = c.clone();
                if let Some(open) = live.get(&c.id) {
                    c.signed = c.signed.max(open.cumulative());
                }
                c
            })
            .collect()
    }

    /// Waits up to `ack_wait` for the providers to acknowledge the last vouchers, then asks the
    /// ledger to close every open channel. Returns how many close transactions went through.
    pub async fn close_all(&self, ack_wait: Duration) -> usize {
        let open: Vec<Arc<OpenChannel>> = std::mem::take(&mut *self.channels.lock().await)
            .into_values()
            .collect();
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let until = Instant::now() + ack_wait;
        while Instant::now() < until && open.iter().any(|c| c.acked() < c.cumulative()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut closed = 0;
        for c in open {
            let entry = ClosingChannel {
                id: c.id,
                provider: c.provider,
                signed: c.cumulative(),
            };
            match self
                .sender
                .send(TxBody::CloseChannel { channel: c.id })
                .await
            {
                Ok(_) => {
                    closed += 1;
                    tracing::info!(target: "agora::gateway", channel = %c.id, signed = %entry.signed, "channel closing");
                }
                // Left in the journal as closing: `settle_due` retries through the ledger's view.
                Err(e) => {
                    tracing::warn!(target: "agora::gateway", channel = %c.id, error = %e, "close failed")
                }
            }
            self.closing.lock().await.insert(c.id, entry);
            self.draining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(c.id, c.clone());
        }
        if let Err(e) = self.write_journal().await {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write the channel journal");
        }
        closed
    }

    /// Reads the journal of an earlier run: its open channels are closed (their vouchers'
    /// totals died with that run, so they cannot be reused) and join the closing set.
    pub async fn recover(&self) -> std::io::Result<usize> {
        let Some(path) = &self.settings.journal else {
            return Ok(0);
        };
        let j: Journal = crate::durable::read_json_or_default(path)?;
        let n = j.open.len() + j.closing.len() + j.pending.len();
        // Opens an earlier run sent without seeing them final: `settle_due` closes any that
        // landed.
        self.pending()
            .extend(j.pending.into_iter().map(|p| (p.id, p)));
        {
            let mut closing = self.closing.lock().await;
            for c in j.closing {
                closing.insert(c.id, c);
            }
        }
        for c in j.open {
            if let Err(e) = self
                .sender
                .send(TxBody::CloseChannel { channel: c.id })
                .await
            {
                tracing::warn!(target: "agora::gateway", channel = %c.id, error = %e, "close of a recovered channel failed");
            }
            self.closing.lock().await.insert(c.id, c);
        }
        self.write_journal().await?;
        Ok(n)
    }

    /// Settles every closing channel whose time has come; returns the refunds received.
    pub async fn settle_due(&self) -> Vec<(Hash, Amount)> {
        let chain = self.sender.chain().clone();
        let Ok(info) = chain.info().await else {
            return Vec::new();
        };
        self.close_landed_opens(&chain, info.height).await;
        let pending: Vec<ClosingChannel> = self.closing().await;
        let mut settled = Vec::new();
        for c in pending {
            let view = match chain.channel(&c.id).await {
                Ok(v) => v,
                Err(_) => continue,
            };
            let done = match view {
                None => true,
                Some(ch) if ch.settled => true,
                Some(ch) => {
                    let Some(deadline) = ch.close_deadline else {
                        // Our close never landed (e.g. the ledger was down): ask again.
                        let _ = self
                            .sender
                            .send(TxBody::CloseChannel { channel: c.id })
                            .await;
                        continue;
                    };
                    // Past the deadline the ledger would refund at once; giving a provider that
                    // has not yet redeemed our last voucher one more challenge period keeps an
                    // honest but slow provider whole.
                    let paid_up = ch.redeemed >= c.signed;
                    let grace = deadline.saturating_add(info.channel_challenge_blocks);
                    if info.height < deadline || (!paid_up && info.height < grace) {
                        continue;
                    }
                    let refund = ch.unspent();
                    match self
                        .sender
                        .send(TxBody::SettleChannel { channel: c.id })
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(target: "agora::gateway", channel = %c.id, %refund, "channel settled");
                            settled.push((c.id, refund));
                            true
                        }
                        Err(e) => {
                            tracing::warn!(target: "agora::gateway", channel = %c.id, error = %e, "settle failed");
                            false
                        }
                    }
                }
            };
            if done {
                self.closing.lock().await.remove(&c.id);
                self.draining
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&c.id);
            }
        }
        if !settled.is_empty()
            && let Err(e) = self.write_journal().await
        {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write the channel journal");
        }
        settled
    }

    /// Pending opens that landed after all are closed (their deposit would otherwise sit until
    /// expiry); ones past their expiry are forgotten.
    async fn close_landed_opens(&self, chain: &agora_market::ChainClient, height: u64) {
        let pending = self.pending_opens();
        if pending.is_empty() {
            return;
        }
        let mut changed = false;
        for p in pending {
            match chain.channel(&p.id).await {
                Ok(Some(_)) => {
                    if let Err(e) = self
                        .sender
                        .send(TxBody::CloseChannel { channel: p.id })
                        .await
                    {
                        tracing::warn!(target: "agora::gateway", channel = %p.id, error = %e, "close of a late open failed; retrying later");
                        continue;
                    }
                    tracing::info!(target: "agora::gateway", channel = %p.id, "an open that landed late is closing");
                    self.closing.lock().await.insert(
                        p.id,
                        ClosingChannel {
                            id: p.id,
                            provider: p.provider,
                            signed: Amount::ZERO,
                        },
                    );
                    self.pending().remove(&p.id);
                    changed = true;
                }
                Ok(None) if height > p.expiry_height => {
                    self.pending().remove(&p.id);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed && let Err(e) = self.write_journal().await {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write the channel journal");
        }
    }

    async fn write_journal(&self) -> std::io::Result<()> {
        let Some(path) = &self.settings.journal else {
            return Ok(());
        };
        let _guard = self.disk.lock().await;
        let open = self
            .channels
            .lock()
            .await
            .values()
            .map(|c| ClosingChannel {
                id: c.id,
                provider: c.provider,
                signed: c.cumulative(),
            })
            .collect();
        let closing = self.closing().await;
        let pending = self.pending_opens();
        let bytes = serde_json::to_vec_pretty(&Journal {
            open,
            closing,
            pending,
        })
        .map_err(std::io::Error::other)?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::durable::write_atomically(&path, &bytes)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn voucher(&self, s: &ChannelState, channel: Hash) -> agora_types::SignedVoucher {
        Voucher {
            chain_id: self.sender.chain_id().to_string(),
            channel,
            cumulative: s.cumulative,
            per_model: s.per_model.iter().map(|(m, a)| (*m, *a)).collect(),
        }
        .sign(self.sender.key())
    }

    /// Sends the latest voucher whenever the channel's total grows; one in flight at a time.
    async fn voucher_pump(self: Arc<Self>, c: Arc<OpenChannel>) {
        loop {
            c.dirty.notified().await;
            loop {
                let state = c.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if state.cumulative <= state.acked {
                    break;
                }
                let sv = self.voucher(&state, c.id);
                let body =
                    serde_json::to_vec(&RpcRequest::Voucher { voucher: sv }).unwrap_or_default();
                match tokio::time::timeout(Duration::from_secs(10), self.net.rpc(c.peer, body))
                    .await
                {
                    Ok(Ok(reply)) => match serde_json::from_slice::<RpcReply>(&reply) {
                        Ok(RpcReply::Accepted { cumulative }) => {
                            let mut s = c.inner.lock().unwrap_or_else(|e| e.into_inner());
                            if cumulative > s.acked {
                                s.acked = cumulative;
                            }
                        }
                        Ok(RpcReply::Rejected { message }) => {
                            tracing::warn!(target: "agora::gateway", channel = %c.id, %message, "voucher rejected");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(target: "agora::gateway", channel = %c.id, error = %e, "bad voucher reply");
                            break;
                        }
                    },
                    Ok(Err(e)) => {
                        tracing::debug!(target: "agora::gateway", channel = %c.id, error = %e, "voucher not delivered");
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
