//! Wiring one validator: simplex + marshal (block dissemination, backfill, finalized archive).
//!
//! ```text
//!  p2p channel 0 votes ───────┐
//!  p2p channel 1 certificates ├─► simplex::Engine ──(automaton/relay/reporter)──► marshal::Inline
//!  p2p channel 2 resolver ────┘                                                     │
//!  p2p channel 3 blocks ──► buffered::Engine (proposed blocks) ───────────────► marshal::Actor
//!  p2p channel 4 backfill ► resolver (missing finalized blocks by height/digest) ─┘   │
//!                                             finalized blocks, in order, with ack ──► LedgerApp
//! ```
//!
//! Votes, certificates and resolver traffic are split by epoch (commonware `mux`, subchannel =
//! epoch number); the orchestrator runs simplex for the current epoch's committee and moves to
//! the next one when marshal delivers an epoch's last block (docs/design/consensus.md, Epochs).
//!
//! The same function runs on the deterministic runtime with `commonware_p2p::simulated` (tests)
//! and on the tokio runtime with `commonware_p2p::authenticated` (the `agora node` binary).
//! A restarted validator replays simplex's journal and marshal's archives from `partition_prefix`
//! and backfills whatever finalized blocks it missed from peers.

use crate::app::{EpochStart, Host, LedgerApp, ValidatorKey};
use crate::block::{ChainBlock, digest_of};
use crate::evidence::EvidenceReporter;
use agora_ledger::State;
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::Reporters;
use commonware_consensus::marshal::core::Mailbox;
use commonware_consensus::marshal::standard::Standard;
use commonware_consensus::marshal::{
    Config as MarshalConfig, Start, core::Actor, resolver::p2p as marshal_resolver,
    standard::Inline,
};
use commonware_consensus::simplex::{
    self,
    config::{ForwardPolicy, SkipBudget, SkipPolicy},
    elector::RoundRobin,
    scheme::ed25519,
};
use commonware_consensus::types::{Epoch, Epocher as _, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::{Provider as SchemeProvider, Scoped, Verifier as _};
use commonware_cryptography::{Digested, Digestible, Sha256, ed25519::PrivateKey};
use commonware_p2p::utils::mux::{Builder as _, MuxHandle, Muxer};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, Supervisor};
use commonware_storage::archive::immutable;
use commonware_utils::ordered::Set;
use commonware_utils::vec::NonEmptyVec;
use commonware_utils::{NZU16, NZU64, NZUsize, NonZeroDuration};
use rand_core_cw::CryptoRng;
use std::collections::BTreeMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The p2p channel ids a validator registers.
pub mod channel {
    pub const VOTES: u64 = 0;
    pub const CERTIFICATES: u64 = 1;
    pub const RESOLVER: u64 = 2;
    pub const BLOCKS: u64 = 3;
    pub const BACKFILL: u64 = 4;
    /// Transaction gossip ([`crate::gossip`]); not part of [`super::Channels`], the node runs it.
    pub const TXS: u64 = 5;
}

/// Largest p2p message a validator accepts: a maximal block plus framing.
pub const MAX_MESSAGE_BYTES: u32 = 17 * 1024 * 1024;

/// Why a validator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the validator set of epoch {epoch} is not known here (saved: {saved:?}); the data          directory lost its consensus records"
    )]
    UnknownCommittee { epoch: u64, saved: Option<u64> },
    #[error("storage: {0}")]
    Storage(String),
}

/// Timing and storage knobs for one validator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Domain separation for consensus signatures: must be
    /// [`agora_ledger::slashing::consensus_namespace`] of the chain for equivocation evidence
    /// to verify in the ledger.
    pub namespace: Vec<u8>,
    /// Prefix for every storage partition this validator writes.
    pub partition_prefix: String,
    pub leader_timeout: Duration,
    pub certification_timeout: Duration,
    pub timeout_retry: Duration,
    pub fetch_timeout: Duration,
    pub mailbox_size: usize,
}

impl EngineConfig {
    pub fn new(namespace: &[u8], partition_prefix: &str) -> EngineConfig {
        EngineConfig {
            namespace: namespace.to_vec(),
            partition_prefix: partition_prefix.to_string(),
            leader_timeout: Duration::from_secs(2),
            certification_timeout: Duration::from_secs(3),
            timeout_retry: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(2),
            mailbox_size: 1024,
        }
    }
}

/// The five channels of [`channel`], each a sender/receiver pair.
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub blocks: (S, R),
    pub backfill: (S, R),
}

