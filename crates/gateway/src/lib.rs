//! The gateway: an OpenAI-compatible HTTP API that routes each request to a provider on the overlay, pays it per token through a payment channel and fails over mid-stream.
//!
//! ```text
//!  OpenAI SDK ──HTTP──► api (auth, validation, SSE) ──► relay (one completion)
//!                                                         │  market.pick: price, latency, load, trust
//!                                                         │  payer.channel_to: open / top up channel
//!                                                         ▼
//!                                   agora-p2p infer stream ──► provider ──► frames
//!                                                         │  each frame: channel.add(cost) -> voucher
//!                                                         │  provider dies/stalls: next provider,
//!                                                         │  continuation = tokens delivered so far
//!                                                         ▼
//!                                   customers.charge(exactly what providers were paid)
//! ```
//! See `docs/design/gateway.md`.

pub mod agent;
pub mod api;
pub mod audit;
pub mod customers;
pub mod dashboard;
mod durable;
pub mod feed;
pub mod http;
pub mod market;
pub mod metrics;
pub mod payer;
pub mod receipts;
pub mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_market::{ChainError, TxSender};
use agora_types::Amount;

pub use customers::{Customer, Customers};
pub use http::HttpLimits;
pub use market::{Constraints, Market};
pub use payer::{Payer, PayerSettings};
pub use relay::{Relay, RelaySettings};

/// Everything a gateway needs besides its overlay node and its account.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub payer: PayerSettings,
    pub relay: RelaySettings,
    /// How often offers and registrations are re-read.
    pub refresh_every: Duration,
    /// Where the API-key book lives (`None`: in memory only).
    pub customers_path: Option<PathBuf>,
    /// Where providers' receipts are kept (`None`: in memory only).
    pub receipts_path: Option<PathBuf>,
    /// Where the batches of receipts committed for audit are kept (`None`: in memory only).
    pub audit_batches_path: Option<PathBuf>,
    /// How often waiting receipts are committed on the ledger for audit.
    pub commit_every: Duration,
    /// How often closing payment channels are checked for settlement.
    pub settle_every: Duration,
    /// Limits on HTTP clients (slow or many).
    pub http: HttpLimits,
    /// How often new blocks are scanned for customers' deposits.
    pub deposits_every: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8646)),
            payer: PayerSettings::default(),
            relay: RelaySettings::default(),
            refresh_every: Duration::from_secs(1),
            customers_path: None,
            receipts_path: None,
            audit_batches_path: None,
            commit_every: Duration::from_secs(10),
            settle_every: Duration::from_secs(5),
            http: HttpLimits::default(),
            deposits_every: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("ledger: {0}")]
    Chain(#[from] ChainError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("customer book: {0}")]
    Customers(std::io::Error),
    #[error("channel journal: {0}")]
    Journal(std::io::Error),
    #[error("receipt store: {0}")]
    Receipts(std::io::Error),
    #[error("audit batch file: {0}")]
    Batches(std::io::Error),
}

