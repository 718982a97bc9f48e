//! What the node reports about itself: reachability, connections, the status snapshot.

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

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
