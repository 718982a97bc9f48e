//! The overlay node: one actor owning the libp2p [`Swarm`], driven by typed commands from
//! cloneable [`Handle`]s.
//!
//! ```text
//!   Handle ──Command──▶ ┌──────────── actor task ────────────┐
//!   Handle ◀──oneshot── │ Swarm<Behaviour>  OffersTable      │──NetEvent──▶ subscribers
//!                       │ PeerBook (scores, rate limits)     │
//!                       └───────┬────────────────────────────┘
//!   Handle::infer ──libp2p-stream Control──▶ /agora/infer/1 ──▶ accept task ──▶ Inbound.inference
//! ```
//!
//! Streams carry the tokens so the actor never touches them: the swarm only multiplexes, and
//! flow control is yamux/QUIC's per-stream window. A provider whose client stops reading blocks
//! in [`TokenSink::send`]; a client that goes away makes `send` fail, which is the provider's
//! cancellation signal.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub, identify, identity::Keypair, kad, noise, ping, relay, request_response, tcp, upnp,
    yamux,
};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::NetConfig;
use crate::identity::{KeyError, keypair_from_seed};
use crate::metrics::Metrics;
use crate::offer::{GossipedOffer, ModelId, OfferError, OfferSigner, OfferStamp, now_ms};
use crate::offers::{Insert, OffersTable};
use crate::peer_source::{PeerSource, split_peer_addr};
use crate::scoring::{Offence, PeerBook, Verdict};
use crate::wire::{
    Chunk, FrameError, INFER_PROTOCOL, InferenceRequest, ProtocolViolation, RPC_PROTOCOL, RpcCodec,
    read_frame, write_frame,
};

/// Kademlia protocol name (our own DHT, not the IPFS one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1");
/// Identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/agora/0.1.0";
/// Gossip topic of signed provider offers.
pub const OFFERS_TOPIC: &str = "agora/offers/1";
/// Gossip topic of audit beacons.
pub const BEACONS_TOPIC: &str = "agora/audit-beacons/1";
/// Largest audit beacon accepted.
pub const MAX_BEACON_BYTES: usize = 4096;
/// Tries of one inference request on fresh streams before the first frame (see `infer`).
const INFER_ATTEMPTS: u32 = 4;
const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossip: gossipsub::Behaviour,
    rpc: request_response::Behaviour<RpcCodec>,
    stream: libp2p_stream::Behaviour,
    relay_client: relay::client::Behaviour,
    relay_server: Toggle<relay::Behaviour>,
    dcutr: Toggle<dcutr::Behaviour>,
    autonat_client: autonat::v2::client::Behaviour,
    autonat_server: Toggle<autonat::v2::server::Behaviour>,
    upnp: Toggle<upnp::tokio::Behaviour>,
    candidates: SelfCandidates,
}

/// Announces addresses we know to be ours and reachable (public listen addresses, configured
/// external addresses): first as a candidate, then as confirmed. The order matters: DCUtR only
/// learns candidates (it sends them in the hole-punch CONNECT message), and the swarm drops a
/// candidate that is already confirmed, so confirming first (`Swarm::add_external_address`)
/// would leave a public gateway with nothing to offer a NATed provider.
#[derive(Default)]
struct SelfCandidates {
    pending: std::collections::VecDeque<Multiaddr>,
    confirm: std::collections::VecDeque<Multiaddr>,
}

impl NetworkBehaviour for SelfCandidates {
    type ConnectionHandler = libp2p::swarm::dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(libp2p::swarm::dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(libp2p::swarm::dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: libp2p::swarm::FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: libp2p::swarm::THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::swarm::ToSwarm<Self::ToSwarm, libp2p::swarm::THandlerInEvent<Self>>>
    {
        if let Some(a) = self.pending.pop_front() {
            self.confirm.push_back(a.clone());
            return std::task::Poll::Ready(libp2p::swarm::ToSwarm::NewExternalAddrCandidate(a));
        }
        match self.confirm.pop_front() {
            Some(a) => std::task::Poll::Ready(libp2p::swarm::ToSwarm::ExternalAddrConfirmed(a)),
            None => std::task::Poll::Pending,
        }
    }
}

/// What the node believes about its own reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatStatus {
    /// Not yet known.
    Unknown,
    /// Reachable at a confirmed external address (configured, AutoNAT, or UPnP).
    Public,
    /// AutoNAT dial-backs failed: reachable only through relays and hole punching.
    Private,
}

/// One open connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    /// The remote peer.
    pub peer: PeerId,
    /// Remote address (a `/p2p-circuit` address when relayed).
    pub remote_addr: Multiaddr,
    /// Whether the connection runs through a relay.
    pub relayed: bool,
    /// Whether we dialed.
    pub outbound: bool,
}

/// A snapshot for `agora net status` and tests.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    /// Our peer id.
    pub peer_id: PeerId,
    /// Addresses we listen on (including relay circuit addresses).
    pub listen_addrs: Vec<Multiaddr>,
    /// Confirmed external addresses.
    pub external_addrs: Vec<Multiaddr>,
    /// Reachability.
    pub nat: NatStatus,
    /// Relays holding a reservation for us.
    pub relays: Vec<PeerId>,
    /// Open connections.
    pub connections: Vec<ConnectionInfo>,
    /// Live offers held.
    pub offers: usize,
    /// Peers currently banned.
    pub banned: Vec<PeerId>,
}

impl NetStatus {
    /// How `peer` is reached right now.
    pub fn path_to(&self, peer: &PeerId) -> Path {
        Path::of(self.connections.iter().filter(|c| &c.peer == peer))
    }
}

/// How a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// No connection.
    None,
    /// Only direct connections.
    Direct,
    /// Only relayed connections.
    Relayed,
    /// Both (transient, right after a hole punch).
    Mixed,
}

impl Path {
    fn of<'a>(conns: impl Iterator<Item = &'a ConnectionInfo>) -> Self {
        let (mut d, mut r) = (false, false);
        for c in conns {
            if c.relayed { r = true } else { d = true }
        }
        match (d, r) {
            (false, false) => Path::None,
            (true, false) => Path::Direct,
            (false, true) => Path::Relayed,
            (true, true) => Path::Mixed,
        }
    }
}

