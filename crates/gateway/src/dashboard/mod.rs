//! The dashboard: one page, served by the gateway, that shows money, proofs and routing together.
//!
//! ```text
//!  GET /dashboard               the page (HTML, JS and CSS embedded in the binary; no CDN)
//!  GET /dashboard/api/overview  one snapshot: chain, validators, models, providers (stake, prices,
//!                               load, how they served, probation), this gateway's channels and
//!                               the recent requests, verdicts and blocks
//!  GET /dashboard/api/markets   each market (members, usage) with its last epochs' reports:
//!                               emission, each provider's incentive and pay, validators' weights
//!  GET /dashboard/api/me        the wallet behind a bearer API key: credit, spent, its limits,
//!                               ledger balance, and this gateway's own account
//!  GET /dashboard/api/spend/{a}  what an account (an agent, a gateway) paid providers through
//!                               its channels, from the ledger
//!  GET /dashboard/events        server-sent events from the [`Feed`]: the history, then live
//! ```
//!
//! The snapshot is read once when the page opens; after that the page only applies events. The
//! playground talks to the ordinary `/v1/chat/completions` with the key the user gives it (or
//! the one `agora dev` puts in the URL's fragment, which browsers never send to the server).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agora_market::ChainClient;
use agora_market::chain::{ActiveValidator, BlockTxs, StatusView};
use agora_types::{Address, Amount, Hash, Price};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::ApiError;
use crate::customers::Customers;
use crate::feed::{BlockEvent, Feed, FeedEvent, ProviderEntry, ProvidersEvent};
use crate::market::{Market, ProviderView};
use crate::payer::Payer;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Recent events of each kind the snapshot carries.
const SNAPSHOT_EVENTS: usize = 50;

/// What the dashboard reads.
pub struct DashboardState {
    pub market: Arc<Market>,
    pub payer: Arc<Payer>,
    pub customers: Arc<Customers>,
    pub chain: ChainClient,
    pub feed: Arc<Feed>,
}

type Shared = Arc<DashboardState>;

