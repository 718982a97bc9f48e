//! N validators in one process on commonware's simulated network: on the deterministic runtime
//! (tests) or the tokio runtime (the benchmark).
//!
//! Used by the simulation tests and `agora bench consensus`. Every validator runs the real
//! [`engine::start`] wiring with a [`MemHost`]; the host survives a crash (it stands for the
//! validator's disk), as do the validator's storage partitions in the deterministic runtime.

use crate::app::{AppConfig, LedgerApp, ValidatorKey};
use crate::engine::{self, Channels, EngineConfig, channel};
use crate::gossip;
use crate::host::MemHost;
use crate::mempool::MempoolLimits;
use agora_ledger::State;
use agora_types::SecretKey;
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{
    Clock, Handle, Metrics, Network as RNetwork, Quota, Spawner, Storage, Supervisor,
};
use commonware_utils::{NZU32, NZUsize};
use rand_core_cw::{CryptoRng, Rng};
use std::time::Duration;

/// Per-peer, per-channel message rate: high enough never to be the bottleneck.
pub const QUOTA: Quota = Quota::per_second(NZU32!(100_000));

pub(crate) type Outbox = futures::channel::mpsc::UnboundedReceiver<agora_types::SignedTx>;

/// Routes `host`'s admitted submissions to a queue at once (before any task runs, so nothing
/// submitted from now on misses gossip).
pub(crate) fn gossip_outbox(host: &MemHost) -> Outbox {
    let (outbox, queued) = futures::channel::mpsc::unbounded();
    host.set_gossip(outbox);
    queued
}

/// Starts validator gossip over `host`: queued submissions go out on the gossip channel,
/// gossip from peers is admitted (malformed or offending gossip blocks the sender).
pub(crate) fn spawn_gossip<E: Runtime, S, R, B>(
    ctx: &E,
    host: MemHost,
    mut queued: Outbox,
    (mut sender, receiver): (S, R),
    blocker: B,
) where
    S: commonware_p2p::Sender<PublicKey = ValidatorKey>,
    R: commonware_p2p::Receiver<PublicKey = ValidatorKey>,
    B: commonware_p2p::Blocker<PublicKey = ValidatorKey>,
{
    use futures::StreamExt as _;
    ctx.child("gossip_out").spawn(move |_| async move {
        while let Some(first) = queued.next().await {
            let mut batch = vec![first];
            while let Ok(more) = queued.try_recv() {
                batch.push(more);
            }
            gossip::broadcast(&mut sender, &batch);
        }
    });
    ctx.child("gossip_in").spawn(move |_| async move {
        gossip::receive(receiver, blocker, |stx| host.admit_gossiped(stx)).await;
    });
}

/// The subchannel of `epoch` on a simplex channel (votes, certificates, resolver): what the
/// engine's orchestrator uses, for a test that drives a hand-made (e.g. Byzantine) engine.
pub async fn epoch_subchannel<E, S, R>(
    ctx: &E,
    (sender, receiver): (S, R),
    epoch: u64,
) -> (
    commonware_p2p::utils::mux::SubSender<S>,
    commonware_p2p::utils::mux::SubReceiver<ValidatorKey>,
)
where
    E: Spawner + Metrics + Supervisor,
    S: commonware_p2p::Sender<PublicKey = ValidatorKey>,
    R: commonware_p2p::Receiver<PublicKey = ValidatorKey>,
{
    let (mux, mut handle) =
        commonware_p2p::utils::mux::Muxer::new(ctx.child("mux"), sender, receiver);
    mux.start();
    handle.register(epoch).await.expect("fresh muxer")
}

/// A validator in the simulation.
pub struct SimValidator {
    pub key: SecretKey,
    pub public: ValidatorKey,
    pub host: MemHost,
    /// The application of the running (or last run) instance.
    pub app: Option<LedgerApp<MemHost>>,
    handle: Option<Handle<()>>,
}

pub struct Sim<E: Runtime> {
    pub oracle: Oracle<ValidatorKey, E>,
    pub validators: Vec<SimValidator>,
    pub participants: Vec<ValidatorKey>,
    pub app_config: AppConfig,
    pub engine_config: EngineConfig,
    genesis: State,
}

/// The consensus key of an Agora secret key (same ed25519 seed).
pub fn signer_of(key: &SecretKey) -> PrivateKey {
    PrivateKey::decode(bytes::Bytes::copy_from_slice(&key.to_bytes()))
        .expect("32-byte ed25519 seed")
}

/// What a runtime must provide to host a simulated validator network.
pub trait Runtime:
    Clock + CryptoRng + Rng + Spawner + Storage + Metrics + Supervisor + RNetwork
{
}
impl<E> Runtime for E where
    E: Clock + CryptoRng + Rng + Spawner + Storage + Metrics + Supervisor + RNetwork
{
}

