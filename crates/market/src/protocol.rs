//! What a gateway and a provider say to each other over the overlay.
//!
//! A [`Job`] travels as the payload of one `/agora/infer/3` stream; the provider answers with
//! [`Frame`]s, one per chunk, ending with `Done` (carrying a signed [`InferenceReceipt`]) or `Failed`.
//! Vouchers travel beside the stream on `/agora/rpc/1` as [`RpcRequest::Voucher`], in JSON. Jobs
//! and frames are binary ([`codec`]), bounded by the overlay's frame limits before they are
//! decoded and by per-field limits while they are.

use agora_types::codec::{Decode, DecodeError, Encode};
use agora_types::{Address, Amount, Hash, HashDomain, SignedVoucher, Tools};
use serde::{Deserialize, Serialize};

mod codec;

pub use crate::failure::FailureCode;

/// Most chat messages or embedding inputs in one job.
pub const MAX_ITEMS: usize = 256;
/// Most bytes of text in one job (prompt, messages, stop sequences together).
pub const MAX_TEXT_BYTES: usize = 512 * 1024;
/// Most functions one chat may offer.
pub use agora_json::tools::MAX_TOOLS;
/// Most tokens a job may carry as continuation.
pub const MAX_CONTINUATION: usize = 32 * 1024;
/// Most stop sequences.
pub const MAX_STOP: usize = 4;
/// Most logit-bias entries.
pub const MAX_LOGIT_BIAS: usize = 300;

/// Prices in base units per million tokens (one definition, in `agora_types::price`).
pub use agora_types::Price;

/// One chat message (the engine's own type: the job carries it as the engine renders it).
pub use agora_types::ChatMessage;

/// What to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Work {
    /// Messages rendered with the model's chat template, offering `tools` when there are some
    /// (in `agora_json::tools`' envelope format).
    Chat {
        messages: Vec<ChatMessage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Tools>,
    },
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
    #[error("job is not a valid encoding: {0}")]
    Malformed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        Encode::encode(self)
    }

    /// Decodes and bounds-checks untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Job, JobError> {
        let job: Job = Decode::decode(bytes).map_err(|e| match e {
            DecodeError::TooLong { .. } => JobError::TooLarge(e.to_string()),
            e => JobError::Malformed(e.to_string()),
        })?;
        job.check()?;
        Ok(job)
    }

    /// Structural limits (the engine checks the rest: context length, vocabulary ids).
    pub fn check(&self) -> Result<(), JobError> {
        let mut text = 0usize;
        match &self.work {
            Work::Chat { messages, tools } => {
                if messages.is_empty() {
                    return Err(JobError::Invalid("messages must not be empty".into()));
                }
                if messages.len() > MAX_ITEMS {
                    return Err(JobError::TooLarge(format!(
                        "{} messages; at most {MAX_ITEMS}",
                        messages.len()
                    )));
                }
                text += messages.iter().map(ChatMessage::text_len).sum::<usize>();
                if let Some(tools) = tools {
                    if tools.list.is_empty() || tools.list.len() > MAX_TOOLS {
                        return Err(JobError::Invalid(format!(
                            "{} tools; between 1 and {MAX_TOOLS}",
                            tools.list.len()
                        )));
                    }
                    text += tools.text_len();
                }
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
        /// The proof of inference (`agora_verify::toploc::Proof`'s encoding) of a generated
        /// response, bound by `receipt.proof_hash`; absent for embeddings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<ProofBytes>,
    },
    /// The job failed; [`FailureCode`] says whose fault it is (the client's: no failover).
    /// When work was delivered first, the receipt covers it (`complete: false`).
    Failed {
        code: FailureCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receipt: Option<Box<SignedReceipt>>,
        /// The proof of the tokens delivered before the failure, bound by the receipt's
        /// `proof_hash` as in [`Frame::Done`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<ProofBytes>,
    },
}

/// Opaque bytes that travel as hex in a JSON frame (a proof of inference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofBytes(pub Vec<u8>);

impl Serialize for ProofBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for ProofBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .map(ProofBytes)
            .map_err(serde::de::Error::custom)
    }
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        Encode::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, JobError> {
        Decode::decode(bytes).map_err(|e| JobError::Malformed(e.to_string()))
    }
}

/// Receipts are a contract of the gateway, the provider, the auditor and the ledger, so they live
/// in `agora_types::receipt`.
pub use agora_types::receipt::{InferenceReceipt, MAX_ENGINE_BYTES, SignedReceipt, token_hash};

