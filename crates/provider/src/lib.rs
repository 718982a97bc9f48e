//! The provider service: serves models over the overlay, streams tokens under a per-token payment channel, signs receipts and redeems vouchers on the ledger.
//!
//! ```text
//!  gateway ──Job (/agora/infer/3)──► Provider::handle_job ──► Scheduler (agora-inference)
//!     ▲                                   │ Frame::Started / Tokens / Text / Done{receipt}
//!     └───────────── frames ◄─────────────┘   each frame waits for the channel's credit
//!  gateway ──Voucher (/agora/rpc/1)──► Payments::accept (verified, persisted) ──► redeem loop
//!                                                                      └─► RedeemVoucher tx
//! ```
//! The wire format and the ledger client come from `agora-market` (shared with gateways);
//! [`register`] puts a provider's models, prices and stake on the ledger; [`launch`] starts it all.

pub mod launch;
pub mod metrics;
pub mod payments;
pub mod register;
pub mod service;

pub use agora_market::{ChainClient, ChainError, Price, TxSender, chain, protocol};
pub use payments::Payments;
pub use service::{ModelEngine, Provider, ProviderSettings, ServedModel};
