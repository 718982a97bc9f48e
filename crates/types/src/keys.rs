//! ed25519 keys, addresses and signatures with domain separation.
//!
//! An account's address *is* its ed25519 public key, written for people as bech32m with the
//! human-readable part `agora` (`agora1...`, with a checksum). The same key is the node's libp2p
//! identity, so a peer id maps to an on-chain account without a lookup.
//!
//! Verification follows ZIP-215 (`ed25519-zebra`), under which batch and single verification
//! always agree: a block cannot be valid for a node that batches and invalid for one that does not.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use bech32::{Bech32m, Hrp};
use std::fmt;
use zeroize::Zeroize;

/// The human-readable prefix of addresses.
pub const ADDRESS_HRP: &str = "agora";

/// What a signature is for. The tag is signed together with the message, so a signature made for
/// one purpose is never valid for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignDomain {
    Transaction,
    Voucher,
    Claim,
    Receipt,
    Offer,
    /// An auditor's verdict on a provider's signed receipt ([`crate::audit::AuditVerdict`]).
    Audit,
    /// An auditor's request for a job's replay from a gateway (method, path, time).
    AuditFetch,
    /// A customer's signed request for an API key at a gateway (`agora_market::keys`).
    KeyRequest,
}

impl SignDomain {
    pub fn tag(self) -> &'static [u8] {
        match self {
            SignDomain::Transaction => b"_AGORA_TX_V1",
            SignDomain::Voucher => b"_AGORA_VOUCHER_V1",
            SignDomain::Claim => b"_AGORA_CLAIM_V1",
            SignDomain::Receipt => b"_AGORA_RECEIPT_V1",
            SignDomain::Offer => b"_AGORA_OFFER_V1",
            SignDomain::Audit => b"_AGORA_AUDIT_V1",
            SignDomain::AuditFetch => b"_AGORA_AUDIT_FETCH_V1",
            SignDomain::KeyRequest => b"_AGORA_KEY_REQUEST_V1",
        }
    }

    fn payload(self, msg: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut out = Vec::with_capacity(1 + tag.len() + msg.len());
        out.push(tag.len() as u8);
        out.extend_from_slice(tag);
        out.extend_from_slice(msg);
        out
    }
}

/// A 32-byte ed25519 public key; also the account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PublicKey(pub [u8; 32]);

/// Accounts are identified by their public key.
pub type Address = PublicKey;

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 signing key (the 32-byte seed). Zeroed on drop.
pub struct SecretKey(ed25519_zebra::SigningKey);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the public key is not a valid ed25519 point")]
    BadKey,
    #[error("the signature does not verify")]
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAddressError {
    #[error("not a bech32m address: {0}")]
    Bech32(String),
    #[error("address prefix is {0:?}, expected \"agora\"")]
    WrongPrefix(String),
    #[error("address holds {0} bytes, expected 32")]
    WrongLength(usize),
}

impl SecretKey {
    pub fn generate() -> SecretKey {
        SecretKey(ed25519_zebra::SigningKey::new(rand_core::OsRng))
    }

    pub fn from_bytes(seed: [u8; 32]) -> SecretKey {
        SecretKey(ed25519_zebra::SigningKey::from(seed))
    }

    /// A deterministic key for tests and fixtures; never use for real funds.
    pub fn from_test_seed(label: &str) -> SecretKey {
        SecretKey::from_bytes(blake3::derive_key("agora test key", label.as_bytes()))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(ed25519_zebra::VerificationKeyBytes::from(&self.0).into())
    }

    pub fn sign(&self, domain: SignDomain, msg: &[u8]) -> Signature {
        Signature(self.0.sign(&domain.payload(msg)).to_bytes())
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        SecretKey::from_bytes(self.to_bytes())
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        let mut bytes = self.0.to_bytes();
        bytes.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(for {})", self.public())
    }
}

impl PublicKey {
    pub fn verify(
        &self,
        domain: SignDomain,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let vk =
            ed25519_zebra::VerificationKey::try_from(self.0).map_err(|_| SignatureError::BadKey)?;
        let sig = ed25519_zebra::Signature::from(sig.0);
        vk.verify(&sig, &domain.payload(msg))
            .map_err(|_| SignatureError::Invalid)
    }