/// Something that happened in the overlay, for subscribers.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A connection opened.
    Connected {
        /// Remote peer.
        peer: PeerId,
        /// Through a relay?
        relayed: bool,
        /// Remote address.
        addr: Multiaddr,
    },
    /// A connection closed.
    Disconnected {
        /// Remote peer.
        peer: PeerId,
    },
    /// A DCUtR hole punch finished.
    HolePunch {
        /// Remote peer.
        peer: PeerId,
        /// Whether a direct connection resulted.
        ok: bool,
    },
    /// A relay accepted our reservation.
    RelayReserved {
        /// The relay.
        relay: PeerId,
    },
    /// Our reachability changed.
    Nat(NatStatus),
    /// A new or updated offer was accepted.
    Offer {
        /// The provider.
        provider: PeerId,
    },
    /// An offer expired and was dropped.
    OfferExpired {
        /// The provider.
        provider: PeerId,
    },
    /// An audit beacon arrived.
    Beacon {
        /// Who published it.
        from: Option<PeerId>,
        /// Its bytes (format owned by agora-verify).
        data: Vec<u8>,
    },
    /// A peer was penalised.
    Penalised {
        /// The peer.
        peer: PeerId,
        /// For what.
        offence: Offence,
        /// What we did.
        verdict: Verdict,
    },
}

/// What a provider advertises: the node stamps (sequence, validity, addresses), has the signer
/// build the offer's bytes, and re-gossips a fresh one every third of the TTL until replaced.
#[derive(Debug, Clone)]
pub struct OfferTerms {
    pub signer: OfferSigner,
    /// Validity of each signed offer; re-published every third of it.
    pub ttl: Duration,
}

/// A provider found for a model.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    /// The provider.
    pub peer: PeerId,
    /// Its live offer, if we heard one.
    pub offer: Option<GossipedOffer>,
    /// Whether the DHT lists it.
    pub in_dht: bool,
}

/// A streamed inference request arriving at this node.
pub struct InferenceCall {
    /// Who asked.
    pub peer: PeerId,
    /// What they asked for.
    pub request: InferenceRequest,
    /// Where the tokens go.
    pub tokens: TokenSink,
}

/// A small RPC request arriving at this node.
pub struct RpcCall {
    /// Who asked.
    pub peer: PeerId,
    /// The request bytes.
    pub request: Vec<u8>,
    /// Answer here; dropping it fails the request on the caller's side.
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// Inbound work for the application (provider, gateway, validator).
pub struct Inbound {
    /// Streamed inference requests.
    pub inference: mpsc::Receiver<InferenceCall>,
    /// RPC requests.
    pub rpc: mpsc::Receiver<RpcCall>,
}

/// The client went away (or the stream broke): stop generating.
#[derive(Debug, thiserror::Error)]
#[error("the requester closed the stream")]
pub struct StreamClosed;

/// The provider's end of a streamed response. Bounded: `send` waits when the network (and so
/// the client) is slower than generation.
pub struct TokenSink {
    tx: mpsc::Sender<Chunk>,
}

impl TokenSink {
    /// Sends some tokens, waiting for room.
    pub async fn send(&self, tokens: Vec<u8>) -> Result<(), StreamClosed> {
        self.tx
            .send(Chunk::Token(tokens))
            .await
            .map_err(|_| StreamClosed)
    }

    /// Ends the response successfully.
    pub async fn finish(self) -> Result<(), StreamClosed> {
        self.tx.send(Chunk::End).await.map_err(|_| StreamClosed)
    }

