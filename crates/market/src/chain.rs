//! How providers and gateways read the ledger and submit transactions: the node API client of
//! `agora-rpc`, named here so either side finds it beside the market protocol.

pub use agora_rpc::api::{ActiveValidator, BlockTxs, StatusView};
pub use agora_rpc::{AccountView, ChainClient, ChainError, ChainInfo, ProviderView, TxSender};
