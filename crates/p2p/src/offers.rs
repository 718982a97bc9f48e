//! The offers table: the live signed offers heard on gossip, one per provider, dropped at expiry.

use std::collections::BTreeMap;

use libp2p::PeerId;

use crate::offer::{GossipedOffer, ModelId};

/// What happened when an offer was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// A provider we had no live offer from.
    New,
    /// Replaced an older offer (lower `seq`) from the same provider.
    Updated,
    /// Ignored: we already hold an offer with the same or a higher `seq`.
    Stale,
}

/// Live offers keyed by provider peer id. Offers must be verified before insertion.
#[derive(Debug, Default, Clone)]
pub struct OffersTable {
    by_provider: BTreeMap<PeerId, GossipedOffer>,
}

impl OffersTable {
    /// Inserts a verified offer from `provider`.
    pub fn insert(&mut self, provider: PeerId, offer: GossipedOffer) -> Insert {
        match self.by_provider.get(&provider) {
            Some(old) if old.header.seq >= offer.header.seq => Insert::Stale,
            Some(_) => {
                self.by_provider.insert(provider, offer);
                Insert::Updated
            }
            None => {
                self.by_provider.insert(provider, offer);
                Insert::New
            }
        }
    }

    /// Drops every offer whose expiry is at or before `now_ms`; returns the providers dropped.
    pub fn prune(&mut self, now_ms: u64) -> Vec<PeerId> {
        let dead: Vec<PeerId> = self
            .by_provider
            .iter()
            .filter(|(_, o)| o.header.expires_at_ms <= now_ms)
            .map(|(p, _)| *p)
            .collect();
        for p in &dead {
            self.by_provider.remove(p);
        }
        dead
    }

    /// Live offers for `model` at `now_ms`, by provider (prices and load are the market's to read).
    pub fn providers_of(&self, model: &ModelId, now_ms: u64) -> Vec<(PeerId, GossipedOffer)> {
        self.by_provider
            .iter()
            .filter(|(_, o)| o.header.expires_at_ms > now_ms && o.header.serves(model))
            .map(|(p, o)| (*p, o.clone()))
            .collect()
    }

    /// The offer of one provider, if live.
    pub fn get(&self, provider: &PeerId, now_ms: u64) -> Option<&GossipedOffer> {
        self.by_provider
            .get(provider)
            .filter(|o| o.header.expires_at_ms > now_ms)
    }

    /// Number of offers held (including any not yet pruned).
    pub fn len(&self) -> usize {
        self.by_provider.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_provider.is_empty()
    }

    /// All offers held.
    pub fn all(&self) -> Vec<(PeerId, GossipedOffer)> {
        self.by_provider
            .iter()
            .map(|(p, o)| (*p, o.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;
    use crate::offer::OfferHeader;

    fn offer(seed: u8, seq: u64, expires: u64, models: Vec<ModelId>) -> (PeerId, GossipedOffer) {
        let key = keypair_from_seed([seed; 32]).unwrap();
        let header = OfferHeader {
            provider: key.public().try_into_ed25519().unwrap().to_bytes(),
            seq,
            issued_at_ms: 0,
            expires_at_ms: expires,
            models,
        };
        let bytes = vec![seed; 8];
        (key.public().to_peer_id(), GossipedOffer { header, bytes })
    }

    #[test]
    fn newer_seq_replaces_and_older_is_stale() {
        let mut t = OffersTable::default();
        let (p, o1) = offer(1, 1, 100, vec![[1; 32]]);
        let (_, o2) = offer(1, 2, 200, vec![[1; 32]]);
        assert_eq!(t.insert(p, o1.clone()), Insert::New);
        assert_eq!(t.insert(p, o2.clone()), Insert::Updated);
        assert_eq!(t.insert(p, o1), Insert::Stale);
        assert_eq!(t.get(&p, 0).unwrap().header.seq, 2);
    }

    #[test]
    fn expired_offers_vanish_and_queries_filter_by_model_and_price() {
        let mut t = OffersTable::default();
        let (a, oa) = offer(1, 1, 100, vec![[1; 32]]);
        let (b, ob) = offer(2, 1, 300, vec![[1; 32], [2; 32]]);
        t.insert(a, oa);
        t.insert(b, ob);
        // Ordering by price is the market's (the gateway's pick); the overlay only filters.
        let found = t.providers_of(&[1; 32], 50);
        let mut peers: Vec<PeerId> = found.iter().map(|(p, _)| *p).collect();
        peers.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(peers, want);
        assert_eq!(t.providers_of(&[2; 32], 50).len(), 1);
        // a expired at 100: not returned even before pruning, and pruned after.
        assert_eq!(t.providers_of(&[1; 32], 100).len(), 1);
        assert_eq!(t.prune(100), vec![a]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.prune(300), vec![b]);
        assert!(t.is_empty());
    }
}
