//! The contract between gateways and providers: wire protocol, prices, receipts, and the ledger RPC client both sides use.
//!
//! Kept apart from `agora-provider` so a gateway links no inference engine: [`protocol`] is what
//! travels over the overlay, [`offer`] is what a provider gossips about itself, [`chain`] is how either side reads the ledger and submits
//! transactions through a node's RPC.

pub mod chain;
pub mod offer;
pub mod protocol;

pub use chain::{ChainClient, ChainError, TxSender};
pub use offer::{Load, ModelOffer, Offer, SignedOffer};
pub use protocol::{Frame, InferenceReceipt, Job, Price, SignedReceipt};