/// The dashboard's routes, to merge into the gateway's HTTP API.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route(
            "/dashboard",
            get(|| asset(INDEX_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/dashboard/",
            get(|| asset(INDEX_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/dashboard/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/dashboard/style.css",
            get(|| asset(STYLE_CSS, "text/css; charset=utf-8")),
        )
        .route("/dashboard/api/overview", get(overview))
        .route("/dashboard/api/markets", get(markets))
        .route("/dashboard/api/me", get(me))
        .route("/dashboard/api/spend/{address}", get(spend))
        .route("/dashboard/events", get(events))
        .with_state(Arc::new(state))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct Overview {
    gateway: Address,
    chain: Option<StatusView>,
    validators: Vec<ActiveValidator>,
    models: Vec<ModelRow>,
    providers: Vec<ProviderRow>,
    channels: Vec<ChannelRow>,
    requests: Vec<FeedEvent>,
    verdicts: Vec<FeedEvent>,
    blocks: Vec<FeedEvent>,
}

#[derive(Serialize)]
struct ModelRow {
    sha256: Hash,
    name: String,
    kind: agora_types::ModelKind,
    /// The offers' prices, cheapest first.
    prices: Vec<Price>,
}

#[derive(Serialize)]
struct ProviderRow {
    /// What the feed's `providers` event carries for it.
    #[serde(flatten)]
    entry: ProviderEntry,
    load_permille: u16,
    free_slots: u32,
    /// How it served this gateway.
    in_flight: u32,
    successes: u64,
    failures: u64,
    ttft_ms: f64,
    tokens_per_sec: f64,
}

#[derive(Serialize)]
struct ChannelRow {
    id: Hash,
    provider: Address,
    deposit: Amount,
    /// Signed for so far (what the provider can claim).
    spent: Amount,
    /// The most the provider acknowledged.
    acked: Amount,
}

async fn overview(State(s): State<Shared>) -> Response {
    let chain = s.chain.status().await.ok();
    let validators = s
        .chain
        .validators()
        .await
        .map(|v| v.active)
        .unwrap_or_default();
    let stats = s.market.stats();
    let providers = s
        .market
        .providers()
        .into_iter()
        .map(|p| {
            let st = stats.get(&p.peer).cloned().unwrap_or_default();
            ProviderRow {
                load_permille: p.load_permille,
                free_slots: p.free_slots,
                entry: provider_entry(p),
                in_flight: st.in_flight,
                successes: st.successes,
                failures: st.failures,
                ttft_ms: st.ttft_ms,
                tokens_per_sec: st.tokens_per_sec,
            }
        })
        .collect();
    let models = s
        .market
        .models()
        .into_iter()
        .map(|(m, prices)| ModelRow {
            sha256: m.sha256,
            name: m.name,
            kind: m.kind,
            prices,
        })
        .collect();
    let channels = s
        .payer
        .channels()
        .await
        .iter()
        .map(|c| ChannelRow {
            id: c.id,
            provider: c.provider,
            deposit: c.deposit(),
            spent: c.cumulative(),
            acked: c.acked(),
        })
        .collect();
    let kind = |k: &'static str| s.feed.recent(SNAPSHOT_EVENTS, move |e| event_name(e) == k);
    Json(Overview {
        gateway: s.payer.address(),
        chain,
        validators,
        models,
        providers,
        channels,
        requests: kind("request"),
        verdicts: kind("verdict"),
        blocks: kind("block"),
    })
    .into_response()
}

/// Markets shown, and epochs of each (the most recent).
const MAX_MARKETS: usize = 16;
const EPOCHS_SHOWN: u64 = 30;

#[derive(Serialize)]
struct MarketsOverview {
    height: u64,
    /// Epochs end at heights `k * epoch_blocks - 1`.
    epoch_blocks: u64,
    markets: Vec<MarketRow>,
}

#[derive(Serialize)]
struct MarketRow {
    id: Hash,
    name: String,
    owner: Address,
    members: Vec<agora_ledger::state::Member>,
    /// Paid usage since the last epoch.
    usage: Amount,
    epochs_run: u64,
    /// The last epochs' reports, oldest first.
    epochs: Vec<agora_ledger::incentives::EpochReport>,
}

async fn markets(State(s): State<Shared>) -> Response {
    let view = match s.chain.markets().await {
        Ok(v) => v,
        Err(e) => {
            return ApiError::upstream("ledger_unavailable", format!("the ledger: {e}"))
                .into_response();
        }
    };
    let mut markets = Vec::new();
    for m in view.markets.into_iter().take(MAX_MARKETS) {
        let members = match s.chain.market(&m.id).await {
            Ok(Some(v)) => v.record.members,
            _ => Vec::new(),
        };
        let mut epochs = Vec::new();
        for e in m.epochs_run.saturating_sub(EPOCHS_SHOWN)..m.epochs_run {
            if let Ok(Some(r)) = s.chain.epoch_report(&m.id, e, None).await {
                epochs.push(r.report);
            }
        }
        markets.push(MarketRow {
            id: m.id,
            name: m.name,
            owner: m.owner,
            members,
            usage: m.usage,
            epochs_run: m.epochs_run,
            epochs,
        });
    }
    Json(MarketsOverview {
        height: view.height,
        epoch_blocks: view.epoch_blocks,
        markets,
    })
    .into_response()
}

#[derive(Serialize)]
struct Wallet {
    name: String,
    account: Address,
    /// What the key may spend at this gateway, and what it spent.
    credit: Amount,
    spent: Amount,
    /// The key's limits beyond its credit (an agent's key carries them).
    per_request_cap: Option<Amount>,
    expires_at: Option<u64>,
    /// The account's balance and stake on the ledger (`None`: the ledger did not answer).
    balance: Option<Amount>,
    nonce: Option<u64>,
    /// The account this gateway pays providers from.
    gateway_account: Address,
}

async fn me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let customer = match s.customers.authorize(crate::api::bearer(&headers)) {
        Ok((_, c)) => c,
        Err(e) => return ApiError::auth(e).into_response(),
    };
    let account = s.chain.account(&customer.account).await.ok();
    Json(Wallet {
        name: customer.name,
        account: customer.account,
        credit: customer.credit,
        spent: customer.spent,
        per_request_cap: customer.limits.per_request,
        expires_at: customer.limits.expires_at,
        balance: account.as_ref().map(|a| a.balance),
        nonce: account.map(|a| a.nonce),
        gateway_account: s.payer.address(),
    })
    .into_response()
}

/// What `address` paid providers through its channels, as the ledger says (an agent's spend).
async fn spend(
    State(s): State<Shared>,
    axum::extract::Path(address): axum::extract::Path<String>,
) -> Response {
    let Ok(a) = address.parse::<Address>() else {
        return ApiError::invalid(format!("{address:?} is not an address"), Some("address"))
            .into_response();
    };
    match s.chain.spend(&a).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            ApiError::upstream("ledger_unavailable", format!("the ledger: {e}")).into_response()
        }
    }
}

