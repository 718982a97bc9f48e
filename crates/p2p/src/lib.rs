//! The libp2p overlay: identity, discovery, gossip of signed offers, streamed inference requests, relay and hole punching for providers behind NAT.
//!
//! Providers, gateways and validators meet here. Every node runs the same [`node`] actor over a
//! libp2p swarm (TCP and QUIC, noise, yamux) with identify, ping, a Kademlia DHT in which
//! providers announce the sha256 of each model they serve, gossipsub topics for signed
//! [`offer`]s and audit beacons, a capped request-response protocol for small RPCs and a stream
//! protocol for token-by-token inference responses with backpressure. Nodes behind a home NAT
//! learn so from AutoNAT v2, try UPnP, reserve a slot on a relay v2 server (any public node
//! with `relay_server` set), and upgrade relayed connections to direct ones with DCUtR.
//! Hostile input is bounded ([`wire`], [`offer`]) and scored ([`scoring`]). See
//! `docs/design/p2p.md`.

pub mod bench;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod offer;
pub mod offers;
pub mod peer_source;
pub mod scoring;
pub mod wire;

pub use config::{Limits, NetConfig, RelayServerConfig};
pub use identity::{
    account_pubkey_from_peer_id, generate_seed, is_account_peer, keypair_from_seed,
    peer_id_from_account_pubkey,
};
pub use libp2p::{Multiaddr, PeerId};
pub use node::{
    ConnectionInfo, Handle, Inbound, InferError, InferenceCall, NatStatus, NetEvent, NetStatus,
    OfferTerms, Path, ProviderEntry, RpcCall, TokenSink, TokenStream, spawn,
};
pub use offer::{GossipedOffer, ModelId, OfferHeader, OfferSigner, OfferStamp, OfferValidator};
pub use peer_source::{PeerSource, StaticPeers};
pub use wire::{Chunk, InferenceRequest};
