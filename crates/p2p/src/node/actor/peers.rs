//! Peers: bootstrap and rediscovery dials, the table of open connections, and penalties
//! (scored in the shared `PeerBook`, enforced here by disconnecting or banning).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, warn};

use super::Actor;
use crate::node::{ConnectionInfo, NetEvent};
use crate::peer_source::split_peer_addr;
use crate::scoring::{Offence, Verdict};

impl Actor {
    pub(super) fn bootstrap(&mut self) {
        let mut targets: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for addr in &self.config.bootstrap {
            match split_peer_addr(addr) {
                Some((peer, a)) => targets.push((peer, vec![a])),
                None => {
                    warn!(target: "agora_p2p::node", %addr, "bootstrap address lacks /p2p/<id>; ignored")
                }
            }
        }
        let me = *self.swarm.local_peer_id();
        let missing = self.connected_peers() == 0
            || targets
                .iter()
                .any(|(peer, _)| *peer != me && !self.swarm.is_connected(peer));
        if let Some(src) = &self.peer_source {
            targets.extend(src.providers().into_iter().take(64));
        }
        for (peer, addrs) in targets {
            if peer == me {
                continue;
            }
            for a in &addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
            if !self.swarm.is_connected(&peer) {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(target: "agora_p2p::node", %peer, error = %e, "bootstrap dial failed");
                }
            }
        }
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        let full = Duration::from_secs(self.config.rediscover_secs);
        let wait = if missing {
            let w = self.rediscover_backoff.min(full);
            self.rediscover_backoff = (w * 2).min(super::REDISCOVER_RETRY_MAX);
            w
        } else {
            self.rediscover_backoff = super::REDISCOVER_RETRY_FIRST;
            full
        };
        self.next_rediscover = Instant::now() + wait;
    }

    pub(super) fn penalize(&mut self, peer: PeerId, offence: Offence) {
        let verdict = {
            let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
            b.penalize(peer, offence, Instant::now())
        };
        self.metrics
            .offences
            .with_label_values(&[offence.label()])
            .inc();
        warn!(target: "agora_p2p::score", %peer, offence = offence.label(), ?verdict, "peer penalised");
        match verdict {
            Verdict::Keep => {}
            Verdict::Disconnect => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Verdict::Ban => {
                self.metrics
                    .bans
                    .with_label_values(&[offence.label()])
                    .inc();
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.swarm.behaviour_mut().gossip.blacklist_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        self.emit(NetEvent::Penalised {
            peer,
            offence,
            verdict,
        });
    }

    pub(super) fn on_connected(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: ConnectedPoint,
    ) {
        let relayed = endpoint.is_relayed();
        let remote_addr = endpoint.get_remote_address().clone();
        let outbound = matches!(endpoint, ConnectedPoint::Dialer { .. });
        debug!(target: "agora_p2p::node", peer = %peer_id, %remote_addr, relayed, "connected");
        self.metrics
            .connections
            .with_label_values(&[if relayed { "relayed" } else { "direct" }])
            .inc();
        self.metrics
            .open_connections
            .with_label_values(&[if relayed { "relayed" } else { "direct" }])
            .inc();
        self.conns.insert(
            connection_id,
            ConnectionInfo {
                peer: peer_id,
                remote_addr: remote_addr.clone(),
                relayed,
                outbound,
            },
        );
        self.metrics
            .connected_peers
            .set(self.connected_peers() as i64);
        if let Some(reply) = self.dial_pending.remove(&connection_id) {
            let _ = reply.send(Ok(()));
        }
        if !relayed && self.conns.values().any(|c| c.peer == peer_id && c.relayed) {
            self.schedule_close_relayed(peer_id);
        }
        if relayed && self.conns.values().any(|c| c.peer == peer_id && !c.relayed) {
            self.schedule_close_relayed(peer_id);
        }
        self.emit(NetEvent::Connected {
            peer: peer_id,
            relayed,
            addr: remote_addr,
        });
    }

    pub(super) fn on_disconnected(&mut self, peer_id: PeerId, connection_id: ConnectionId) {
        if let Some(c) = self.conns.remove(&connection_id) {
            self.metrics
                .open_connections
                .with_label_values(&[if c.relayed { "relayed" } else { "direct" }])
                .dec();
        }
        self.metrics
            .connected_peers
            .set(self.connected_peers() as i64);
        self.emit(NetEvent::Disconnected { peer: peer_id });
        // A bootstrap peer gone (restarted, say): dial it again soon, not in a minute.
        let lost_bootstrap = !self.swarm.is_connected(&peer_id)
            && self
                .config
                .bootstrap
                .iter()
                .any(|a| split_peer_addr(a).is_some_and(|(p, _)| p == peer_id));
        if lost_bootstrap {
            self.rediscover_backoff = super::REDISCOVER_RETRY_FIRST;
            let soon = Instant::now() + super::REDISCOVER_RETRY_FIRST;
            self.next_rediscover = self.next_rediscover.min(soon);
        }
    }

    pub(super) fn connected_peers(&self) -> usize {
        self.conns
            .values()
            .map(|c| c.peer)
            .collect::<HashSet<_>>()
            .len()
    }
}
