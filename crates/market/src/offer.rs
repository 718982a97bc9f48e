//! Provider offers: which models a provider serves now, at what price each, how loaded it is,
//! until when.
//!
//! An offer is signed by the provider's account key (which is also its overlay identity) under
//! [`SignDomain::Offer`] over its canonical encoding (the `agora-types` codec), so anyone may
//! forward it (gossip, caches) and every reader can still check it against the provider. The
//! overlay carries offers as opaque bytes: it learns the few fields it routes by (provider,
//! sequence, validity window, models) from [`SignedOffer::decode`], through the validator the
//! provider and gateway hand it. Decoding is bounded: the whole offer by [`MAX_OFFER_BYTES`],
//! every list by its own maximum, trailing bytes refused.
//!
//! ```text
//! provider | seq u64 | issued_ms u64 | expires_ms u64 | load (active u32, slots u32) |
//! models: [model hash, input/M u128, output/M u128] * n | addrs: [multiaddr bytes] * n | sig
//! ```

use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::{Hash, PublicKey, SecretKey, SignDomain, Signature};

use crate::protocol::Price;
use agora_p2p::{OfferHeader, OfferValidator};

/// Most models one offer may list.
pub const MAX_OFFER_MODELS: usize = 32;
/// Most addresses one offer may list.
pub const MAX_OFFER_ADDRS: usize = 8;
/// Longest encoded multiaddr accepted in an offer.
pub const MAX_ADDR_BYTES: usize = 256;
/// Longest encoded signed offer (also the overlay's size cap for one offer).
pub const MAX_OFFER_BYTES: usize = 32
    + 8 * 3
    + 4 * 2
    + 4
    + MAX_OFFER_MODELS * (32 + 16 * 2)
    + 4
    + MAX_OFFER_ADDRS * (4 + MAX_ADDR_BYTES)
    + 64;

/// One model an offer lists, at the provider's current price for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOffer {
    /// sha256 of the weights, as registered on the ledger.
    pub model: Hash,
    pub price: Price,
}

/// How busy the provider is: requests running against the requests it runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub active: u32,
    pub slots: u32,
}

impl Load {
    /// Load in permille (0 idle, 1000 saturated or beyond); a provider with no slots is saturated.
    pub fn permille(&self) -> u16 {
        if self.slots == 0 {
            return 1000;
        }
        let p = u64::from(self.active) * 1000 / u64::from(self.slots);
        p.min(1000) as u16
    }

    /// Slots not in use.
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.active)
    }
}

/// The signed content of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider's account key (its overlay peer id derives from it).
    pub provider: PublicKey,
    /// Monotonic sequence number; a higher one replaces a lower one.
    pub seq: u64,
    /// When the provider signed it (unix ms).
    pub issued_at_ms: u64,
    /// After this instant (unix ms) the offer is dead and must be dropped.
    pub expires_at_ms: u64,
    pub load: Load,
    /// Models served now, each at its own price.
    pub models: Vec<ModelOffer>,
    /// Encoded multiaddrs the provider may be reached at (hints; may include relay circuits).
    pub addrs: Vec<Vec<u8>>,
}

/// An offer with the provider's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOffer {
    pub offer: Offer,
    pub signature: Signature,
}

/// Failure to sign an offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignOfferError {
    /// The key does not match `offer.provider`.
    #[error("offer provider does not match the signing key")]
    WrongKey,
    /// Too many models or addresses, or an address too long.
    #[error("offer too large: {what}")]
    TooLarge { what: &'static str },
}

/// Why received offer bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("offer of {len} bytes exceeds {MAX_OFFER_BYTES}")]
    TooLong { len: usize },
    #[error("malformed offer: {0}")]
    Malformed(#[from] DecodeError),
    #[error("offer signature does not verify")]
    BadSignature,
}

impl Offer {
    /// Whether the offer lists `model`.
    pub fn serves(&self, model: &Hash) -> bool {
        self.models.iter().any(|m| m.model == *model)
    }

