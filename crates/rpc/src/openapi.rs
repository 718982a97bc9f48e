//! The OpenAPI document of the node API, generated from [`crate::api`]'s types and routes.
//!
//! `docs/rpc-openapi.yaml` is this document as YAML; the `openapi` test fails when the two
//! differ (`AGORA_BLESS=1 cargo test -p agora-rpc --test openapi` rewrites the file).
//!
//! The functions below only carry each operation's description for the derive; the handlers
//! are in `agora-node`'s `rpc` module.

#![allow(dead_code)]

use crate::api::*;
use crate::schema::{AddressSchema, AmountSchema, HashSchema};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agora node RPC",
        version = "0.1.0",
        description = "JSON HTTP API of an Agora node. Amounts are decimal strings of base units \
(1 AGR = 10^9), addresses are bech32m `agora1...`, hashes are 64 hex characters. Every error \
has the body `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. A transaction is \
\"final\" only once its block is finalized (stored).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8645")),
    paths(
        status,
        submit_tx,
        submit_batch,
        tx,
        accounts,
        account,
        account_spend,
        providers,
        provider,
        model,
        channel,
        block,
        state_root,
        supply,
        validators,
        markets,
        market,
        market_epoch
    ),
    components(schemas(AmountSchema, HashSchema, AddressSchema))
)]
struct NodeApi;

/// The document, as served nowhere and written to `docs/rpc-openapi.yaml`.
pub fn document() -> utoipa::openapi::OpenApi {
    NodeApi::openapi()
}

#[utoipa::path(
    get,
    path = paths::STATUS,
    summary = "Chain id, height, last block, state root, mempool size, supply and params.",
    responses((status = 200, description = "status", body = StatusView))
)]
fn status() {}

#[utoipa::path(
    post,
    path = paths::SUBMIT_TX,
    summary = "Submit a signed transaction.",
    description = "Body is either JSON `{\"tx\": \"<hex of the canonical encoding>\"}` or the raw \
encoding with `Content-Type: application/octet-stream`. Bodies over 33,792 bytes are refused \
(413) before they are read; encodings over 16 KiB are refused (413, tx_too_large). The \
transaction is checked (chain id, fee, nonce, balance for the fee, signature) before it enters \
the mempool; a rejected one changes nothing.",
    request_body(content(
        (SubmitRequest = "application/json"),
        (Vec<u8> = "application/octet-stream")
    )),
    responses(
        (status = 200, description = "accepted into the mempool", body = SubmitResponse),
        (status = 400, description = "a malformed or invalid transaction", body = ErrorBody),
        (status = 409, description = "duplicate, or the nonce is used", body = ErrorBody),
        (status = 413, description = "body or transaction too large", body = ErrorBody),
        (status = 503, description = "mempool full", body = ErrorBody)
    )
)]
fn submit_tx() {}

#[utoipa::path(
    post,
    path = paths::SUBMIT_BATCH,
    summary = "Submit up to 1,000 signed transactions at once.",
    description = "Body `{\"txs\": [\"<hex of the canonical encoding>\", ...]}`, at most 4 MiB. \
Signatures are checked in one batch verification and the mempool is taken once, so this is \
cheaper per transaction than `/v1/txs`. Each transaction gets its own result, in order: the same \
checks and error codes as `/v1/txs` (plus `bad_hex` / `bad_encoding` for an undecodable item); \
a bad transaction does not stop the others and changes nothing. More than 1,000 transactions: \
413 `batch_too_large`; an empty list: 400 `empty_batch`.",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "one result per transaction", body = BatchResponse),
        (status = 400, description = "not a batch, or an empty one", body = ErrorBody),
        (status = 413, description = "more than 1,000 transactions or over 4 MiB", body = ErrorBody)
    )
)]
fn submit_batch() {}

#[utoipa::path(
    get,
    path = paths::TX,
    summary = "A transaction's status (\"pending\" or \"final\" with height and receipt).",
    params(("id" = HashSchema, Path, description = "the transaction id")),
    responses(
        (status = 200, description = "status", body = TxView),
        (status = 400, description = "not a hash", body = ErrorBody),
        (status = 404, description = "unknown transaction", body = ErrorBody)
    )
)]
fn tx() {}

#[utoipa::path(
    get,
    path = paths::ACCOUNT,
    summary = "Balance, nonce, self stake, stake behind the address, unbonding entries.",
    params(("address" = AddressSchema, Path)),
    responses(
        (status = 200, description = "account (an unknown address reads as zero)", body = AccountView),
        (status = 400, description = "not an address", body = ErrorBody)
    )
)]
fn account() {}

#[utoipa::path(
    get,
    path = paths::ACCOUNTS,
    summary = "The accounts with the largest balances, richest first (`top`: default 10, at most 100).",
    params(TopQuery),
    responses(
        (status = 200, description = "accounts", body = AccountsView),
        (status = 400, description = "top out of range", body = ErrorBody)
    )
)]
fn accounts() {}

