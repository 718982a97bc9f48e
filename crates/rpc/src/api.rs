//! The node API's request and response bodies: the one definition the server writes, the
//! client reads and `docs/rpc-openapi.yaml` is generated from.
//!
//! Amounts are decimal strings of base units, addresses bech32m `agora1...`, hashes 64 hex
//! characters (each type's own serde form). Ledger records (params, supply, provider, model and
//! channel records, block headers, receipts, signed transactions) travel in their `agora-ledger`
//! / `agora-types` serde form; the document names them as objects.

use crate::schema::{AddressSchema, AmountSchema, HashSchema};
use agora_ledger::Params;
use agora_ledger::incentives::EpochReport;
use agora_ledger::state::{Channel, MarketRecord, ModelRecord, ProviderRecord, Supply};
use agora_types::{Address, Amount, BlockHeader, Hash, Receipt, SignedTx};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every route, in the form both the server's router and the OpenAPI document use.
pub mod paths {
    pub const STATUS: &str = "/v1/status";
    pub const SUBMIT_TX: &str = "/v1/txs";
    pub const SUBMIT_BATCH: &str = "/v1/txs/batch";
    pub const TX: &str = "/v1/txs/{id}";
    pub const ACCOUNTS: &str = "/v1/accounts";
    pub const ACCOUNT: &str = "/v1/accounts/{address}";
    pub const ACCOUNT_SPEND: &str = "/v1/accounts/{address}/spend";
    pub const PROVIDERS: &str = "/v1/providers";
    pub const PROVIDER: &str = "/v1/providers/{address}";
    pub const MODEL: &str = "/v1/models/{sha256}";
    pub const CHANNEL: &str = "/v1/channels/{id}";
    pub const BLOCK: &str = "/v1/blocks/{height}";
    pub const STATE_ROOT: &str = "/v1/state_root";
    pub const SUPPLY: &str = "/v1/supply";
    pub const VALIDATORS: &str = "/v1/validators";
    pub const MARKETS: &str = "/v1/markets";
    pub const MARKET: &str = "/v1/markets/{id}";
    pub const MARKET_EPOCH: &str = "/v1/markets/{id}/epochs/{epoch}";
}

/// The body of every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: bad_body, body_too_large, bad_json, bad_hex, bad_encoding,
    /// tx_too_large, wrong_chain, bad_signature, bad_nonce, nonce_gap, fee_too_low,
    /// insufficient_funds, duplicate, mempool_full, empty_batch, batch_too_large, bad_address,
    /// bad_hash, bad_height, bad_query, not_found, internal.
    pub code: String,
    /// For people.
    pub message: String,
}

/// `GET /v1/status`: chain id, tip, mempool size, supply and params.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub chain_id: String,
    pub height: u64,
    #[schema(value_type = HashSchema)]
    pub last_block: Hash,
    #[schema(value_type = HashSchema)]
    pub state_root: Hash,
    pub timestamp_ms: u64,
    /// Transactions waiting in the mempool.
    pub mempool: u64,
    /// `agora_ledger::state::Supply`: genesis, minted, burned.
    #[schema(value_type = Object)]
    pub supply: Supply,
    /// `agora_ledger::Params`: min_fee, channel_challenge_blocks, min_provider_stake, ...
    #[schema(value_type = Object)]
    pub params: Params,
}

/// `GET /v1/state_root`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateRootView {
    pub height: u64,
    #[schema(value_type = HashSchema)]
    pub state_root: Hash,
}

/// `GET /v1/supply`: what the state must add up to and what it does add up to, read together at
/// one height. They differ only if the ledger created or lost money: the chaos checker's
/// conservation test, also useful to anyone auditing a node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SupplyView {
    pub height: u64,
    #[schema(value_type = HashSchema)]
    pub state_root: Hash,
    /// `agora_ledger::state::Supply`: genesis, minted, burned.
    #[schema(value_type = Object)]
    pub supply: Supply,
    /// genesis + minted - burned.
    #[schema(value_type = AmountSchema)]
    pub expected_total: Amount,
    /// Every balance, stake, unbonding entry, locked earning, market deposit and unspent channel
    /// deposit, added up.
    #[schema(value_type = AmountSchema)]
    pub circulating: Amount,
}

/// `GET /v1/validators`: the active validator set (registered, not jailed, enough stake, in the
/// top `max_validators`), the set whose members may sign audit verdicts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidatorsView {
    pub height: u64,
    pub active: Vec<ActiveValidator>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActiveValidator {
    #[schema(value_type = AddressSchema)]
    pub address: Address,
    /// All stake bonded behind it.
    #[schema(value_type = AmountSchema)]
    pub stake: Amount,
}

