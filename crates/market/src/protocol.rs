//! What a gateway and a provider say to each other over the overlay.
//!
//! A [`Job`] travels as the payload of one `/agora/infer/1` stream; the provider answers with
//! [`Frame`]s, one per chunk, ending with `Done` (carrying a signed [`InferenceReceipt`]) or `Failed`.
//! Vouchers travel beside the stream on `/agora/rpc/1` as [`RpcRequest::Voucher`]. Everything is
//! JSON: small, debuggable, and bounded by the overlay's frame limits before it is parsed.

use agora_types::{
    Address, Amount, Hash, HashDomain, SecretKey, SignDomain, Signature, SignedVoucher,
};
use serde::{Deserialize, Serialize};

pub use crate::failure::FailureCode;

/// Most chat messages or embedding inputs in one job.
pub const MAX_ITEMS: usize = 256;
/// Most bytes of text in one job (prompt, messages, stop sequences together).
pub const MAX_TEXT_BYTES: usize = 512 * 1024;
/// Most tokens a job may carry as continuation.
pub const MAX_CONTINUATION: usize = 32 * 1024;
/// Most stop sequences.
pub const MAX_STOP: usize = 4;
/// Most logit-bias entries.
pub const MAX_LOGIT_BIAS: usize = 300;

/// Prices in base units per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_million: Amount,
    pub output_per_million: Amount,
}

/// What tokens cost at a price is defined once, in [`crate::meter`] (`Price::cost`, `Meter`).
impl Price {
    /// True if every component is at least `other`'s.
    pub fn covers(&self, other: &Price) -> bool {
        self.input_per_million >= other.input_per_million
            && self.output_per_million >= other.output_per_million
    }
}

/// One chat message (the engine's own type: the job carries it as the engine renders it).
pub use agora_types::ChatMessage;

/// What to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Work {
    /// Messages rendered with the model's chat template.
    Chat { messages: Vec<ChatMessage> },
    /// A plain completion prompt.
    Text { prompt: String },
    /// Sentence embeddings, one vector per input.
    Embed { inputs: Vec<String> },
}

/// Sampling parameters on the wire (the engine's `SamplingParams`, minus engine-only knobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub repetition_penalty: f32,
    pub stop: Vec<String>,
    pub max_tokens: u32,
    pub seed: u64,
    /// Log-probabilities with this many alternatives per token.
    pub logprobs: Option<u8>,
    /// Constrain the output to one JSON object.
    pub json: bool,
    pub logit_bias: Vec<(u32, f32)>,
    /// Constrain the output to this JSON schema (JSON text; the engine's `json::Schema::parse`
    /// checks it). Absent from the encoding when `None`, so older hashes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repetition_penalty: 1.0,
            stop: Vec::new(),
            max_tokens: 256,
            seed: 0,
            logprobs: None,
            json: false,
            logit_bias: Vec::new(),
            json_schema: None,
        }
    }
}

impl Sampling {
    /// A hash that pins every parameter (receipts carry it instead of the parameters).
    pub fn hash(&self) -> Hash {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        Hash::of_parts(HashDomain::Request, &[b"sampling", &bytes])
    }
}

/// One inference request from a payer to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Chosen by the gateway; the same id across a failover, so receipts of one completion share it.
    pub request_id: Hash,
    pub work: Work,
    #[serde(default)]
    pub sampling: Sampling,
    /// Tokens an earlier provider already generated and delivered for this request (failover).
    #[serde(default)]
    pub continuation: Vec<u32>,
    /// The payer's account and its open channel to this provider.
    pub payer: Address,
    pub channel: Hash,
    /// The price the payer agrees to; a provider refuses a job priced under its own.
    pub price: Price,
}

