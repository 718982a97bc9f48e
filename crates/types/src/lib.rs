//! Identifiers, amounts, hashes, keys and signatures, transactions, blocks and receipts, with one canonical bounded binary encoding.
//!
//! Everything here is plain data plus its encoding. Nothing depends on a runtime, a clock or the
//! network; the ledger and every service above it agree on bytes through this crate.

pub mod amount;
pub mod audit;
pub mod block;
pub mod chat;
pub mod codec;
pub mod hash;
pub mod keys;
pub mod market;
pub mod price;
pub mod receipt;
pub mod sampling;
pub mod tx;
pub mod usage;

pub use amount::Amount;
pub use audit::{AuditVerdict, SignedVerdict, receipt_id};
pub use block::{Block, BlockHeader, Outcome, Receipt};
pub use chat::{ChatMessage, Tool, ToolCall, ToolChoice, Tools};
pub use codec::{Decode, DecodeError, Encode};
pub use hash::{Hash, HashDomain};
pub use keys::{Address, BatchVerifier, PublicKey, SecretKey, SignDomain, Signature};
pub use market::{MarketSpec, ProviderWeight, WeightsReveal, market_id, weights_commitment};
pub use price::Price;
pub use sampling::SamplingParams;
pub use tx::{
    ConsensusVote, DatasetInfo, Evidence, HardwareSummary, ModelKind, ModelPrice,
    ModelRegistration, ProviderInfo, SignedTx, SignedVoucher, Tx, TxBody, VoteKind, Voucher,
};
pub use usage::Usage;
