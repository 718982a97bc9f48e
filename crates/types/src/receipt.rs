//! What a provider signs for each response: the receipt the gateway checks, the auditor replays
//! and the ledger's evidence carries.

use serde::{Deserialize, Serialize};

use crate::codec::Writer;
use crate::{Address, Amount, Hash, HashDomain, Price, SecretKey, SignDomain, Signature};

/// What a provider signs for every response, finished or not: enough to replay it (the same
/// model, prefilled tokens, parameters, seed and continuation give the same output token ids)
/// and to prove what was billed. The gateway checks every field it can know against what it sent
/// and received ([`InferenceReceipt::mismatch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceReceipt {
    /// The chain whose channel pays for the job (a receipt means nothing on another chain).
    #[serde(default)]
    pub chain_id: String,
    pub request_id: Hash,
    pub provider: Address,
    pub payer: Address,
    pub channel: Hash,
    /// sha256 of the model file.
    pub model: Hash,
    pub seed: u64,
    /// [`SamplingParams::hash`]: the parameters in the canonical codec.
    pub params_hash: Hash,
    /// [`work_hash`] of the job's work as the provider decoded it.
    #[serde(default)]
    pub work_hash: Hash,
    /// [`token_hash`] of the continuation tokens received.
    #[serde(default)]
    pub continuation_hash: Hash,
    /// [`token_hash`] of the token ids the engine prefilled: what the chat template rendered and
    /// the tokenizer made of it (zero when the job failed before the engine reported them, and
    /// for embeddings).
    #[serde(default)]
    pub prompt_hash: Hash,
    /// The engine and build that ran the job.
    #[serde(default)]
    pub engine: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Tokens received as continuation (part of `prompt_tokens`).
    pub continuation_tokens: u32,
    pub price: Price,
    /// `price.cost(prompt_tokens, completion_tokens)`.
    pub charged: Amount,
    /// [`token_hash`] of the generated token ids; for embeddings, a hash of the vectors' bytes.
    pub output_hash: Hash,
    /// Provider's wall clock, milliseconds since the Unix epoch (informational).
    pub time_ms: u64,
    /// False when the job failed or was cut off: the receipt covers what was delivered.
    #[serde(default = "yes")]
    pub complete: bool,
    /// Hash of the proof of inference that came with the response (`agora_verify::toploc`,
    /// over the hidden states of the sampled positions), so the signature binds the proof;
    /// zero when there is none (embeddings, a job cut off before its end, an engine without
    /// hidden states).
    #[serde(default)]
    pub proof_hash: Hash,
}

fn yes() -> bool {
    true
}

/// Longest engine description a receipt carries.
pub const MAX_ENGINE_BYTES: usize = 128;

impl InferenceReceipt {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512);
        v.put_bytes(self.chain_id.as_bytes());
        v.extend_from_slice(&self.request_id.0);
        v.extend_from_slice(&self.provider.0);
        v.extend_from_slice(&self.payer.0);
        v.extend_from_slice(&self.channel.0);
        v.extend_from_slice(&self.model.0);
        v.extend_from_slice(&self.seed.to_le_bytes());
        v.extend_from_slice(&self.params_hash.0);
        v.extend_from_slice(&self.work_hash.0);
        v.extend_from_slice(&self.continuation_hash.0);
        v.extend_from_slice(&self.prompt_hash.0);
        v.put_bytes(self.engine.as_bytes());
        v.extend_from_slice(&self.prompt_tokens.to_le_bytes());
        v.extend_from_slice(&self.completion_tokens.to_le_bytes());
        v.extend_from_slice(&self.continuation_tokens.to_le_bytes());
        v.extend_from_slice(&self.price.input_per_million.0.to_le_bytes());
        v.extend_from_slice(&self.price.output_per_million.0.to_le_bytes());
        v.extend_from_slice(&self.charged.0.to_le_bytes());
        v.extend_from_slice(&self.output_hash.0);
        v.extend_from_slice(&self.time_ms.to_le_bytes());
        v.put_bool(self.complete);
        v.extend_from_slice(&self.proof_hash.0);
        v
    }

    pub fn sign(self, key: &SecretKey) -> SignedReceipt {
        let signature = key.sign(SignDomain::Receipt, &self.signing_bytes());
        SignedReceipt {
            receipt: self,
            signature,
        }
    }

    /// The first field in which this receipt differs from `expected`, the receipt as the payer
    /// computes it from what it sent and received. What only the provider can know (the
    /// prefilled tokens' hash, the engine, the time) is not compared; the engine's name is only
    /// bounded.
    pub fn mismatch(&self, expected: &InferenceReceipt) -> Option<&'static str> {
        let (a, e) = (self, expected);
        let fields = [
            ("chain_id", a.chain_id == e.chain_id),
            ("request_id", a.request_id == e.request_id),
            ("provider", a.provider == e.provider),
            ("payer", a.payer == e.payer),
            ("channel", a.channel == e.channel),
            ("model", a.model == e.model),
            ("seed", a.seed == e.seed),
            ("params_hash", a.params_hash == e.params_hash),
            ("work_hash", a.work_hash == e.work_hash),
            (
                "continuation_hash",
                a.continuation_hash == e.continuation_hash,
            ),
            ("engine", a.engine.len() <= MAX_ENGINE_BYTES),
            ("prompt_tokens", a.prompt_tokens == e.prompt_tokens),
            (
                "completion_tokens",
                a.completion_tokens == e.completion_tokens,
            ),
            (
                "continuation_tokens",
                a.continuation_tokens == e.continuation_tokens,
            ),
            ("price", a.price == e.price),
            ("charged", a.charged == e.charged),
            ("output_hash", a.output_hash == e.output_hash),
            ("complete", a.complete == e.complete),
            ("proof_hash", a.proof_hash == e.proof_hash),
        ];
        fields.iter().find(|(_, ok)| !ok).map(|(name, _)| *name)
    }
}

