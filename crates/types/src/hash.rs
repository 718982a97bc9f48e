//! BLAKE3 hashes with a distinct derive-key context per purpose, so a hash of one kind of value can
//! never be mistaken for a hash of another.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use std::fmt;

/// A 32-byte digest (BLAKE3 for our own structures; SHA-256 where an outside format demands it,
/// e.g. a GGUF file's identity).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// Hashing purposes. Each is a BLAKE3 derive-key context; changing one changes consensus bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashDomain {
    TxId,
    BlockId,
    TxRoot,
    ReceiptsRoot,
    StateLeaf,
    StateNode,
    ChannelId,
    Evidence,
    Request,
    /// The id of a provider-signed receipt ([`crate::audit::receipt_id`]).
    ReceiptId,
    /// A gateway's commitment to a batch of receipt ids (`agora_ledger::audit::receipts_root`).
    ReceiptCommitment,
    /// The audit beacon and what is drawn from it (which receipts, which auditors;
    /// `agora_ledger::audit`).
    AuditBeacon,
    /// A proof of inference a receipt commits to (`agora_verify::toploc::Proof::hash`).
    Proof,
    /// An auditor's report, as its verdict's `detail` (`agora_audit`).
    AuditReport,
    /// A market's id, from its name (`market::market_id`).
    MarketId,
    /// A validator's commitment to its weights (`market::weights_commitment`).
    WeightsCommitment,
}

impl HashDomain {
    fn context(self) -> &'static str {
        match self {
            HashDomain::TxId => "agora 2026-11 tx id",
            HashDomain::BlockId => "agora 2026-11 block id",
            HashDomain::TxRoot => "agora 2026-11 tx root",
            HashDomain::ReceiptsRoot => "agora 2026-11 receipts root",
            HashDomain::StateLeaf => "agora 2026-11 state leaf",
            HashDomain::StateNode => "agora 2026-11 state node",
            HashDomain::ChannelId => "agora 2026-11 channel id",
            HashDomain::Evidence => "agora 2026-11 evidence id",
            HashDomain::Request => "agora 2026-11 inference request",
            HashDomain::ReceiptId => "agora 2026-12 receipt id",
            HashDomain::ReceiptCommitment => "agora 2026-12 receipt commitment",
            HashDomain::AuditBeacon => "agora 2026-12 audit beacon",
            HashDomain::Proof => "agora 2026-12 inference proof",
            HashDomain::AuditReport => "agora 2026-12 audit report",
            HashDomain::MarketId => "agora 2026-12 market id",
            HashDomain::WeightsCommitment => "agora 2026-12 weights commitment",
        }
    }
}

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(domain: HashDomain, bytes: &[u8]) -> Hash {
        Hash(blake3::derive_key(domain.context(), bytes))
    }

    /// Hashes several parts without concatenating them first; each part is length-prefixed so
    /// `("ab", "c")` and `("a", "bc")` differ.
    pub fn of_parts(domain: HashDomain, parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(domain.context());
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Hash(*h.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, ParseHashError> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        let bytes = hex::decode(s).map_err(|_| ParseHashError)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ParseHashError)?;
        Ok(Hash(arr))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters (32 bytes)")]
pub struct ParseHashError;

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for Hash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Encode for Hash {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash(r.array()?))
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A binary Merkle root over already-hashed leaves (odd nodes are carried up unchanged).
/// The empty tree's root is [`Hash::ZERO`].
pub fn merkle_root(domain: HashDomain, leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [a, b] => next.push(merkle_node(domain, a, b)),
                [a] => next.push(*a),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

pub fn merkle_node(domain: HashDomain, left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(domain.context());
    h.update(&left.0);
    h.update(&right.0);
    Hash(*h.finalize().as_bytes())
}
