//! Reachability: our NAT status, relay reservations while we are private, DCUtR hole punches,
//! and retiring a relayed connection once a direct one to the same peer exists.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay, upnp};
use tracing::{debug, info, warn};

use super::Actor;
use crate::node::{NatStatus, NetEvent};

impl Actor {
    pub(super) fn set_nat(&mut self, nat: NatStatus) {
        if self.nat != nat {
            info!(target: "agora_p2p::nat", ?nat, "reachability changed");
            self.nat = nat;
            self.metrics.nat_public.set(match nat {
                NatStatus::Public => 1,
                NatStatus::Private => 0,
                NatStatus::Unknown => -1,
            });
            self.emit(NetEvent::Nat(nat));
        }
    }

    pub(super) fn maybe_reserve(&mut self, relay: PeerId) {
        if self.nat == NatStatus::Public
            || self.relays.contains_key(&relay)
            || self.relays.len() >= self.config.max_relay_reservations
        {
            return;
        }
        // Reserve over the address we actually reached the relay at (we dialed it).
        let Some(addr) = self
            .conns
            .values()
            .find(|c| c.peer == relay && !c.relayed && c.outbound)
            .map(|c| c.remote_addr.clone())
        else {
            return;
        };
        let mut addr: Multiaddr = addr
            .into_iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        addr.push(Protocol::P2p(relay));
        addr.push(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                info!(target: "agora_p2p::nat", %relay, %addr, "requesting relay reservation");
                self.relays.insert(relay, id);
            }
            Err(e) => warn!(target: "agora_p2p::nat", %relay, error = %e, "relay listen failed"),
        }
    }

    pub(super) fn schedule_close_relayed(&mut self, peer: PeerId) {
        let at = Instant::now() + Duration::from_millis(self.config.relayed_close_grace_ms);
        if self.config.relayed_close_grace_ms == 0 {
            self.close_relayed(peer);
        } else {
            self.close_relayed_at.push((at, peer));
        }
    }

    pub(super) fn close_relayed(&mut self, peer: PeerId) {
        let has_direct = self.conns.values().any(|c| c.peer == peer && !c.relayed);
        if !has_direct {
            return;
        }
        let relayed: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == peer && c.relayed)
            .map(|(id, _)| *id)
            .collect();
        for id in relayed {
            debug!(target: "agora_p2p::nat", %peer, "closing relayed connection: a direct one exists");
            self.swarm.close_connection(id);
        }
    }

    pub(super) fn on_relay_client(&mut self, ev: relay::client::Event) {
        match ev {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } if !renewal => {
                info!(target: "agora_p2p::nat", relay = %relay_peer_id, "relay reservation accepted");
                self.metrics.relay.with_label_values(&["reservation"]).inc();
                self.emit(NetEvent::RelayReserved {
                    relay: relay_peer_id,
                });
            }
            _ => {}
        }
    }

    pub(super) fn on_relay_server(&mut self, ev: relay::Event) {
        match ev {
            relay::Event::CircuitReqAccepted { .. } => {
                self.metrics
                    .relay
                    .with_label_values(&["circuit_served"])
                    .inc();
            }
            relay::Event::ReservationReqAccepted { .. } => {
                self.metrics
                    .relay
                    .with_label_values(&["reservation_served"])
                    .inc();
            }
            _ => {}
        }
    }

    pub(super) fn on_hole_punch(&mut self, ev: dcutr::Event) {
        let dcutr::Event {
            remote_peer_id,
            result,
        } = ev;
        let ok = result.is_ok();
        match &result {
            Ok(_) => {
                info!(target: "agora_p2p::nat", peer = %remote_peer_id, "hole punch succeeded")
            }
            Err(e) => {
                info!(target: "agora_p2p::nat", peer = %remote_peer_id, error = %e, "hole punch failed")
            }
        }
        self.metrics
            .hole_punch
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        self.emit(NetEvent::HolePunch {
            peer: remote_peer_id,
            ok,
        });
    }

    pub(super) fn on_autonat(&mut self, ev: autonat::v2::client::Event) {
        let autonat::v2::client::Event {
            tested_addr,
            server,
            result,
            ..
        } = ev;
        match result {
            Ok(()) => {
                info!(target: "agora_p2p::nat", addr = %tested_addr, %server, "address confirmed reachable");
                self.set_nat(NatStatus::Public);
            }
            Err(e) => {
                debug!(target: "agora_p2p::nat", addr = %tested_addr, %server, error = %e, "address not reachable");
                let confirmed = self
                    .swarm
                    .external_addresses()
                    .any(|a| !a.iter().any(|p| p == Protocol::P2pCircuit));
                if !confirmed {
                    self.set_nat(NatStatus::Private);
                }
            }
        }
    }

    pub(super) fn on_upnp(&mut self, ev: upnp::Event) {
        match ev {
            upnp::Event::NewExternalAddr { external_addr, .. } => {
                info!(target: "agora_p2p::nat", addr = %external_addr, "UPnP port mapping");
                self.set_nat(NatStatus::Public);
            }
            e => debug!(target: "agora_p2p::nat", event = ?e, "upnp"),
        }
    }
}
