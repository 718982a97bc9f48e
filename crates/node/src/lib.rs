//! The composition root: config, storage, block production, RPC and supervision of a running Agora node.
//!
//! ```text
//!   config ──► Store (redb) ──► State at tip ──► Chain { state, mempool, store }
//!                                                   ▲             │
//!   RPC (axum) ── submit tx ────────────────────────┘             │ propose / finalize
//!                                                                  ▼
//!                                  block producer (one validator in-process today;
//!                                  the BFT engine drives the same calls)
//! ```

pub mod bench;
pub mod chain;
pub mod config;
pub mod keystore;
pub mod mempool;
pub mod rpc;
pub mod store;
pub mod testnet;
pub mod validator;

use agora_types::Address;
use chain::Chain;
pub use config::NodeConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running node.
pub struct NodeHandle {
    pub rpc_addr: SocketAddr,
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeHandle {
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Opens storage, loads the state and starts the RPC server and the block producer.
pub async fn start(cfg: &NodeConfig, proposer: Address) -> Result<NodeHandle, StartError> {
    let genesis = cfg.load_genesis()?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| config::ConfigError::Io {
        path: cfg.data_dir.display().to_string(),
        source: e,
    })?;
    let store = store::Store::open(&cfg.data_dir.join("chain.redb"))?;
    let state = store.load_or_init(&genesis)?;
    tracing::info!(target: "agora::node", chain = %state.chain_id(), height = state.height(), root = %state.root(), "state loaded");
    let mempool = mempool::Mempool::new(cfg.mempool_max_txs, cfg.mempool_max_per_account);
    let shared = Arc::new(Shared {
        chain: Mutex::new(Chain::new(store, state, mempool, cfg.max_block_txs)),
        new_tx: Notify::new(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.rpc_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.rpc_addr,
            source,
        })?;
    let rpc_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.rpc_addr,
        source,
    })?;
    let app = rpc::app(shared.clone());
    let rpc_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(target: "agora::rpc", error = %e, "RPC server stopped");
        }
    });
    let producer = tokio::spawn(produce_blocks(
        shared.clone(),
        proposer,
        Duration::from_millis(cfg.block_time_ms),
    ));
    tracing::info!(target: "agora::node", rpc = %rpc_addr, "node started");
    Ok(NodeHandle {
        rpc_addr,
        shared,
        tasks: vec![rpc_task, producer],
    })
}

/// The single in-process block producer: when transactions are waiting, build a block at most
/// every `block_time`, finalize it at once (one validator: its proposal is final) and persist it.
/// No empty blocks while idle.
async fn produce_blocks(shared: Arc<Shared>, proposer: Address, block_time: Duration) {
    loop {
        let waiting = shared
            .chain
            .lock()
            .map(|c| !c.mempool().is_empty())
            .unwrap_or(false);
        if !waiting {
            shared.new_tx.notified().await;
        }
        // Let a burst of transactions gather into one block.
        tokio::time::sleep(block_time).await;
        let shared2 = shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut chain = shared2.chain.lock().map_err(|e| e.to_string())?;
            if chain.mempool().is_empty() {
                return Ok(None);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            let block = chain.propose(now, proposer);
            if block.txs.is_empty() {
                return Ok(None);
            }
            chain.finalize(&block).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((
                block.header.height,
                block.txs.len(),
                chain.state().root(),
            )))
        })
        .await;
        match result {
            Ok(Ok(Some((height, txs, root)))) => {
                tracing::info!(target: "agora::producer", height, txs, %root, "block finalized")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                // Storage failed: stop producing rather than diverge from disk.
                tracing::error!(target: "agora::producer", error = %e, "block production failed; stopping");
                return;
            }
            Err(e) => {
                tracing::error!(target: "agora::producer", error = %e, "producer task panicked; stopping");
                return;
            }
        }
    }
}