    /// Ends the response with an error message.
    pub async fn fail(self, message: impl Into<String>) -> Result<(), StreamClosed> {
        self.tx
            .send(Chunk::Error(message.into()))
            .await
            .map_err(|_| StreamClosed)
    }
}

/// Failure to start the node.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Bad key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// A behaviour could not be built.
    #[error("behaviour: {0}")]
    Behaviour(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// The node has shut down.
#[derive(Debug, thiserror::Error)]
#[error("the overlay node has stopped")]
pub struct NodeStopped;

/// Failure to dial.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Refused by the swarm (banned, limits, bad address).
    #[error("dial refused: {0}")]
    Refused(String),
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Failure to announce a model in the DHT.
#[derive(Debug, thiserror::Error)]
pub enum ProvideError {
    /// The local record store refused it.
    #[error("record store: {0}")]
    Store(String),
    /// The announcement query failed.
    #[error("provider announcement failed: {0}")]
    Query(String),
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Failure to publish on gossip.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
    /// Gossipsub refused (no peers on the topic yet, too large, duplicate).
    #[error("gossipsub: {0}")]
    Gossip(String),
    /// The message is above the cap.
    #[error("message of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Failure of an RPC.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request is above the cap.
    #[error("request of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Transport or remote failure.
    #[error("rpc to {peer} failed: {reason}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// Failure of a streamed inference request.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The request is above the cap.
    #[error("request of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// No stream could be opened.
    #[error("cannot open a stream to {peer}: {reason}")]
    Open {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The stream broke or the provider sent garbage.
    #[error("stream from {peer} failed: {reason}")]
    Stream {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The provider answered with an error.
    #[error("provider {peer} refused: {message}")]
    Remote {
        /// The peer.
        peer: PeerId,
        /// Its message.
        message: String,
    },
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<(), DialError>>),
    Provide(ModelId, oneshot::Sender<Result<(), ProvideError>>),
    FindDht(ModelId, oneshot::Sender<HashSet<PeerId>>),
    SetOffer(
        Option<OfferTerms>,
        oneshot::Sender<Result<(), PublishError>>,
    ),
    PublishBeacon(Vec<u8>, oneshot::Sender<Result<(), PublishError>>),
    Offers(oneshot::Sender<Vec<(PeerId, GossipedOffer)>>),
    Rpc(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>, RpcError>>),
    RpcRespond(request_response::ResponseChannel<Vec<u8>>, Vec<u8>),
    Status(oneshot::Sender<NetStatus>),
    Report(PeerId, Offence),
    Score(PeerId, oneshot::Sender<(f64, Option<f64>)>),
    Shutdown,
}

/// A cloneable handle to a running overlay node.
#[derive(Clone)]
pub struct Handle {
    peer_id: PeerId,
    cmd: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    events: broadcast::Sender<NetEvent>,
    metrics: Metrics,
    limits: crate::config::Limits,
}

async fn ask<T>(
    cmd: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, NodeStopped> {
    let (tx, rx) = oneshot::channel();
    cmd.send(make(tx)).await.map_err(|_| NodeStopped)?;
    rx.await.map_err(|_| NodeStopped)
}

impl Handle {
    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Subscribes to overlay events (lagging subscribers lose the oldest events).
    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    /// Dials an address (`/…/p2p/<id>`, possibly a `/p2p-circuit` address).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), DialError> {
        ask(&self.cmd, |tx| Command::Dial(addr, tx)).await?
    }

    /// Announces in the DHT that we serve `model`; resolves when the announcement query ends.
    pub async fn provide(&self, model: ModelId) -> Result<(), ProvideError> {
        ask(&self.cmd, |tx| Command::Provide(model, tx)).await?
    }

    /// Providers of `model` from the DHT and from live offers.
    pub async fn find_providers(&self, model: ModelId) -> Result<Vec<ProviderEntry>, NodeStopped> {
        let dht = ask(&self.cmd, |tx| Command::FindDht(model, tx)).await?;
        let offers = self.offers().await?;
        let now = now_ms();
        let mut out: Vec<ProviderEntry> = Vec::new();
        for (peer, offer) in offers {
            if offer.header.expires_at_ms > now && offer.header.serves(&model) {
                out.push(ProviderEntry {
                    peer,
                    offer: Some(offer),
                    in_dht: dht.contains(&peer),
                });
            }
        }
        for peer in dht {
            if !out.iter().any(|e| e.peer == peer) {
                out.push(ProviderEntry {
                    peer,
                    offer: None,
                    in_dht: true,
                });
            }
        }
        Ok(out)
    }

    /// Sets (or clears) the offer this node gossips; it is signed and re-published every
    /// third of its TTL until replaced. Stopping the node stops the offer, which then expires
    /// everywhere.
    pub async fn set_offer(&self, terms: Option<OfferTerms>) -> Result<(), PublishError> {
        ask(&self.cmd, |tx| Command::SetOffer(terms, tx)).await?
    }

    /// Publishes an audit beacon.
    pub async fn publish_beacon(&self, data: Vec<u8>) -> Result<(), PublishError> {
        ask(&self.cmd, |tx| Command::PublishBeacon(data, tx)).await?
    }

    /// Live offers held.
    pub async fn offers(&self) -> Result<Vec<(PeerId, GossipedOffer)>, NodeStopped> {
        ask(&self.cmd, Command::Offers).await
    }

    /// A small request-response exchange.
    pub async fn rpc(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        if request.len() > self.limits.rpc_max_request_bytes {
            return Err(RpcError::TooLarge {
                len: request.len(),
                max: self.limits.rpc_max_request_bytes,
            });
        }
        ask(&self.cmd, |tx| Command::Rpc(peer, request, tx)).await?
    }

    /// Status snapshot.
    pub async fn status(&self) -> Result<NetStatus, NodeStopped> {
        ask(&self.cmd, Command::Status).await
    }

    /// Our application score of `peer` and gossipsub's score of it.
    pub async fn peer_score(&self, peer: PeerId) -> Result<(f64, Option<f64>), NodeStopped> {
        ask(&self.cmd, |tx| Command::Score(peer, tx)).await
    }

    /// Stops the node (connections close; our offer stops being refreshed).
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }

    /// Sends a streamed inference request to `peer` and returns the token stream.
    pub async fn infer(
        &self,
        peer: PeerId,
        request: InferenceRequest,
    ) -> Result<TokenStream, InferError> {
        let body = request.encode();
        if body.len() > self.limits.infer_max_request_bytes {
            return Err(InferError::TooLarge {
                len: body.len(),
                max: self.limits.infer_max_request_bytes,
            });
        }
        let max_chunk = self.limits.infer_max_chunk_bytes;
        // libp2p-stream hands inbound streams to the provider through a one-slot queue and
        // drops (resets) a stream that arrives while the slot is taken, so a burst of requests
        // to one provider loses some before the provider ever read them. Such a loss shows as a
        // failed write or an end of stream before the first frame; nothing was served, so the
        // request is sent again on a new stream, a bounded number of times. A stream that cannot
        // be opened at all means the peer is unreachable: that is returned at once.
        let mut attempt = 0u32;
        let (mut stream, first) = loop {
            let mut stream = self.open_infer_stream(peer).await?;
            let sent = async {
                write_frame(&mut stream, &body).await?;
                stream.flush().await
            }
            .await;
            let err = match sent {
                Ok(()) => match read_frame(&mut stream, max_chunk).await {
                    Ok(bytes) => break (stream, Ok(bytes)),
                    Err(e) if e.is_protocol_violation() => break (stream, Err(e)),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            let err = InferError::Stream { peer, reason: err };
            attempt += 1;
            if attempt >= INFER_ATTEMPTS {
                return Err(err);
            }
            self.metrics
                .infer_streams
                .with_label_values(&["out", "retried"])
                .inc();
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
        };
        let (tx, rx) = mpsc::channel(32);
        let cmd = self.cmd.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut first = Some(first);
            loop {
                let next = async {
                    match first.take() {
                        Some(r) => r,
                        None => read_frame(&mut stream, max_chunk).await,
                    }
                };
                let item = tokio::select! {
                    r = next => r.and_then(|bytes| Chunk::decode(&bytes)),
                    // The caller dropped the TokenStream: dropping an unclosed yamux stream
                    // resets it, which fails the provider's next write (its cancellation).
                    () = tx.closed() => {
                        metrics.infer_streams.with_label_values(&["out", "cancelled"]).inc();
                        return;
                    }
                };
                match item {
                    Ok(Chunk::Token(t)) => {
                        metrics.infer_chunks.with_label_values(&["in"]).inc();
                        if tx.send(Ok(t)).await.is_err() {
                            // The caller dropped the stream: return, dropping (resetting) ours.
                            metrics
                                .infer_streams
                                .with_label_values(&["out", "cancelled"])
                                .inc();
                            return;
                        }
                    }
                    Ok(Chunk::End) => {
                        metrics
                            .infer_streams
                            .with_label_values(&["out", "ok"])
                            .inc();
                        return;
                    }
                    Ok(Chunk::Error(message)) => {
                        metrics
                            .infer_streams
                            .with_label_values(&["out", "remote_error"])
                            .inc();
                        let _ = tx.send(Err(InferError::Remote { peer, message })).await;
                        return;
                    }
                    Err(e) => {
                        if e.is_protocol_violation() {
                            let off = offence_of(&e);
                            let _ = cmd.send(Command::Report(peer, off)).await;
                        }
                        metrics
                            .infer_streams
                            .with_label_values(&["out", "broken"])
                            .inc();
                        let _ = tx
                            .send(Err(InferError::Stream {
                                peer,
                                reason: e.to_string(),
                            }))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(TokenStream { rx })
    }

    /// Opens an inference stream to `peer`.
    async fn open_infer_stream(&self, peer: PeerId) -> Result<libp2p::Stream, InferError> {
        self.control
            .clone()
            .open_stream(peer, INFER_PROTOCOL)
            .await
            .map_err(|e| InferError::Open {
                peer,
                reason: e.to_string(),
            })
    }
}

fn offence_of(e: &FrameError) -> Offence {
    match e {
        FrameError::Oversized { .. } => Offence::OversizedFrame,
        _ => Offence::MalformedFrame,
    }
}

/// The requester's end of a streamed response.
pub struct TokenStream {
    rx: mpsc::Receiver<Result<Vec<u8>, InferError>>,
}

impl TokenStream {
    /// The next tokens; `None` once the provider ended the response.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, InferError>> {
        self.rx.recv().await
    }

    /// Reads the whole response.
    pub async fn collect(mut self) -> Result<Vec<Vec<u8>>, InferError> {
        let mut out = Vec::new();
        while let Some(t) = self.next().await {
            out.push(t?);
        }
        Ok(out)
    }
}

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
    let mut swarm = build_swarm(&key, &config)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let offers_topic = gossipsub::IdentTopic::new(OFFERS_TOPIC);
    let beacons_topic = gossipsub::IdentTopic::new(BEACONS_TOPIC);
    for t in [&offers_topic, &beacons_topic] {
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(t)
            .map_err(|e| SpawnError::Behaviour(e.to_string()))?;
    }
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

    tokio::spawn(accept_streams(
        incoming,
        infer_tx,
        cmd_tx.clone(),
        book.clone(),
        metrics.clone(),
        config.limits.clone(),
    ));

    let handle = Handle {
        peer_id,
        cmd: cmd_tx.clone(),
        control,
        events: events.clone(),
        metrics: metrics.clone(),
        limits: config.limits.clone(),
    };
    let mut actor = Actor {
        swarm,
        config,
        cmd_tx,
        events,
        metrics,
        book,
        rpc_tx,
        offers: OffersTable::default(),
        offers_topic,
        beacons_topic,
        conns: HashMap::new(),
        relays: HashMap::new(),
        nat: NatStatus::Unknown,
        provide_queries: HashMap::new(),
        find_queries: HashMap::new(),
        rpc_pending: HashMap::new(),
        dial_pending: HashMap::new(),
        offer_terms: None,
        offer_seq: 0,
        next_offer_at: Instant::now(),
        close_relayed_at: Vec::new(),
        peer_source,
        next_rediscover: Instant::now(),
    };
    actor.bootstrap();
    if actor.config.public {
        actor.set_nat(NatStatus::Public);
    }
    tokio::spawn(actor.run(cmd_rx));
    Ok((
        handle,
        Inbound {
            inference: infer_rx,
            rpc: rpc_rx,
        },
    ))
}

fn build_swarm(key: &Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, SpawnError> {
    let limits = config.limits.clone();
    let cfg = config.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SpawnError::Transport(e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| SpawnError::Transport(e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| SpawnError::Transport(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
            kad_cfg
                .set_query_timeout(Duration::from_secs(20))
                .set_provider_record_ttl(Some(Duration::from_secs(cfg.provider_record_ttl_secs)))
                .set_provider_publication_interval(Some(Duration::from_secs(
                    (cfg.provider_record_ttl_secs / 2).max(1),
                )));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_cfg,
            );
            if cfg.public {
                kad.set_mode(Some(kad::Mode::Server));
            }
            let gossip = build_gossip(key, &cfg)?;
            let relay_server = cfg.relay_server.as_ref().map(|r| {
                relay::Behaviour::new(
                    peer_id,
                    relay::Config {
                        max_reservations: r.max_reservations,
                        max_reservations_per_peer: r.max_reservations_per_peer,
                        reservation_duration: Duration::from_secs(r.reservation_secs),
                        max_circuits: r.max_circuits,
                        max_circuits_per_peer: r.max_circuits_per_peer,
                        max_circuit_duration: Duration::from_secs(r.max_circuit_secs),
                        max_circuit_bytes: r.max_circuit_bytes,
                        ..relay::Config::default()
                    },
                )
            });
            let conn_limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_connections))
                .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(conn_limits),
                blocked: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_VERSION.to_owned(), key.public())
                        .with_agent_version(format!("agora/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                gossip,
                rpc: request_response::Behaviour::with_codec(
                    RpcCodec {
                        max_request: limits.rpc_max_request_bytes,
                        max_response: limits.rpc_max_response_bytes,
                    },
                    [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
                stream: libp2p_stream::Behaviour::new(),
                relay_client,
                relay_server: Toggle::from(relay_server),
                dcutr: Toggle::from(cfg.hole_punching.then(|| dcutr::Behaviour::new(peer_id))),
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: Toggle::from(
                    cfg.autonat_server
                        .then(autonat::v2::server::Behaviour::default),
                ),
                upnp: Toggle::from(cfg.upnp.then(upnp::tokio::Behaviour::default)),
                candidates: SelfCandidates {
                    pending: cfg.external_addrs.iter().cloned().collect(),
                    confirm: Default::default(),
                },
            })
        })
        .map_err(|e| SpawnError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(config.idle_connection_secs))
        })
        .build();
    Ok(swarm)
}

fn build_gossip(
    key: &Keypair,
    cfg: &NetConfig,
) -> Result<gossipsub::Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let gcfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(cfg.gossip_heartbeat_ms))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(cfg.limits.gossip_max_bytes)
        .message_id_fn(|m: &gossipsub::Message| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            m.data.hash(&mut h);
            m.topic.hash(&mut h);
            gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
        })
        .build()?;
    let mut g =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)?;
    // Scoring: an invalid message (bad signature, expired, malformed) costs 100 (squared count),
    // which crosses the graylist threshold (-80) at once. No IP-colocation penalty: many home
    // providers sit behind one carrier-grade NAT, and tests run on one loopback address.
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    };
    params.topics.insert(
        gossipsub::IdentTopic::new(OFFERS_TOPIC).hash(),
        topic.clone(),
    );
    params
        .topics
        .insert(gossipsub::IdentTopic::new(BEACONS_TOPIC).hash(), topic);
    g.with_peer_score(params, gossipsub::PeerScoreThresholds::default())?;
    Ok(g)
}

