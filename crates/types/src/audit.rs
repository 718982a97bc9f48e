//! Audit verdicts: what a validator signs after re-running a provider's job, and the canonical
//! encoding of the provider-signed receipt that slashing evidence carries.
//!
//! ```text
//!  provider ── SignedReceipt ──► gateway ── CommitReceipts(root) ──► ledger (block B)
//!  auditor: selected(beacon(id(B), root), receipt_id) ──► re-run ──► SignedVerdict{failed}
//!  2+ failing verdicts from distinct active validators ──► Slash(Evidence::FailedAudit)
//! ```
//!
//! A verdict names the chain, the receipt (by [`receipt_id`]), whether the audit failed, and a
//! hash of the auditor's report (kept off-chain), and is signed under [`SignDomain::Audit`], so
//! it can be replayed neither on another chain, nor for another receipt, nor as another kind of
//! signed message.

use crate::amount::Amount;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash, HashDomain};
use crate::keys::{PublicKey, SecretKey, SignDomain, Signature, SignatureError};
use crate::price::Price;
use crate::receipt::{InferenceReceipt, MAX_ENGINE_BYTES, SignedReceipt};
use crate::tx::{ChainId, limits::MAX_CHAIN_ID};
use serde::{Deserialize, Serialize};

/// An auditor's finding on one provider-signed receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerdict {
    /// The chain whose ledger the verdict is for (a verdict means nothing on another chain).
    pub chain_id: ChainId,
    /// [`receipt_id`] of the audited signed receipt.
    pub receipt: Hash,
    /// True when the re-run did not match what the provider signed.
    pub failed: bool,
    /// Hash of the auditor's report (the statistics it measured); the report itself stays
    /// off-chain.
    pub detail: Hash,
}

/// A verdict with the auditor's signature under [`SignDomain::Audit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVerdict {
    pub auditor: PublicKey,
    pub verdict: AuditVerdict,
    pub signature: Signature,
}

impl AuditVerdict {
    pub fn sign(self, auditor: &SecretKey) -> SignedVerdict {
        let signature = auditor.sign(SignDomain::Audit, &self.encode());
        SignedVerdict {
            auditor: auditor.public(),
            verdict: self,
            signature,
        }
    }
}

impl SignedVerdict {
    /// Checks the signature against `auditor`.
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.auditor
            .verify(SignDomain::Audit, &self.verdict.encode(), &self.signature)
    }
}

/// The id of a provider-signed receipt: a hash of its canonical encoding (every receipt field in
/// declaration order, then the signature), as a transaction's id is of the signed transaction.
///
/// Only the provider can make a second valid signature over the same receipt (ed25519 under
/// ZIP-215 accepts no second encoding of `s`, and non-canonical encodings of `R` exist for a
/// handful of points only), so nobody else can give one receipt a second id.
pub fn receipt_id(receipt: &SignedReceipt) -> Hash {
    Hash::of(HashDomain::ReceiptId, &receipt.encode())
}

// ---- canonical encoding -------------------------------------------------------------------

// The fields of `InferenceReceipt` in declaration order. A field added there must be appended
// here too (the struct literal in `decode_from` stops compiling until it is).
impl Encode for InferenceReceipt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.request_id.encode_to(out);
        self.provider.encode_to(out);
        self.payer.encode_to(out);
        self.channel.encode_to(out);
        self.model.encode_to(out);
        out.put_u64(self.seed);
        self.params_hash.encode_to(out);
        self.work_hash.encode_to(out);
        self.continuation_hash.encode_to(out);
        self.prompt_hash.encode_to(out);
        out.put_bytes(self.engine.as_bytes());
        out.put_u32(self.prompt_tokens);
        out.put_u32(self.completion_tokens);
        out.put_u32(self.continuation_tokens);
        self.price.encode_to(out);
        self.charged.encode_to(out);
        self.output_hash.encode_to(out);
        out.put_u64(self.time_ms);
        out.put_bool(self.complete);
        self.proof_hash.encode_to(out);
    }
}

impl Decode for InferenceReceipt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InferenceReceipt {
            chain_id: r.string("receipt chain id", MAX_CHAIN_ID)?,
            request_id: Decode::decode_from(r)?,
            provider: Decode::decode_from(r)?,
            payer: Decode::decode_from(r)?,
            channel: Decode::decode_from(r)?,
            model: Decode::decode_from(r)?,
            seed: r.u64()?,
            params_hash: Decode::decode_from(r)?,
            work_hash: Decode::decode_from(r)?,
            continuation_hash: Decode::decode_from(r)?,
            prompt_hash: Decode::decode_from(r)?,
            engine: r.string("receipt engine", MAX_ENGINE_BYTES)?,
            prompt_tokens: r.u32()?,
            completion_tokens: r.u32()?,
            continuation_tokens: r.u32()?,
            price: Price::decode_from(r)?,
            charged: Amount::decode_from(r)?,
            output_hash: Decode::decode_from(r)?,
            time_ms: r.u64()?,
            complete: r.bool("receipt complete")?,
            proof_hash: Decode::decode_from(r)?,
        })
    }
}

