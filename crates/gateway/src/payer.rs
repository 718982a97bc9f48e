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

/// What the journal file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    open: Vec<ClosingChannel>,
    closing: Vec<ClosingChannel>,
}

/// Opens, funds and pays channels.
pub struct Payer {
    sender: Arc<TxSender>,
    net: Handle,
    settings: PayerSettings,
    channels: tokio::sync::Mutex<BTreeMap<Address, Arc<OpenChannel>>>,
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
            channels: tokio::sync::Mutex::new(BTreeMap::new()),
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

    /// The channel to `provider`, opened or topped up first if needed.
    pub async fn channel_to(
        self: &Arc<Self>,
        provider: Address,
        peer: PeerId,
    ) -> Result<Arc<OpenChannel>, ChainError> {
        let mut map = self.channels.lock().await;
        if let Some(c) = map.get(&provider) {
            if c.unspent() < self.settings.low_water {
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
            }
            return Ok(c.clone());
        }
        let height = self.sender.chain().info().await?.height;
        let (_, nonce) = self
            .sender
            .send(TxBody::OpenChannel {
                provider,
                deposit: self.settings.deposit,
                expiry_height: height + self.settings.expiry_blocks,
            })
            .await?;
        let id = agora_ledger::channels::channel_id(&self.sender.address(), &provider, nonce);
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
        map.insert(provider, c.clone());
        drop(map);
        // Journaled before first use: a crash from here on leaves a channel the next run closes.
        if let Err(e) = self.write_journal().await {
            tracing::error!(target: "agora::gateway", channel = %id, error = %e, "cannot write the channel journal");
        }
        tokio::spawn(self.clone().voucher_pump(c.clone()));
        tracing::info!(target: "agora::gateway", channel = %id, %provider, "channel opened");
        Ok(c)
    }

    /// Channels asked to close and not yet settled.
    pub async fn closing(&self) -> Vec<ClosingChannel> {
        self.closing.lock().await.values().cloned().collect()
    }

    /// Waits up to `ack_wait` for the providers to acknowledge the last vouchers, then asks the
    /// ledger to close every open channel. Returns how many close transactions went through.
    pub async fn close_all(&self, ack_wait: Duration) -> usize {
        let open: Vec<Arc<OpenChannel>> = std::mem::take(&mut *self.channels.lock().await)
            .into_values()
            .collect();
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
        let n = j.open.len() + j.closing.len();
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
        let pending: Vec<ClosingChannel> = self.closing.lock().await.values().cloned().collect();
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
            }
        }
        if !settled.is_empty()
            && let Err(e) = self.write_journal().await
        {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write the channel journal");
        }
        settled
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
        let closing = self.closing.lock().await.values().cloned().collect();
        let bytes =
            serde_json::to_vec_pretty(&Journal { open, closing }).map_err(std::io::Error::other)?;
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
