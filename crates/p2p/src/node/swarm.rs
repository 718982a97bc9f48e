//! The swarm: transports (TCP + QUIC with noise and yamux, DNS, the relay client for
//! `/p2p-circuit`), every behaviour and its configuration (connection limits, identify, ping,
//! Kademlia, gossipsub with peer scoring, request-response, streams, relay v2 server, DCUtR,
//! AutoNAT v2, UPnP), and the protocol names and topics the node speaks.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub, identify, identity::Keypair, kad, noise, ping, relay, request_response, tcp, upnp,
    yamux,
};

use super::error::SpawnError;
use crate::config::NetConfig;
use crate::wire::{RPC_PROTOCOL, RpcCodec};

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
/// Relay v2 hop protocol: a peer that speaks it can hold a reservation for us.
pub(super) const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(super) gossip: gossipsub::Behaviour,
    pub(super) rpc: request_response::Behaviour<RpcCodec>,
    pub(super) stream: libp2p_stream::Behaviour,
    pub(super) relay_client: relay::client::Behaviour,
    pub(super) relay_server: Toggle<relay::Behaviour>,
    pub(super) dcutr: Toggle<dcutr::Behaviour>,
    pub(super) autonat_client: autonat::v2::client::Behaviour,
    pub(super) autonat_server: Toggle<autonat::v2::server::Behaviour>,
    pub(super) upnp: Toggle<upnp::tokio::Behaviour>,
    pub(super) candidates: SelfCandidates,
}

/// Announces addresses we know to be ours and reachable (public listen addresses, configured
/// external addresses): first as a candidate, then as confirmed. The order matters: DCUtR only
/// learns candidates (it sends them in the hole-punch CONNECT message), and the swarm drops a
/// candidate that is already confirmed, so confirming first (`Swarm::add_external_address`)
/// would leave a public gateway with nothing to offer a NATed provider.
#[derive(Default)]
pub(super) struct SelfCandidates {
    pub(super) pending: std::collections::VecDeque<Multiaddr>,
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

/// The gossip topics every node joins.
pub(super) struct Topics {
    pub(super) offers: gossipsub::IdentTopic,
    pub(super) beacons: gossipsub::IdentTopic,
}

impl Topics {
    /// Subscribes `swarm` to the offers and the beacons topics.
    pub(super) fn subscribe(swarm: &mut Swarm<Behaviour>) -> Result<Self, SpawnError> {
        let offers = gossipsub::IdentTopic::new(OFFERS_TOPIC);
        let beacons = gossipsub::IdentTopic::new(BEACONS_TOPIC);
        for t in [&offers, &beacons] {
            swarm
                .behaviour_mut()
                .gossip
                .subscribe(t)
                .map_err(|e| SpawnError::Behaviour(e.to_string()))?;
        }
        Ok(Self { offers, beacons })
    }
}

/// Builds the swarm: transports, then every behaviour configured from `config`.
pub(super) fn build(key: &Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, SpawnError> {
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
