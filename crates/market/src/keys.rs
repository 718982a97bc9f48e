//! The contract between a gateway and a customer who asks for an API key with its account's
//! signature, without the operator's help (an agent, a developer with a wallet):
//!
//! ```text
//!  customer: GET  /v1/keys                   ◄── KeyTerms {gateway's account, limits}
//!  customer: picks a random API key, signs a request carrying only its sha256
//!  customer: POST /v1/keys  SignedKeyRequest ──► IssuedKey {account, limits, deposit_to}
//!  customer: transfer AGR to the gateway's account ──► credited to the key once final
//! ```
//!
//! The key itself never travels to the gateway at issuance, only its digest (which is all the
//! gateway keeps of any key): whoever sees or submits a signed request first gets nothing they
//! can spend with, so a request in someone else's hands is not a key.
//!
//! A request is a claim, checked three ways before a key exists: the signature is the account's
//! (an address is its public key), the request names this gateway (one signed for another
//! gateway is refused there), and its time is within [`MAX_SKEW_MS`] of the gateway's clock and
//! later than the account's last accepted request (the gateway's check, in its key book), so an
//! old request cannot bring back a key the account has since replaced.
//!
//! An account holds one such key per gateway; a newer signed request replaces it (a lost or
//! leaked key is rotated with the account's signature), keeping its credit and spend.

use agora_types::keys::{SignDomain, Signature};
use agora_types::{Address, Amount, SecretKey};
use serde::{Deserialize, Serialize};

pub mod paths {
    pub const KEYS: &str = "/v1/keys";
}

/// How far a request's time may be from the gateway's clock.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Longest key name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// What a customer signs to get a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// The account whose deposits fund the key, and whose signature this is.
    pub account: Address,
    /// The gateway asked (its ledger account, from `GET /v1/keys`).
    pub gateway: Address,
    /// A label for the key (1 to 64 bytes of printable text).
    pub name: String,
    /// sha256 of the API key the customer chose ([`key_digest`]); the key stays with them.
    #[serde(with = "hex_digest")]
    pub key_sha256: [u8; 32],
    /// The most one request with this key may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request_cap: Option<Amount>,
    /// Unix time (seconds) from which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the request was signed (unix milliseconds).
    pub at_ms: u64,
}

/// A [`KeyRequest`] with its account's signature: `{"request": {...}, "signature": "<hex>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedKeyRequest {
    pub request: KeyRequest,
    pub signature: Signature,
}

/// `GET /v1/keys`: what a customer needs to ask for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTerms {
    /// The gateway's ledger account: named in requests, and where deposits go.
    pub gateway: Address,
    pub max_skew_ms: u64,
}

/// `POST /v1/keys`: the key the request's digest stands for is now good at this gateway.
/// (Fields in name order, as the gateway writes every JSON object.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub account: Address,
    /// Credit carried over from the account's key this one replaced (zero for a first key).
    pub credit: Amount,
    /// Transfers from `account` to this address are credited to the key once final.
    pub deposit_to: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request_cap: Option<Amount>,
}

/// A fresh API key, as gateways write theirs: `sk-agora-` and 48 hex digits.
pub fn new_api_key() -> String {
    format!("sk-agora-{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// The digest a gateway keeps of an API key (and a key request carries).
pub fn key_digest(api_key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(api_key.as_bytes()).into()
}

/// 32 bytes as 64 hex digits in JSON.
mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom("key_sha256 must be 64 hex digits"))?;
        Ok(out)
    }
}

/// Why a signed request was refused (before the gateway's own state is consulted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRequestError {
    #[error("name must be 1 to {MAX_NAME_BYTES} bytes without control characters")]
    Name,
    #[error("per_request_cap must be above zero")]
    Cap,
    #[error("expires_at {at} is not in the future")]
    Expired { at: u64 },
    #[error("the request is for gateway {named}, not this one ({this})")]
    WrongGateway { named: Address, this: Address },
    #[error("the request's time is {skew_ms} ms from the gateway's clock (at most {MAX_SKEW_MS})")]
    Skew { skew_ms: u64 },
    #[error("the signature is not the account's")]
    Signature,
}

impl KeyRequest {
    /// The signed bytes: every field, each length-prefixed or fixed-size, so no two requests
    /// share an encoding.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(32 * 2 + 2 + self.name.len() + 17 + 9 + 8);
        m.extend_from_slice(&self.account.0);
        m.extend_from_slice(&self.gateway.0);
        let name_len = u16::try_from(self.name.len()).unwrap_or(u16::MAX);
        m.extend_from_slice(&name_len.to_le_bytes());
        m.extend_from_slice(self.name.as_bytes());
        m.extend_from_slice(&self.key_sha256);
        match self.per_request_cap {
            Some(cap) => {
                m.push(1);
                m.extend_from_slice(&cap.0.to_le_bytes());
            }
            None => m.push(0),
        }
        match self.expires_at {
            Some(at) => {
                m.push(1);
                m.extend_from_slice(&at.to_le_bytes());
            }
            None => m.push(0),
        }
        m.extend_from_slice(&self.at_ms.to_le_bytes());
        m
    }

    /// Signed with `key`, whose address must be `account` (else the gateway refuses it).
    pub fn sign(self, key: &SecretKey) -> SignedKeyRequest {
        let signature = key.sign(SignDomain::KeyRequest, &self.message());
        SignedKeyRequest {
            request: self,
            signature,
        }
    }
}