/// Why a job was refused before any work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("job is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and bounds-checks untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Job, JobError> {
        let job: Job =
            serde_json::from_slice(bytes).map_err(|e| JobError::Malformed(e.to_string()))?;
        job.check()?;
        Ok(job)
    }

    /// Structural limits (the engine checks the rest: context length, vocabulary ids).
    pub fn check(&self) -> Result<(), JobError> {
        let mut text = 0usize;
        match &self.work {
            Work::Chat { messages } => {
                if messages.is_empty() {
                    return Err(JobError::Invalid("messages must not be empty".into()));
                }
                if messages.len() > MAX_ITEMS {
                    return Err(JobError::TooLarge(format!(
                        "{} messages; at most {MAX_ITEMS}",
                        messages.len()
                    )));
                }
                text += messages
                    .iter()
                    .map(|m| m.content.len() + m.role.len())
                    .sum::<usize>();
            }
            Work::Text { prompt } => text += prompt.len(),
            Work::Embed { inputs } => {
                if inputs.is_empty() || inputs.len() > MAX_ITEMS {
                    return Err(JobError::Invalid(format!(
                        "{} inputs; between 1 and {MAX_ITEMS}",
                        inputs.len()
                    )));
                }
                text += inputs.iter().map(String::len).sum::<usize>();
            }
        }
        let s = &self.sampling;
        if s.stop.len() > MAX_STOP {
            return Err(JobError::Invalid(format!(
                "{} stop sequences; at most {MAX_STOP}",
                s.stop.len()
            )));
        }
        text += s.stop.iter().map(String::len).sum::<usize>();
        text += s.json_schema.as_ref().map_or(0, String::len);
        if text > MAX_TEXT_BYTES {
            return Err(JobError::TooLarge(format!(
                "{text} bytes of text; at most {MAX_TEXT_BYTES}"
            )));
        }
        if self.continuation.len() > MAX_CONTINUATION {
            return Err(JobError::TooLarge(format!(
                "{} continuation tokens; at most {MAX_CONTINUATION}",
                self.continuation.len()
            )));
        }
        if s.logit_bias.len() > MAX_LOGIT_BIAS {
            return Err(JobError::TooLarge(format!(
                "{} logit_bias entries; at most {MAX_LOGIT_BIAS}",
                s.logit_bias.len()
            )));
        }
        Ok(())
    }
}

/// One generated token as the provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tok {
    pub id: u32,
    /// Text that became complete with this token (may be empty mid-character).
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    /// Alternatives as (token id, log-probability).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<(u32, f32)>,
    /// The alternatives' text, in the order of `top` (absent from older providers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_text: Vec<String>,
}

/// Token counts of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens prefilled: the prompt plus any continuation.
    pub prompt_tokens: u32,
    /// Tokens generated by this provider.
    pub completion_tokens: u32,
}

/// One chunk of a provider's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum Frame {
    /// Admitted; the prompt costs `prompt_tokens` (owed from now on).
    Started {
        prompt_tokens: u32,
        cached_tokens: u32,
    },
    Tokens {
        tokens: Vec<Tok>,
    },
    /// Text that belongs to no single token (released at the end).
    Text {
        text: String,
    },
    /// Embedding vectors `first_index..`, split over frames to stay under the chunk limit.
    Embeddings {
        first_index: u32,
        vectors: Vec<Vec<f32>>,
    },
    Done {
        finish_reason: String,
        usage: Usage,
        receipt: Box<SignedReceipt>,
    },
    /// The job failed; [`FailureCode`] says whose fault it is (the client's: no failover).
    Failed {
        code: FailureCode,
        message: String,
    },
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, JobError> {
        serde_json::from_slice(bytes).map_err(|e| JobError::Malformed(e.to_string()))
    }
}

/// What a provider signs for every response: enough to audit it (replay with the same model,
/// prompt, parameters and seed) and to prove what was billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceReceipt {
    pub request_id: Hash,
    pub provider: Address,
    pub payer: Address,
    pub channel: Hash,
    /// sha256 of the model file.
    pub model: Hash,
    pub seed: u64,
    pub params_hash: Hash,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Tokens received as continuation (part of `prompt_tokens`).
    pub continuation_tokens: u32,
    pub price: Price,
    /// `price.cost(prompt_tokens, completion_tokens)`.
    pub charged: Amount,
    /// Hash of the generated token ids (little-endian u32s); for embeddings, of the vectors' bytes.
    pub output_hash: Hash,
    /// Provider's wall clock, milliseconds since the Unix epoch (informational).
    pub time_ms: u64,
}