async fn accept_streams(
    mut incoming: libp2p_stream::IncomingStreams,
    infer_tx: mpsc::Sender<InferenceCall>,
    cmd: mpsc::Sender<Command>,
    book: Arc<Mutex<PeerBook>>,
    metrics: Metrics,
    limits: crate::config::Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_inbound_streams));
    while let Some((peer, mut stream)) = incoming.next().await {
        let allowed = {
            let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            !b.is_banned(&peer, now) && b.allow_request(peer, now)
        };
        if !allowed {
            metrics
                .infer_streams
                .with_label_values(&["in", "rate_limited"])
                .inc();
            let _ = cmd.try_send(Command::Report(peer, Offence::RateLimited));
            tokio::spawn(async move {
                let _ =
                    write_frame(&mut stream, &Chunk::Error("rate limited".into()).encode()).await;
                let _ = stream.close().await;
            });
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .infer_streams
                .with_label_values(&["in", "busy"])
                .inc();
            tokio::spawn(async move {
                let _ = write_frame(&mut stream, &Chunk::Error("busy".into()).encode()).await;
                let _ = stream.close().await;
            });
            continue;
        };
        let infer_tx = infer_tx.clone();
        let cmd = cmd.clone();
        let metrics = metrics.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_stream(peer, stream, infer_tx, cmd, metrics, limits).await;
        });
    }
}