    /// The offered price of `model`.
    pub fn price_of(&self, model: &Hash) -> Option<Price> {
        self.models
            .iter()
            .find(|m| m.model == *model)
            .map(|m| m.price)
    }

    fn check_bounds(&self) -> Result<(), SignOfferError> {
        if self.models.len() > MAX_OFFER_MODELS {
            return Err(SignOfferError::TooLarge { what: "models" });
        }
        if self.addrs.len() > MAX_OFFER_ADDRS {
            return Err(SignOfferError::TooLarge { what: "addrs" });
        }
        if self.addrs.iter().any(|a| a.len() > MAX_ADDR_BYTES) {
            return Err(SignOfferError::TooLarge { what: "addr" });
        }
        Ok(())
    }

    /// Signs the offer with the provider's key.
    pub fn sign(self, key: &SecretKey) -> Result<SignedOffer, SignOfferError> {
        if key.public() != self.provider {
            return Err(SignOfferError::WrongKey);
        }
        self.check_bounds()?;
        let signature = key.sign(SignDomain::Offer, &self.encode());
        Ok(SignedOffer {
            offer: self,
            signature,
        })
    }
}

impl SignedOffer {
    /// Decodes untrusted bytes (bounded) and checks the signature against the offer's own
    /// provider. Time is the reader's to check: the overlay drops expired offers itself.
    pub fn decode(bytes: &[u8]) -> Result<SignedOffer, OfferError> {
        if bytes.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLong { len: bytes.len() });
        }
        let signed = <SignedOffer as Decode>::decode(bytes)?;
        signed
            .offer
            .provider
            .verify(SignDomain::Offer, &signed.offer.encode(), &signed.signature)
            .map_err(|_| OfferError::BadSignature)?;
        Ok(signed)
    }

    /// The bytes to gossip.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
}

// ---- canonical encoding -------------------------------------------------------------------

impl Encode for ModelOffer {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.model.encode_to(out);
        self.price.encode_to(out);
    }
}

impl Decode for ModelOffer {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelOffer {
            model: Hash::decode_from(r)?,
            price: Price::decode_from(r)?,
        })
    }
}

impl Encode for Offer {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.provider.encode_to(out);
        out.put_u64(self.seq);
        out.put_u64(self.issued_at_ms);
        out.put_u64(self.expires_at_ms);
        out.put_u32(self.load.active);
        out.put_u32(self.load.slots);
        out.put_vec(&self.models);
        out.put_len(self.addrs.len());
        for a in &self.addrs {
            out.put_bytes(a);
        }
    }
}

impl Decode for Offer {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let provider = PublicKey::decode_from(r)?;
        let seq = r.u64()?;
        let issued_at_ms = r.u64()?;
        let expires_at_ms = r.u64()?;
        let load = Load {
            active: r.u32()?,
            slots: r.u32()?,
        };
        let models = r.vec("offer models", MAX_OFFER_MODELS, 64)?;
        let n = r.len("offer addrs", MAX_OFFER_ADDRS, 4)?;
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            addrs.push(r.bytes("offer addr", MAX_ADDR_BYTES)?);
        }
        Ok(Offer {
            provider,
            seq,
            issued_at_ms,
            expires_at_ms,
            load,
            models,
            addrs,
        })
    }
}

impl Encode for SignedOffer {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.offer.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedOffer {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedOffer {
            offer: Offer::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// How the overlay reads gossiped offers: this module's decoder and signature check, reduced to
/// the header the overlay routes and times by (agora-p2p carries offers as opaque bytes).
pub fn offer_validator() -> OfferValidator {
    OfferValidator::new(|bytes| {
        let o = SignedOffer::decode(bytes).map_err(|e| e.to_string())?.offer;
        Ok(OfferHeader {
            provider: o.provider.0,
            seq: o.seq,
            issued_at_ms: o.issued_at_ms,
            expires_at_ms: o.expires_at_ms,
            models: o.models.iter().map(|m| m.model.0).collect(),
        })
    })
}

#[cfg(test)]
mod tests;
