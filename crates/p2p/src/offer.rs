//! Provider offers: what a provider serves, at what price, how loaded it is, until when.
//!
//! An offer is signed by the provider's account key (which is also its libp2p key) over a
//! domain-separated, fixed-layout binary encoding, so it can be forwarded by anyone (gossip,
//! RPC, caches) and still be checked against the provider's peer id. Decoding is bounded: every
//! variable-length field has a small maximum and trailing bytes are rejected.
//!
//! ```text
//! "AGOF" | v=1 | provider pubkey[32] | seq u64 | issued_ms u64 | expires_ms u64 |
//! price_per_mtok u128 | load_permille u16 | free_slots u32 |
//! n_models u8 | model sha256[32] * n | n_addrs u8 | (len u16 | multiaddr bytes) * n | sig[64]
//! ```

use libp2p::identity::{Keypair, ed25519};
use libp2p::{Multiaddr, PeerId};

use crate::identity::peer_id_from_account_pubkey;

/// Domain separation tag prepended to the signed bytes.
pub const OFFER_DOMAIN: &[u8] = b"agora/p2p/offer/v1";
/// Most models one offer may list.
pub const MAX_OFFER_MODELS: usize = 32;
/// Most addresses one offer may list.
pub const MAX_OFFER_ADDRS: usize = 8;
/// Longest encoded multiaddr accepted in an offer.
pub const MAX_ADDR_BYTES: usize = 256;
/// Longest encoded offer (a bound, used as the gossip size cap for the offers topic).
pub const MAX_OFFER_BYTES: usize = 4
    + 1
    + 32
    + 8 * 3
    + 16
    + 2
    + 4
    + 1
    + 32 * MAX_OFFER_MODELS
    + 1
    + MAX_OFFER_ADDRS * (2 + MAX_ADDR_BYTES)
    + 64;

const MAGIC: &[u8; 4] = b"AGOF";
const VERSION: u8 = 1;

/// A model identifier: the sha256 of the model file (GGUF/safetensors), as published on chain.
pub type ModelId = [u8; 32];

/// The unsigned content of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider's 32-byte ed25519 account public key.
    pub provider: [u8; 32],
    /// Monotonic sequence number; a higher one replaces a lower one.
    pub seq: u64,
    /// When the provider signed it (unix ms).
    pub issued_at_ms: u64,
    /// After this instant (unix ms) the offer is dead and must be dropped.
    pub expires_at_ms: u64,
    /// Price in base units per million tokens.
    pub price_per_mtok: u128,
    /// Current load in permille (0 = idle, 1000 = saturated).
    pub load_permille: u16,
    /// Free concurrent request slots.
    pub free_slots: u32,
    /// Models served (sha256 of the weights).
    pub models: Vec<ModelId>,
    /// Addresses the provider can be reached at (may include relay circuit addresses).
    pub addrs: Vec<Multiaddr>,
}

/// An offer with the provider's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOffer {
    /// The content.
    pub offer: Offer,
    /// ed25519 signature over `OFFER_DOMAIN || body`.
    pub signature: [u8; 64],
}

/// Failure to sign an offer.
#[derive(Debug, thiserror::Error)]
pub enum SignOfferError {
    /// The key is not an ed25519 key.
    #[error("node key is not ed25519")]
    NotEd25519,
    /// The key does not match `offer.provider`.
    #[error("offer provider does not match the signing key")]
    WrongKey,
    /// Too many models or addresses, or an address too long.
    #[error("offer too large: {what}")]
    TooLarge {
        /// Which field.
        what: &'static str,
    },
}

/// Why a received offer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Bytes do not decode (wrong magic, truncated, trailing garbage, bounds exceeded).
    #[error("malformed offer: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The provider key is not a valid ed25519 point.
    #[error("offer provider key is invalid")]
    BadKey,
    /// The signature does not verify.
    #[error("offer signature does not verify")]
    BadSignature,
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