/// An epoch's scheme and whether it can sign (this validator is a member).
type EngineScheme = (Arc<ed25519::Scheme>, bool);

/// Each epoch's consensus scheme, from the committees this validator learned: a signer where it
/// is a member, a verifier where it is not (it follows finality without voting).
#[derive(Clone)]
pub struct EpochSchemes {
    namespace: Arc<Vec<u8>>,
    signer: PrivateKey,
    by_epoch: Arc<Mutex<BTreeMap<u64, EngineScheme>>>,
}

impl EpochSchemes {
    pub fn new(namespace: &[u8], signer: PrivateKey) -> EpochSchemes {
        EpochSchemes {
            namespace: Arc::new(namespace.to_vec()),
            signer,
            by_epoch: Arc::default(),
        }
    }

    /// Installs `epoch`'s committee and forgets epochs before the one preceding it (marshal
    /// verifies certificates only from the epoch it is delivering onwards).
    pub fn install(&self, epoch: u64, members: &[ValidatorKey]) {
        let set = Set::from_iter_dedup(members.iter().cloned());
        let scheme =
            match ed25519::Scheme::signer(&self.namespace, set.clone(), self.signer.clone()) {
                Some(signer) => (Arc::new(signer), true),
                None => (
                    Arc::new(ed25519::Scheme::verifier(&self.namespace, set)),
                    false,
                ),
            };
        let mut by_epoch = self.by_epoch.lock().unwrap_or_else(|e| e.into_inner());
        by_epoch.insert(epoch, scheme);
        let keep_from = by_epoch
            .last_key_value()
            .map_or(0, |(e, _)| e.saturating_sub(1));
        by_epoch.retain(|e, _| *e >= keep_from);
    }

    /// `epoch`'s scheme for its simplex engine and whether it signs (this validator votes).
    fn engine_scheme(&self, epoch: u64) -> Option<EngineScheme> {
        self.by_epoch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&epoch)
            .cloned()
    }
}

impl SchemeProvider for EpochSchemes {
    type Scope = Epoch;
    type Scheme = ed25519::Scheme;

    fn scoped(&self, epoch: Epoch) -> Option<Scoped<ed25519::Scheme>> {
        let (scheme, signs) = self.engine_scheme(epoch.get())?;
        Some(if signs {
            Scoped::scheme(scheme)
        } else {
            Scoped::verifier(scheme)
        })
    }
}

/// Handles of a running validator's tasks.
pub struct Running {
    /// The epoch orchestrator: runs one simplex engine per epoch; ends if consensus stops.
    pub consensus: Handle<()>,
    pub marshal: Handle<()>,
}

/// The epoch to run after a (re)start: the one after the last finalized block.
///
/// `saved` is what the host persisted when the validator entered its last epoch. At genesis
/// (or an old data directory with nothing saved, still in epoch 0) the committee is
/// `genesis_committee`; exactly at a boundary the next committee comes from the finalized
/// state (the boundary block may have been finalized just before a crash that kept it from
/// being saved).
pub fn resume_epoch(
    finalized: &State,
    saved: Option<EpochStart>,
    genesis_committee: &[ValidatorKey],
) -> Result<EpochStart, StartError> {
    use agora_ledger::epochs::{epoch_of, last_height_of};
    let length = finalized.params().epoch_length_blocks.max(1);
    let height = finalized.height();
    let epoch = epoch_of(height.saturating_add(1), length);
    if let Some(saved) = saved.as_ref().filter(|s| s.epoch == epoch) {
        return Ok(saved.clone());
    }
    if epoch == 0 {
        return Ok(EpochStart {
            epoch,
            members: genesis_committee.to_vec(),
            floor: ChainBlock::genesis().digest(),
        });
    }
    if height == last_height_of(epoch - 1, length) {
        let previous = saved
            .filter(|s| s.epoch + 1 == epoch)
            .map_or_else(|| genesis_committee.to_vec(), |s| s.members);
        return Ok(EpochStart {
            epoch,
            members: crate::app::next_committee(finalized, &previous),
            floor: digest_of(&finalized.last_block()),
        });
    }
    Err(StartError::UnknownCommittee {
        epoch,
        saved: saved.map(|s| s.epoch),
    })
}