impl Encode for SignedReceipt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.receipt.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedReceipt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedReceipt {
            receipt: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

impl Encode for AuditVerdict {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.receipt.encode_to(out);
        out.put_bool(self.failed);
        self.detail.encode_to(out);
    }
}

impl Decode for AuditVerdict {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AuditVerdict {
            chain_id: r.string("verdict chain id", MAX_CHAIN_ID)?,
            receipt: Decode::decode_from(r)?,
            failed: r.bool("verdict failed")?,
            detail: Decode::decode_from(r)?,
        })
    }
}

impl Encode for SignedVerdict {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.auditor.encode_to(out);
        self.verdict.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedVerdict {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedVerdict {
            auditor: Decode::decode_from(r)?,
            verdict: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// The smallest encoded [`SignedVerdict`] (empty chain id): bounds a verdict list by input size.
pub const MIN_SIGNED_VERDICT_BYTES: usize = 32 + 4 + 32 + 1 + 32 + 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::limits::MAX_AUDIT_VERDICTS;
    use crate::{Address, Evidence, SignedTx, Tx, TxBody};
    use proptest::prelude::*;

    fn sample_receipt(provider: &SecretKey, payer: Address) -> SignedReceipt {
        InferenceReceipt {
            chain_id: "agora-test".into(),
            request_id: Hash([1; 32]),
            provider: provider.public(),
            payer,
            channel: Hash([2; 32]),
            model: Hash([3; 32]),
            seed: 7,
            params_hash: Hash([4; 32]),
            work_hash: Hash([5; 32]),
            continuation_hash: Hash([6; 32]),
            prompt_hash: Hash([7; 32]),
            engine: "agora test".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            continuation_tokens: 0,
            price: Price {
                input_per_million: Amount(1_000_000),
                output_per_million: Amount(2_000_000),
            },
            charged: Amount(20),
            output_hash: Hash([8; 32]),
            time_ms: 1,
            complete: true,
            proof_hash: Hash([9; 32]),
        }
        .sign(provider)
    }

    #[test]
    fn receipts_and_verdicts_round_trip_and_ids_cover_every_byte() {
        let provider = SecretKey::from_test_seed("audit-provider");
        let payer = SecretKey::from_test_seed("audit-payer").public();
        let signed = sample_receipt(&provider, payer);
        let bytes = signed.encode();
        let back = SignedReceipt::decode(&bytes).unwrap();
        assert_eq!(back, signed);
        assert!(back.verify());
        // Any change to a field or to the signature changes the id.
        let id = receipt_id(&signed);
        let mut other = signed.clone();
        other.receipt.charged = Amount(21);
        assert_ne!(receipt_id(&other), id);
        let mut other = signed.clone();
        other.signature.0[0] ^= 1;
        assert_ne!(receipt_id(&other), id);
        let mut other = signed.clone();
        other.receipt.proof_hash = Hash::ZERO;
        assert_ne!(receipt_id(&other), id);

        let auditor = SecretKey::from_test_seed("audit-auditor");
        let v = AuditVerdict {
            chain_id: "agora-test".into(),
            receipt: id,
            failed: true,
            detail: Hash([10; 32]),
        }
        .sign(&auditor);
        assert!(v.verify().is_ok());
        let bytes = v.encode();
        assert!(bytes.len() >= MIN_SIGNED_VERDICT_BYTES);
        assert_eq!(SignedVerdict::decode(&bytes).unwrap(), v);
        // Every verdict field is under the signature.
        let tampered: [fn(&mut AuditVerdict); 4] = [
            |v| v.chain_id = "other".into(),
            |v| v.receipt = Hash([0; 32]),
            |v| v.failed = false,
            |v| v.detail = Hash([0; 32]),
        ];
        for t in tampered {
            let mut bad = v.clone();
            t(&mut bad.verdict);
            assert!(bad.verify().is_err(), "{:?}", bad.verdict);
        }
        // A receipt signature is not a verdict signature, and a verdict signed by someone else
        // does not verify for the named auditor.
        let mut forged = v.clone();
        forged.auditor = provider.public();
        assert!(forged.verify().is_err());
        let cross = SignedVerdict {
            signature: auditor.sign(SignDomain::Receipt, &v.verdict.encode()),
            ..v.clone()
        };
        assert!(cross.verify().is_err());
    }

    fn samples() -> Vec<Vec<u8>> {
        let provider = SecretKey::from_test_seed("audit-provider");
        let payer = SecretKey::from_test_seed("audit-payer");
        let receipt = sample_receipt(&provider, payer.public());
        let verdicts: Vec<SignedVerdict> = (0..3)
            .map(|i| {
                AuditVerdict {
                    chain_id: "agora-test".into(),
                    receipt: receipt_id(&receipt),
                    failed: i != 2,
                    detail: Hash([i; 32]),
                }
                .sign(&SecretKey::from_test_seed(&format!("auditor-{i}")))
            })
            .collect();
        let tx = |body: TxBody| {
            Tx {
                chain_id: "agora-test".into(),
                signer: payer.public(),
                nonce: 3,
                fee: Amount(1_000),
                body,
            }
            .sign(&payer)
            .encode()
        };
        vec![
            tx(TxBody::Slash(Evidence::FailedAudit {
                receipt: Box::new(receipt.clone()),
                verdicts: verdicts.clone(),
            })),
            tx(TxBody::CommitReceipts {
                root: Hash([7; 32]),
                count: 12,
            }),
            verdicts[0].encode(),
            receipt.encode(),
        ]
    }

    fn check<T: Decode + Encode>(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(v) = T::decode(bytes) {
            prop_assert_eq!(v.encode(), bytes.to_vec(), "re-encodes differently");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Mutated encodings of the new evidence, transaction, verdict and receipt: decoding
        /// never panics, and whatever decodes re-encodes to the same bytes.
        #[test]
        fn audit_encodings_decode_or_fail_cleanly(
            (i, edits) in (0usize..4, proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 0..6))
        ) {
            static SAMPLES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
            let mut b = SAMPLES.get_or_init(samples)[i].clone();
            for (pos, byte, kind) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let p = usize::from(pos) % b.len();
                match kind {
                    0 => b[p] ^= byte | 1,
                    1 => b.insert(p, byte),
                    2 => {
                        b.remove(p);
                    }
                    _ => b.truncate(p),
                }
            }
            check::<SignedTx>(&b)?;
            check::<Evidence>(&b)?;
            check::<SignedVerdict>(&b)?;
            check::<SignedReceipt>(&b)?;
        }
    }

    #[test]
    fn samples_round_trip_and_the_evidence_id_is_the_receipts() {
        let s = samples();
        let tx = SignedTx::decode(&s[0]).unwrap();
        assert!(tx.verify_signature().is_ok());
        let TxBody::Slash(e) = &tx.tx.body else {
            panic!()
        };
        let Evidence::FailedAudit { receipt, verdicts } = e else {
            panic!()
        };
        assert_eq!(verdicts.len(), 3);
        assert_eq!(e.offender(), receipt.receipt.provider);
        // One offence per receipt, whichever verdicts come with it.
        let fewer = Evidence::FailedAudit {
            receipt: receipt.clone(),
            verdicts: verdicts[..1].to_vec(),
        };
        assert_eq!(fewer.id(), e.id());
        let mut other = receipt.as_ref().clone();
        other.receipt.seed += 1;
        let other = Evidence::FailedAudit {
            receipt: Box::new(other),
            verdicts: verdicts.clone(),
        };
        assert_ne!(other.id(), e.id());
        // More than the bound does not decode.
        let nine = Evidence::FailedAudit {
            receipt: receipt.clone(),
            verdicts: std::iter::repeat_n(verdicts[0].clone(), MAX_AUDIT_VERDICTS + 1).collect(),
        };
        assert!(matches!(
            Evidence::decode(&nine.encode()),
            Err(DecodeError::TooLong { .. })
        ));
        let json = serde_json::to_string(e).unwrap();
        assert_eq!(&serde_json::from_str::<Evidence>(&json).unwrap(), e);
    }

    #[test]
    fn receipt_decoding_is_bounded() {
        let provider = SecretKey::from_test_seed("audit-provider");
        let mut signed = sample_receipt(&provider, provider.public());
        signed.receipt.engine = "x".repeat(MAX_ENGINE_BYTES + 1);
        assert!(matches!(
            SignedReceipt::decode(&signed.encode()),
            Err(DecodeError::TooLong { .. })
        ));
        signed.receipt.engine.clear();
        signed.receipt.chain_id = "c".repeat(MAX_CHAIN_ID + 1);
        assert!(matches!(
            SignedReceipt::decode(&signed.encode()),
            Err(DecodeError::TooLong { .. })
        ));
        let mut bytes = sample_receipt(&provider, provider.public()).encode();
        bytes.push(0);
        assert!(matches!(
            SignedReceipt::decode(&bytes),
            Err(DecodeError::TrailingBytes { trailing: 1 })
        ));
    }
}