/// `GET /v1/accounts/{address}`: an unknown address reads as zero.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    #[schema(value_type = AddressSchema)]
    pub address: Address,
    #[schema(value_type = AmountSchema)]
    pub balance: Amount,
    pub nonce: u64,
    /// Stake the address bonded behind itself.
    #[schema(value_type = AmountSchema)]
    pub self_stake: Amount,
    /// All stake bonded behind the address, its own included.
    #[schema(value_type = AmountSchema)]
    pub stake_behind: Amount,
    pub unbonding: Vec<Unbonding>,
    /// A provider's earnings from channels, spendable from each entry's `unlock_height` (until
    /// then a failed audit can still take them back); not part of `balance`.
    #[serde(default)]
    pub locked: Vec<LockedEarnings>,
    /// The height this answer was read at.
    pub height: u64,
}

/// Earnings held back until `unlock_height` (the ledger's `earnings_lock_blocks`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockedEarnings {
    pub unlock_height: u64,
    #[schema(value_type = AmountSchema)]
    pub amount: Amount,
}

/// Stake on its way out: withdrawable from `release_height`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Unbonding {
    #[schema(value_type = AddressSchema)]
    pub target: Address,
    pub release_height: u64,
    #[schema(value_type = AmountSchema)]
    pub amount: Amount,
}

/// `GET /v1/providers/{address}`: the registry record and the stake behind it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    #[schema(value_type = AddressSchema)]
    pub address: Address,
    /// `agora_ledger::state::ProviderRecord`: info (peer, endpoints, hardware, model prices),
    /// registered_at, jailed_until.
    #[schema(value_type = Object)]
    pub record: ProviderRecord,
    #[schema(value_type = AmountSchema)]
    pub stake: Amount,
    /// The height until which the provider is on probation after a failed audit (every one of
    /// its receipts is audited until then); 0 when it never was.
    #[serde(default)]
    pub probation_until: u64,
    /// The height this answer was read at.
    #[serde(default)]
    pub height: u64,
}

/// `GET /v1/models/{sha256}`: a registered model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelView {
    #[schema(value_type = HashSchema)]
    pub sha256: Hash,
    /// `agora_ledger::state::ModelRecord`: info (name, family, licence, royalty), owner,
    /// registered_at.
    #[schema(value_type = Object)]
    pub record: ModelRecord,
}

/// `GET /v1/accounts?top=N`: the accounts holding the most, richest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountsView {
    pub accounts: Vec<AccountBalance>,
    /// Accounts on the ledger in all.
    pub total: u64,
    /// The height this answer was read at.
    pub height: u64,
}

/// One account's balance (its spendable AGR; stake and locked earnings are not in it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountBalance {
    #[schema(value_type = AddressSchema)]
    pub address: Address,
    #[schema(value_type = AmountSchema)]
    pub balance: Amount,
}

/// The most accounts `GET /v1/accounts` lists.
pub const MAX_TOP_ACCOUNTS: usize = 100;

/// `?top=` of `GET /v1/accounts` (default 10, at most [`MAX_TOP_ACCOUNTS`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct TopQuery {
    pub top: Option<u32>,
}

/// `GET /v1/providers`: every registered provider, in address order (at most
/// [`MAX_PROVIDERS_LISTED`]; `total` counts them all).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvidersView {
    pub providers: Vec<ProviderView>,
    pub total: u64,
    pub height: u64,
}

/// The most providers `GET /v1/providers` lists.
pub const MAX_PROVIDERS_LISTED: usize = 1000;

/// `GET /v1/accounts/{address}/spend`: what an account (an agent, a gateway) has paid providers
/// through the payment channels it opened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendView {
    #[schema(value_type = AddressSchema)]
    pub address: Address,
    /// Paid out of its channels to providers so far: what it has spent.
    #[schema(value_type = AmountSchema)]
    pub redeemed: Amount,
    /// Deposits not yet paid out of channels not yet settled (refunded after a close).
    #[schema(value_type = AmountSchema)]
    pub unspent: Amount,
    /// How many channels it opened, settled ones included.
    pub channel_count: u64,
    /// Its most recently opened channels, at most [`MAX_SPEND_CHANNELS`], newest first.
    pub channels: Vec<ChannelView>,
    /// The height this answer was read at.
    pub height: u64,
}

/// Most channels one `SpendView` lists (the totals cover all of them).
pub const MAX_SPEND_CHANNELS: usize = 256;

