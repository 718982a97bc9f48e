//! The handle: the cloneable mailbox callers use, the typed commands it sends the actor, and
//! the queues of inbound work the application reads.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, request_response};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::error::{DialError, InferError, NodeStopped, ProvideError, PublishError, RpcError};
use super::streams::{self, InferenceCall, TokenStream};
use super::{NetEvent, NetStatus};
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::offer::{GossipedOffer, ModelId, OfferSigner, now_ms};
use crate::scoring::Offence;
use crate::wire::InferenceRequest;

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

/// What a [`Handle`] (or a task the node spawned: `Report`, `RpcRespond`) asks of the actor;
/// each request carries the channel for its answer.
pub(super) enum Command {
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
    limits: Limits,
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
    pub(super) fn new(
        peer_id: PeerId,
        cmd: mpsc::Sender<Command>,
        control: libp2p_stream::Control,
        events: broadcast::Sender<NetEvent>,
        metrics: Metrics,
        limits: Limits,
    ) -> Self {
        Self {
            peer_id,
            cmd,
            control,
            events,
            metrics,
            limits,
        }
    }

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
        streams::infer(
            &self.control,
            &self.cmd,
            &self.metrics,
            &self.limits,
            peer,
            request,
        )
        .await
    }
}