    pub fn to_bech32(&self) -> String {
        let hrp = Hrp::parse(ADDRESS_HRP).expect("static hrp is valid");
        bech32::encode::<Bech32m>(hrp, &self.0).expect("32 bytes always encode")
    }

    pub fn from_bech32(s: &str) -> Result<PublicKey, ParseAddressError> {
        let (hrp, data) =
            bech32::decode(s).map_err(|e| ParseAddressError::Bech32(e.to_string()))?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(ParseAddressError::WrongPrefix(hrp.to_string()));
        }
        let len = data.len();
        let arr: [u8; 32] = data
            .try_into()
            .map_err(|_| ParseAddressError::WrongLength(len))?;
        Ok(PublicKey(arr))
    }

    /// A well-known address that no one holds a key for (e.g. the treasury), derived from a
    /// label. It is a hash, not a curve point one can sign for.
    pub fn derived(label: &str) -> PublicKey {
        PublicKey(blake3::derive_key(
            "agora derived account",
            label.as_bytes(),
        ))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_bech32();
        write!(f, "{}..{}", &s[..12], &s[s.len() - 6..])
    }
}

impl std::str::FromStr for PublicKey {
    type Err = ParseAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_bech32(s)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

impl Encode for PublicKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for PublicKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PublicKey(r.array()?))
    }
}

impl Encode for Signature {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Signature {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature(r.array()?))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_bech32())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_bech32(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(&s).map_err(serde::de::Error::custom)?;
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))?;
        Ok(Signature(arr))
    }
}

/// Verifies many signatures at once (about twice as fast per signature as one by one). On
/// failure it says which items are bad, by verifying each of them singly.
#[derive(Default)]
pub struct BatchVerifier {
    batch: ed25519_zebra::batch::Verifier,
    items: Vec<ed25519_zebra::batch::Item>,
}

impl BatchVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn queue(&mut self, key: &PublicKey, domain: SignDomain, msg: &[u8], sig: &Signature) {
        // An invalid key makes the whole batch fail; `verify` then finds it singly.
        let vk = ed25519_zebra::VerificationKeyBytes::from(key.0);
        let item: ed25519_zebra::batch::Item = (
            vk,
            ed25519_zebra::Signature::from(sig.0),
            &domain.payload(msg),
        )
            .into();
        self.batch.queue(item.clone());
        self.items.push(item);
    }

    /// `Ok(())` if every queued signature is valid, else the indices of the invalid ones.
    pub fn verify(self) -> Result<(), Vec<usize>> {
        if self.items.is_empty() {
            return Ok(());
        }
        if self.batch.verify(rand_core::OsRng).is_ok() {
            return Ok(());
        }
        let bad: Vec<usize> = self
            .items
            .into_iter()
            .enumerate()
            .filter(|(_, item)| item.clone().verify_single().is_err())
            .map(|(i, _)| i)
            .collect();
        if bad.is_empty() {
            // ZIP-215 guarantees batch and single agree; reaching here would be a library bug.
            Ok(())
        } else {
            Err(bad)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips_and_checksum_catches_typos() {
        let pk = SecretKey::from_test_seed("alice").public();
        let s = pk.to_string();
        assert!(s.starts_with("agora1"));
        assert_eq!(s.parse::<PublicKey>().unwrap(), pk);
        let mut typo = s.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        assert!(
            String::from_utf8(typo)
                .unwrap()
                .parse::<PublicKey>()
                .is_err()
        );
    }

    #[test]
    fn signatures_are_bound_to_their_domain() {
        let sk = SecretKey::from_test_seed("bob");
        let sig = sk.sign(SignDomain::Transaction, b"hello");
        assert!(
            sk.public()
                .verify(SignDomain::Transaction, b"hello", &sig)
                .is_ok()
        );
        assert_eq!(
            sk.public().verify(SignDomain::Voucher, b"hello", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn batch_names_the_bad_signature() {
        let mut batch = BatchVerifier::new();
        for i in 0..10u8 {
            let sk = SecretKey::from_test_seed(&format!("k{i}"));
            let msg = [i; 8];
            let sig = if i == 7 {
                sk.sign(SignDomain::Transaction, b"other")
            } else {
                sk.sign(SignDomain::Transaction, &msg)
            };
            batch.queue(&sk.public(), SignDomain::Transaction, &msg, &sig);
        }
        assert_eq!(batch.verify(), Err(vec![7]));
    }
}
