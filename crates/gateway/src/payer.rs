//! The gateway's side of payment channels: one channel per provider, funded from the gateway's
//! account, and a cumulative voucher signed for exactly the work received so far.
//!
//! The gateway never signs for a frame before it has the frame, so it never pays for undelivered
//! tokens; the provider never streams more than its credit limit ahead of the vouchers it holds.
//! Vouchers go out on the overlay's RPC protocol, coalesced: when several frames arrive while a
//! voucher is in flight, the next voucher covers them all.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_market::protocol::{RpcReply, RpcRequest};
use agora_market::{ChainError, TxSender};
use agora_p2p::{Handle, PeerId};
use agora_types::{Address, Amount, Hash, TxBody, Voucher};
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
}

impl Default for PayerSettings {
    fn default() -> Self {
        Self {
            deposit: Amount::from_agr(10),
            low_water: Amount::from_agr(2),
            expiry_blocks: 1_000_000,
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

/// Opens, funds and pays channels.
pub struct Payer {
    sender: Arc<TxSender>,
    net: Handle,
    settings: PayerSettings,
    channels: tokio::sync::Mutex<BTreeMap<Address, Arc<OpenChannel>>>,
}

impl Payer {
    pub fn new(sender: Arc<TxSender>, net: Handle, settings: PayerSettings) -> Arc<Payer> {
        Arc::new(Payer {
            sender,
            net,
            settings,
            channels: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    pub fn address(&self) -> Address {
        self.sender.address()
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
        tokio::spawn(self.clone().voucher_pump(c.clone()));
        tracing::info!(target: "agora::gateway", channel = %id, %provider, "channel opened");
        Ok(c)
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
