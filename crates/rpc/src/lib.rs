//! The node's JSON API as types, and the one async client every role uses to read the ledger
//! and submit transactions.
//!
//! [`api`] holds each endpoint's request and response bodies: the node's server writes them,
//! [`ChainClient`] reads them, and [`openapi::document`] turns them into
//! `docs/rpc-openapi.yaml` (a test keeps the file equal to it). No server code lives here, so
//! a wallet, provider or gateway links only HTTP client code.

pub mod api;
pub mod client;
pub mod openapi;
mod schema;
pub mod sender;
pub mod tools;

pub use api::{
    AccountBalance, AccountView, AccountsView, BatchRequest, BatchResponse, BatchResult, BlockTxs,
    BlockView, ChannelView, EpochReportView, ErrorBody, ErrorDetail, LockedEarnings, MarketSummary,
    MarketView, MarketsView, ModelView, ProviderView, ProvidersView, SpendView, StateRootView,
    StatusView, SubmitRequest, SubmitResponse, SupplyView, TxView, Unbonding, paths,
};
pub use client::{ChainClient, ChainError, ChainInfo, MAX_ANSWER_BYTES};
pub use sender::TxSender;
