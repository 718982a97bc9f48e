//! The contract between a gateway and the auditors: the batches of receipts a gateway committed
//! on the ledger, the cases an auditor replays, the verdict board re-auditors read, and how an
//! auditor proves it is one when it asks for a job's prompt.
//!
//! ```text
//!  gateway: CommitReceipts{root} on the ledger ──► GET  /v1/audit/batches/{root}  (open)
//!  auditor: selected(beacon, id)?            ──► GET  /v1/audit/cases/{receipt_id}
//!                                                 signed: x-agora-auditor, -at, -signature
//!                                                 (an active validator, within MAX_SKEW_MS)
//!  auditor: its signed verdict               ──► POST /v1/audit/verdicts
//!  re-auditors: the first verdict            ◄── GET  /v1/audit/verdicts/{receipt_id}
//! ```
//!
//! Nothing here is trusted by its reader: a batch is checked against the committed root, a case
//! against the provider-signed receipt ([`Replay::mismatch`]), a verdict by its signature and
//! the ledger's active set.

use agora_types::audit::SignedVerdict;
use agora_types::keys::{SignDomain, Signature};
use agora_types::{Hash, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

use crate::protocol::{ProofBytes, Replay, SignedReceipt};

pub mod paths {
    pub const BATCH: &str = "/v1/audit/batches/{root}";
    pub const CASE: &str = "/v1/audit/cases/{receipt_id}";
    pub const VERDICTS: &str = "/v1/audit/verdicts";
    pub const RECEIPT_VERDICTS: &str = "/v1/audit/verdicts/{receipt_id}";
}

/// Headers of a signed case request.
pub const AUDITOR_HEADER: &str = "x-agora-auditor";
pub const AT_HEADER: &str = "x-agora-at";
pub const SIGNATURE_HEADER: &str = "x-agora-signature";
/// How far a signed request's time may be from the gateway's clock (a captured request can be
/// replayed only this long).
pub const MAX_SKEW_MS: u64 = 60_000;
/// Most receipts one committed batch holds on a gateway (the ledger allows more per commitment;
/// a gateway commits at most this many at a time).
pub const MAX_BATCH: usize = 4_096;
/// Largest answer an auditor reads from a gateway.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// A provider's signed receipt, the proof of inference that came with it (the receipt's
/// `proof_hash` binds it) and what an auditor needs to replay the response: what a gateway keeps
/// of every response and hands an auditor. In JSON the receipt's fields with `proof` (hex) and
/// `replay` beside them; receipts kept before proofs existed have neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptReceipt {
    #[serde(flatten)]
    pub signed: SignedReceipt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofBytes>,
    /// The job and the delivered tokens, for an auditor (generated responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// `GET /v1/audit/batches/{root}`: the signed receipts a commitment stands for (no prompts: the
/// receipts carry hashes only). `receipts_root` of their ids is `root`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    pub root: Hash,
    pub receipts: Vec<SignedReceipt>,
}

/// `GET /v1/audit/verdicts/{receipt_id}`: the verdicts auditors posted on one receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictsView {
    pub receipt: Hash,
    pub verdicts: Vec<SignedVerdict>,
}

/// The bytes an auditor signs to ask for `path` at `at_ms` (unix milliseconds).
fn fetch_message(method: &str, path: &str, at_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(method.len() + path.len() + 10);
    m.extend_from_slice(method.as_bytes());
    m.push(b' ');
    m.extend_from_slice(path.as_bytes());
    m.push(b' ');
    m.extend_from_slice(&at_ms.to_le_bytes());
    m
}

/// The headers of a signed request: (auditor, at, signature).
pub fn sign_fetch(key: &SecretKey, method: &str, path: &str, at_ms: u64) -> [(String, String); 3] {
    let sig = key.sign(SignDomain::AuditFetch, &fetch_message(method, path, at_ms));
    [
        (AUDITOR_HEADER.into(), key.public().to_string()),
        (AT_HEADER.into(), at_ms.to_string()),
        (SIGNATURE_HEADER.into(), hex::encode(sig.0)),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchAuthError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("the request's time is {skew_ms} ms from the gateway's (at most {MAX_SKEW_MS})")]
    Skew { skew_ms: u64 },
    #[error("the signature is not the auditor's")]
    Signature,
}

/// Checks a signed request for `path` at the gateway's `now_ms`; `get` reads a header. Returns
/// the auditor (whether it is an active validator is the caller's check).
pub fn verify_fetch<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    method: &str,
    path: &str,
    now_ms: u64,
) -> Result<PublicKey, FetchAuthError> {
    let auditor: PublicKey = get(AUDITOR_HEADER)
        .and_then(|v| v.parse().ok())
        .ok_or(FetchAuthError::Header(AUDITOR_HEADER))?;
    let at: u64 = get(AT_HEADER)
        .and_then(|v| v.parse().ok())
        .ok_or(FetchAuthError::Header(AT_HEADER))?;
    let sig: [u8; 64] = get(SIGNATURE_HEADER)
        .and_then(|v| hex::decode(v).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(FetchAuthError::Header(SIGNATURE_HEADER))?;
    let skew_ms = now_ms.abs_diff(at);
    if skew_ms > MAX_SKEW_MS {
        return Err(FetchAuthError::Skew { skew_ms });
    }
    auditor
        .verify(
            SignDomain::AuditFetch,
            &fetch_message(method, path, at),
            &Signature(sig),
        )
        .map_err(|_| FetchAuthError::Signature)?;
    Ok(auditor)
}

/// `path` with `{name}` replaced by `value`.
pub fn fill(path: &str, name: &str, value: impl std::fmt::Display) -> String {
    path.replace(name, &value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(h: &'a [(String, String); 3]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_signed_fetch_verifies_only_for_its_path_method_and_time() {
        let key = SecretKey::from_test_seed("auditor");
        let path = fill(paths::CASE, "{receipt_id}", Hash([3; 32]));
        let h = sign_fetch(&key, "GET", &path, 1_000_000);
        assert_eq!(
            verify_fetch(headers(&h), "GET", &path, 1_000_500),
            Ok(key.public())
        );
        // Another receipt's path, another method, or too late: refused.
        let other = fill(paths::CASE, "{receipt_id}", Hash([4; 32]));
        assert_eq!(
            verify_fetch(headers(&h), "GET", &other, 1_000_500),
            Err(FetchAuthError::Signature)
        );
        assert_eq!(
            verify_fetch(headers(&h), "POST", &path, 1_000_500),
            Err(FetchAuthError::Signature)
        );
        assert_eq!(
            verify_fetch(headers(&h), "GET", &path, 1_000_000 + MAX_SKEW_MS + 1),
            Err(FetchAuthError::Skew {
                skew_ms: MAX_SKEW_MS + 1
            })
        );
        // Someone else's key in the auditor header: the signature is not theirs.
        let mut forged = h.clone();
        forged[0].1 = SecretKey::from_test_seed("validator").public().to_string();
        assert_eq!(
            verify_fetch(headers(&forged), "GET", &path, 1_000_500),
            Err(FetchAuthError::Signature)
        );
        let mut bad = h;
        bad[2].1 = "zz".into();
        assert_eq!(
            verify_fetch(headers(&bad), "GET", &path, 1_000_500),
            Err(FetchAuthError::Header(SIGNATURE_HEADER))
        );
    }
}