/// The feed as server-sent events: each event's `event:` is its `type`; a subscriber that fell
/// behind gets a `lagged` event with how many it missed (the page then reloads its snapshot).
async fn events(State(s): State<Shared>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (past, rx) = s.feed.subscribe();
    let history = futures::stream::iter(past.into_iter().map(|e| Ok(sse(&e))));
    let live = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => sse(&e),
            Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(futures::StreamExt::chain(history, live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event_name(e: &FeedEvent) -> &'static str {
    match e {
        FeedEvent::Request(_) => "request",
        FeedEvent::Verdict(_) => "verdict",
        FeedEvent::Block(_) => "block",
        FeedEvent::Providers(_) => "providers",
    }
}

fn sse(e: &FeedEvent) -> SseEvent {
    SseEvent::default()
        .event(event_name(e))
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// The market's providers as the feed shows them.
fn provider_entry(p: ProviderView) -> ProviderEntry {
    ProviderEntry {
        address: p.address,
        peer: p.peer.to_string(),
        stake: p.stake,
        prices: p.prices,
        on_probation: p.on_probation,
    }
}

/// Announces each new finalized block (its transactions and the providers it slashed) from the
/// tip at start (the dashboard shows what happens while it is open, not the chain's history),
/// and the market's providers whenever they change.
pub async fn watch(chain: ChainClient, market: Arc<Market>, feed: Arc<Feed>, every: Duration) {
    /// Blocks read per tick, so catching up after a pause never floods the feed.
    const MAX_BLOCKS_PER_TICK: u64 = 20;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<u64> = None;
    let mut providers = Vec::new();
    loop {
        tick.tick().await;
        let now: Vec<ProviderEntry> = market.providers().into_iter().map(provider_entry).collect();
        if now != providers {
            providers = now;
            feed.publish(FeedEvent::Providers(ProvidersEvent {
                providers: providers.clone(),
            }));
        }
        let Ok(info) = chain.info().await else {
            continue;
        };
        let from = match seen {
            // Behind by more than a tick's worth: skip to the newest ones.
            Some(h) => h.max(info.height.saturating_sub(MAX_BLOCKS_PER_TICK)),
            None => info.height.saturating_sub(1),
        };
        let mut h = from;
        while h < info.height {
            let Ok(Some(view)) = chain.block(h + 1, BlockTxs::Full).await else {
                break; // try again next tick
            };
            h += 1;
            let slashed = view
                .transactions
                .iter()
                .flatten()
                .zip(&view.receipts)
                .filter(|(_, r)| r.outcome == agora_types::Outcome::Success)
                .filter_map(|(stx, _)| match &stx.tx.body {
                    agora_types::TxBody::Slash(evidence) => Some(evidence.offender()),
                    _ => None,
                })
                .collect();
            feed.publish(FeedEvent::Block(BlockEvent {
                height: h,
                timestamp_ms: view.header.timestamp_ms,
                txs: view.txs.len(),
                slashed,
            }));
        }
        seen = Some(h);
    }
}