/// Starts one validator: marshal, block dissemination and backfill, and the orchestrator that
/// runs simplex for the current epoch and switches to the next committee when an epoch's
/// last block is finalized. `genesis_committee` is epoch 0's committee
/// ([`crate::validators::committee_keys`] of the genesis state). A key outside the current
/// committee runs as an observer: it follows finality and joins when the ledger makes it a
/// member.
#[allow(clippy::too_many_arguments)]
pub async fn start<E, H, P, B, S, R>(
    context: E,
    config: EngineConfig,
    signer: PrivateKey,
    genesis_committee: Vec<ValidatorKey>,
    app: LedgerApp<H>,
    channels: Channels<S, R>,
    peers: P,
    blocker: B,
) -> Result<Running, StartError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + Supervisor,
    H: Host,
    P: Provider<PublicKey = ValidatorKey>,
    B: Blocker<PublicKey = ValidatorKey>,
    S: Sender<PublicKey = ValidatorKey>,
    R: Receiver<PublicKey = ValidatorKey>,
{
    use commonware_cryptography::Signer as _;
    let me = signer.public_key();
    // The same ed25519 seed is this validator's Agora account: it signs the `Slash`
    // transactions for equivocation evidence it observes.
    if let Ok(seed) = <[u8; 32]>::try_from(signer.encode().as_ref()) {
        app.set_slasher(agora_types::SecretKey::from_bytes(seed));
    }
    let finalized = app.finalized();
    let epoch_length =
        NonZeroU64::new(finalized.params().epoch_length_blocks.max(1)).unwrap_or(NonZeroU64::MIN);
    let first = resume_epoch(&finalized, app.host().current_epoch(), &genesis_committee)?;
    app.host()
        .save_epoch(&first)
        .map_err(|e| StartError::Storage(e.to_string()))?;
    app.record_epoch(first.epoch, first.members.clone());
    let schemes = EpochSchemes::new(&config.namespace, signer);
    schemes.install(first.epoch, &first.members);
    // Boundaries finalized from now on; installed before marshal delivers anything.
    let (next_epochs, epochs) = futures::channel::mpsc::unbounded();
    {
        let schemes = schemes.clone();
        app.on_epoch(Arc::new(move |next: EpochStart| {
            // Before the boundary is acknowledged: marshal may receive the new epoch's
            // certificates at once.
            schemes.install(next.epoch, &next.members);
            let _ = next_epochs.unbounded_send(next);
        }));
    }

    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(1024));
    let mailbox_size = NZUsize!(config.mailbox_size.max(1));
    let marshal_config = MarshalConfig {
        provider: schemes.clone(),
        epocher: FixedEpocher::new(epoch_length),
        start: Start::Genesis({
            let genesis = ChainBlock::genesis();
            let digest = genesis.digest();
            Digested::precomputed(genesis, digest)
        }),
        partition_prefix: format!("{prefix}-marshal"),
        mailbox_size,
        view_retention: ViewDelta::new(256),
        prunable_items_per_section: NZU64!(1024),
        page_cache: page_cache.clone(),
        replay_buffer: NZUsize!(1 << 20),
        key_write_buffer: NZUsize!(1 << 20),
        value_write_buffer: NZUsize!(1 << 20),
        block_codec_config: (),
        max_repair: NZUsize!(64),
        max_pending_acks: NZUsize!(16),
        strategy: Sequential,
    };

    // Backfill of missing finalized blocks.
    let resolver_config = marshal_resolver::Config {
        public_key: me.clone(),
        peer_provider: peers.clone(),
        blocker: blocker.clone(),
        mailbox_size,
        fetch_timeout: NonZeroDuration::new(config.fetch_timeout)
            .unwrap_or(NonZeroDuration::new(Duration::from_secs(1)).expect("non-zero")),
        fetch_retry_delay: Duration::from_millis(100),
        priority_requests: false,
        priority_responses: false,
    };
    let resolver = marshal_resolver::init(
        context.child("backfill"),
        resolver_config,
        channels.backfill,
    );

    // Dissemination of proposed blocks.
    let (broadcast, buffer) = buffered::Engine::new(
        context.child("blocks"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size,
            deque_size: 64,
            priority: false,
            codec_config: (),
            peer_provider: peers.clone(),
            strategy: Sequential,
        },
    );
    broadcast.start(channels.blocks);

    let finalizations = immutable::Archive::init(
        context.child("finalizations"),
        archive_config(
            &format!("{prefix}-finalizations"),
            &page_cache,
            ed25519::Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .expect("finalizations archive");
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&format!("{prefix}-blocks"), &page_cache, ()),
    )
    .await
    .expect("finalized blocks archive");

    let (actor, mailbox, _floor) = Actor::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal_config,
    )
    .await;
    let marshal = actor.start(app.clone(), buffer, resolver);

    let inline = Inline::new(
        context.child("inline"),
        app.clone(),
        mailbox.clone(),
        FixedEpocher::new(epoch_length),
    );
    let orchestrator = Orchestrator {
        context: context.child("epochs"),
        config,
        schemes,
        app,
        inline,
        marshal: mailbox,
        epocher: FixedEpocher::new(epoch_length),
        blocker,
        page_cache,
    };
    let consensus = context.child("orchestrator").spawn(move |_| {
        orchestrator.run(
            first,
            epochs,
            channels.votes,
            channels.certificates,
            channels.resolver,
        )
    });
    Ok(Running { consensus, marshal })
}

