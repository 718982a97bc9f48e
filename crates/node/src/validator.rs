//! Running the node as a simplex validator.
//!
//! [`NodeHost`] is the consensus [`Host`] over the node's own store and mempool: consensus asks
//! it for candidate transactions and hands it finalized blocks, which it commits to redb. The
//! RPC reports a transaction "final" when its block is in the store, so RPC finality is
//! consensus finality. [`run`] runs one validator process on commonware's tokio runtime with
//! `commonware-p2p::authenticated::lookup` (encrypted, authenticated, peers known by key and
//! address from the validator config) between validators.

use crate::chain::Chain;
use crate::config::ChainConfig;
use crate::{Shared, config, rpc, store};
use agora_consensus::gossip::{self, Verdict};
use agora_consensus::{
    AppConfig, CommitError, EngineConfig, EpochStart, Host, LedgerApp, channel, engine,
};
use agora_ledger::{Applied, State, TxError};
use agora_types::{Address, Block, Hash, SecretKey, SignedTx};
use commonware_cryptography::ed25519;
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address as PeerAddress, AddressableManager as _};
use commonware_runtime::{Quota, Runner as _, Supervisor as _, tokio as cw_tokio};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The consensus [`Host`] backed by the node's [`Chain`].
#[derive(Clone)]
pub struct NodeHost {
    shared: Arc<Shared>,
}

impl NodeHost {
    pub fn new(shared: Arc<Shared>) -> NodeHost {
        NodeHost { shared }
    }
}

impl Host for NodeHost {
    fn candidates(&self, state: &State, max: usize) -> Vec<SignedTx> {
        let Ok(chain) = self.shared.chain.lock() else {
            return Vec::new();
        };
        // On top of `state` (possibly a speculative parent): nonces it consumed are skipped.
        chain.mempool().candidates(state, max)
    }

    fn has_pending(&self) -> bool {
        self.shared
            .chain
            .lock()
            .map(|c| !c.mempool().is_empty())
            .unwrap_or(false)
    }

    fn signatures_checked(&self, txs: &[SignedTx]) -> Vec<bool> {
        let Ok(chain) = self.shared.chain.lock() else {
            return vec![false; txs.len()];
        };
        txs.iter()
            .map(|stx| chain.mempool().contains(&stx.id()))
            .collect()
    }

    fn discard(&self, rejected: &[(SignedTx, TxError)]) {
        if let Ok(mut chain) = self.shared.chain.lock() {
            for (stx, _) in rejected {
                chain.discard(stx);
            }
        }
    }

    fn commit(&self, block: &Block, state: &State, applied: &Applied) -> Result<(), CommitError> {
        let mut chain = self
            .shared
            .chain
            .lock()
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        chain
            .commit_finalized(block, state, applied)
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        // Idle heartbeat blocks would flood the log at info.
        if block.txs.is_empty() {
            tracing::debug!(target: "agora::consensus", height = block.header.height,
                root = %state.root(), "empty block finalized");
        } else {
            tracing::info!(target: "agora::consensus", height = block.header.height,
                txs = block.txs.len(), root = %state.root(), "block finalized");
        }
        Ok(())
    }

    fn save_epoch(&self, epoch: &EpochStart) -> Result<(), CommitError> {
        let chain = self
            .shared
            .chain
            .lock()
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        chain
            .store()
            .put_meta(EPOCH_KEY, &epoch.to_bytes())
            .map_err(|e| CommitError::Storage(e.to_string()))
    }

    fn current_epoch(&self) -> Option<EpochStart> {
        let bytes = self
            .shared
            .chain
            .lock()
            .ok()?
            .store()
            .meta(EPOCH_KEY)
            .ok()??;
        EpochStart::from_bytes(&bytes)
    }
}

/// Where the node's store keeps the epoch the validator entered last.
const EPOCH_KEY: &str = "consensus_epoch";

/// One validator peer in the validator config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub address: Address,
    pub endpoint: SocketAddr,
}

