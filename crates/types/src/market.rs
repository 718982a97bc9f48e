//! Markets and validators' weights over their providers: what the incentive transactions carry.
//!
//! ```text
//!  CreateMarket{name, models} ──► market id = H(name)       (one market per model)
//!  JoinMarket{market}        ──► provider becomes a member (a slot; the lowest scorer past its
//!                                immunity is replaced when the market is full)
//!  CommitWeights{market, c}  ──► c = weights_commitment(validator, reveal)   (epoch e)
//!  RevealWeights(reveal)     ──► checked against c, counted from epoch e + 1 on
//! ```
//! A validator's weights are hidden until the epoch after it committed them, so another
//! validator cannot copy this epoch's weights; the commitment binds the validator's own address,
//! so a copier cannot replay someone else's commitment either.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash, HashDomain};
use crate::keys::Address;
use serde::{Deserialize, Serialize};

/// Longest market name, in bytes (`chat/smollm2`, `embeddings/minilm`).
pub const MAX_MARKET_NAME: usize = 64;
/// Most models one market may cover.
pub const MAX_MODELS_PER_MARKET: usize = 16;
/// Most entries in one validator's weights, and so the most members a market can have (a
/// reveal of this many, 34 bytes each, stays well inside a transaction's 16 KiB).
pub const MAX_WEIGHTS: usize = 256;

/// What `CreateMarket` asks for: a name (lowercase ASCII letters, digits, `/`, `-`, `_`, `.`)
/// and the registered models whose paid usage counts for the market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSpec {
    pub name: String,
    pub models: Vec<Hash>,
}

impl MarketSpec {
    /// Whether the name uses only the allowed characters and is 1..=64 bytes.
    pub fn name_is_valid(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= MAX_MARKET_NAME
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-_.".contains(&b))
    }
}

/// A market's id: the hash of its name, so a name can be taken once.
pub fn market_id(name: &str) -> Hash {
    Hash::of(HashDomain::MarketId, name.as_bytes())
}

/// One weight a validator gives one provider (any positive scale; rows are normalized).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderWeight {
    pub provider: Address,
    pub weight: u16,
}

/// What `RevealWeights` carries: the weights a validator committed to, and the salt that kept
/// the commitment from being guessed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsReveal {
    pub market: Hash,
    pub weights: Vec<ProviderWeight>,
    pub salt: Hash,
}

/// A salt for a weights commitment, from the operating system's random source: without it the
/// few plausible weight vectors could be hashed and matched before the reveal.
pub fn fresh_salt() -> Hash {
    use rand_core::RngCore;
    let mut salt = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut salt);
    Hash(salt)
}

/// The commitment `CommitWeights` carries: binds the validator, the market, the weights in
/// their canonical encoding and the salt.
pub fn weights_commitment(validator: &Address, reveal: &WeightsReveal) -> Hash {
    let mut weights = Vec::new();
    weights.put_vec(&reveal.weights);
    Hash::of_parts(
        HashDomain::WeightsCommitment,
        &[&validator.0, &reveal.market.0, &weights, &reveal.salt.0],
    )
}

impl Encode for MarketSpec {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.name.as_bytes());
        out.put_vec(&self.models);
    }
}

impl Decode for MarketSpec {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MarketSpec {
            name: r.string("market name", MAX_MARKET_NAME)?,
            models: r.vec("market models", MAX_MODELS_PER_MARKET, 32)?,
        })
    }
}

impl Encode for ProviderWeight {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.provider.encode_to(out);
        out.put_u16(self.weight);
    }
}

impl Decode for ProviderWeight {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProviderWeight {
            provider: Decode::decode_from(r)?,
            weight: r.u16()?,
        })
    }
}

impl Encode for WeightsReveal {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.market.encode_to(out);
        out.put_vec(&self.weights);
        self.salt.encode_to(out);
    }
}

impl Decode for WeightsReveal {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(WeightsReveal {
            market: Decode::decode_from(r)?,
            weights: r.vec("weights", MAX_WEIGHTS, 34)?,
            salt: Decode::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reveal() -> WeightsReveal {
        WeightsReveal {
            market: market_id("chat/smollm2"),
            weights: vec![
                ProviderWeight {
                    provider: crate::keys::PublicKey([1; 32]),
                    weight: 65_535,
                },
                ProviderWeight {
                    provider: crate::keys::PublicKey([2; 32]),
                    weight: 7,
                },
            ],
            salt: Hash([9; 32]),
        }
    }

    #[test]
    fn a_commitment_binds_validator_weights_and_salt() {
        let v = crate::keys::PublicKey([5; 32]);
        let c = weights_commitment(&v, &reveal());
        assert_eq!(c, weights_commitment(&v, &reveal()));
        assert_ne!(
            c,
            weights_commitment(&crate::keys::PublicKey([6; 32]), &reveal()),
            "another validator"
        );
        let mut other = reveal();
        other.weights[1].weight = 8;
        assert_ne!(c, weights_commitment(&v, &other), "other weights");
        let mut other = reveal();
        other.salt = Hash([8; 32]);
        assert_ne!(c, weights_commitment(&v, &other), "other salt");
    }

    #[test]
    fn reveals_and_specs_round_trip_and_refuse_oversized_input() {
        let r = reveal();
        assert_eq!(WeightsReveal::decode(&r.encode()).expect("decodes"), r);
        let spec = MarketSpec {
            name: "chat/smollm2".into(),
            models: vec![Hash([3; 32])],
        };
        assert_eq!(MarketSpec::decode(&spec.encode()).expect("decodes"), spec);
        let long = MarketSpec {
            name: "x".repeat(MAX_MARKET_NAME + 1),
            models: vec![],
        };
        assert!(MarketSpec::decode(&long.encode()).is_err());
        // A length prefix claiming more weights than the bytes could hold is refused before
        // anything is allocated.
        let mut bytes = Vec::new();
        Hash::ZERO.encode_to(&mut bytes);
        bytes.put_u32(1_000);
        assert!(WeightsReveal::decode(&bytes).is_err());
    }

    #[test]
    fn fresh_salts_differ() {
        assert_ne!(fresh_salt(), fresh_salt());
    }

    #[test]
    fn market_names_are_a_small_alphabet() {
        let ok = |name: &str| {
            MarketSpec {
                name: name.into(),
                models: vec![],
            }
            .name_is_valid()
        };
        assert!(ok("chat/smollm2"));
        assert!(ok("embeddings/all-minilm-l6-v2"));
        assert!(!ok(""));
        assert!(!ok("Chat"));
        assert!(!ok("chat smollm2"));
        assert!(!ok(&"a".repeat(65)));
    }
}
