//! The overlay node: one actor owning the libp2p [`Swarm`](libp2p::Swarm), driven by typed commands from
//! cloneable [`Handle`]s.
//!
//! ```text
//!   Handle ──Command──▶ ┌──────────── actor task ────────────┐
//!   Handle ◀──oneshot── │ Swarm<Behaviour>  OffersTable      │──NetEvent──▶ subscribers
//!                       │ PeerBook (scores, rate limits)     │
//!                       └───────┬────────────────────────────┘
//!   Handle::infer ──libp2p-stream Control──▶ /agora/infer/3 ──▶ accept task ──▶ Inbound.inference
//! ```
//!
//! Streams carry the tokens so the actor never touches them: the swarm only multiplexes, and
//! flow control is yamux/QUIC's per-stream window. A provider whose client stops reading blocks
//! in [`TokenSink::send`]; a client that goes away makes `send` fail, which is the provider's
//! cancellation signal.
//!
//! Rooms: `handle` (the mailbox callers hold, its commands, the inbound queues),
//! `actor` (the task that owns the swarm), `swarm` (transports, behaviours, their config),
//! `streams` (inference streams, both sides), plus the types it reports (`status`, `event`) and
//! one error per operation (`error`).

mod actor;
mod error;
mod event;
mod handle;
mod status;
mod streams;
mod swarm;

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

pub use error::{
    DialError, InferError, NodeStopped, ProvideError, PublishError, RpcError, SpawnError,
};
pub use event::NetEvent;
pub use handle::{Handle, Inbound, OfferTerms, ProviderEntry, RpcCall};
pub use status::{ConnectionInfo, NatStatus, NetStatus, Path};
pub use streams::{InferenceCall, StreamClosed, TokenSink, TokenStream};
pub use swarm::{BEACONS_TOPIC, IDENTIFY_VERSION, KAD_PROTOCOL, MAX_BEACON_BYTES, OFFERS_TOPIC};

use crate::config::NetConfig;
use crate::identity::keypair_from_seed;
use crate::metrics::Metrics;
use crate::peer_source::PeerSource;
use crate::scoring::PeerBook;
use crate::wire::INFER_PROTOCOL;

/// Starts an overlay node with the account's 32-byte ed25519 secret seed.
///
/// Must be called inside a tokio runtime. Returns the handle and the inbound work queues.
pub async fn spawn(
    seed: [u8; 32],
    config: NetConfig,
    peer_source: Option<Arc<dyn PeerSource>>,
) -> Result<(Handle, Inbound), SpawnError> {
    let key = keypair_from_seed(seed)?;
    let peer_id = key.public().to_peer_id();
    let mut swarm = swarm::build(&key, &config)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let topics = swarm::Topics::subscribe(&mut swarm)?;
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(INFER_PROTOCOL)
        .map_err(|e| SpawnError::Behaviour(e.to_string()))?;

    let metrics = Metrics::new();
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let (infer_tx, infer_rx) = mpsc::channel(64);
    let (rpc_tx, rpc_rx) = mpsc::channel(64);
    let book = Arc::new(Mutex::new(PeerBook::new(config.limits.score_config())));

    tokio::spawn(streams::accept(
        incoming,
        infer_tx,
        cmd_tx.clone(),
        book.clone(),
        metrics.clone(),
        config.limits.clone(),
    ));

    let handle = Handle::new(
        peer_id,
        cmd_tx.clone(),
        control,
        events.clone(),
        metrics.clone(),
        config.limits.clone(),
    );
    let links = actor::Links {
        cmd_tx,
        events,
        metrics,
        book,
        rpc_tx,
    };
    actor::spawn(swarm, config, topics, links, peer_source, cmd_rx);
    Ok((
        handle,
        Inbound {
            inference: infer_rx,
            rpc: rpc_rx,
        },
    ))
}