/// The simplex journal of an epoch (epoch 0 keeps the name it had before epochs rotated, so
/// older data directories restart).
fn simplex_partition(prefix: &str, epoch: u64) -> String {
    if epoch == 0 {
        format!("{prefix}-simplex")
    } else {
        format!("{prefix}-simplex-e{epoch}")
    }
}

type Wrapper<E, H> = Inline<E, ed25519::Scheme, LedgerApp<H>, ChainBlock, FixedEpocher>;

/// Runs one simplex engine at a time, for the current epoch, on epoch-numbered subchannels of
/// the vote, certificate and resolver channels.
struct Orchestrator<E: Clock + Send + Sync + 'static, H: Host, B> {
    context: E,
    config: EngineConfig,
    schemes: EpochSchemes,
    app: LedgerApp<H>,
    inline: Wrapper<E, H>,
    marshal: Mailbox<ed25519::Scheme, Standard<ChainBlock>>,
    epocher: FixedEpocher,
    blocker: B,
    page_cache: CacheRef,
}

/// The subchannel handles of the three simplex channels.
struct Muxes<S: Sender> {
    votes: MuxHandle<S>,
    certificates: MuxHandle<S>,
    resolver: MuxHandle<S>,
}

/// The engine of the epoch being run.
struct Active {
    epoch: u64,
    handle: Handle<()>,
}

