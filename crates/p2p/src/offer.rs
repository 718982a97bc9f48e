//! Provider offers as the overlay carries them: opaque signed bytes.
//!
//! The offer's format, signature and prices belong to the market (`agora-market`'s `offer`
//! module); this crate does not parse them. It learns only what it routes and expires offers by,
//! an [`OfferHeader`], from the [`OfferValidator`] its owner puts in the config, and it asks the
//! owner's [`OfferSigner`] for fresh bytes whenever it re-publishes. Bytes that the validator
//! refuses, that are too long, that a third party forwards as its own, or whose validity window
//! is wrong are rejected on gossip and their sender is scored down.

use std::fmt;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};

use crate::identity::peer_id_from_account_pubkey;

/// Longest offer accepted from gossip (the market's own bound is below it).
pub const MAX_OFFER_BYTES: usize = 8 * 1024;
/// Most addresses handed to the signer for one offer.
pub const MAX_OFFER_ADDRS: usize = 8;

/// A model identifier: the sha256 of the model file (GGUF/safetensors), as published on chain.
pub type ModelId = [u8; 32];

/// What the overlay reads from a valid offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferHeader {
    /// The provider's 32-byte ed25519 account public key (its peer id derives from it).
    pub provider: [u8; 32],
    /// Monotonic sequence number; a higher one replaces a lower one.
    pub seq: u64,
    /// When the provider signed it (unix ms).
    pub issued_at_ms: u64,
    /// After this instant (unix ms) the offer is dead and must be dropped.
    pub expires_at_ms: u64,
    /// Models served.
    pub models: Vec<ModelId>,
}

/// A validated offer: its header and the bytes exactly as they travelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipedOffer {
    pub header: OfferHeader,
    pub bytes: Vec<u8>,
}

/// Decodes and checks offer bytes (format and signature), returning the header; the error is a
/// reason for the logs. Supplied by whoever owns the format.
#[derive(Clone)]
pub struct OfferValidator(Arc<CheckFn>);

/// Decodes and checks an offer's bytes; the error says why they were refused.
type CheckFn = dyn Fn(&[u8]) -> Result<OfferHeader, String> + Send + Sync;

impl OfferValidator {
    pub fn new(f: impl Fn(&[u8]) -> Result<OfferHeader, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Bounds, validator and provider key: a [`GossipedOffer`] or why not.
    pub fn check(&self, bytes: &[u8]) -> Result<GossipedOffer, OfferError> {
        if bytes.len() > MAX_OFFER_BYTES {
            return Err(OfferError::Malformed {
                reason: format!("{} bytes; at most {MAX_OFFER_BYTES}", bytes.len()),
            });
        }
        let header = (self.0)(bytes).map_err(|reason| OfferError::Malformed { reason })?;
        if peer_id_from_account_pubkey(header.provider).is_none() {
            return Err(OfferError::BadKey);
        }
        Ok(GossipedOffer {
            header,
            bytes: bytes.to_vec(),
        })
    }
}

impl fmt::Debug for OfferValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OfferValidator")
    }
}

impl PartialEq for OfferValidator {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the node fixes in each offer it publishes; the signer adds the rest and signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferStamp {
    pub seq: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// Where we may be reached (external and relay-circuit addresses).
    pub addrs: Vec<Multiaddr>,
}

/// Builds and signs the bytes of our offer for a stamp (called at every re-publication, so the
/// offer carries the provider's load at that moment).
#[derive(Clone)]
pub struct OfferSigner(Arc<SignFn>);

/// Builds and signs an offer's bytes for one stamp.
type SignFn = dyn Fn(&OfferStamp) -> Result<Vec<u8>, String> + Send + Sync;

impl OfferSigner {
    pub fn new(f: impl Fn(&OfferStamp) -> Result<Vec<u8>, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn sign(&self, stamp: &OfferStamp) -> Result<Vec<u8>, String> {
        (self.0)(stamp)
    }
}

impl fmt::Debug for OfferSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OfferSigner")
    }
}

/// Why a received offer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// No validator is configured: this node does not read offers.
    #[error("this node reads no offers")]
    NoValidator,
    /// Too long, or refused by the validator (format, bounds, signature).
    #[error("malformed offer: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The provider key is not a valid ed25519 point.
    #[error("offer provider key is invalid")]
    BadKey,
    /// The offer is already expired.
    #[error("offer expired at {expires_at_ms} (now {now_ms})")]
    Expired {
        /// Its expiry.
        expires_at_ms: u64,
        /// Our clock.
        now_ms: u64,
    },
    /// Issued too far in the future, or valid for longer than the network allows.
    #[error("offer validity window is not acceptable")]
    BadWindow,
}

impl OfferHeader {
    /// The provider's peer id.
    pub fn provider_peer(&self) -> Option<PeerId> {
        peer_id_from_account_pubkey(self.provider)
    }

    /// Whether the offer lists `model`.
    pub fn serves(&self, model: &ModelId) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// Checks the validity window against our clock: not expired, not issued more than
    /// `max_skew_ms` in the future, and valid for at most `max_ttl_ms`.
    pub fn check_time(
        &self,
        now_ms: u64,
        max_skew_ms: u64,
        max_ttl_ms: u64,
    ) -> Result<(), OfferError> {
        if self.expires_at_ms <= now_ms {
            return Err(OfferError::Expired {
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        if self.issued_at_ms > now_ms.saturating_add(max_skew_ms)
            || self.expires_at_ms < self.issued_at_ms
            || self.expires_at_ms - self.issued_at_ms > max_ttl_ms
        {
            return Err(OfferError::BadWindow);
        }
        Ok(())
    }
}

/// Milliseconds since the unix epoch by the local clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    fn header(seed: u8) -> OfferHeader {
        let key = keypair_from_seed([seed; 32]).unwrap();
        OfferHeader {
            provider: key.public().try_into_ed25519().unwrap().to_bytes(),
            seq: 3,
            issued_at_ms: 1_000,
            expires_at_ms: 61_000,
            models: vec![[1u8; 32], [2u8; 32]],
        }
    }

    #[test]
    fn time_window_is_enforced() {
        let s = header(9);
        assert!(s.check_time(30_000, 5_000, 600_000).is_ok());
        assert!(matches!(
            s.check_time(61_000, 5_000, 600_000),
            Err(OfferError::Expired { .. })
        ));
        // Issued in the future beyond the skew.
        assert_eq!(s.check_time(0, 500, 600_000), Err(OfferError::BadWindow));
        // Valid for longer than allowed.
        assert_eq!(
            s.check_time(30_000, 5_000, 10_000),
            Err(OfferError::BadWindow)
        );
    }

    #[test]
    fn the_validator_decides_and_the_overlay_bounds() {
        let v = OfferValidator::new(|b: &[u8]| {
            if b == b"good" {
                Ok(header(9))
            } else {
                Err("not good".into())
            }
        });
        let ok = v.check(b"good").unwrap();
        assert_eq!(ok.bytes, b"good");
        assert!(ok.header.serves(&[2u8; 32]));
        assert!(!ok.header.serves(&[3u8; 32]));
        let key = keypair_from_seed([9u8; 32]).unwrap();
        assert_eq!(ok.header.provider_peer(), Some(key.public().to_peer_id()));
        assert!(matches!(v.check(b"bad"), Err(OfferError::Malformed { .. })));
        // Too long is refused before the validator runs.
        let never = OfferValidator::new(|_: &[u8]| -> Result<OfferHeader, String> {
            panic!("validator called on oversized bytes")
        });
        assert!(never.check(&vec![0; MAX_OFFER_BYTES + 1]).is_err());
    }
}