/// The validator side of a node (the `[validator]` section, or a `validator.toml`): where it
/// listens for validators and who they are. No peers: a one-validator chain in-process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Where this validator accepts connections from other validators.
    pub listen: SocketAddr,
    /// Every validator of the committee (this one included), with its p2p endpoint.
    pub peers: Vec<PeerConfig>,
    /// With an empty mempool, the proposer waits this long before proposing an empty block.
    pub idle_block_ms: u64,
    /// A view without a proposal ends after this long (validator networks; the sole
    /// validator of a one-validator chain waits `idle_block_ms` + 1 s).
    pub leader_timeout_ms: u64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            idle_block_ms: 1_000,
            leader_timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("config: {0}")]
    Config(#[from] config::ConfigError),
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot read validator config {path}: {message}")]
    ValidatorConfig { path: String, message: String },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("committee: {0}")]
    Committee(#[from] agora_consensus::validators::CommitteeError),
    #[error("consensus: {0}")]
    Start(#[from] agora_consensus::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{data_dir} holds {height} blocks made without consensus records (by an earlier agora); \
         move it away or start afresh (agora dev --reset)"
    )]
    LegacyChain { data_dir: String, height: u64 },
    #[error("validator thread: {0}")]
    Thread(String),
}

impl ValidatorConfig {
    /// The peers as the validator network tracks them: consensus key -> socket address.
    pub fn peer_map(
        &self,
    ) -> Result<Map<ed25519::PublicKey, PeerAddress>, agora_consensus::validators::CommitteeError>
    {
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let key = agora_consensus::validators::key_of(&p.address)?;
                Ok((key, PeerAddress::Symmetric(p.endpoint)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Map::from_iter_dedup(peers))
    }

    pub fn load(path: &Path) -> Result<ValidatorConfig, ValidatorError> {
        let err = |message: String| ValidatorError::ValidatorConfig {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

/// Per-peer, per-channel message rate on the validator network.
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

/// Runs a validator until the process is stopped: opens the store, serves the RPC, joins the
/// validator network and drives the chain with simplex. Blocks the calling thread.
pub fn run(cfg: ChainConfig, vcfg: ValidatorConfig, key: SecretKey) -> Result<(), ValidatorError> {
    let (ready, _started) = tokio::sync::oneshot::channel();
    let (_stop, stopped) = tokio::sync::oneshot::channel();
    run_until(cfg, vcfg, key, ready, stopped)
}

/// A validator running on a thread of its own (commonware's tokio runtime).
pub struct RunningValidator {
    pub rpc_addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), ValidatorError>>,
    /// Fires when the thread ends, whatever ended it (a panic included); `None` once seen.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Sends on drop: the thread's end is signalled even when it unwinds from a panic.
struct EndSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for EndSignal {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.send(());
        }
    }
}

impl RunningValidator {
    /// Resolves when the validator stops without being asked: a consensus task that panicked
    /// (commonware's journal cannot append on a full disk) ends the thread, and with it the
    /// RPC. The process should then exit, not serve on without consensus.
    pub async fn ended(&mut self) {
        match self.ended.as_mut() {
            Some(rx) => {
                let _ = rx.await;
                self.ended = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops consensus and the RPC and waits until the store is closed.
    pub fn stop(self) {
        let _ = self.stop.send(());
        drop(self.shared);
        match self.thread.join() {
            Ok(Err(e)) => tracing::error!(target: "agora::node", error = %e, "validator stopped"),
            Err(_) => tracing::error!(target: "agora::node", "validator thread panicked"),
            Ok(Ok(())) => {}
        }
    }
}

/// Starts a validator on its own thread and returns once its RPC is listening and consensus is
/// starting (or with the error that stopped it from starting).
pub async fn spawn(
    cfg: ChainConfig,
    vcfg: ValidatorConfig,
    key: SecretKey,
) -> Result<RunningValidator, ValidatorError> {
    let (ready, started) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (end, ended) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("agora-validator".into())
        .spawn(move || {
            let _end = EndSignal(Some(end));
            run_until(cfg, vcfg, key, ready, stopped)
        })
        .map_err(|e| ValidatorError::Thread(e.to_string()))?;
    match started.await {
        Ok((rpc_addr, shared)) => Ok(RunningValidator {
            rpc_addr,
            shared,
            stop,
            thread,
            ended: Some(ended),
        }),
        // The thread ended before it was ready: its result says why.
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(ValidatorError::Thread("stopped before it started".into())),
            Err(_) => Err(ValidatorError::Thread("panicked while starting".into())),
        },
    }
}

type Ready = tokio::sync::oneshot::Sender<(SocketAddr, Arc<Shared>)>;

/// Runs a validator until consensus stops or `stop` fires; reports the RPC address and shared
/// chain state on `ready` once serving.
fn run_until(
    cfg: ChainConfig,
    vcfg: ValidatorConfig,
    key: SecretKey,
    ready: Ready,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ValidatorError> {
    let consensus_dir: PathBuf = cfg.data_dir.join("consensus");
    let fresh_consensus = !consensus_dir.exists();
    std::fs::create_dir_all(&consensus_dir).map_err(|e| config::ConfigError::Io {
        path: consensus_dir.display().to_string(),
        source: e,
    })?;
    let runner =
        cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(consensus_dir));
    runner.start(|context| async move {
        let genesis = cfg.load_genesis()?;
        let genesis_state = genesis
            .into_state()
            .map_err(|e| ValidatorError::Genesis(e.to_string()))?;
        let participants = agora_consensus::validators::committee_keys(&genesis_state)?;
        let store = store::Store::open(&cfg.data_dir.join("chain.redb"))?;
        let state = store.load_or_init(&genesis)?;
        if fresh_consensus && state.height() > 0 {
            // Blocks without consensus records: made by the single-node producer of an
            // earlier release. Consensus would restart from genesis and diverge from them.
            return Err(ValidatorError::LegacyChain {
                data_dir: cfg.data_dir.display().to_string(),
                height: state.height(),
            });
        }
        tracing::info!(target: "agora::node", chain = %state.chain_id(), height = state.height(),
            validators = participants.len(), "validator starting");
        let mempool = agora_consensus::Mempool::new(agora_consensus::MempoolLimits {
            max_txs: cfg.mempool_max_txs,
            max_per_account: cfg.mempool_max_per_account,
        });
        let shared = Arc::new(Shared {
            chain: Mutex::new(Chain::new(store, state.clone(), mempool)),
            new_tx: Notify::new(),
        });

        // RPC.
        let listener = tokio::net::TcpListener::bind(cfg.rpc_addr)
            .await
            .map_err(|source| ValidatorError::Listen {
                addr: cfg.rpc_addr,
                source,
            })?;
        let rpc_addr = listener
            .local_addr()
            .map_err(|source| ValidatorError::Listen {
                addr: cfg.rpc_addr,
                source,
            })?;
        let rpc_app = rpc::app(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, rpc_app).await {
                tracing::error!(target: "agora::rpc", error = %e, "RPC server stopped");
            }
        });

        // Validator network.
        let signer = agora_consensus::sim::signer_of(&key);
        let namespace = agora_ledger::slashing::consensus_namespace(state.chain_id());
        let p2p_cfg = agora_consensus::network::validator_p2p_config(
            signer.clone(),
            &namespace,
            vcfg.listen,
            NZUsize!(vcfg.peers.len().max(1)),
            engine::MAX_MESSAGE_BYTES,
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p_cfg);
        let _ = oracle.track(0, vcfg.peer_map()?);
        let mut reg = |ch| network.register(ch, QUOTA);
        let channels = agora_consensus::Channels {
            votes: reg(channel::VOTES),
            certificates: reg(channel::CERTIFICATES),
            resolver: reg(channel::RESOLVER),
            blocks: reg(channel::BLOCKS),
            backfill: reg(channel::BACKFILL),
        };
        let gossip_channel = reg(channel::TXS);
        network.start();
        spawn_gossip(&context, shared.clone(), gossip_channel, oracle.clone());

        let host = NodeHost::new(shared.clone());
        let app = LedgerApp::new(
            host,
            state,
            AppConfig {
                max_block_txs: cfg.max_block_txs,
                idle_block_interval: Duration::from_millis(vcfg.idle_block_ms),
                poll_interval: Duration::from_millis(5),
                ..AppConfig::default()
            },
        );
        let mut ecfg = EngineConfig::new(&namespace, "agora");
        ecfg.leader_timeout = Duration::from_millis(vcfg.leader_timeout_ms);
        ecfg.certification_timeout = ecfg.leader_timeout + Duration::from_secs(1);
        // Simplex wants the skip timeout (twice the certification timeout) above the retry.
        ecfg.timeout_retry = ecfg.timeout_retry.min(ecfg.certification_timeout);
        tracing::info!(target: "agora::node", me = %key.public(), listen = %vcfg.listen,
            "joining the validator network");
        let running = engine::start(
            context.child("validator"),
            ecfg,
            signer.clone(),
            participants,
            app,
            channels,
            oracle.clone(),
            oracle,
        )
        .await?;
        let _ = ready.send((rpc_addr, shared));
        tokio::select! {
            _ = running.consensus => {}
            _ = stop => {}
        }
        Ok(())
    })
}

/// Transaction gossip for the node: every transaction the RPC admits goes to the other
/// validators ([`agora_consensus::gossip`]); gossip from them is admitted to the node mempool.
/// A set of ids already sent or received keeps a transaction from going out twice; it is pruned
/// to what is still pending.
fn spawn_gossip<S, R, B>(
    context: &cw_tokio::Context,
    shared: Arc<Shared>,
    (mut sender, receiver): (S, R),
    blocker: B,
) where
    S: commonware_p2p::Sender<PublicKey = ed25519::PublicKey>,
    R: commonware_p2p::Receiver<PublicKey = ed25519::PublicKey>,
    B: commonware_p2p::Blocker<PublicKey = ed25519::PublicKey>,
{
    use commonware_runtime::Spawner as _;
    let known: Arc<Mutex<BTreeSet<Hash>>> = Arc::default();
    let (shared_in, known_in) = (shared.clone(), known.clone());
    context.child("gossip_in").spawn(move |_| async move {
        gossip::receive(receiver, blocker, |stx| {
            let id = stx.id();
            let Ok(mut chain) = shared_in.chain.lock() else {
                return Verdict::Ignored;
            };
            // The gossip batch was signature-checked as a whole before this call.
            match chain.submit_signature_checked(stx) {
                Ok(_) => {
                    if let Ok(mut k) = known_in.lock() {
                        k.insert(id);
                    }
                    Verdict::Accepted
                }
                Err(agora_consensus::AdmitError::Invalid(
                    TxError::BadSignature | TxError::WrongChain { .. } | TxError::TooLarge { .. },
                )) => Verdict::Offending,
                Err(_) => Verdict::Ignored,
            }
        })
        .await;
    });
    context.child("gossip_out").spawn(move |_| async move {
        loop {
            // Woken by RPC submissions; the timeout also picks up anything missed.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), shared.new_tx.notified()).await;
            // Let a burst gather into one batch.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let fresh: Vec<SignedTx> = {
                let (Ok(chain), Ok(mut known)) = (shared.chain.lock(), known.lock()) else {
                    continue;
                };
                let pool = chain.mempool();
                if known.len() > 2 * pool.len() + 1_024 {
                    known.retain(|id| pool.contains(id));
                }
                pool.candidates(chain.state(), GOSSIP_SCAN)
                    .into_iter()
                    .filter(|stx| known.insert(stx.id()))
                    .collect()
            };
            if !fresh.is_empty() {
                gossip::broadcast(&mut sender, &fresh);
            }
        }
    });
}

/// Most pending transactions looked at per gossip round.
const GOSSIP_SCAN: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeConfig;
    use crate::testnet::{TestnetPorts, write};
    use std::io::{Read, Write};

