//! The contract between gateways and providers: wire protocol, prices, receipts; the ledger RPC client both sides use comes from `agora-rpc`.
//!
//! Kept apart from `agora-provider` so a gateway links no inference engine: [`protocol`] is what
//! travels over the overlay, [`chain`] re-exports how either side reads the ledger and
//! submits transactions through a node's RPC (`agora-rpc`).

pub mod chain;
pub mod protocol;

pub use chain::{ChainClient, ChainError, TxSender};
pub use protocol::{Frame, Job, Price, Receipt, SignedReceipt};
