//! Sources of peers besides the configured bootstrap list, e.g. the on-chain provider registry.

use libp2p::{Multiaddr, PeerId};

/// Something that knows providers and where to reach them. The node implements this on top of
/// the ledger's provider registry; the overlay polls it at start and periodically.
pub trait PeerSource: Send + Sync + 'static {
    /// Known providers and their advertised addresses.
    fn providers(&self) -> Vec<(PeerId, Vec<Multiaddr>)>;
}

/// A fixed list (tests, `agora net` with `--peer`).
#[derive(Debug, Clone, Default)]
pub struct StaticPeers(pub Vec<(PeerId, Vec<Multiaddr>)>);

impl PeerSource for StaticPeers {
    fn providers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.0.clone()
    }
}

/// Splits `/…/p2p/<id>` into the peer id and the address without it.
pub fn split_peer_addr(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some((peer, a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_source_and_addr_split() {
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        let (p, a) = split_peer_addr(&addr).unwrap();
        assert_eq!(p, peer);
        assert_eq!(a, "/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().unwrap());
        assert!(split_peer_addr(&a).is_none());
        let src = StaticPeers(vec![(p, vec![a])]);
        assert_eq!(src.providers().len(), 1);
    }
}
