//! Request-response: inbound requests are served within the peer's rate and handed to the
//! application, our outbound ones resolved, and peers whose frames break the protocol scored.

use std::time::Instant;

use libp2p::request_response;
use tokio::sync::oneshot;

use super::Actor;
use crate::node::error::RpcError;
use crate::node::handle::{Command, RpcCall};
use crate::scoring::Offence;
use crate::wire::ProtocolViolation;

impl Actor {
    pub(super) fn on_rpc(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => {
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
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
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
            request_response::Event::InboundFailure { peer, error, .. } => {
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
            _ => {}
        }
    }
}

fn is_violation(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref()
            .is_some_and(|inner| inner.is::<ProtocolViolation>())
}
