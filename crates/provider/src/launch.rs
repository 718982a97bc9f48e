//! Starting a provider: overlay node, ledger registration, service, offer and redeemer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_market::offer::{Load, MAX_ADDR_BYTES, ModelOffer, Offer, offer_validator};
use agora_p2p::{Handle, Multiaddr, NetConfig, OfferSigner, OfferTerms};
use agora_types::tx::HardwareSummary;
use agora_types::{Amount, SecretKey};

use crate::chain::{ChainClient, ChainError, TxSender};
use crate::payments::Payments;
use crate::register::{ModelListing, ensure_registered};
use crate::service::{Provider, ProviderSettings, ServedModel};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("ledger: {0}")]
    Chain(#[from] ChainError),
    #[error("overlay: {0}")]
    Net(String),
}

/// Everything a provider needs to start.
pub struct Launch {
    pub key: SecretKey,
    pub chain: ChainClient,
    pub net: NetConfig,
    /// Served models with the ledger metadata to register them under.
    pub models: Vec<(ServedModel, ModelListing)>,
    /// Self-bonded stake to hold.
    pub stake: Amount,
    pub settings: ProviderSettings,
    /// Where held vouchers are kept across restarts.
    pub voucher_file: Option<PathBuf>,
    /// Concurrent requests advertised.
    pub slots: u32,
}

/// A running provider.
pub struct RunningProvider {
    pub net: Handle,
    pub provider: Arc<Provider>,
    pub sender: Arc<TxSender>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningProvider {
    /// A dialable address of the provider's overlay node.
    pub async fn p2p_addr(&self) -> Option<Multiaddr> {
        listen_addr(&self.net).await
    }

    /// Stops at once, as a crash would: no goodbye, nothing redeemed (tests of failover).
    pub async fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.net.shutdown().await;
    }

    /// Stops serving: clears the offer, stops the service tasks (the periodic redeem loop among
    /// them, so it cannot race the final redeem for the same voucher), redeems what it holds,
    /// stops the overlay node.
    pub async fn shutdown(self) {
        let _ = self.net.set_offer(None).await;
        for t in &self.tasks {
            t.abort();
        }
        self.provider.redeem_now(&self.sender).await;
        self.net.shutdown().await;
    }
}

/// The first listen address with the node's `/p2p/` suffix, once it listens (waits up to 5 s).
pub async fn listen_addr(net: &Handle) -> Option<Multiaddr> {
    for _ in 0..100 {
        if let Ok(s) = net.status().await
            && let Some(a) = s.listen_addrs.first()
        {
            return format!("{a}/p2p/{}", net.peer_id()).parse().ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Registers on the ledger, starts the overlay node and serves until the returned handle is shut down.
pub async fn launch(l: Launch) -> Result<RunningProvider, LaunchError> {
    let sender = Arc::new(TxSender::new(l.key.clone(), l.chain.clone()).await?);
    let mut net_config = l.net.clone();
    net_config
        .offer_validator
        .get_or_insert_with(offer_validator);
    let (net, inbound) = agora_p2p::spawn(l.key.to_bytes(), net_config, None)
        .await
        .map_err(|e| LaunchError::Net(e.to_string()))?;
    let addr = listen_addr(&net).await;
    let listings: Vec<ModelListing> = l.models.iter().map(|(_, li)| li.clone()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u16);
    let reg = ensure_registered(
        &sender,
        &listings,
        l.stake,
        net.peer_id().to_bytes(),
        addr.iter().map(|a| a.to_string()).collect(),
        HardwareSummary {
            accelerator: "cpu".into(),
            memory_mib: 0,
            cpu_cores: cores,
        },
    )
    .await?;
    tracing::info!(target: "agora::provider", address = %sender.address(), ?reg, "registered on the ledger");
    let payments = Arc::new(Payments::new(
        sender.address(),
        sender.chain_id().to_string(),
        l.chain.clone(),
        l.settings.credit_limit,
        l.settings.payer_limit,
        l.settings.voucher_wait,
        l.voucher_file.clone(),
    ));
    let models: Vec<ServedModel> = l.models.into_iter().map(|(m, _)| m).collect();
    let ids: Vec<[u8; 32]> = models.iter().map(|m| m.sha256.0).collect();
    let offered: Vec<ModelOffer> = models
        .iter()
        .map(|m| ModelOffer {
            model: m.sha256,
            price: m.price,
        })
        .collect();
    let key = l.key.clone();
    let provider = Arc::new(Provider::new(l.key, models, payments, l.settings));
    let mut tasks = vec![tokio::spawn(provider.clone().serve(inbound))];
    let p = provider.clone();
    tasks.push(tokio::spawn(provider.clone().redeem_loop(sender.clone())));
    net.set_offer(Some(OfferTerms {
        signer: offer_signer(key, offered, Arc::new(move || p.active_jobs()), l.slots),
        ttl: Duration::from_secs(60),
    }))
    .await
    .map_err(|e| LaunchError::Net(e.to_string()))?;
    for id in ids {
        // The DHT needs peers; with none yet this fails and offers alone carry discovery.
        let _ = net.provide(id).await;
    }
    Ok(RunningProvider {
        net,
        provider,
        sender,
        tasks,
    })
}

/// Signs our offer for each re-publication: every served model at its price, and the load at
/// that moment (`active()` jobs running against the advertised slots).
pub fn offer_signer(
    key: agora_types::SecretKey,
    models: Vec<ModelOffer>,
    active: Arc<dyn Fn() -> u32 + Send + Sync>,
    slots: u32,
) -> OfferSigner {
    OfferSigner::new(move |stamp| {
        Offer {
            provider: key.public(),
            seq: stamp.seq,
            issued_at_ms: stamp.issued_at_ms,
            expires_at_ms: stamp.expires_at_ms,
            load: Load {
                active: active(),
                slots,
            },
            models: models.clone(),
            addrs: stamp
                .addrs
                .iter()
                .map(|a| a.to_vec())
                .filter(|a| a.len() <= MAX_ADDR_BYTES)
                .collect(),
        }
        .sign(&key)
        .map(|s| s.to_bytes())
        .map_err(|e| e.to_string())
    })
}
