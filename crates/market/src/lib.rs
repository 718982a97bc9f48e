//! The contract between gateways and providers: wire protocol, prices, receipts, offers; the
//! ledger RPC client both sides use comes from `agora-rpc`.
//!
//! Kept apart from `agora-provider` so a gateway links no inference engine: [`protocol`] is what
//! travels over the overlay, [`offer`] is what a provider gossips about itself, [`meter`] is what
//! a job owes (one computation for both sides), [`bounds`] the most it can owe (the payer's own
//! figure), [`failure`] is why a job failed and whose fault
//! it is, [`audit`] is what gateways and auditors exchange about committed receipts, [`keys`] how a
//! customer asks a gateway for an API key with its account's signature, [`chain`] re-exports how either side reads the ledger and submits transactions through
//! a node's RPC (`agora-rpc`).

pub mod audit;
pub mod bounds;
pub mod chain;
pub mod failure;
pub mod keys;
pub mod meter;
pub mod offer;
pub mod protocol;

pub use chain::{ChainClient, ChainError, TxSender};
pub use failure::FailureCode;
pub use meter::Meter;
pub use offer::{Load, ModelOffer, Offer, SignedOffer};
pub use protocol::{Frame, InferenceReceipt, Job, Price, SignedReceipt};