async fn serve_stream(
    peer: PeerId,
    mut stream: libp2p::Stream,
    infer_tx: mpsc::Sender<InferenceCall>,
    cmd: mpsc::Sender<Command>,
    metrics: Metrics,
    limits: crate::config::Limits,
) {
    let read = tokio::time::timeout(
        Duration::from_millis(limits.request_read_timeout_ms),
        read_frame(&mut stream, limits.infer_max_request_bytes),
    )
    .await;
    let request = match read {
        Err(_) => {
            let _ = cmd.send(Command::Report(peer, Offence::Timeout)).await;
            metrics
                .infer_streams
                .with_label_values(&["in", "timeout"])
                .inc();
            return;
        }
        Ok(Err(e)) => {
            if e.is_protocol_violation() {
                warn!(target: "agora_p2p::infer", %peer, error = %e, "garbage request frame");
                let _ = cmd.send(Command::Report(peer, offence_of(&e))).await;
                metrics
                    .infer_streams
                    .with_label_values(&["in", "malformed"])
                    .inc();
            }
            return;
        }
        Ok(Ok(bytes)) => match InferenceRequest::decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                warn!(target: "agora_p2p::infer", %peer, error = %e, "undecodable request");
                let _ = cmd
                    .send(Command::Report(peer, Offence::MalformedFrame))
                    .await;
                metrics
                    .infer_streams
                    .with_label_values(&["in", "malformed"])
                    .inc();
                return;
            }
        },
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let call = InferenceCall {
        peer,
        request,
        tokens: TokenSink { tx },
    };
    if infer_tx.try_send(call).is_err() {
        metrics
            .infer_streams
            .with_label_values(&["in", "busy"])
            .inc();
        let _ = write_frame(&mut stream, &Chunk::Error("not serving".into()).encode()).await;
        let _ = stream.close().await;
        return;
    }
    let mut outcome = "dropped";
    'outer: while let Some(first) = rx.recv().await {
        // Write every chunk already queued, then flush once: one syscall per burst, not per token.
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            let last = !matches!(chunk, Chunk::Token(_));
            if matches!(chunk, Chunk::Token(_)) {
                metrics.infer_chunks.with_label_values(&["out"]).inc();
            }
            if write_frame(&mut stream, &chunk.encode()).await.is_err() {
                outcome = "client_gone";
                break 'outer;
            }
            if last {
                outcome = if matches!(chunk, Chunk::End) {
                    "ok"
                } else {
                    "error"
                };
                let _ = stream.close().await;
                break 'outer;
            }
            next = rx.try_recv().ok();
        }
        if stream.flush().await.is_err() {
            outcome = "client_gone";
            break;
        }
    }
    if outcome == "dropped" {
        let _ = write_frame(
            &mut stream,
            &Chunk::Error("provider dropped the request".into()).encode(),
        )
        .await;
        let _ = stream.close().await;
    }
    metrics
        .infer_streams
        .with_label_values(&["in", outcome])
        .inc();
}

type PendingRpc = (PeerId, oneshot::Sender<Result<Vec<u8>, RpcError>>);

struct Actor {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    cmd_tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    metrics: Metrics,
    book: Arc<Mutex<PeerBook>>,
    rpc_tx: mpsc::Sender<RpcCall>,
    offers: OffersTable,
    offers_topic: gossipsub::IdentTopic,
    beacons_topic: gossipsub::IdentTopic,
    conns: HashMap<ConnectionId, ConnectionInfo>,
    relays: HashMap<PeerId, ListenerId>,
    nat: NatStatus,
    provide_queries: HashMap<kad::QueryId, oneshot::Sender<Result<(), ProvideError>>>,
    find_queries: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
    rpc_pending: HashMap<request_response::OutboundRequestId, PendingRpc>,
    dial_pending: HashMap<ConnectionId, oneshot::Sender<Result<(), DialError>>>,
    offer_terms: Option<OfferTerms>,
    offer_seq: u64,
    next_offer_at: Instant,
    close_relayed_at: Vec<(Instant, PeerId)>,
    peer_source: Option<Arc<dyn PeerSource>>,
    next_rediscover: Instant,
}

