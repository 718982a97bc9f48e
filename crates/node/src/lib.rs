//! The composition root: config, storage, block production, RPC and supervision of a running Agora node.
//!
//! [`builder::NodeBuilder`] assembles any set of roles (validator, provider, gateway) from one
//! sectioned [`NodeConfig`] and stops them in one order; the ledger side:
//!
//! ```text
//!   config ──► Store (redb) ──► State at tip ──► Chain { state, mempool, store }
//!                                                   ▲             │
//!   RPC (axum) ── submit tx ────────────────────────┘             │ propose / finalize
//!                                                                  ▼
//!                        simplex validator (validator.rs): one in-process for `agora dev`,
//!                        or one of N over the validator network
//! ```

pub mod bench;
pub mod builder;
pub mod chain;
pub mod config;
pub mod keystore;
pub mod metrics;
pub mod models;
pub mod rpc;
pub mod store;
pub mod testnet;
pub mod validator;

use agora_types::{Address, SecretKey};
pub use builder::{NodeBuilder, Role, RunningNode, Stopped};
use chain::Chain;
pub use config::NodeConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// State shared between the RPC handlers and the block producer.
pub struct Shared {
    pub chain: Mutex<Chain>,
    pub new_tx: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config: {0}")]
    Config(#[from] config::ConfigError),
    #[error(
        "genesis names {validators} validators; a node whose [validator] section names no \
         peers runs a one-validator chain (agora testnet writes validator networks)"
    )]
    NotSoleValidator { validators: usize },
    #[error("the node key {key} is not the genesis validator {validator}")]
    NotTheValidator { key: Address, validator: Address },
    #[error(transparent)]
    Validator(#[from] validator::ValidatorError),
}

/// A running node.
pub struct NodeHandle {
    pub rpc_addr: SocketAddr,
    pub shared: Arc<Shared>,
    validator: validator::RunningValidator,
}

impl NodeHandle {
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// Resolves when the validator stops without being asked (see
    /// [`validator::RunningValidator::ended`]).
    pub async fn ended(&mut self) {
        self.validator.ended().await;
    }

    /// Stops consensus and the RPC; returns once the store is closed.
    pub fn shutdown(self) {
        drop(self.shared);
        self.validator.stop();
    }
}

/// Starts a one-validator chain in-process: the genesis must name `key` as its only validator.
/// It runs the same simplex engine as an N-validator network (quorum of one), with the
/// validator network listening on an ephemeral loopback port that nobody needs to dial.
/// With transactions waiting a block is built at once; with none, an empty block every
/// `idle_block_ms` keeps finality (and time-based settlement) moving.
pub async fn start(cfg: &NodeConfig, key: SecretKey) -> Result<NodeHandle, StartError> {
    let genesis = cfg
        .chain
        .load_genesis()?
        .into_state()
        .map_err(|e| validator::ValidatorError::Genesis(e.to_string()))?;
    let validators = agora_consensus::validators::committee(&genesis);
    let [(only, _)] = validators.as_slice() else {
        return Err(StartError::NotSoleValidator {
            validators: validators.len(),
        });
    };
    if *only != key.public() {
        return Err(StartError::NotTheValidator {
            key: key.public(),
            validator: *only,
        });
    }
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let vcfg = validator::ValidatorConfig {
        listen: loopback,
        peers: vec![validator::PeerConfig {
            address: key.public(),
            endpoint: loopback,
        }],
        idle_block_ms: cfg.validator.idle_block_ms,
        // The only leader is this node: its view must not time out while it waits for work.
        leader_timeout_ms: cfg.validator.idle_block_ms.saturating_add(1_000),
    };
    let running = validator::spawn(cfg.chain.clone(), vcfg, key).await?;
    tracing::info!(target: "agora::node", rpc = %running.rpc_addr, "node started");
    Ok(NodeHandle {
        rpc_addr: running.rpc_addr,
        shared: running.shared.clone(),
        validator: running,
    })
}