/// What an auditor needs beside a receipt to replay the response: the job as the provider got
/// it and the tokens it delivered. Each field is bound by one of the receipt's hashes, so whoever
/// hands it over (a gateway) cannot change what the provider is said to have done
/// ([`Replay::mismatch`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub work: Work,
    pub sampling: SamplingParams,
    pub continuation: Vec<u32>,
    /// The token ids the provider delivered in this attempt.
    pub output: Vec<u32>,
}

impl Replay {
    /// The first receipt field this replay does not match.
    pub fn mismatch(&self, r: &InferenceReceipt) -> Option<&'static str> {
        let checks = [
            ("work_hash", r.work_hash == work_hash(&self.work)),
            ("params_hash", r.params_hash == self.sampling.hash()),
            ("seed", r.seed == self.sampling.seed),
            (
                "continuation_hash",
                r.continuation_hash == token_hash(&self.continuation),
            ),
            (
                "continuation_tokens",
                r.continuation_tokens as usize == self.continuation.len(),
            ),
            ("output_hash", r.output_hash == token_hash(&self.output)),
            (
                "completion_tokens",
                r.completion_tokens as usize == self.output.len(),
            ),
        ];
        checks.iter().find(|(_, ok)| !ok).map(|(name, _)| *name)
    }
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
    use agora_types::SecretKey;

    fn price(i: u128, o: u128) -> Price {
        Price {
            input_per_million: Amount(i),
            output_per_million: Amount(o),
        }
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
        // Cut anywhere, or with a byte more: refused, never a panic.
        let bytes = base.encode();
        for cut in 0..bytes.len() {
            assert!(matches!(
                Job::decode(&bytes[..cut]),
                Err(JobError::Malformed(_))
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(Job::decode(&long), Err(JobError::Malformed(_))));
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
        empty.work = Work::Chat {
            messages: vec![],
            tools: None,
        };
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

    fn tool_job() -> Job {
        use agora_types::{Tool, ToolCall, ToolChoice};
        let mut asked = ChatMessage::new("assistant", "");
        asked.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        });
        let mut answer = ChatMessage::new("tool", "22 C");
        answer.tool_call_id = Some("call_1".into());
        Job {
            request_id: Hash([3; 32]),
            work: Work::Chat {
                messages: vec![ChatMessage::new("user", "Weather?"), asked, answer],
                tools: Some(Tools {
                    list: vec![Tool {
                        name: "get_weather".into(),
                        description: "Weather now".into(),
                        parameters: "{\"type\":\"object\"}".into(),
                    }],
                    choice: ToolChoice::Function("get_weather".into()),
                    parallel: false,
                }),
            },
            sampling: SamplingParams::default(),
            continuation: vec![],
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([0; 32]),
            price: price(1, 1),
        }
    }

    #[test]
    fn a_chat_with_tools_and_tool_turns_decodes_as_it_was_encoded() {
        let job = tool_job();
        let bytes = job.encode();
        assert_eq!(Job::decode(&bytes).unwrap(), job);
        for cut in 0..bytes.len() {
            assert!(Job::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_tool_fields_are_refused() {
        // Too many functions: refused by the check, not only by the gateway that should not
        // have sent them.
        let mut many = tool_job();
        if let Work::Chat { tools: Some(t), .. } = &mut many.work {
            t.list = vec![t.list[0].clone(); MAX_TOOLS + 1];
        }
        assert!(Job::decode(&many.encode()).is_err());
        let mut none = tool_job();
        if let Work::Chat { tools: Some(t), .. } = &mut none.work {
            t.list.clear();
        }
        assert!(matches!(
            Job::decode(&none.encode()),
            Err(JobError::Invalid(_))
        ));
        // Tool text counts toward the job's text limit.
        let mut big = tool_job();
        if let Work::Chat { tools: Some(t), .. } = &mut big.work {
            t.list[0].description = "x".repeat(MAX_TEXT_BYTES);
        }
        assert!(matches!(
            Job::decode(&big.encode()),
            Err(JobError::TooLarge(_))
        ));
        // An unknown tool_choice tag.
        let bytes = tool_job().encode();
        let tag_at = bytes
            .windows(2)
            .rposition(|w| w == [2, 11])
            .expect("the choice tag before its 11-byte name's length");
        let mut bad = bytes.clone();
        bad[tag_at] = 9;
        assert!(matches!(Job::decode(&bad), Err(JobError::Malformed(_))));
    }
}