impl<E: Runtime> Sim<E> {
    /// Builds the network (all links `link`) for `keys`; starts no validator.
    pub async fn new(context: &E, genesis: State, keys: Vec<SecretKey>, link: Link) -> Sim<E> {
        use commonware_cryptography::Signer as _;
        let validators: Vec<SimValidator> = keys
            .into_iter()
            .map(|key| SimValidator {
                public: signer_of(&key).public_key(),
                host: MemHost::new(genesis.clone(), MempoolLimits::default()),
                key,
                app: None,
                handle: None,
            })
            .collect();
        let mut participants: Vec<ValidatorKey> =
            validators.iter().map(|v| v.public.clone()).collect();
        participants.sort();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: engine::MAX_MESSAGE_BYTES,
                max_peers_per_set: NZUsize!(participants.len().max(1)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            participants.clone(),
        )
        .await;
        network.start();
        let sim = Sim {
            oracle,
            validators,
            participants,
            app_config: AppConfig::default(),
            engine_config: EngineConfig::new(
                &agora_ledger::slashing::consensus_namespace(genesis.chain_id()),
                "v",
            ),
            genesis,
        };
        sim.link_all(&link).await;
        sim
    }

    /// Adds a link in both directions between every pair allowed by `allow`.
    pub async fn link_where(&self, link: &Link, allow: impl Fn(usize, usize) -> bool) {
        for (i, a) in self.validators.iter().enumerate() {
            for (j, b) in self.validators.iter().enumerate() {
                if i != j && allow(i, j) {
                    let _ = self
                        .oracle
                        .add_link(a.public.clone(), b.public.clone(), link.clone())
                        .await;
                }
            }
        }
    }

    pub async fn link_all(&self, link: &Link) {
        self.link_where(link, |_, _| true).await;
    }

    /// Removes every link between validators in different `groups` (a partition).
    pub async fn partition(&self, side: impl Fn(usize) -> bool) {
        for (i, a) in self.validators.iter().enumerate() {
            for (j, b) in self.validators.iter().enumerate() {
                if i != j && side(i) != side(j) {
                    let _ = self
                        .oracle
                        .remove_link(a.public.clone(), b.public.clone())
                        .await;
                }
            }
        }
    }

    /// Starts (or restarts, from its storage) validator `i`.
    pub async fn start(&mut self, context: &E, i: usize) {
        let v = &self.validators[i];
        let control = self.oracle.control(v.public.clone());
        let mut regs = Vec::new();
        for ch in [
            channel::VOTES,
            channel::CERTIFICATES,
            channel::RESOLVER,
            channel::BLOCKS,
            channel::BACKFILL,
        ] {
            regs.push(control.register(ch, QUOTA).await.expect("register channel"));
        }
        let mut regs = regs.into_iter();
        let mut next = || regs.next().expect("five channels");
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            blocks: next(),
            backfill: next(),
        };
        let gossip_channel = control
            .register(channel::TXS, QUOTA)
            .await
            .expect("register channel");
        let host = v.host.clone();
        let queued = gossip_outbox(&host);
        let app = LedgerApp::new(host.clone(), (*host.state()).clone(), self.app_config);
        let signer = signer_of(&v.key);
        self.validators[i].app = Some(app.clone());
        let mut config = self.engine_config.clone();
        config.partition_prefix = format!("validator{i}");
        let genesis_committee =
            crate::validators::committee_keys(&self.genesis).expect("genesis has validators");
        let manager = self.oracle.manager();
        let handle =
            context
                .child("validator")
                .with_attribute("index", i)
                .spawn(move |ctx| async move {
                    spawn_gossip(&ctx, host, queued, gossip_channel, control.clone());
                    let running = engine::start(
                        ctx,
                        config,
                        signer,
                        genesis_committee,
                        app,
                        channels,
                        manager,
                        control,
                    )
                    .await
                    .expect("validator starts");
                    let _ = running.consensus.await;
                });
        self.validators[i].handle = Some(handle);
    }

    /// Runs only the transaction gossip of validator `i` (no consensus engine): a mempool that
    /// relays what is submitted to it, so a test can show transactions reach the proposers
    /// by gossip alone.
    pub async fn start_gossip_only(&mut self, context: &E, i: usize) {
        let v = &self.validators[i];
        let control = self.oracle.control(v.public.clone());
        let gossip_channel = control
            .register(channel::TXS, QUOTA)
            .await
            .expect("register channel");
        let host = v.host.clone();
        let queued = gossip_outbox(&host);
        let handle = context
            .child("gossip_only")
            .with_attribute("index", i)
            .spawn(move |ctx| async move {
                spawn_gossip(&ctx, host, queued, gossip_channel, control);
                futures::future::pending::<()>().await;
            });
        self.validators[i].handle = Some(handle);
    }

    /// Kills validator `i` (its tasks stop; host and storage survive).
    pub async fn crash(&mut self, i: usize) {
        if let Some(handle) = self.validators[i].handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub fn genesis(&self) -> &State {
        &self.genesis
    }

    /// Waits until every validator in `who` has finalized `height`; `false` on `timeout`
    /// (simulated time).
    pub async fn wait_height(
        &self,
        context: &E,
        who: &[usize],
        height: u64,
        timeout: Duration,
    ) -> bool {
        let step = Duration::from_millis(50);
        let steps = timeout.as_millis() / step.as_millis();
        for _ in 0..steps {
            if who
                .iter()
                .all(|i| self.validators[*i].host.height() >= height)
            {
                return true;
            }
            context.sleep(step).await;
        }
        false
    }
}
