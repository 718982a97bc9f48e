//! Application-level peer scoring and per-peer request rate limits.
//!
//! Gossipsub keeps its own score for mesh behaviour; this book scores what gossipsub cannot
//! see: garbage on our stream and RPC protocols, oversized frames, offers with bad signatures,
//! request floods. A peer starts at 0; each offence subtracts its weight; the score decays
//! back towards 0 by `decay_per_sec`. Any protocol violation closes the peer's connections at
//! once; at or below `ban_threshold` the peer is also blocked for `ban_duration`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Something a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offence {
    /// Undecodable bytes on one of our protocols.
    MalformedFrame,
    /// A frame above the announced cap.
    OversizedFrame,
    /// A gossiped offer that does not verify or is outside its validity window.
    InvalidOffer,
    /// A gossiped message on a topic we do not accept, or oversized.
    InvalidGossip,
    /// More requests than the rate limit allows.
    RateLimited,
    /// Opened a stream and sent nothing in time.
    Timeout,
}

impl Offence {
    /// Score penalty.
    pub fn weight(self) -> f64 {
        match self {
            Offence::MalformedFrame | Offence::OversizedFrame => 60.0,
            Offence::InvalidOffer | Offence::InvalidGossip => 25.0,
            Offence::Timeout => 10.0,
            Offence::RateLimited => 2.0,
        }
    }

    /// Whether the offence closes the connection immediately.
    pub fn disconnects(self) -> bool {
        matches!(self, Offence::MalformedFrame | Offence::OversizedFrame)
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Offence::MalformedFrame => "malformed_frame",
            Offence::OversizedFrame => "oversized_frame",
            Offence::InvalidOffer => "invalid_offer",
            Offence::InvalidGossip => "invalid_gossip",
            Offence::RateLimited => "rate_limited",
            Offence::Timeout => "timeout",
        }
    }
}

/// What the node must do after an offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing beyond the score change.
    Keep,
    /// Close the peer's connections.
    Disconnect,
    /// Close and block the peer until the ban expires.
    Ban,
}

/// Scoring and rate-limit parameters.
#[derive(Debug, Clone)]
pub struct ScoreConfig {
    /// Score at or below which a peer is banned.
    pub ban_threshold: f64,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Score recovered per second.
    pub decay_per_sec: f64,
    /// Sustained inbound requests per second per peer.
    pub requests_per_sec: f64,
    /// Burst of inbound requests per peer.
    pub request_burst: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            ban_threshold: -100.0,
            ban_duration: Duration::from_secs(600),
            decay_per_sec: 0.1,
            requests_per_sec: 20.0,
            request_burst: 40.0,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    score: f64,
    scored_at: Instant,
    tokens: f64,
    refilled_at: Instant,
}

/// Scores and token buckets of every peer we have heard from.
#[derive(Debug)]
pub struct PeerBook {
    cfg: ScoreConfig,
    peers: HashMap<PeerId, Entry>,
    banned: HashMap<PeerId, Instant>,
}

impl PeerBook {
    /// An empty book.
    pub fn new(cfg: ScoreConfig) -> Self {
        Self {
            cfg,
            peers: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        let burst = self.cfg.request_burst;
        let decay = self.cfg.decay_per_sec;
        let e = self.peers.entry(peer).or_insert(Entry {
            score: 0.0,
            scored_at: now,
            tokens: burst,
            refilled_at: now,
        });
        let dt = now.saturating_duration_since(e.scored_at).as_secs_f64();
        e.score = (e.score + dt * decay).min(0.0);
        e.scored_at = now;
        e
    }

    /// Current score of `peer` (0 if unknown).
    pub fn score(&mut self, peer: &PeerId, now: Instant) -> f64 {
        if !self.peers.contains_key(peer) {
            return 0.0;
        }
        self.entry(*peer, now).score
    }

    /// Records an offence and says what to do.
    pub fn penalize(&mut self, peer: PeerId, offence: Offence, now: Instant) -> Verdict {
        let threshold = self.cfg.ban_threshold;
        let e = self.entry(peer, now);
        e.score -= offence.weight();
        if e.score <= threshold {
            let until = now + self.cfg.ban_duration;
            self.banned.insert(peer, until);
            Verdict::Ban
        } else if offence.disconnects() {
            Verdict::Disconnect
        } else {
            Verdict::Keep
        }
    }

    /// Takes one request token from `peer`'s bucket; `false` means over the rate limit.
    pub fn allow_request(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (self.cfg.requests_per_sec, self.cfg.request_burst);
        let e = self.entry(peer, now);
        let dt = now.saturating_duration_since(e.refilled_at).as_secs_f64();
        e.tokens = (e.tokens + dt * rate).min(burst);
        e.refilled_at = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// Peers banned at `now`.
    pub fn banned(&self, now: Instant) -> Vec<PeerId> {
        self.banned
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Removes expired bans and returns the peers to unblock.
    pub fn expire_bans(&mut self, now: Instant) -> Vec<PeerId> {
        let done: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &done {
            self.banned.remove(p);
        }
        done
    }

    /// Forgets peers whose score has decayed back to 0 and who hold a full bucket.
    pub fn gc(&mut self, now: Instant) {
        let burst = self.cfg.request_burst;
        let decay = self.cfg.decay_per_sec;
        self.peers.retain(|_, e| {
            let dt = now.saturating_duration_since(e.scored_at).as_secs_f64();
            (e.score + dt * decay) < 0.0 || e.tokens < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn garbage_disconnects_then_bans_and_bans_expire() {
        let mut b = PeerBook::new(ScoreConfig::default());
        let p = peer();
        let t0 = Instant::now();
        assert_eq!(
            b.penalize(p, Offence::MalformedFrame, t0),
            Verdict::Disconnect
        );
        assert!(b.score(&p, t0) < 0.0);
        assert!(!b.is_banned(&p, t0));
        assert_eq!(b.penalize(p, Offence::OversizedFrame, t0), Verdict::Ban);
        assert!(b.is_banned(&p, t0));
        assert_eq!(b.banned(t0), vec![p]);
        let later = t0 + Duration::from_secs(601);
        assert_eq!(b.expire_bans(later), vec![p]);
        assert!(!b.is_banned(&p, later));
    }

    #[test]
    fn small_offences_keep_the_peer_and_score_decays() {
        let mut b = PeerBook::new(ScoreConfig::default());
        let p = peer();
        let t0 = Instant::now();
        assert_eq!(b.penalize(p, Offence::RateLimited, t0), Verdict::Keep);
        assert_eq!(b.score(&p, t0), -2.0);
        assert_eq!(b.score(&p, t0 + Duration::from_secs(100)), 0.0);
    }

    #[test]
    fn token_bucket_limits_bursts_and_refills() {
        let cfg = ScoreConfig {
            requests_per_sec: 10.0,
            request_burst: 5.0,
            ..ScoreConfig::default()
        };
        let mut b = PeerBook::new(cfg);
        let p = peer();
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| b.allow_request(p, t0)).count();
        assert_eq!(allowed, 5);
        assert!(b.allow_request(p, t0 + Duration::from_millis(150)));
        assert!(!b.allow_request(p, t0 + Duration::from_millis(150)));
    }
}
