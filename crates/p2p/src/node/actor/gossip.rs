//! Gossip: our signed offer (re-published every third of its TTL), and the offers and audit
//! beacons we hear, each validated before gossipsub forwards it.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, gossipsub};
use tracing::debug;

use super::Actor;
use crate::node::NetEvent;
use crate::node::error::PublishError;
use crate::node::swarm::MAX_BEACON_BYTES;
use crate::offer::{OfferError, OfferStamp, now_ms};
use crate::offers::Insert;
use crate::scoring::Offence;

impl Actor {
    pub(super) fn publish_offer(&mut self) -> Result<(), PublishError> {
        let Some(terms) = self.offer_terms.clone() else {
            return Ok(());
        };
        let now = now_ms();
        // Strictly increasing across restarts too: start from the clock.
        self.offer_seq = (self.offer_seq + 1).max(now);
        let ttl_ms = terms.ttl.as_millis() as u64;
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        addrs.extend(
            self.swarm
                .listeners()
                .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
                .cloned(),
        );
        addrs.truncate(crate::offer::MAX_OFFER_ADDRS);
        let stamp = OfferStamp {
            seq: self.offer_seq,
            issued_at_ms: now,
            expires_at_ms: now + ttl_ms,
            addrs,
        };
        let bytes = terms.signer.sign(&stamp).map_err(PublishError::Sign)?;
        // Our own offer goes through the same check as everyone else's.
        let signed = match &self.config.offer_validator {
            Some(v) => v
                .check(&bytes)
                .map_err(|e| PublishError::Sign(e.to_string()))?,
            None => return Err(PublishError::Sign(OfferError::NoValidator.to_string())),
        };
        let me = *self.swarm.local_peer_id();
        if signed.header.provider_peer() != Some(me) {
            return Err(PublishError::Sign(
                "the offer names another provider".into(),
            ));
        }
        self.offers.insert(me, signed.clone());
        self.metrics.offers.set(self.offers.len() as i64);
        self.next_offer_at = Instant::now() + terms.ttl / 3;
        let topic = self.topics.offers.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(topic, signed.bytes)
        {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                // Retry soon; the offer is already in our own table.
                self.next_offer_at = Instant::now() + Duration::from_millis(500);
                Ok(())
            }
            Err(e) => Err(PublishError::Gossip(e.to_string())),
        }
    }

    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        msg: gossipsub::Message,
    ) {
        let offers_hash = self.topics.offers.hash();
        let beacons_hash = self.topics.beacons.hash();
        let (topic_label, acceptance) = if msg.topic == offers_hash {
            ("offers", self.validate_offer(&msg))
        } else if msg.topic == beacons_hash {
            if msg.data.len() <= MAX_BEACON_BYTES {
                self.emit(NetEvent::Beacon {
                    from: msg.source,
                    data: msg.data.clone(),
                });
                ("beacons", gossipsub::MessageAcceptance::Accept)
            } else {
                ("beacons", gossipsub::MessageAcceptance::Reject)
            }
        } else {
            ("other", gossipsub::MessageAcceptance::Reject)
        };
        let verdict = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accept",
            gossipsub::MessageAcceptance::Reject => "reject",
            gossipsub::MessageAcceptance::Ignore => "ignore",
        };
        self.metrics
            .gossip
            .with_label_values(&[topic_label, verdict])
            .inc();
        if matches!(acceptance, gossipsub::MessageAcceptance::Reject) {
            let off = if topic_label == "offers" {
                Offence::InvalidOffer
            } else {
                Offence::InvalidGossip
            };
            self.penalize(source, off);
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn validate_offer(&mut self, msg: &gossipsub::Message) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(validator) = &self.config.offer_validator else {
            return Ignore;
        };
        let signed = match validator.check(&msg.data) {
            Ok(s) => s,
            Err(e) => {
                debug!(target: "agora_p2p::offers", error = %e, "invalid offer");
                return Reject;
            }
        };
        let Some(provider) = signed.header.provider_peer() else {
            return Reject;
        };
        // Providers announce themselves; a third party re-publishing offers is refused.
        if msg.source != Some(provider) {
            return Reject;
        }
        let now = now_ms();
        let skew = self.config.max_offer_skew_secs * 1000;
        match signed
            .header
            .check_time(now, skew, self.config.max_offer_ttl_secs * 1000)
        {
            Ok(()) => {}
            // Just expired in flight: drop quietly. Long dead: someone replays it.
            Err(OfferError::Expired { expires_at_ms, .. }) if expires_at_ms + skew > now => {
                return Ignore;
            }
            Err(e) => {
                debug!(target: "agora_p2p::offers", %provider, error = %e, "offer outside its window");
                return Reject;
            }
        }
        match self.offers.insert(provider, signed) {
            Insert::New | Insert::Updated => {
                self.metrics.offers.set(self.offers.len() as i64);
                self.emit(NetEvent::Offer { provider });
                Accept
            }
            Insert::Stale => Ignore,
        }
    }
}