impl InferenceReceipt {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(320);
        v.extend_from_slice(&self.request_id.0);
        v.extend_from_slice(&self.provider.0);
        v.extend_from_slice(&self.payer.0);
        v.extend_from_slice(&self.channel.0);
        v.extend_from_slice(&self.model.0);
        v.extend_from_slice(&self.seed.to_le_bytes());
        v.extend_from_slice(&self.params_hash.0);
        v.extend_from_slice(&self.prompt_tokens.to_le_bytes());
        v.extend_from_slice(&self.completion_tokens.to_le_bytes());
        v.extend_from_slice(&self.continuation_tokens.to_le_bytes());
        v.extend_from_slice(&self.price.input_per_million.0.to_le_bytes());
        v.extend_from_slice(&self.price.output_per_million.0.to_le_bytes());
        v.extend_from_slice(&self.charged.0.to_le_bytes());
        v.extend_from_slice(&self.output_hash.0);
        v.extend_from_slice(&self.time_ms.to_le_bytes());
        v
    }

    pub fn sign(self, key: &SecretKey) -> SignedReceipt {
        let signature = key.sign(SignDomain::Receipt, &self.signing_bytes());
        SignedReceipt {
            receipt: self,
            signature,
        }
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

/// Hash of generated token ids, as receipts carry it.
pub fn output_hash(tokens: &[u32]) -> Hash {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    Hash::of_parts(HashDomain::Request, &[b"output", &bytes])
}

/// Side-channel messages on `/agora/rpc/1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rpc", rename_all = "snake_case")]
pub enum RpcRequest {
    /// The payer's latest cumulative voucher for a channel.
    Voucher { voucher: SignedVoucher },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum RpcReply {
    /// The provider now holds a voucher for `cumulative` on the channel.
    Accepted {
        cumulative: Amount,
    },
    Rejected {
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price(i: u128, o: u128) -> Price {
        Price {
            input_per_million: Amount(i),
            output_per_million: Amount(o),
        }
    }

    proptest! {
        #[test]
        fn cost_is_monotone_and_never_under_the_exact_price(
            i in 0u128..10_000_000_000, o in 0u128..10_000_000_000,
            p in 0u64..100_000, c in 0u64..100_000,
        ) {
            let pr = price(i, o);
            let a = pr.cost(p, c).unwrap();
            let b = pr.cost(p, c + 1).unwrap();
            prop_assert!(b >= a);
            let exact = u128::from(p) * i + u128::from(c) * o;
            prop_assert!(a.0 * 1_000_000 >= exact);
            prop_assert!(a.0 * 1_000_000 < exact + 1_000_000);
        }
    }

    #[test]
    fn receipts_verify_and_tampering_is_caught() {
        let key = SecretKey::from_test_seed("provider");
        let r = InferenceReceipt {
            request_id: Hash([1; 32]),
            provider: key.public(),
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([2; 32]),
            model: Hash([3; 32]),
            seed: 7,
            params_hash: Sampling::default().hash(),
            prompt_tokens: 10,
            completion_tokens: 5,
            continuation_tokens: 0,
            price: price(1_000_000, 2_000_000),
            charged: Amount(20),
            output_hash: output_hash(&[1, 2, 3]),
            time_ms: 1,
        };
        let signed = r.sign(&key);
        assert!(signed.verify());
        let mut bad = signed.clone();
        bad.receipt.completion_tokens = 6;
        assert!(!bad.verify());
        let json = serde_json::to_vec(&signed).unwrap();
        let back: SignedReceipt = serde_json::from_slice(&json).unwrap();
        assert!(back.verify());
    }

    #[test]
    fn hostile_jobs_are_refused_with_reasons() {
        let base = Job {
            request_id: Hash([0; 32]),
            work: Work::Text {
                prompt: "hi".into(),
            },
            sampling: Sampling::default(),
            continuation: vec![],
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([0; 32]),
            price: price(1, 1),
        };
        assert!(Job::decode(&base.encode()).is_ok());
        assert!(matches!(
            Job::decode(b"{not json"),
            Err(JobError::Malformed(_))
        ));
        assert!(matches!(
            Job::decode(&[0xff; 64]),
            Err(JobError::Malformed(_))
        ));
        let mut big = base.clone();
        big.work = Work::Text {
            prompt: "x".repeat(MAX_TEXT_BYTES + 1),
        };
        assert!(matches!(
            Job::decode(&big.encode()),
            Err(JobError::TooLarge(_))
        ));
        let mut stops = base.clone();
        stops.sampling.stop = vec!["a".into(); MAX_STOP + 1];
        assert!(matches!(
            Job::decode(&stops.encode()),
            Err(JobError::Invalid(_))
        ));
        let mut empty = base.clone();
        empty.work = Work::Chat { messages: vec![] };
        assert!(matches!(
            Job::decode(&empty.encode()),
            Err(JobError::Invalid(_))
        ));
        let mut cont = base;
        cont.continuation = vec![1; MAX_CONTINUATION + 1];
        assert!(matches!(
            Job::decode(&cont.encode()),
            Err(JobError::TooLarge(_))
        ));
    }
}