impl<E, H, B> Orchestrator<E, H, B>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + Supervisor,
    H: Host,
    B: Blocker<PublicKey = ValidatorKey>,
{
    async fn run<S, R>(
        mut self,
        first: EpochStart,
        mut epochs: futures::channel::mpsc::UnboundedReceiver<EpochStart>,
        votes: (S, R),
        certificates: (S, R),
        resolver: (S, R),
    ) where
        S: Sender<PublicKey = ValidatorKey>,
        R: Receiver<PublicKey = ValidatorKey>,
    {
        use futures::{FutureExt as _, StreamExt as _};
        // Messages of an epoch with no running engine land in the backups: from a later
        // epoch they mean this validator missed the boundary's finalization.
        let (mux, vote_handle, mut vote_backup) =
            Muxer::builder(self.context.child("votes_mux"), votes.0, votes.1)
                .with_backup()
                .build();
        mux.start();
        let (mux, certificate_handle, mut certificate_backup) = Muxer::builder(
            self.context.child("certificates_mux"),
            certificates.0,
            certificates.1,
        )
        .with_backup()
        .build();
        mux.start();
        let (mux, resolver_handle) =
            Muxer::new(self.context.child("resolver_mux"), resolver.0, resolver.1);
        mux.start();
        let mut muxes = Muxes {
            votes: vote_handle,
            certificates: certificate_handle,
            resolver: resolver_handle,
        };
        let Some(mut active) = self.enter(&first, &mut muxes).await else {
            return;
        };
        enum Event {
            Next(Option<EpochStart>),
            Ahead(u64, ValidatorKey),
            Stopped,
        }
        loop {
            let event = futures::select_biased! {
                next = epochs.next() => Event::Next(next),
                backup = vote_backup.recv().fuse() => match backup {
                    Some((their_epoch, (from, _))) => Event::Ahead(their_epoch, from),
                    None => Event::Stopped,
                },
                backup = certificate_backup.recv().fuse() => match backup {
                    Some((their_epoch, (from, _))) => Event::Ahead(their_epoch, from),
                    None => Event::Stopped,
                },
                _ = (&mut active.handle).fuse() => {
                    tracing::error!(target: "agora::consensus", epoch = active.epoch,
                        "consensus engine stopped");
                    Event::Stopped
                }
            };
            match event {
                Event::Stopped | Event::Next(None) => return,
                Event::Ahead(their_epoch, from) => self.behind(active.epoch, their_epoch, from),
                Event::Next(Some(next)) => {
                    if next.epoch <= active.epoch {
                        continue;
                    }
                    let left = active.epoch;
                    active.handle.abort();
                    let _ = (&mut active.handle).await;
                    let Some(entered) = self.enter(&next, &mut muxes).await else {
                        return;
                    };
                    active = entered;
                    // The old epoch's votes are of no use once its last block is final.
                    let partition = simplex_partition(&self.config.partition_prefix, left);
                    if let Err(error) = self.context.remove(&partition, None).await {
                        tracing::debug!(target: "agora::consensus", %error, partition,
                            "old epoch journal not removed");
                    }
                }
            }
        }
    }

    /// A peer sent a message of `their_epoch`: when that is ahead of ours it has finalized our
    /// epoch's last block, so marshal fetches that finalization from it (delivering the
    /// boundary moves this validator on).
    fn behind(&mut self, our_epoch: u64, their_epoch: u64, from: ValidatorKey) {
        if their_epoch <= our_epoch {
            return;
        }
        if let Some(boundary) = self.epocher.last(Epoch::new(our_epoch)) {
            tracing::debug!(target: "agora::consensus", our_epoch, their_epoch,
                "a peer is in a later epoch; fetching our epoch's last finalization");
            self.marshal
                .hint_finalized(boundary, NonEmptyVec::new(from));
        }
    }

    /// Starts simplex for `epoch` on its subchannels, voting where this validator is a member
    /// and observing otherwise. `None` when the network is gone (shutting down).
    async fn enter<S>(&mut self, epoch: &EpochStart, muxes: &mut Muxes<S>) -> Option<Active>
    where
        S: Sender<PublicKey = ValidatorKey>,
    {
        let Some((scheme, member)) = self.schemes.engine_scheme(epoch.epoch) else {
            tracing::error!(target: "agora::consensus", epoch = epoch.epoch,
                "no committee installed for the epoch");
            return None;
        };
        let votes = muxes.votes.register(epoch.epoch).await.ok()?;
        let certificates = muxes.certificates.register(epoch.epoch).await.ok()?;
        let resolver = muxes.resolver.register(epoch.epoch).await.ok()?;
        tracing::info!(target: "agora::consensus", epoch = epoch.epoch,
            members = epoch.members.len(), voting = member, "entering epoch");
        let participants = Set::from_iter_dedup(epoch.members.iter().cloned());
        let evidence = EvidenceReporter::new(self.app.clone(), participants);
        let reporter: Reporters<_, EvidenceReporter<H>> =
            (self.inline.clone(), Some(evidence)).into();
        let config = &self.config;
        let engine = simplex::Engine::new(
            self.context
                .child("simplex")
                .with_attribute("epoch", epoch.epoch),
            simplex::config::Config {
                scheme: scheme.as_ref().clone(),
                elector: RoundRobin::<Sha256>::default(),
                blocker: self.blocker.clone(),
                automaton: self.inline.clone(),
                relay: self.inline.clone(),
                reporter,
                strategy: Sequential,
                partition: simplex_partition(&config.partition_prefix, epoch.epoch),
                mailbox_size: NZUsize!(config.mailbox_size.max(1)),
                epoch: Epoch::new(epoch.epoch),
                floor: simplex::config::Floor::Genesis(epoch.floor),
                replay_buffer: NZUsize!(1 << 20),
                write_buffer: NZUsize!(1 << 20),
                page_cache: self.page_cache.clone(),
                leader_timeout: config.leader_timeout,
                certification_timeout: config.certification_timeout,
                timeout_retry: config.timeout_retry,
                view_retention: ViewDelta::new(256),
                skip: SkipPolicy::Enabled {
                    timeout: config.certification_timeout * 2,
                    budget: SkipBudget::Participants,
                },
                fetch_timeout: NonZeroDuration::new(config.fetch_timeout)
                    .unwrap_or(NonZeroDuration::new(Duration::from_secs(1)).expect("non-zero")),
                fetch_retry_delay: Duration::from_millis(100),
                forward: ForwardPolicy::Disabled,
                track_historical_votes: false,
            },
        );
        Some(Active {
            epoch: epoch.epoch,
            handle: engine.start(votes, certificates, resolver),
        })
    }
}

fn archive_config<C>(name: &str, page_cache: &CacheRef, codec_config: C) -> immutable::Config<C> {
    let buffer: NonZeroUsize = NZUsize!(1 << 20);
    immutable::Config {
        metadata_partition: format!("{name}-metadata"),
        freezer_table_partition: format!("{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{name}-freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: buffer,
        freezer_key_write_buffer: buffer,
        freezer_value_write_buffer: buffer,
        ordinal_write_buffer: buffer,
    }
}
