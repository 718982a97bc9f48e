//! The node's JSON HTTP API: the handlers of `agora-rpc`'s routes, answering with its types
//! (`docs/rpc-openapi.yaml` is generated from them).
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a fitting status. Request
//! bodies are capped before they are read; transactions are decoded with the bounded decoder.
//! A rejected submission never touches state.

use crate::Shared;
use agora_consensus::AdmitError;
use agora_ledger::TxError;
use agora_rpc::api::{
    Accepted, AccountBalance, AccountView, AccountsView, ActiveValidator, BatchRequest,
    BatchResponse, BatchResult, BlockTxs, BlockView, ChannelView, EpochReportView, ErrorBody,
    ErrorDetail, LockedEarnings, MarketSummary, MarketView, MarketsView, ModelView, ProviderView,
    ProvidersView, SpendView, StateRootView, StatusView, SubmitRequest, SubmitResponse, SupplyView,
    TopQuery, TxView, Unbonding, ValidatorsView, paths,
};
use agora_types::tx::limits::MAX_TX_BYTES;
use agora_types::{Address, Amount, Decode, Hash, SignedTx};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// Largest request body read at all (a hex-encoded maximal transaction in JSON fits).
pub const MAX_BODY_BYTES: usize = 2 * MAX_TX_BYTES + 1024;

/// Most transactions in one `POST /v1/txs/batch`.
pub const MAX_BATCH_TXS: usize = 1_000;

/// Largest batch body (ordinary transfers are a few hundred hex characters each).
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(paths::STATUS, get(status))
        .route(paths::SUBMIT_TX, post(submit_tx))
        .route(
            paths::SUBMIT_BATCH,
            post(submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route(paths::TX, get(get_tx))
        .route(paths::ACCOUNTS, get(top_accounts))
        .route(paths::PROVIDERS, get(list_providers))
        .route(paths::ACCOUNT, get(get_account))
        .route(paths::ACCOUNT_SPEND, get(get_spend))
        .route(paths::PROVIDER, get(get_provider))
        .route(paths::MODEL, get(get_model))
        .route(paths::CHANNEL, get(get_channel))
        .route(paths::BLOCK, get(get_block))
        .route(paths::STATE_ROOT, get(state_root))
        .route(paths::SUPPLY, get(supply))
        .route(paths::VALIDATORS, get(validators))
        .route(paths::MARKETS, get(markets))
        .route(paths::MARKET, get(get_market))
        .route(paths::MARKET_EPOCH, get(get_market_epoch))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// An API error in the one shape every endpoint uses.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    fn body(self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        // Details go to the log, not to the client.
        tracing::error!(target: "agora::rpc", error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        let code = match &e {
            AdmitError::Invalid(TxError::TooLarge { .. }) => "tx_too_large",
            AdmitError::Invalid(TxError::WrongChain { .. }) => "wrong_chain",
            AdmitError::Invalid(TxError::BadSignature) => "bad_signature",
            AdmitError::Invalid(TxError::BadNonce { .. }) | AdmitError::NonceUsed { .. } => {
                "bad_nonce"
            }
            AdmitError::NonceGap { .. } => "nonce_gap",
            AdmitError::Invalid(TxError::FeeTooLow { .. }) => "fee_too_low",
            AdmitError::Invalid(TxError::CannotPayFee { .. }) => "insufficient_funds",
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::Full(_) => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "mempool_full",
                    e.to_string(),
                );
            }
        };
        let status = match code {
            "duplicate" | "bad_nonce" => StatusCode::CONFLICT,
            "tx_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, code, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The request body, or the API error for one that was too large (`limit`) or broken.
fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad("bad_body", e.body_text())
        }
    })
}

/// A transaction from the hex of its canonical encoding.
fn tx_from_hex(hex_tx: &str) -> Result<SignedTx, ApiError> {
    let raw =
        hex::decode(hex_tx.trim()).map_err(|_| ApiError::bad("bad_hex", "tx is not valid hex"))?;
    tx_from_bytes(&raw)
}

/// A transaction from its canonical encoding (the bounded decoder).
fn tx_from_bytes(raw: &[u8]) -> Result<SignedTx, ApiError> {
    SignedTx::decode(raw)
        .map_err(|e| ApiError::bad("bad_encoding", format!("cannot decode transaction: {e}")))
}