impl Offer {
    fn encode_body(&self) -> Result<Vec<u8>, SignOfferError> {
        if self.models.len() > MAX_OFFER_MODELS {
            return Err(SignOfferError::TooLarge { what: "models" });
        }
        if self.addrs.len() > MAX_OFFER_ADDRS {
            return Err(SignOfferError::TooLarge { what: "addrs" });
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.provider);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.price_per_mtok.to_be_bytes());
        out.extend_from_slice(&self.load_permille.to_be_bytes());
        out.extend_from_slice(&self.free_slots.to_be_bytes());
        out.push(self.models.len() as u8);
        for m in &self.models {
            out.extend_from_slice(m);
        }
        out.push(self.addrs.len() as u8);
        for a in &self.addrs {
            let b = a.to_vec();
            if b.len() > MAX_ADDR_BYTES {
                return Err(SignOfferError::TooLarge { what: "addr" });
            }
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Signs the offer with the provider's key.
    pub fn sign(self, key: &Keypair) -> Result<SignedOffer, SignOfferError> {
        let ed = key
            .clone()
            .try_into_ed25519()
            .map_err(|_| SignOfferError::NotEd25519)?;
        if ed.public().to_bytes() != self.provider {
            return Err(SignOfferError::WrongKey);
        }
        let body = self.encode_body()?;
        let sig = ed.sign(&signing_bytes(&body));
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&sig);
        Ok(SignedOffer {
            offer: self,
            signature,
        })
    }

    /// The provider's peer id.
    pub fn provider_peer(&self) -> Option<PeerId> {
        peer_id_from_account_pubkey(self.provider)
    }

    /// Whether the offer lists `model`.
    pub fn serves(&self, model: &ModelId) -> bool {
        self.models.iter().any(|m| m == model)
    }
}

