//! What a gateway and a provider say to each other over the overlay.
//!
//! A [`Job`] travels as the payload of one `/agora/infer/1` stream; the provider answers with
//! [`Frame`]s, one per chunk, ending with `Done` (carrying a signed [`InferenceReceipt`]) or `Failed`.
//! Vouchers travel beside the stream on `/agora/rpc/1` as [`RpcRequest::Voucher`]. Everything is
//! JSON: small, debuggable, and bounded by the overlay's frame limits before it is parsed.

use agora_types::codec::Writer;
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

/// Sampling parameters, as the gateway sends them and the engine samples with (one definition).
pub use agora_types::SamplingParams;

/// One inference request from a payer to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Chosen by the gateway; the same id across a failover, so receipts of one completion share it.
    pub request_id: Hash,
    pub work: Work,
    #[serde(default)]
    pub sampling: SamplingParams,
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

/// Token counts of one job (the engine's own type).
pub use agora_types::Usage;

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
    /// When work was delivered first, the receipt covers it (`complete: false`).
    Failed {
        code: FailureCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receipt: Option<Box<SignedReceipt>>,
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

/// Hash of a job's work, over its JSON encoding (the same struct encodes to the same bytes on
/// both sides).
pub fn work_hash(work: &Work) -> Hash {
    let bytes = serde_json::to_vec(work).unwrap_or_default();
    Hash::of_parts(HashDomain::Request, &[b"work", &bytes])
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
            chain_id: "agora-test".into(),
            work_hash: work_hash(&Work::Text {
                prompt: "hi".into(),
            }),
            continuation_hash: token_hash(&[]),
            prompt_hash: token_hash(&[1, 9, 9]),
            engine: "agora test".into(),
            complete: true,
            request_id: Hash([1; 32]),
            provider: key.public(),
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([2; 32]),
            model: Hash([3; 32]),
            seed: 7,
            params_hash: SamplingParams::default().hash(),
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
        let tampered: [fn(&mut InferenceReceipt); 9] = [
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

    #[test]
    fn hostile_jobs_are_refused_with_reasons() {
        let base = Job {
            request_id: Hash([0; 32]),
            work: Work::Text {
                prompt: "hi".into(),
            },
            sampling: SamplingParams::default(),
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