async fn submit_tx(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<SubmitResponse> {
    let body = read_body(body, MAX_BODY_BYTES)?;
    let is_binary = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let stx = if is_binary {
        tx_from_bytes(&body)?
    } else {
        let req: SubmitRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad("bad_json", format!("expected {{\"tx\": \"<hex>\"}}: {e}"))
        })?;
        tx_from_hex(&req.tx)?
    };
    let id = {
        let mut chain = shared.chain.lock().map_err(ApiError::internal)?;
        chain.submit(stx)?
    };
    shared.new_tx.notify_one();
    Ok(Json(SubmitResponse {
        id,
        status: Accepted::Pending,
    }))
}

/// Submits many transactions with one batched signature check and one mempool lock. Each
/// transaction gets its own result, in order: `{"id", "status": "pending"}` or an error in the
/// API's shape; a bad one does not stop the others.
async fn submit_batch(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<BatchResponse> {
    let body = read_body(body, MAX_BATCH_BODY_BYTES)?;
    let req: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "bad_json",
            format!("expected {{\"txs\": [\"<hex>\", ...]}}: {e}"),
        )
    })?;
    if req.txs.is_empty() {
        return Err(ApiError::bad("empty_batch", "txs is empty"));
    }
    if req.txs.len() > MAX_BATCH_TXS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} transactions; at most {MAX_BATCH_TXS} per batch",
                req.txs.len()
            ),
        ));
    }
    let decoded: Vec<Result<SignedTx, ApiError>> = req.txs.iter().map(|h| tx_from_hex(h)).collect();
    // One batch verification, outside the chain lock.
    let good: Vec<&SignedTx> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
    let bad = agora_consensus::gossip::bad_signatures_of(&good);
    let results: Vec<BatchResult> = {
        let mut chain = shared.chain.lock().map_err(ApiError::internal)?;
        let mut index = 0;
        decoded
            .into_iter()
            .map(|d| {
                let outcome = d.and_then(|stx| {
                    let i = index;
                    index += 1;
                    if bad.contains(&i) {
                        return Err(AdmitError::Invalid(TxError::BadSignature).into());
                    }
                    chain.submit_signature_checked(stx).map_err(ApiError::from)
                });
                match outcome {
                    Ok(id) => BatchResult::Accepted(SubmitResponse {
                        id,
                        status: Accepted::Pending,
                    }),
                    Err(e) => BatchResult::Refused(e.body()),
                }
            })
            .collect()
    };
    shared.new_tx.notify_one();
    Ok(Json(BatchResponse { results }))
}

async fn status(State(shared): State<Arc<Shared>>) -> ApiResult<StatusView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    Ok(Json(StatusView {
        chain_id: s.chain_id().to_string(),
        height: s.height(),
        last_block: s.last_block(),
        state_root: s.root(),
        timestamp_ms: s.last_timestamp_ms(),
        mempool: chain.mempool().len() as u64,
        supply: s.supply().clone(),
        params: s.params().clone(),
    }))
}

async fn state_root(State(shared): State<Arc<Shared>>) -> ApiResult<StateRootView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    Ok(Json(StateRootView {
        height: chain.state().height(),
        state_root: chain.state().root(),
    }))
}

async fn supply(State(shared): State<Arc<Shared>>) -> ApiResult<SupplyView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let overflow = || ApiError::internal("supply overflows u128");
    Ok(Json(SupplyView {
        height: s.height(),
        state_root: s.root(),
        supply: s.supply().clone(),
        expected_total: s.supply().expected_total().ok_or_else(overflow)?,
        circulating: s.circulating_total().ok_or_else(overflow)?,
    }))
}

async fn validators(State(shared): State<Arc<Shared>>) -> ApiResult<ValidatorsView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    Ok(Json(ValidatorsView {
        height: s.height(),
        active: agora_ledger::epochs::active_set(s)
            .into_iter()
            .map(|(address, stake)| ActiveValidator { address, stake })
            .collect(),
    }))
}