fn signing_bytes(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(OFFER_DOMAIN.len() + body.len());
    msg.extend_from_slice(OFFER_DOMAIN);
    msg.extend_from_slice(body);
    msg
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OfferError> {
        if self.buf.len() < n {
            return Err(OfferError::Malformed {
                reason: "truncated",
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], OfferError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, OfferError> {
        Ok(self.take(1)?[0])
    }
}

impl SignedOffer {
    /// Wire encoding (body followed by the signature).
    pub fn encode(&self) -> Vec<u8> {
        // A SignedOffer can only be built by `sign` or `decode`, both of which bound the fields.
        let mut out = self.offer.encode_body().unwrap_or_default();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes and checks the signature; does not check time (see [`SignedOffer::check_time`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, OfferError> {
        if bytes.len() > MAX_OFFER_BYTES {
            return Err(OfferError::Malformed { reason: "too long" });
        }
        if bytes.len() < 64 {
            return Err(OfferError::Malformed {
                reason: "truncated",
            });
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut r = Reader { buf: body };
        if r.take(4)? != MAGIC {
            return Err(OfferError::Malformed { reason: "magic" });
        }
        if r.u8()? != VERSION {
            return Err(OfferError::Malformed { reason: "version" });
        }
        let provider = r.array::<32>()?;
        let seq = u64::from_be_bytes(r.array()?);
        let issued_at_ms = u64::from_be_bytes(r.array()?);
        let expires_at_ms = u64::from_be_bytes(r.array()?);
        let price_per_mtok = u128::from_be_bytes(r.array()?);
        let load_permille = u16::from_be_bytes(r.array()?);
        let free_slots = u32::from_be_bytes(r.array()?);
        let n_models = r.u8()? as usize;
        if n_models > MAX_OFFER_MODELS {
            return Err(OfferError::Malformed {
                reason: "too many models",
            });
        }
        let mut models = Vec::with_capacity(n_models);
        for _ in 0..n_models {
            models.push(r.array::<32>()?);
        }
        let n_addrs = r.u8()? as usize;
        if n_addrs > MAX_OFFER_ADDRS {
            return Err(OfferError::Malformed {
                reason: "too many addrs",
            });
        }
        let mut addrs = Vec::with_capacity(n_addrs);
        for _ in 0..n_addrs {
            let len = u16::from_be_bytes(r.array()?) as usize;
            if len > MAX_ADDR_BYTES {
                return Err(OfferError::Malformed {
                    reason: "addr too long",
                });
            }
            let a =
                Multiaddr::try_from(r.take(len)?.to_vec()).map_err(|_| OfferError::Malformed {
                    reason: "bad multiaddr",
                })?;
            addrs.push(a);
        }
        if !r.buf.is_empty() {
            return Err(OfferError::Malformed {
                reason: "trailing bytes",
            });
        }
        let pk = ed25519::PublicKey::try_from_bytes(&provider).map_err(|_| OfferError::BadKey)?;
        if !pk.verify(&signing_bytes(body), sig) {
            return Err(OfferError::BadSignature);
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        Ok(SignedOffer {
            offer: Offer {
                provider,
                seq,
                issued_at_ms,
                expires_at_ms,
                price_per_mtok,
                load_permille,
                free_slots,
                models,
                addrs,
            },
            signature,
        })
    }

    /// Checks the validity window against our clock: not expired, not issued more than
    /// `max_skew_ms` in the future, and valid for at most `max_ttl_ms`.
    pub fn check_time(
        &self,
        now_ms: u64,
        max_skew_ms: u64,
        max_ttl_ms: u64,
    ) -> Result<(), OfferError> {
        let o = &self.offer;
        if o.expires_at_ms <= now_ms {
            return Err(OfferError::Expired {
                expires_at_ms: o.expires_at_ms,
                now_ms,
            });
        }
        if o.issued_at_ms > now_ms.saturating_add(max_skew_ms)
            || o.expires_at_ms < o.issued_at_ms
            || o.expires_at_ms - o.issued_at_ms > max_ttl_ms
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

    fn sample(key: &Keypair) -> Offer {
        Offer {
            provider: key.public().try_into_ed25519().unwrap().to_bytes(),
            seq: 3,
            issued_at_ms: 1_000,
            expires_at_ms: 61_000,
            price_per_mtok: 1_500_000,
            load_permille: 250,
            free_slots: 4,
            models: vec![[1u8; 32], [2u8; 32]],
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
        }
    }

    #[test]
    fn sign_encode_decode_round_trip() {
        let key = keypair_from_seed([9u8; 32]).unwrap();
        let signed = sample(&key).sign(&key).unwrap();
        let bytes = signed.encode();
        assert!(bytes.len() <= MAX_OFFER_BYTES);
        let back = SignedOffer::decode(&bytes).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.offer.provider_peer(), Some(key.public().to_peer_id()));
        assert!(back.offer.serves(&[2u8; 32]));
        assert!(!back.offer.serves(&[3u8; 32]));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let key = keypair_from_seed([9u8; 32]).unwrap();
        let mut bytes = sample(&key).sign(&key).unwrap().encode();
        // Flip a bit in the price.
        bytes[4 + 1 + 32 + 24 + 15] ^= 1;
        assert_eq!(SignedOffer::decode(&bytes), Err(OfferError::BadSignature));
    }

    #[test]
    fn signing_with_another_key_is_refused() {
        let key = keypair_from_seed([9u8; 32]).unwrap();
        let other = keypair_from_seed([8u8; 32]).unwrap();
        assert!(matches!(
            sample(&key).sign(&other),
            Err(SignOfferError::WrongKey)
        ));
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let key = keypair_from_seed([9u8; 32]).unwrap();
        let bytes = sample(&key).sign(&key).unwrap().encode();
        for cut in 0..bytes.len() {
            assert!(SignedOffer::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(SignedOffer::decode(&extra).is_err());
        // Deterministic pseudo-random garbage (xorshift).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 63, 64, 65, 200, 2_000, MAX_OFFER_BYTES + 1] {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(SignedOffer::decode(&buf).is_err());
        }
    }

    #[test]
    fn time_window_is_enforced() {
        let key = keypair_from_seed([9u8; 32]).unwrap();
        let s = sample(&key).sign(&key).unwrap();
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
}