impl SignedKeyRequest {
    /// Checks the request at gateway `this` whose clock reads `now_ms`. Whether the account's
    /// earlier requests were later is the gateway's check (it keeps them).
    pub fn check(&self, this: &Address, now_ms: u64) -> Result<(), KeyRequestError> {
        let r = &self.request;
        if r.name.is_empty()
            || r.name.len() > MAX_NAME_BYTES
            || r.name.chars().any(char::is_control)
        {
            return Err(KeyRequestError::Name);
        }
        if r.per_request_cap.is_some_and(|c| c.is_zero()) {
            return Err(KeyRequestError::Cap);
        }
        if let Some(at) = r.expires_at
            && at.saturating_mul(1000) <= now_ms
        {
            return Err(KeyRequestError::Expired { at });
        }
        if r.gateway != *this {
            return Err(KeyRequestError::WrongGateway {
                named: r.gateway,
                this: *this,
            });
        }
        let skew_ms = now_ms.abs_diff(r.at_ms);
        if skew_ms > MAX_SKEW_MS {
            return Err(KeyRequestError::Skew { skew_ms });
        }
        r.account
            .verify(SignDomain::KeyRequest, &r.message(), &self.signature)
            .map_err(|_| KeyRequestError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn request(account: &SecretKey, gateway: Address) -> KeyRequest {
        KeyRequest {
            account: account.public(),
            gateway,
            name: "scout".into(),
            key_sha256: key_digest("sk-agora-test"),
            per_request_cap: Some(Amount(1_000)),
            expires_at: Some(NOW / 1000 + 3600),
            at_ms: NOW,
        }
    }

    #[test]
    fn a_request_checks_only_as_signed_for_its_gateway_and_time() {
        let agent = SecretKey::from_test_seed("agent");
        let gw = SecretKey::from_test_seed("gateway").public();
        let signed = request(&agent, gw).sign(&agent);
        assert_eq!(signed.check(&gw, NOW + 500), Ok(()));

        // Through JSON and back, as it travels.
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedKeyRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.check(&gw, NOW), Ok(()));

        // Presented at another gateway.
        let other = SecretKey::from_test_seed("other gateway").public();
        assert!(matches!(
            signed.check(&other, NOW),
            Err(KeyRequestError::WrongGateway { .. })
        ));
        // Too old or from the future.
        assert_eq!(
            signed.check(&gw, NOW + MAX_SKEW_MS + 1),
            Err(KeyRequestError::Skew {
                skew_ms: MAX_SKEW_MS + 1
            })
        );
        // Any field changed after signing: a higher cap, no expiry, another account's name on it.
        let mut raised = signed.clone();
        raised.request.per_request_cap = Some(Amount(1_000_000));
        assert_eq!(raised.check(&gw, NOW), Err(KeyRequestError::Signature));
        let mut swapped = signed.clone();
        swapped.request.key_sha256 = key_digest("sk-agora-thief");
        assert_eq!(swapped.check(&gw, NOW), Err(KeyRequestError::Signature));
        let mut forever = signed.clone();
        forever.request.expires_at = None;
        assert_eq!(forever.check(&gw, NOW), Err(KeyRequestError::Signature));
        let victim = SecretKey::from_test_seed("victim");
        let mut stolen = signed.clone();
        stolen.request.account = victim.public();
        assert_eq!(stolen.check(&gw, NOW), Err(KeyRequestError::Signature));
        // Signed by someone else for the victim's account.
        let forged = request(&victim, gw).sign(&agent);
        assert_eq!(forged.check(&gw, NOW), Err(KeyRequestError::Signature));
    }

    #[test]
    fn bad_fields_are_refused_before_the_signature() {
        let agent = SecretKey::from_test_seed("agent");
        let gw = SecretKey::from_test_seed("gateway").public();
        let with = |f: &dyn Fn(&mut KeyRequest)| {
            let mut r = request(&agent, gw);
            f(&mut r);
            r.sign(&agent).check(&gw, NOW)
        };
        assert_eq!(with(&|r| r.name.clear()), Err(KeyRequestError::Name));
        assert_eq!(
            with(&|r| r.name = "x".repeat(65)),
            Err(KeyRequestError::Name)
        );
        assert_eq!(
            with(&|r| r.name = "a\nb".into()),
            Err(KeyRequestError::Name)
        );
        assert_eq!(
            with(&|r| r.per_request_cap = Some(Amount::ZERO)),
            Err(KeyRequestError::Cap)
        );
        assert_eq!(
            with(&|r| r.expires_at = Some(NOW / 1000)),
            Err(KeyRequestError::Expired { at: NOW / 1000 })
        );
        assert_eq!(
            with(&|r| {
                r.per_request_cap = None;
                r.expires_at = None;
            }),
            Ok(())
        );
        // Unknown fields are refused, not ignored (a client that thinks it set a limit).
        let json = serde_json::to_value(request(&agent, gw).sign(&agent)).unwrap();
        let mut extra = json.clone();
        extra["request"]["budget"] = serde_json::json!("5");
        assert!(serde_json::from_value::<SignedKeyRequest>(extra).is_err());
    }
}