async fn markets(State(shared): State<Arc<Shared>>) -> ApiResult<MarketsView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    Ok(Json(MarketsView {
        height: s.height(),
        epoch_blocks: s.params().incentives.epoch_blocks,
        markets: s
            .markets()
            .map(|(id, m)| MarketSummary {
                id: *id,
                name: m.name.clone(),
                owner: m.owner,
                members: m.members.len() as u32,
                usage: m.usage,
                epochs_run: m.epochs_run,
            })
            .collect(),
    }))
}

async fn get_market(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<MarketView> {
    let id = parse_hash(&id)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let record = s.market(&id).ok_or_else(|| ApiError::not_found("market"))?;
    let epoch_blocks = s.params().incentives.epoch_blocks.max(1);
    let epoch = agora_ledger::epochs::epoch_of(s.height().saturating_add(1), epoch_blocks);
    Ok(Json(MarketView {
        id,
        record: record.clone(),
        next_epoch_height: agora_ledger::epochs::last_height_of(epoch, epoch_blocks),
        height: s.height(),
    }))
}

#[derive(Deserialize)]
struct EpochQuery {
    account: Option<String>,
}

async fn get_market_epoch(
    State(shared): State<Arc<Shared>>,
    Path((id, epoch)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<EpochQuery>,
) -> ApiResult<EpochReportView> {
    let id = parse_hash(&id)?;
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| ApiError::bad("bad_query", "the epoch must be a number"))?;
    let account = q.account.as_deref().map(parse_address).transpose()?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let mut report = chain
        .store()
        .epoch_report(&id, epoch)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no report of epoch {epoch} of market {id} on this node (it keeps the \
                     reports of the blocks it applied)"
                ),
            )
        })?;
    if let Some(a) = account {
        report.providers.retain(|l| l.provider == a);
        report.validators.retain(|l| l.validator == a);
    }
    Ok(Json(EpochReportView { report }))
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad("bad_address", format!("{e}")))
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad("bad_hash", format!("{e}")))
}

async fn get_account(
    State(shared): State<Arc<Shared>>,
    Path(address): Path<String>,
) -> ApiResult<AccountView> {
    let a = parse_address(&address)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let acct = s.account(&a);
    let unbonding = s
        .unbonding_of(&a)
        .into_iter()
        .map(|(target, release_height, amount)| Unbonding {
            target,
            release_height,
            amount,
        })
        .collect();
    Ok(Json(AccountView {
        address: a,
        balance: acct.balance,
        nonce: acct.nonce,
        self_stake: s.stake(&a, &a),
        stake_behind: s.total_stake(&a),
        unbonding,
        locked: s
            .locked_of(&a)
            .iter()
            .map(|&(unlock_height, amount)| LockedEarnings {
                unlock_height,
                amount,
            })
            .collect(),
        height: s.height(),
    }))
}

async fn top_accounts(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<TopQuery>,
) -> ApiResult<AccountsView> {
    let max = agora_rpc::api::MAX_TOP_ACCOUNTS;
    let top = q.top.unwrap_or(10) as usize;
    if top == 0 || top > max {
        return Err(ApiError::bad(
            "bad_query",
            format!("top must be between 1 and {max}"),
        ));
    }
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let mut all: Vec<(&Address, Amount)> = s.accounts().map(|(a, x)| (a, x.balance)).collect();
    let total = all.len() as u64;
    // Richest first; equal balances in address order, so the answer is the same on every node.
    all.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    all.truncate(top);
    Ok(Json(AccountsView {
        accounts: all
            .into_iter()
            .map(|(a, balance)| AccountBalance {
                address: *a,
                balance,
            })
            .collect(),
        total,
        height: s.height(),
    }))
}

async fn list_providers(State(shared): State<Arc<Shared>>) -> ApiResult<ProvidersView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let providers = s
        .providers()
        .take(agora_rpc::api::MAX_PROVIDERS_LISTED)
        .map(|(a, p)| ProviderView {
            address: *a,
            record: p.clone(),
            stake: s.total_stake(a),
            probation_until: s.probation_until(a).unwrap_or(0),
            height: s.height(),
        })
        .collect();
    Ok(Json(ProvidersView {
        providers,
        total: s.providers().count() as u64,
        height: s.height(),
    }))
}

