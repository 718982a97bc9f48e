//! One error per operation of the node and its handle.

use libp2p::{Multiaddr, PeerId};

use crate::identity::KeyError;

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