/// A running gateway.
pub struct Gateway {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    pub market: Arc<Market>,
    pub payer: Arc<Payer>,
    pub customers: Arc<Customers>,
    pub relay: Arc<Relay>,
    /// What `/metrics` shows (requests, tokens, errors, channel balances).
    pub metrics: metrics::Metrics,
    /// The HTTP server, and what tells it to drain and stop.
    http: tokio::task::JoinHandle<()>,
    stop_http: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds the HTTP API and starts the market refresher. Must run inside a tokio runtime.
    pub async fn start(
        config: GatewayConfig,
        net: agora_p2p::Handle,
        sender: Arc<TxSender>,
    ) -> Result<Gateway, GatewayError> {
        let chain = sender.chain().clone();
        let info = chain.info().await?;
        let market = Arc::new(Market::new(
            net.clone(),
            chain.clone(),
            info.min_provider_stake,
        ));
        let committer = sender.clone();
        let payer = Payer::new(sender, net.clone(), config.payer.clone());
        let recovered = payer.recover().await.map_err(GatewayError::Journal)?;
        if recovered > 0 {
            tracing::info!(target: "agora::gateway", channels = recovered, "closing the channels of an earlier run");
        }
        let customers = Arc::new(
            Customers::open(config.customers_path.clone()).map_err(GatewayError::Customers)?,
        );
        let receipts = Arc::new(
            receipts::ReceiptStore::open(config.receipts_path.clone())
                .map_err(GatewayError::Receipts)?,
        );
        let feed = Arc::new(feed::Feed::new());
        let desk = Arc::new(
            audit::AuditDesk::open(
                receipts.clone(),
                chain.clone(),
                info.chain_id.clone(),
                config.audit_batches_path.clone(),
                feed.clone(),
            )
            .map_err(GatewayError::Batches)?,
        );
        let relay = Arc::new(Relay {
            market: market.clone(),
            payer: payer.clone(),
            net,
            customers: customers.clone(),
            receipts,
            settings: config.relay.clone(),
            feed: feed.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Listen {
                addr: config.listen,
                source,
            })?;
        let metrics = metrics::Metrics::new();
        let app = api::app(api::AppState {
            upstream: Arc::new(api::RelayUpstream(relay.clone())),
            customers: customers.clone(),
            account: payer.address(),
            metrics: metrics.clone(),
            audit: Some(desk.clone()),
            body_timeout: config.http.body_timeout,
            responses: Default::default(),
        })
        .merge(dashboard::router(dashboard::DashboardState {
            market: market.clone(),
            payer: payer.clone(),
            customers: customers.clone(),
            chain: chain.clone(),
            feed: feed.clone(),
        }));
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(http::serve(
            listener,
            app,
            config.http.clone(),
            async move {
                let _ = stopped.await;
            },
            http::DRAIN_TIMEOUT,
        ));
        let mut tasks = vec![
            tokio::spawn(market.clone().refresh_loop(config.refresh_every)),
            tokio::spawn(desk.commit_loop(committer, config.commit_every)),
            tokio::spawn(dashboard::watch(
                chain.clone(),
                market.clone(),
                feed,
                Duration::from_secs(1),
            )),
        ];
        tasks.push(tokio::spawn(customers.clone().write_loop()));
        tasks.push(tokio::spawn(watch_deposits(
            chain,
            payer.address(),
            customers.clone(),
            config.deposits_every,
        )));
        let (watched, gauges) = (payer.clone(), metrics.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let open = watched.channels().await;
                let sum = |f: &dyn Fn(&payer::OpenChannel) -> Amount| {
                    open.iter()
                        .map(|c| f(c).0)
                        .fold(0u128, u128::saturating_add)
                };
                gauges.channels(open.len(), sum(&|c| c.deposit()), sum(&|c| c.cumulative()));
            }
        }));
        let settler = payer.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(config.settle_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                settler.settle_due().await;
            }
        }));
        tracing::info!(target: "agora::gateway", %addr, "gateway listening");
        Ok(Gateway {
            addr,
            market,
            payer,
            customers,
            relay,
            metrics,
            http,
            stop_http: Some(stop_http),
            tasks,
        })
    }

    /// Stops accepting requests and lets the ones in flight finish (streams to their `[DONE]`,
    /// for up to `http::DRAIN_TIMEOUT`), then closes every payment channel (after up to 3 s for
    /// the providers to acknowledge the last vouchers) and writes the customer book. The unspent
    /// deposits come back when a later run (or `settle_due`) settles the channels after the
    /// challenge period.
    pub async fn shutdown(mut self) -> usize {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.http).await {
            tracing::error!(target: "agora::gateway", error = %e, "the HTTP server task failed");
        }
        for t in &self.tasks {
            t.abort();
        }
        let closed = self.payer.close_all(Duration::from_secs(3)).await;
        if let Err(e) = self.customers.flush() {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write the customer book");
        }
        closed
    }

    /// The dashboard's address.
    pub fn dashboard_url(&self) -> String {
        format!("http://{}/dashboard", self.addr)
    }

    /// Base URL of the OpenAI-compatible API.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.customers.flush();
        self.http.abort();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Credits customers for transfers from their accounts to the gateway's, block by block. A new
/// book starts at the current tip: transfers from before the gateway's first run are not
/// deposits to it.
async fn watch_deposits(
    chain: agora_market::ChainClient,
    me: agora_types::Address,
    customers: Arc<Customers>,
    every: Duration,
) {
    /// Blocks read per tick, so catching up never starves the rest of the gateway.
    const MAX_BLOCKS_PER_TICK: u64 = 500;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(info) = chain.info().await else {
            continue;
        };
        let Some(mut h) = customers.deposits_scanned() else {
            customers.deposit_block(info.height, &[]);
            continue;
        };
        let until = info.height.min(h.saturating_add(MAX_BLOCKS_PER_TICK));
        while h < until {
            let Ok(Some(txs)) = chain.block_txs(h + 1).await else {
                break; // try again next tick
            };
            let deposits: Vec<_> = txs
                .iter()
                .filter(|(_, r)| r.outcome == agora_types::Outcome::Success)
                .filter_map(|(stx, _)| match &stx.tx.body {
                    agora_types::TxBody::Transfer { to, amount } if *to == me => {
                        Some((stx.tx.signer, *amount))
                    }
                    _ => None,
                })
                .collect();
            h += 1;
            for (account, amount) in customers.deposit_block(h, &deposits) {
                tracing::warn!(target: "agora::gateway", %account, %amount, height = h, "deposit from an account with no API key; not credited");
            }
        }
    }
}