async fn get_spend(
    State(shared): State<Arc<Shared>>,
    Path(address): Path<String>,
) -> ApiResult<SpendView> {
    let a = parse_address(&address)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let s = chain.state();
    let (mut redeemed, mut unspent, mut count) = (0u128, 0u128, 0u64);
    let mut newest: Vec<(&Hash, &agora_ledger::state::Channel)> = Vec::new();
    for (id, c) in s.channels_paid_by(&a) {
        redeemed = redeemed.saturating_add(c.redeemed.0);
        if !c.settled {
            unspent = unspent.saturating_add(c.unspent().0);
        }
        count += 1;
        newest.push((id, c));
    }
    newest.sort_by(|x, y| y.1.opened_at.cmp(&x.1.opened_at).then(x.0.cmp(y.0)));
    newest.truncate(agora_rpc::api::MAX_SPEND_CHANNELS);
    Ok(Json(SpendView {
        address: a,
        redeemed: Amount(redeemed),
        unspent: Amount(unspent),
        channel_count: count,
        channels: newest
            .into_iter()
            .map(|(id, c)| ChannelView {
                id: *id,
                unspent: c.unspent(),
                channel: c.clone(),
            })
            .collect(),
        height: s.height(),
    }))
}

async fn get_provider(
    State(shared): State<Arc<Shared>>,
    Path(address): Path<String>,
) -> ApiResult<ProviderView> {
    let a = parse_address(&address)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let p = chain
        .state()
        .provider(&a)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(Json(ProviderView {
        address: a,
        record: p.clone(),
        stake: chain.state().total_stake(&a),
        probation_until: chain.state().probation_until(&a).unwrap_or(0),
        height: chain.state().height(),
    }))
}

async fn get_model(
    State(shared): State<Arc<Shared>>,
    Path(sha): Path<String>,
) -> ApiResult<ModelView> {
    let h = parse_hash(&sha)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let m = chain
        .state()
        .model(&h)
        .ok_or_else(|| ApiError::not_found("model"))?;
    Ok(Json(ModelView {
        sha256: h,
        record: m.clone(),
    }))
}

async fn get_channel(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<ChannelView> {
    let h = parse_hash(&id)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let c = chain
        .state()
        .channel(&h)
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Json(ChannelView {
        id: h,
        unspent: c.unspent(),
        channel: c.clone(),
    }))
}

/// `?txs=full` adds the signed transactions themselves (a gateway reads deposits from them).
#[derive(Deserialize)]
struct BlockQuery {
    txs: Option<String>,
}

async fn get_block(
    State(shared): State<Arc<Shared>>,
    Path(height): Path<String>,
    axum::extract::Query(q): axum::extract::Query<BlockQuery>,
) -> ApiResult<BlockView> {
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    let h = if height == "latest" {
        chain.state().height()
    } else {
        height
            .parse::<u64>()
            .map_err(|_| ApiError::bad("bad_height", "height must be a number or \"latest\""))?
    };
    let block = chain
        .store()
        .block(h)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("block"))?;
    let receipts = chain.store().receipts(h).map_err(ApiError::internal)?;
    let txs = match q.txs.as_deref() {
        None => BlockTxs::Ids,
        Some(t) => BlockTxs::parse(t)
            .ok_or_else(|| ApiError::bad("bad_query", "txs must be \"ids\" or \"full\""))?,
    };
    Ok(Json(BlockView {
        id: block.id(),
        txs: block.txs.iter().map(SignedTx::id).collect(),
        receipts,
        header: block.header,
        transactions: (txs == BlockTxs::Full).then_some(block.txs),
    }))
}

async fn get_tx(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<TxView> {
    let h = parse_hash(&id)?;
    let chain = shared.chain.lock().map_err(ApiError::internal)?;
    if let Some(loc) = chain.store().tx_location(&h).map_err(ApiError::internal)? {
        let receipt = chain
            .store()
            .receipts(loc.height)
            .map_err(ApiError::internal)?
            .into_iter()
            .nth(loc.index as usize);
        // With the single producer and with BFT alike, stored blocks are finalized blocks.
        return Ok(Json(TxView::Final {
            id: h,
            height: loc.height,
            receipt,
        }));
    }
    if chain.mempool().contains(&h) {
        return Ok(Json(TxView::Pending { id: h }));
    }
    Err(ApiError::not_found("transaction"))
}
