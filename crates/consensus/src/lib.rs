//! The ledger replicated on commonware simplex BFT: the application side of consensus, a mempool-driven proposer, block sync and validator-set epochs.
//!
//! ```text
//!            validators (ed25519 keys = Agora addresses, committee from staking)
//!                 │
//!   p2p ──► simplex (votes, certificates) ──► marshal (blocks, backfill, finalized archive)
//!                 │                                   │
//!                 ▼                                   ▼ finalized blocks, in order
//!            LedgerApp::propose / verify        LedgerApp::report ──► Host::commit (node store)
//!                 │
//!            Host::candidates (mempool)
//! ```
//!
//! * [`block`]: ledger blocks as consensus orders them (digest = sha256 of the ledger block id).
//! * [`app`]: [`LedgerApp`], the marshal-level application, and the [`Host`] trait the node
//!   implements (mempool access, durable commit).
//! * [`gossip`]: transaction gossip between validators (bounded batches on p2p channel 5).
//! * [`evidence`]: simplex's conflicting-vote reports turned into ledger `Slash` evidence.
//! * [`mempool`]: per-account nonce-ordered pending transactions with limits and eviction.
//! * [`host`]: [`MemHost`], an in-memory host for simulations and benchmarks.
//! * [`validators`]: the stake-weighted committee and epoch arithmetic.
//! * [`sim`], [`bench`]: N validators in one process (deterministic or tokio runtime).
//! * [`engine`]: wiring simplex + marshal + broadcast + backfill for one validator, generic over
//!   the runtime (deterministic or tokio) and the network (simulated or authenticated).
//!
//! Design notes and what is not done yet: `docs/design/consensus.md`.

pub mod app;
pub mod bench;
pub mod block;
pub mod engine;
pub mod evidence;
pub mod gossip;
pub mod host;
pub mod mempool;
pub mod network;
pub mod sim;
pub mod validators;

pub use app::{
    AppConfig, CommitError, ConsensusContext, EpochStart, Host, LedgerApp, Schedule, ValidatorKey,
};
pub use block::{ChainBlock, Digest};
pub use engine::{Channels, EngineConfig, Running, StartError, channel};
pub use host::{Finalized, MemHost};
pub use mempool::{AdmitError, Mempool, MempoolLimits};