    /// `GET path` on a node's RPC, the JSON body (`None` while the node is not up).
    fn get_json(rpc: SocketAddr, path: &str) -> Option<serde_json::Value> {
        let mut s = std::net::TcpStream::connect_timeout(&rpc, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
    }

    fn status(rpc: SocketAddr) -> Option<serde_json::Value> {
        get_json(rpc, "/v1/status")
    }

    /// Writes a 4-validator testnet (RPC ports from `rpc_base`, p2p from `p2p_base`) in a
    /// temporary directory and starts validators `which` of it in this process. The bases stay
    /// below Linux's ephemeral range (32768-60999): a port there can be taken by any outgoing
    /// connection of a test running in parallel (seen once: one validator never started).
    fn start_validators(
        rpc_base: u16,
        p2p_base: u16,
        which: std::ops::Range<usize>,
    ) -> (tempfile::TempDir, crate::testnet::Testnet) {
        let dir = tempfile::tempdir().unwrap();
        let ports = TestnetPorts { rpc_base, p2p_base };
        let net = write(dir.path(), 4, ports, "pw", 8).unwrap();
        for node in &net.nodes[which] {
            let cfg = NodeConfig::load(Some(&node.join("agora.toml")))
                .unwrap()
                .chain;
            let mut vcfg = ValidatorConfig::load(&node.join("validator.toml")).unwrap();
            vcfg.idle_block_ms = 100;
            let key = crate::keystore::load(&cfg.key_file, "pw").unwrap();
            std::thread::spawn(move || {
                if let Err(e) = run(cfg, vcfg, key) {
                    eprintln!("validator stopped: {e}");
                }
            });
        }
        (dir, net)
    }

    /// Waits until the validators at `rpcs` reach `height` and checks their blocks at it are
    /// the same.
    fn same_block_at(rpcs: &[SocketAddr], height: u64) {
        let mut heights = vec![0u64; rpcs.len()];
        for _ in 0..900 {
            for (i, rpc) in rpcs.iter().enumerate() {
                if let Some(s) = status(*rpc) {
                    heights[i] = s["height"].as_u64().unwrap_or(0);
                }
            }
            if heights.iter().all(|h| *h >= height) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(heights.iter().all(|h| *h >= height), "heights {heights:?}");
        let ids: Vec<String> = rpcs
            .iter()
            .map(|rpc| {
                get_json(*rpc, &format!("/v1/blocks/{height}"))
                    .expect("block")
                    .to_string()
            })
            .collect();
        assert!(
            ids.iter().all(|b| *b == ids[0]),
            "validators finalized different blocks at {height}"
        );
        assert!(ids[0].len() > 20);
    }

    /// Four validator nodes (redb store, RPC, authenticated p2p over loopback TCP) in one
    /// process, each on its own commonware tokio runtime: they finalize the same blocks.
    #[test]
    fn four_node_validators_on_loopback_finalize_the_same_chain() {
        let (_dir, net) = start_validators(27_645, 27_745, 0..4);
        same_block_at(&net.rpc, 3);
    }

    /// Validator 3's key in hostile hands, over the real authenticated transport: it sends
    /// frames above the validators' message limit, then undecodable votes. The three honest
    /// validators keep finalizing one chain, and end up refusing it: its messages reach none
    /// of them.
    #[test]
    fn oversized_and_malformed_messages_from_a_validator_peer_are_refused() {
        use commonware_p2p::{Recipients, Sender as _};
        let (_dir, net) = start_validators(27_845, 27_945, 0..3);
        let cfg = NodeConfig::load(Some(&net.nodes[3].join("agora.toml")))
            .unwrap()
            .chain;
        let vcfg = ValidatorConfig::load(&net.nodes[3].join("validator.toml")).unwrap();
        let key = crate::keystore::load(&cfg.key_file, "pw").unwrap();
        let (report, reached) = std::sync::mpsc::channel::<(&'static str, usize)>();
        std::thread::spawn(move || {
            let runner = cw_tokio::Runner::new(cw_tokio::Config::new());
            runner.start(|context| async move {
                let signer = agora_consensus::sim::signer_of(&key);
                let namespace = agora_ledger::slashing::consensus_namespace("agora-testnet");
                let p2p_cfg = agora_consensus::network::validator_p2p_config(
                    signer,
                    &namespace,
                    vcfg.listen,
                    NZUsize!(4),
                    2 * engine::MAX_MESSAGE_BYTES,
                );
                let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p_cfg);
                let _ = oracle.track(0, vcfg.peer_map().unwrap());
                let (mut votes, _in) = network.register(channel::VOTES, QUOTA);
                network.start();
                let oversized = vec![7u8; engine::MAX_MESSAGE_BYTES as usize + 1024];
                for _ in 0..10 {
                    let to = votes.send(Recipients::All, oversized.clone(), false);
                    let _ = report.send(("oversized", to.len()));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                // Undecodable votes on epoch 0's subchannel (the leading varint 0 is the
                // subchannel the validators' orchestrators read epoch 0's votes from).
                let mut garbage = vec![0u8];
                garbage.extend_from_slice(&[0xff; 64]);
                loop {
                    let to = votes.send(Recipients::All, garbage.clone(), false);
                    if report.send(("garbage", to.len())).is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        });
        // The oversized frames went out on live connections (the attacker was connected).
        let mut oversized_sent = 0;
        let mut refused_in_a_row = 0;
        for _ in 0..600 {
            let Ok((what, to)) = reached.recv_timeout(Duration::from_secs(30)) else {
                break;
            };
            match what {
                "oversized" => oversized_sent += to,
                _ if to == 0 => refused_in_a_row += 1,
                _ => refused_in_a_row = 0,
            }
            if refused_in_a_row >= 30 {
                break;
            }
        }
        assert!(
            oversized_sent > 0,
            "the oversized frames never left the attacker"
        );
        assert!(
            refused_in_a_row >= 30,
            "the honest validators still take the attacker's messages"
        );
        // The honest three kept finalizing one chain through it.
        let rpcs = &net.rpc[..3];
        let now = status(rpcs[0])
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0);
        same_block_at(rpcs, now + 3);
    }
}