/// `GET /v1/channels/{id}`: a payment channel and what a settle would refund.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    #[schema(value_type = HashSchema)]
    pub id: Hash,
    /// `agora_ledger::state::Channel`: payer, provider, deposit, redeemed, deadlines.
    #[schema(value_type = Object)]
    pub channel: Channel,
    #[schema(value_type = AmountSchema)]
    pub unspent: Amount,
}

/// `GET /v1/blocks/{height}`: a finalized block.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    #[schema(value_type = HashSchema)]
    pub id: Hash,
    /// `agora_types::BlockHeader`.
    #[schema(value_type = Object)]
    pub header: BlockHeader,
    /// The transactions' ids, in block order.
    #[schema(value_type = Vec<HashSchema>)]
    pub txs: Vec<Hash>,
    /// `agora_types::Receipt` per transaction, in block order.
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<Receipt>,
    /// Only with `?txs=full`: the signed transactions (`agora_types::SignedTx`), in block order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub transactions: Option<Vec<SignedTx>>,
}

/// `?txs=` of `GET /v1/blocks/{height}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BlockTxs {
    /// Transaction ids only (the default).
    Ids,
    /// Also the signed transactions.
    Full,
}

impl BlockTxs {
    pub fn parse(s: &str) -> Option<BlockTxs> {
        match s {
            "ids" => Some(BlockTxs::Ids),
            "full" => Some(BlockTxs::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BlockTxs::Ids => "ids",
            BlockTxs::Full => "full",
        }
    }
}

/// `GET /v1/txs/{id}`: pending in the mempool, or final with its block height and receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxView {
    Pending {
        #[schema(value_type = HashSchema)]
        id: Hash,
    },
    /// Stored blocks are finalized blocks, with the single producer and with BFT alike.
    Final {
        #[schema(value_type = HashSchema)]
        id: Hash,
        height: u64,
        /// `agora_types::Receipt`: tx, fee, outcome (`{"status": "success"}` or
        /// `{"status": "failed", "code", "message"}`).
        #[schema(value_type = Option<Object>)]
        receipt: Option<Receipt>,
    },
}

/// `POST /v1/txs` as JSON (the raw encoding may be sent as `application/octet-stream` instead).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitRequest {
    /// Hex of the canonical encoding of a signed transaction.
    pub tx: String,
}

/// A transaction the node accepted into its mempool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    #[schema(value_type = HashSchema)]
    pub id: Hash,
    pub status: Accepted,
}

/// What an accepted transaction is until its block is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accepted {
    Pending,
}

/// `POST /v1/txs/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// Hex of each signed transaction's canonical encoding.
    pub txs: Vec<String>,
}

/// One result per submitted transaction, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

/// A batch item's fate: accepted, or refused with the error `/v1/txs` would have given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Accepted(SubmitResponse),
    Refused(ErrorBody),
}

/// `GET /v1/markets`: every market, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarketsView {
    pub height: u64,
    /// Blocks per incentive epoch; epochs end at heights `k * epoch_blocks - 1`.
    pub epoch_blocks: u64,
    pub markets: Vec<MarketSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarketSummary {
    #[schema(value_type = HashSchema)]
    pub id: Hash,
    pub name: String,
    #[schema(value_type = AddressSchema)]
    pub owner: Address,
    pub members: u32,
    /// Paid usage since the last epoch.
    #[schema(value_type = AmountSchema)]
    pub usage: Amount,
    pub epochs_run: u64,
}

/// `GET /v1/markets/{id}`: a market's record (members with their last incentive, permits, usage).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarketView {
    #[schema(value_type = HashSchema)]
    pub id: Hash,
    /// `agora_ledger::state::MarketRecord`: name, owner, models, deposit, created_at, members
    /// (provider, joined_at, incentive_ppm), permits, usage, epochs_run.
    #[schema(value_type = Object)]
    pub record: MarketRecord,
    /// The height at whose end the market's next epoch runs.
    pub next_epoch_height: u64,
    pub height: u64,
}

/// `GET /v1/markets/{id}/epochs/{epoch}`: one epoch of one market, every account's line and the
/// reason for a line paid nothing; with `?account=`, only that account's lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EpochReportView {
    /// `agora_ledger::incentives::EpochReport`: market, name, epoch, height, usage, emission,
    /// kappa_ppm, owner, owner_paid, treasury_paid, redirects, providers (consensus, rank,
    /// incentive, paid, reason), validators (stake, permit, active, weights with clipped and
    /// bond, trust, dividends, paid, reason).
    #[schema(value_type = Object)]
    pub report: EpochReport,
}
