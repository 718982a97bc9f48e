//! Events the actor broadcasts to subscribers ([`Handle::events`](super::Handle::events)).

use libp2p::{Multiaddr, PeerId};

use super::NatStatus;
use crate::scoring::{Offence, Verdict};

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