impl Actor {
    async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(target: "agora_p2p::node", peer = %self.swarm.local_peer_id(), "overlay node started");
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = cmds.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.on_command(c),
                },
                _ = tick.tick() => self.housekeeping(),
            }
        }
        info!(target: "agora_p2p::node", peer = %self.swarm.local_peer_id(), "overlay node stopped");
    }

    fn emit(&self, e: NetEvent) {
        let _ = self.events.send(e);
    }

    fn set_nat(&mut self, nat: NatStatus) {
        if self.nat != nat {
            info!(target: "agora_p2p::nat", ?nat, "reachability changed");
            self.nat = nat;
            self.metrics.nat_public.set(match nat {
                NatStatus::Public => 1,
                NatStatus::Private => 0,
                NatStatus::Unknown => -1,
            });
            self.emit(NetEvent::Nat(nat));
        }
    }

    fn bootstrap(&mut self) {
        let mut targets: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for addr in &self.config.bootstrap {
            match split_peer_addr(addr) {
                Some((peer, a)) => targets.push((peer, vec![a])),
                None => {
                    warn!(target: "agora_p2p::node", %addr, "bootstrap address lacks /p2p/<id>; ignored")
                }
            }
        }
        if let Some(src) = &self.peer_source {
            targets.extend(src.providers().into_iter().take(64));
        }
        let me = *self.swarm.local_peer_id();
        for (peer, addrs) in targets {
            if peer == me {
                continue;
            }
            for a in &addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
            if !self.swarm.is_connected(&peer) {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(target: "agora_p2p::node", %peer, error = %e, "bootstrap dial failed");
                }
            }
        }
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        self.next_rediscover = Instant::now() + Duration::from_secs(self.config.rediscover_secs);
    }

    fn penalize(&mut self, peer: PeerId, offence: Offence) {
        let verdict = {
            let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
            b.penalize(peer, offence, Instant::now())
        };
        self.metrics
            .offences
            .with_label_values(&[offence.label()])
            .inc();
        warn!(target: "agora_p2p::score", %peer, offence = offence.label(), ?verdict, "peer penalised");
        match verdict {
            Verdict::Keep => {}
            Verdict::Disconnect => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Verdict::Ban => {
                self.metrics
                    .bans
                    .with_label_values(&[offence.label()])
                    .inc();
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.swarm.behaviour_mut().gossip.blacklist_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        self.emit(NetEvent::Penalised {
            peer,
            offence,
            verdict,
        });
    }

    fn status(&self) -> NetStatus {
        let b = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut connections: Vec<ConnectionInfo> = self.conns.values().cloned().collect();
        connections.sort_by_key(|c| (c.peer, c.relayed));
        NetStatus {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.swarm.listeners().cloned().collect(),
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            nat: self.nat,
            relays: self.relays.keys().copied().collect(),
            connections,
            offers: self.offers.len(),
            banned: b.banned(now),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, reply) => {
                let opts = libp2p::swarm::dial_opts::DialOpts::from(addr);
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dial_pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(DialError::Refused(e.to_string())));
                    }
                }
            }
            Command::Provide(model, reply) => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&model))
                {
                    Ok(q) => {
                        self.provide_queries.insert(q, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProvideError::Store(e.to_string())));
                    }
                }
            }
            Command::FindDht(model, reply) => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&model));
                self.find_queries.insert(q, (HashSet::new(), reply));
            }
            Command::SetOffer(terms, reply) => {
                self.offer_terms = terms;
                let r = if self.offer_terms.is_some() {
                    self.publish_offer()
                } else {
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Command::PublishBeacon(data, reply) => {
                let r = if data.len() > MAX_BEACON_BYTES {
                    Err(PublishError::TooLarge {
                        len: data.len(),
                        max: MAX_BEACON_BYTES,
                    })
                } else {
                    let topic = self.beacons_topic.clone();
                    self.swarm
                        .behaviour_mut()
                        .gossip
                        .publish(topic, data)
                        .map(|_| ())
                        .map_err(|e| PublishError::Gossip(e.to_string()))
                };
                let _ = reply.send(r);
            }
            Command::Offers(reply) => {
                let now = now_ms();
                let live = self
                    .offers
                    .all()
                    .into_iter()
                    .filter(|(_, o)| o.header.expires_at_ms > now)
                    .collect();
                let _ = reply.send(live);
            }
            Command::Rpc(peer, req, reply) => {
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, req);
                self.rpc_pending.insert(id, (peer, reply));
            }
            Command::RpcRespond(channel, bytes) => {
                let ok = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, bytes)
                    .is_ok();
                self.metrics
                    .rpc
                    .with_label_values(&["in", if ok { "ok" } else { "closed" }])
                    .inc();
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Report(peer, offence) => self.penalize(peer, offence),
            Command::Score(peer, reply) => {
                let ours = self
                    .book
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .score(&peer, Instant::now());
                let gossip = self.swarm.behaviour().gossip.peer_score(&peer);
                let _ = reply.send((ours, gossip));
            }
            Command::Shutdown => {}
        }
    }

    fn publish_offer(&mut self) -> Result<(), PublishError> {
        let Some(terms) = self.offer_terms.clone() else {
            return Ok(());
        };
        let now = now_ms();
        // Strictly increasing across restarts too: start from the clock.
        self.offer_seq = (self.offer_seq + 1).max(now);
        let ttl_ms = terms.ttl.as_millis() as u64;
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        addrs.extend(
            self.swarm
                .listeners()
                .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
                .cloned(),
        );
        addrs.truncate(crate::offer::MAX_OFFER_ADDRS);
        let stamp = OfferStamp {
            seq: self.offer_seq,
            issued_at_ms: now,
            expires_at_ms: now + ttl_ms,
            addrs,
        };
        let bytes = terms.signer.sign(&stamp).map_err(PublishError::Sign)?;
        // Our own offer goes through the same check as everyone else's.
        let signed = match &self.config.offer_validator {
            Some(v) => v
                .check(&bytes)
                .map_err(|e| PublishError::Sign(e.to_string()))?,
            None => return Err(PublishError::Sign(OfferError::NoValidator.to_string())),
        };
        let me = *self.swarm.local_peer_id();
        if signed.header.provider_peer() != Some(me) {
            return Err(PublishError::Sign(
                "the offer names another provider".into(),
            ));
        }
        self.offers.insert(me, signed.clone());
        self.metrics.offers.set(self.offers.len() as i64);
        self.next_offer_at = Instant::now() + terms.ttl / 3;
        let topic = self.offers_topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(topic, signed.bytes)
        {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                // Retry soon; the offer is already in our own table.
                self.next_offer_at = Instant::now() + Duration::from_millis(500);
                Ok(())
            }
            Err(e) => Err(PublishError::Gossip(e.to_string())),
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        for provider in self.offers.prune(now_ms()) {
            debug!(target: "agora_p2p::offers", %provider, "offer expired");
            self.emit(NetEvent::OfferExpired { provider });
        }
        self.metrics.offers.set(self.offers.len() as i64);
        if self.offer_terms.is_some()
            && now >= self.next_offer_at
            && let Err(e) = self.publish_offer()
        {
            warn!(target: "agora_p2p::offers", error = %e, "offer re-publication failed");
            self.next_offer_at = now + Duration::from_secs(1);
        }
        let unblock = {
            let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
            b.gc(now);
            b.expire_bans(now)
        };
        for p in unblock {
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
        let due: Vec<PeerId> = self
            .close_relayed_at
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, p)| *p)
            .collect();
        self.close_relayed_at.retain(|(t, _)| *t > now);
        for p in due {
            self.close_relayed(p);
        }
        if now >= self.next_rediscover {
            self.bootstrap();
        }
    }

    fn close_relayed(&mut self, peer: PeerId) {
        let has_direct = self.conns.values().any(|c| c.peer == peer && !c.relayed);
        if !has_direct {
            return;
        }
        let relayed: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == peer && c.relayed)
            .map(|(id, _)| *id)
            .collect();
        for id in relayed {
            debug!(target: "agora_p2p::nat", %peer, "closing relayed connection: a direct one exists");
            self.swarm.close_connection(id);
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: "agora_p2p::node", %address, "listening");
                let circuit = address.iter().any(|p| p == Protocol::P2pCircuit);
                if self.config.public && !circuit && !is_unspecified(&address) {
                    self.swarm
                        .behaviour_mut()
                        .candidates
                        .pending
                        .push_back(address);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let relayed = endpoint.is_relayed();
                let remote_addr = endpoint.get_remote_address().clone();
                let outbound = matches!(endpoint, ConnectedPoint::Dialer { .. });
                debug!(target: "agora_p2p::node", peer = %peer_id, %remote_addr, relayed, "connected");
                self.metrics
                    .connections
                    .with_label_values(&[if relayed { "relayed" } else { "direct" }])
                    .inc();
                self.metrics
                    .open_connections
                    .with_label_values(&[if relayed { "relayed" } else { "direct" }])
                    .inc();
                self.conns.insert(
                    connection_id,
                    ConnectionInfo {
                        peer: peer_id,
                        remote_addr: remote_addr.clone(),
                        relayed,
                        outbound,
                    },
                );
                self.metrics
                    .connected_peers
                    .set(self.connected_peers() as i64);
                if let Some(reply) = self.dial_pending.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                if !relayed && self.conns.values().any(|c| c.peer == peer_id && c.relayed) {
                    self.schedule_close_relayed(peer_id);
                }
                if relayed && self.conns.values().any(|c| c.peer == peer_id && !c.relayed) {
                    self.schedule_close_relayed(peer_id);
                }
                self.emit(NetEvent::Connected {
                    peer: peer_id,
                    relayed,
                    addr: remote_addr,
                });
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(c) = self.conns.remove(&connection_id) {
                    self.metrics
                        .open_connections
                        .with_label_values(&[if c.relayed { "relayed" } else { "direct" }])
                        .dec();
                }
                self.metrics
                    .connected_peers
                    .set(self.connected_peers() as i64);
                self.emit(NetEvent::Disconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(target: "agora_p2p::node", peer = ?peer_id, %error, "dial failed");
                if let Some(reply) = self.dial_pending.remove(&connection_id) {
                    let _ = reply.send(Err(DialError::Refused(error.to_string())));
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.relays.retain(|_, l| *l != listener_id);
            }
            SwarmEvent::ExternalAddrConfirmed { address }
                if !address.iter().any(|p| p == Protocol::P2pCircuit) =>
            {
                self.set_nat(NatStatus::Public);
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour_event(b),
            _ => {}
        }
    }

    fn schedule_close_relayed(&mut self, peer: PeerId) {
        let at = Instant::now() + Duration::from_millis(self.config.relayed_close_grace_ms);
        if self.config.relayed_close_grace_ms == 0 {
            self.close_relayed(peer);
        } else {
            self.close_relayed_at.push((at, peer));
        }
    }

    fn connected_peers(&self) -> usize {
        self.conns
            .values()
            .map(|c| c.peer)
            .collect::<HashSet<_>>()
            .len()
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let kad_capable = info.protocols.contains(&KAD_PROTOCOL);
                if kad_capable {
                    for a in info.listen_addrs.iter().filter(|a| !is_unspecified(a)) {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, a.clone());
                    }
                }
                let hop = info.protocols.iter().any(|p| p.as_ref() == HOP_PROTOCOL);
                if hop {
                    self.maybe_reserve(peer_id);
                }
            }
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => match result {
                kad::QueryResult::StartProviding(r) => {
                    if let Some(reply) = self.provide_queries.remove(&id) {
                        let _ = reply.send(
                            r.map(|_| ())
                                .map_err(|e| ProvideError::Query(e.to_string())),
                        );
                    }
                }
                kad::QueryResult::GetProviders(r) => {
                    if let Some((found, _)) = self.find_queries.get_mut(&id)
                        && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r
                    {
                        found.extend(providers);
                    }
                    if step.last
                        && let Some((found, reply)) = self.find_queries.remove(&id)
                    {
                        let _ = reply.send(found);
                    }
                }
                _ => {}
            },
            BehaviourEvent::Rpc(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let allowed = {
                            let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
                            b.allow_request(peer, Instant::now())
                        };
                        if !allowed {
                            self.metrics
                                .rpc
                                .with_label_values(&["in", "rate_limited"])
                                .inc();
                            self.penalize(peer, Offence::RateLimited);
                            return; // dropping the channel fails the request remotely
                        }
                        let (tx, rx) = oneshot::channel();
                        if self
                            .rpc_tx
                            .try_send(RpcCall {
                                peer,
                                request,
                                reply: tx,
                            })
                            .is_err()
                        {
                            self.metrics.rpc.with_label_values(&["in", "busy"]).inc();
                            return;
                        }
                        let cmd = self.cmd_tx.clone();
                        tokio::spawn(async move {
                            if let Ok(bytes) = rx.await {
                                let _ = cmd.send(Command::RpcRespond(channel, bytes)).await;
                            }
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some((_, reply)) = self.rpc_pending.remove(&request_id) {
                            self.metrics.rpc.with_label_values(&["out", "ok"]).inc();
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Rpc(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let request_response::OutboundFailure::Io(e) = &error
                    && is_violation(e)
                {
                    self.penalize(peer, Offence::MalformedFrame);
                }
                if let Some((_, reply)) = self.rpc_pending.remove(&request_id) {
                    self.metrics.rpc.with_label_values(&["out", "failed"]).inc();
                    let _ = reply.send(Err(RpcError::Failed {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Rpc(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                if let request_response::InboundFailure::Io(e) = &error
                    && is_violation(e)
                {
                    self.metrics
                        .rpc
                        .with_label_values(&["in", "malformed"])
                        .inc();
                    self.penalize(peer, Offence::MalformedFrame);
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) if !renewal => {
                info!(target: "agora_p2p::nat", relay = %relay_peer_id, "relay reservation accepted");
                self.metrics.relay.with_label_values(&["reservation"]).inc();
                self.emit(NetEvent::RelayReserved {
                    relay: relay_peer_id,
                });
            }
            BehaviourEvent::RelayServer(relay::Event::CircuitReqAccepted { .. }) => {
                self.metrics
                    .relay
                    .with_label_values(&["circuit_served"])
                    .inc();
            }
            BehaviourEvent::RelayServer(relay::Event::ReservationReqAccepted { .. }) => {
                self.metrics
                    .relay
                    .with_label_values(&["reservation_served"])
                    .inc();
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => {
                let ok = result.is_ok();
                match &result {
                    Ok(_) => {
                        info!(target: "agora_p2p::nat", peer = %remote_peer_id, "hole punch succeeded")
                    }
                    Err(e) => {
                        info!(target: "agora_p2p::nat", peer = %remote_peer_id, error = %e, "hole punch failed")
                    }
                }
                self.metrics
                    .hole_punch
                    .with_label_values(&[if ok { "ok" } else { "failed" }])
                    .inc();
                self.emit(NetEvent::HolePunch {
                    peer: remote_peer_id,
                    ok,
                });
            }
            BehaviourEvent::AutonatClient(autonat::v2::client::Event {
                tested_addr,
                server,
                result,
                ..
            }) => match result {
                Ok(()) => {
                    info!(target: "agora_p2p::nat", addr = %tested_addr, %server, "address confirmed reachable");
                    self.set_nat(NatStatus::Public);
                }
                Err(e) => {
                    debug!(target: "agora_p2p::nat", addr = %tested_addr, %server, error = %e, "address not reachable");
                    let confirmed = self
                        .swarm
                        .external_addresses()
                        .any(|a| !a.iter().any(|p| p == Protocol::P2pCircuit));
                    if !confirmed {
                        self.set_nat(NatStatus::Private);
                    }
                }
            },
            BehaviourEvent::Upnp(upnp::Event::NewExternalAddr { external_addr, .. }) => {
                info!(target: "agora_p2p::nat", addr = %external_addr, "UPnP port mapping");
                self.set_nat(NatStatus::Public);
            }
            BehaviourEvent::Upnp(e) => debug!(target: "agora_p2p::nat", event = ?e, "upnp"),
            _ => {}
        }
    }

    fn maybe_reserve(&mut self, relay: PeerId) {
        if self.nat == NatStatus::Public
            || self.relays.contains_key(&relay)
            || self.relays.len() >= self.config.max_relay_reservations
        {
            return;
        }
        // Reserve over the address we actually reached the relay at (we dialed it).
        let Some(addr) = self
            .conns
            .values()
            .find(|c| c.peer == relay && !c.relayed && c.outbound)
            .map(|c| c.remote_addr.clone())
        else {
            return;
        };
        let mut addr: Multiaddr = addr
            .into_iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        addr.push(Protocol::P2p(relay));
        addr.push(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                info!(target: "agora_p2p::nat", %relay, %addr, "requesting relay reservation");
                self.relays.insert(relay, id);
            }
            Err(e) => warn!(target: "agora_p2p::nat", %relay, error = %e, "relay listen failed"),
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        let offers_hash = self.offers_topic.hash();
        let beacons_hash = self.beacons_topic.hash();
        let (topic_label, acceptance) = if msg.topic == offers_hash {
            ("offers", self.validate_offer(&msg))
        } else if msg.topic == beacons_hash {
            if msg.data.len() <= MAX_BEACON_BYTES {
                self.emit(NetEvent::Beacon {
                    from: msg.source,
                    data: msg.data.clone(),
                });
                ("beacons", gossipsub::MessageAcceptance::Accept)
            } else {
                ("beacons", gossipsub::MessageAcceptance::Reject)
            }
        } else {
            ("other", gossipsub::MessageAcceptance::Reject)
        };
        let verdict = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accept",
            gossipsub::MessageAcceptance::Reject => "reject",
            gossipsub::MessageAcceptance::Ignore => "ignore",
        };
        self.metrics
            .gossip
            .with_label_values(&[topic_label, verdict])
            .inc();
        if matches!(acceptance, gossipsub::MessageAcceptance::Reject) {
            let off = if topic_label == "offers" {
                Offence::InvalidOffer
            } else {
                Offence::InvalidGossip
            };
            self.penalize(source, off);
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn validate_offer(&mut self, msg: &gossipsub::Message) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(validator) = &self.config.offer_validator else {
            return Ignore;
        };
        let signed = match validator.check(&msg.data) {
            Ok(s) => s,
            Err(e) => {
                debug!(target: "agora_p2p::offers", error = %e, "invalid offer");
                return Reject;
            }
        };
        let Some(provider) = signed.header.provider_peer() else {
            return Reject;
        };
        // Providers announce themselves; a third party re-publishing offers is refused.
        if msg.source != Some(provider) {
            return Reject;
        }
        let now = now_ms();
        let skew = self.config.max_offer_skew_secs * 1000;
        match signed
            .header
            .check_time(now, skew, self.config.max_offer_ttl_secs * 1000)
        {
            Ok(()) => {}
            // Just expired in flight: drop quietly. Long dead: someone replays it.
            Err(OfferError::Expired { expires_at_ms, .. }) if expires_at_ms + skew > now => {
                return Ignore;
            }
            Err(e) => {
                debug!(target: "agora_p2p::offers", %provider, error = %e, "offer outside its window");
                return Reject;
            }
        }
        match self.offers.insert(provider, signed) {
            Insert::New | Insert::Updated => {
                self.metrics.offers.set(self.offers.len() as i64);
                self.emit(NetEvent::Offer { provider });
                Accept
            }
            Insert::Stale => Ignore,
        }
    }
}

fn is_violation(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref()
            .is_some_and(|inner| inner.is::<ProtocolViolation>())
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
