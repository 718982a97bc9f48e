//! Overlay configuration. Durations are whole seconds or milliseconds so the struct maps to
//! `agora.toml` (`[p2p]`) one to one.

use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::scoring::ScoreConfig;

/// Limits of a relay v2 server. libp2p's defaults (2 min, 128 KiB per circuit) only allow
/// signalling and hole punching; ours are raised so a relayed inference stream is a working
/// fallback for the ~30 % of pairs where hole punching fails.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayServerConfig {
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Reservations per peer.
    pub max_reservations_per_peer: usize,
    /// Reservation lifetime (the client renews).
    pub reservation_secs: u64,
    /// Circuits at once.
    pub max_circuits: usize,
    /// Circuits per peer.
    pub max_circuits_per_peer: usize,
    /// Lifetime of one circuit.
    pub max_circuit_secs: u64,
    /// Bytes one circuit may carry in each direction.
    pub max_circuit_bytes: u64,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            max_reservations: 256,
            max_reservations_per_peer: 4,
            reservation_secs: 3600,
            max_circuits: 128,
            max_circuits_per_peer: 16,
            max_circuit_secs: 1800,
            max_circuit_bytes: 256 << 20,
        }
    }
}

/// Size caps, connection limits and rate limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Pending incoming connections.
    pub max_pending_incoming: u32,
    /// Largest RPC request.
    pub rpc_max_request_bytes: usize,
    /// Largest RPC response.
    pub rpc_max_response_bytes: usize,
    /// Largest inference request frame.
    pub infer_max_request_bytes: usize,
    /// Largest streamed chunk frame.
    pub infer_max_chunk_bytes: usize,
    /// Largest gossip message (gossipsub `max_transmit_size`).
    pub gossip_max_bytes: usize,
    /// Inbound requests (RPC + inference streams) per second per peer.
    pub requests_per_sec: f64,
    /// Burst of inbound requests per peer.
    pub request_burst: f64,
    /// Concurrent inbound inference streams in total.
    pub max_inbound_streams: usize,
    /// Time a peer has to send its request after opening a stream.
    pub request_read_timeout_ms: u64,
    /// Ban length after the score falls below the threshold.
    pub ban_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_peer: 4,
            max_pending_incoming: 64,
            rpc_max_request_bytes: 64 << 10,
            rpc_max_response_bytes: 1 << 20,
            infer_max_request_bytes: 1 << 20,
            // A final frame carries the proof of inference: 262 bytes per 32 tokens, hex in JSON,
            // about 68 KiB at 4,096 tokens.
            infer_max_chunk_bytes: 256 << 10,
            gossip_max_bytes: 16 << 10,
            requests_per_sec: 20.0,
            request_burst: 40.0,
            max_inbound_streams: 256,
            request_read_timeout_ms: 10_000,
            ban_secs: 600,
        }
    }
}

impl Limits {
    pub(crate) fn score_config(&self) -> ScoreConfig {
        ScoreConfig {
            ban_duration: Duration::from_secs(self.ban_secs),
            requests_per_sec: self.requests_per_sec,
            request_burst: self.request_burst,
            ..ScoreConfig::default()
        }
    }
}

/// Everything the overlay node needs besides its key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Addresses to listen on (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Addresses known to be publicly reachable (port forwards, a VPS's public IP).
    pub external_addrs: Vec<Multiaddr>,
    /// Treat our listen addresses as externally reachable (public gateways, validators, tests
    /// on loopback): Kademlia server mode without waiting for AutoNAT.
    pub public: bool,
    /// Bootstrap peers, each `/…/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Serve relay v2 circuits for NATed peers (needs a public address).
    pub relay_server: Option<RelayServerConfig>,
    /// When not known to be public, reserve a slot on relays we meet (at most this many).
    pub max_relay_reservations: usize,
    /// Take part in DCUtR hole punching.
    pub hole_punching: bool,
    /// Ask the home router for a port mapping (UPnP IGD).
    pub upnp: bool,
    /// Answer AutoNAT v2 dial-back probes for other peers.
    pub autonat_server: bool,
    /// Seconds a connection with no open streams stays up.
    pub idle_connection_secs: u64,
    /// Once a direct connection to a peer exists, close relayed ones after this grace period.
    pub relayed_close_grace_ms: u64,
    /// Longest offer validity accepted from gossip.
    pub max_offer_ttl_secs: u64,
    /// Clock skew tolerated on an offer's issue time.
    pub max_offer_skew_secs: u64,
    /// Reads gossiped offers (their format is the market's); without one, offers are ignored.
    #[serde(skip)]
    pub offer_validator: Option<crate::offer::OfferValidator>,
    /// Kademlia provider record TTL.
    pub provider_record_ttl_secs: u64,
    /// How often to poll the peer source (on-chain registry) and re-bootstrap Kademlia.
    pub rediscover_secs: u64,
    /// Gossipsub heartbeat.
    pub gossip_heartbeat_ms: u64,
    /// Size caps and limits.
    pub limits: Limits,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4100".parse().expect("static"),
                "/ip4/0.0.0.0/udp/4100/quic-v1".parse().expect("static"),
            ],
            external_addrs: vec![],
            public: false,
            bootstrap: vec![],
            relay_server: None,
            max_relay_reservations: 2,
            hole_punching: true,
            upnp: true,
            autonat_server: false,
            idle_connection_secs: 60,
            relayed_close_grace_ms: 5_000,
            max_offer_ttl_secs: 600,
            max_offer_skew_secs: 30,
            offer_validator: None,
            provider_record_ttl_secs: 3600,
            rediscover_secs: 60,
            gossip_heartbeat_ms: 1_000,
            limits: Limits::default(),
        }
    }
}

impl NetConfig {
    /// A loopback configuration for tests and benchmarks: ephemeral TCP port on 127.0.0.1,
    /// public, no UPnP, fast heartbeat.
    pub fn local_test() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("static")],
            public: true,
            upnp: false,
            autonat_server: false,
            relayed_close_grace_ms: 0,
            gossip_heartbeat_ms: 200,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml_shaped_json_and_rejects_unknown_keys() {
        let c = NetConfig {
            relay_server: Some(RelayServerConfig::default()),
            ..NetConfig::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        let back: NetConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c);
        let partial: NetConfig = serde_json::from_str(r#"{"public": true}"#).unwrap();
        assert!(partial.public);
        assert_eq!(partial.limits, Limits::default());
        assert!(serde_json::from_str::<NetConfig>(r#"{"pubic": true}"#).is_err());
    }
}