#[utoipa::path(
    get,
    path = paths::PROVIDERS,
    summary = "Every registered provider (its record, stake and probation), in address order, at \
most 1,000.",
    responses((status = 200, description = "providers", body = ProvidersView))
)]
fn providers() {}

#[utoipa::path(
    get,
    path = paths::ACCOUNT_SPEND,
    summary = "What an account has paid providers through the payment channels it opened: the \
totals over all of them and its 256 newest channels.",
    params(("address" = AddressSchema, Path)),
    responses(
        (status = 200, description = "spend", body = SpendView),
        (status = 400, description = "not an address", body = ErrorBody)
    )
)]
fn account_spend() {}

#[utoipa::path(
    get,
    path = paths::PROVIDER,
    summary = "A provider's registry record and total stake.",
    params(("address" = AddressSchema, Path)),
    responses(
        (status = 200, description = "provider", body = ProviderView),
        (status = 400, description = "not an address", body = ErrorBody),
        (status = 404, description = "not a registered provider", body = ErrorBody)
    )
)]
fn provider() {}

#[utoipa::path(
    get,
    path = paths::MODEL,
    summary = "A registered model (owner, licence, royalty).",
    params(("sha256" = HashSchema, Path, description = "the weights' sha256")),
    responses(
        (status = 200, description = "model", body = ModelView),
        (status = 400, description = "not a hash", body = ErrorBody),
        (status = 404, description = "not a registered model", body = ErrorBody)
    )
)]
fn model() {}

#[utoipa::path(
    get,
    path = paths::CHANNEL,
    summary = "A payment channel (payer, provider, deposit, redeemed, deadlines) and its unspent deposit.",
    params(("id" = HashSchema, Path)),
    responses(
        (status = 200, description = "channel", body = ChannelView),
        (status = 400, description = "not a hash", body = ErrorBody),
        (status = 404, description = "no such channel", body = ErrorBody)
    )
)]
fn channel() {}

#[utoipa::path(
    get,
    path = paths::BLOCK,
    summary = "A finalized block's header, tx ids and receipts; `latest` for the tip. With \
`txs=full`, also `transactions` (the signed transactions, in block order).",
    params(
        ("height" = String, Path, description = "a height, or `latest`"),
        ("txs" = Option<BlockTxs>, Query)
    ),
    responses(
        (status = 200, description = "block", body = BlockView),
        (status = 400, description = "bad height or query", body = ErrorBody),
        (status = 404, description = "no block at that height", body = ErrorBody)
    )
)]
fn block() {}

#[utoipa::path(
    get,
    path = paths::STATE_ROOT,
    summary = "The state root at the current height.",
    responses((status = 200, description = "root", body = StateRootView))
)]
fn state_root() {}

#[utoipa::path(
    get,
    path = paths::SUPPLY,
    summary = "The supply the state must add up to, and what it adds up to, at one height.",
    responses(
        (status = 200, description = "supply", body = SupplyView),
        (status = 500, description = "the sum overflowed", body = ErrorBody)
    )
)]
fn supply() {}

#[utoipa::path(
    get,
    path = paths::VALIDATORS,
    summary = "The active validator set: the accounts whose audit verdicts count.",
    responses((status = 200, description = "validators", body = ValidatorsView))
)]
fn validators() {}

#[utoipa::path(
    get,
    path = paths::MARKETS,
    summary = "Every market: id, name, owner, members, usage since the last epoch.",
    responses((status = 200, description = "markets", body = MarketsView))
)]
fn markets() {}

#[utoipa::path(
    get,
    path = paths::MARKET,
    summary = "One market: its record, members with their last incentive, and when its next epoch runs.",
    params(("id" = String, Path, description = "the market id (64 hex; the hash of its name)")),
    responses(
        (status = 200, description = "the market", body = MarketView),
        (status = 400, description = "not a hash", body = ErrorBody),
        (status = 404, description = "no such market", body = ErrorBody)
    )
)]
fn market() {}

#[utoipa::path(
    get,
    path = paths::MARKET_EPOCH,
    summary = "One epoch of one market, line by line: why each account was paid what it was.",
    description = "Reports are kept by the node from the blocks it applied; a node that joined \
later answers 404 for earlier epochs (anyone can recompute them by replaying the blocks with \
`agora_ledger::incentives::epoch_view`, `yuma::run_epoch` and `emission::pay_market`).",
    params(
        ("id" = String, Path, description = "the market id"),
        ("epoch" = u64, Path, description = "the incentive epoch"),
        ("account" = Option<String>, Query, description = "only this account's lines")
    ),
    responses(
        (status = 200, description = "the report", body = EpochReportView),
        (status = 400, description = "bad id, epoch or account", body = ErrorBody),
        (status = 404, description = "no report for that market and epoch", body = ErrorBody)
    )
)]
fn market_epoch() {}
