//! The actor: the one task that owns the swarm. It answers the handles' commands, reacts to
//! swarm and behaviour events, and keeps time (offer refresh, expiries, bans, rediscovery).
//! Its rooms: `gossip` (our offer, offers and beacons heard), `nat` (reachability, relay
//! reservations, hole punching), `peers` (bootstrap, connections, penalties), `rpc`
//! (request-response).

mod gossip;
mod nat;
mod peers;
mod rpc;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, request_response};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::error::{DialError, ProvideError, PublishError, RpcError};
use super::handle::{Command, OfferTerms, RpcCall};
use super::swarm::{
    Behaviour, BehaviourEvent, HOP_PROTOCOL, KAD_PROTOCOL, MAX_BEACON_BYTES, Topics,
};
use super::{ConnectionInfo, NatStatus, NetEvent, NetStatus};
use crate::config::NetConfig;
use crate::metrics::Metrics;
use crate::offer::now_ms;
use crate::offers::OffersTable;
use crate::peer_source::PeerSource;
use crate::scoring::PeerBook;

/// The channels and shared state the actor holds beside the handles and the stream tasks.
pub(super) struct Links {
    /// The actor's own mailbox: tasks it spawns answer through it.
    pub(super) cmd_tx: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<NetEvent>,
    pub(super) metrics: Metrics,
    pub(super) book: Arc<Mutex<PeerBook>>,
    pub(super) rpc_tx: mpsc::Sender<RpcCall>,
}

/// Starts the actor task: it dials the bootstrap peers, then serves `cmds` until shutdown.
pub(super) fn spawn(
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    topics: Topics,
    links: Links,
    peer_source: Option<Arc<dyn PeerSource>>,
    cmds: mpsc::Receiver<Command>,
) {
    let Links {
        cmd_tx,
        events,
        metrics,
        book,
        rpc_tx,
    } = links;
    let mut actor = Actor {
        swarm,
        config,
        cmd_tx,
        events,
        metrics,
        book,
        rpc_tx,
        offers: OffersTable::default(),
        topics,
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
        rediscover_backoff: REDISCOVER_RETRY_FIRST,
    };
    actor.bootstrap();
    if actor.config.public {
        actor.set_nat(NatStatus::Public);
    }
    tokio::spawn(actor.run(cmds));
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
    topics: Topics,
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
    /// The wait before the next bootstrap while a bootstrap peer (or every peer) is missing:
    /// doubled at each try up to [`REDISCOVER_RETRY_MAX`], back to the first after a success.
    rediscover_backoff: Duration,
}

/// A lost bootstrap peer (a gateway restarted, say) is dialled again after this, then after
/// twice as long each time, up to [`REDISCOVER_RETRY_MAX`]; the full `rediscover_secs` wait
/// is for a node that has what it needs.
const REDISCOVER_RETRY_FIRST: Duration = Duration::from_secs(1);
const REDISCOVER_RETRY_MAX: Duration = Duration::from_secs(8);

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
                    let topic = self.topics.beacons.clone();
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
            } => self.on_connected(peer_id, connection_id, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => self.on_disconnected(peer_id, connection_id),
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
            BehaviourEvent::Rpc(e) => self.on_rpc(e),
            BehaviourEvent::RelayClient(e) => self.on_relay_client(e),
            BehaviourEvent::RelayServer(e) => self.on_relay_server(e),
            BehaviourEvent::Dcutr(e) => self.on_hole_punch(e),
            BehaviourEvent::AutonatClient(e) => self.on_autonat(e),
            BehaviourEvent::Upnp(e) => self.on_upnp(e),
            _ => {}
        }
    }
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