/// A receipt with the provider's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: InferenceReceipt,
    pub signature: Signature,
}

impl SignedReceipt {
    /// Checks the signature against the receipt's own provider field.
    pub fn verify(&self) -> bool {
        self.receipt
            .provider
            .verify(
                SignDomain::Receipt,
                &self.receipt.signing_bytes(),
                &self.signature,
            )
            .is_ok()
    }
}

/// Hash of token ids (little-endian u32s), as receipts carry them: the output, the
/// continuation, the prefilled prompt.
pub fn token_hash(tokens: &[u32]) -> Hash {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    Hash::of_parts(HashDomain::Request, &[b"output", &bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(i: u128, o: u128) -> Price {
        Price {
            input_per_million: Amount(i),
            output_per_million: Amount(o),
        }
    }

    #[test]
    fn receipts_verify_and_tampering_is_caught() {
        let key = SecretKey::from_test_seed("provider");
        let r = InferenceReceipt {
            chain_id: "agora-test".into(),
            work_hash: Hash([4; 32]),
            continuation_hash: token_hash(&[]),
            prompt_hash: token_hash(&[1, 9, 9]),
            engine: "agora test".into(),
            complete: true,
            proof_hash: Hash([5; 32]),
            request_id: Hash([1; 32]),
            provider: key.public(),
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([2; 32]),
            model: Hash([3; 32]),
            seed: 7,
            params_hash: crate::SamplingParams::default().hash(),
            prompt_tokens: 10,
            completion_tokens: 5,
            continuation_tokens: 0,
            price: price(1_000_000, 2_000_000),
            charged: Amount(20),
            output_hash: token_hash(&[1, 2, 3]),
            time_ms: 1,
        };
        let signed = r.clone().sign(&key);
        assert!(signed.verify());
        // Every field is under the signature.
        let tampered: [fn(&mut InferenceReceipt); 10] = [
            |r| r.proof_hash = Hash([9; 32]),
            |r| r.completion_tokens = 6,
            |r| r.chain_id = "other".into(),
            |r| r.work_hash = Hash([9; 32]),
            |r| r.continuation_hash = Hash([9; 32]),
            |r| r.prompt_hash = Hash([9; 32]),
            |r| r.engine = "other".into(),
            |r| r.complete = false,
            |r| r.params_hash = Hash([9; 32]),
            |r| r.output_hash = Hash([9; 32]),
        ];
        for t in tampered {
            let mut bad = signed.clone();
            t(&mut bad.receipt);
            assert!(!bad.verify(), "{:?}", bad.receipt);
            // And the payer's comparison names the field (the engine only by its bound).
            let mut expected = r.clone();
            t(&mut expected);
            if expected.engine == r.engine && expected.prompt_hash == r.prompt_hash {
                assert!(r.mismatch(&expected).is_some(), "{expected:?}");
            }
        }
        assert_eq!(r.mismatch(&r), None);
        let mut long = r.clone();
        long.engine = "x".repeat(MAX_ENGINE_BYTES + 1);
        assert_eq!(long.mismatch(&r), Some("engine"));
        let json = serde_json::to_vec(&signed).unwrap();
        let back: SignedReceipt = serde_json::from_slice(&json).unwrap();
        assert!(back.verify());
    }
}
