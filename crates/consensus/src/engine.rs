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
//! The same function runs on the deterministic runtime with `commonware_p2p::simulated` (tests)
//! and on the tokio runtime with `commonware_p2p::authenticated` (the `agora node` binary).
//! A restarted validator replays simplex's journal and marshal's archives from `partition_prefix`
//! and backfills whatever finalized blocks it missed from peers.

use crate::app::{Host, LedgerApp, ValidatorKey};
use crate::block::ChainBlock;
use crate::evidence::EvidenceReporter;
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::Reporters;
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
use commonware_consensus::types::{Epoch, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::{ConstantProvider, Verifier as _};
use commonware_cryptography::{Digested, Digestible, Sha256, ed25519::PrivateKey};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, Supervisor};
use commonware_storage::archive::immutable;
use commonware_utils::ordered::Set;
use commonware_utils::{NZU16, NZU64, NZUsize, NonZeroDuration};
use rand_core_cw::CryptoRng;
use std::num::{NonZeroU64, NonZeroUsize};
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
    #[error("the signing key is not in the validator set")]
    NotAValidator,
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

/// Epochs are not rotated yet: one epoch spans every height (see docs/design/consensus.md).
const EPOCH_LENGTH: NonZeroU64 = NZU64!(1 << 60);

/// Handles of a running validator's tasks.
pub struct Running {
    pub consensus: Handle<()>,
    pub marshal: Handle<()>,
}

/// Starts one validator. `participants` is the committee (from [`crate::validators`]).
#[allow(clippy::too_many_arguments)]
pub async fn start<E, H, P, B, S, R>(
    context: E,
    config: EngineConfig,
    signer: PrivateKey,
    participants: Vec<ValidatorKey>,
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
    let participants = Set::from_iter_dedup(participants);
    // The same ed25519 seed is this validator's Agora account: it signs the `Slash`
    // transactions for equivocation evidence it observes.
    if let Ok(seed) = <[u8; 32]>::try_from(signer.encode().as_ref()) {
        app.set_slasher(agora_types::SecretKey::from_bytes(seed));
    }
    let evidence = EvidenceReporter::new(app.clone(), participants.clone());
    let scheme = ed25519::Scheme::signer(&config.namespace, participants, signer)
        .ok_or(StartError::NotAValidator)?;
    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(1024));
    let mailbox_size = NZUsize!(config.mailbox_size.max(1));

    let marshal_config = MarshalConfig {
        provider: ConstantProvider::<ed25519::Scheme, Epoch>::new(scheme.clone()),
        epocher: FixedEpocher::new(EPOCH_LENGTH),
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
        app,
        mailbox,
        FixedEpocher::new(EPOCH_LENGTH),
    );
    let reporter: Reporters<_, EvidenceReporter<H>> = (inline.clone(), Some(evidence)).into();
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(ChainBlock::genesis().digest()),
            replay_buffer: NZUsize!(1 << 20),
            write_buffer: NZUsize!(1 << 20),
            page_cache,
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
    let consensus = engine.start(channels.votes, channels.certificates, channels.resolver);
    Ok(Running { consensus, marshal })
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
