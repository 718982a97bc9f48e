//! What a request asks of the sampler: the one definition the gateway sends, a job carries, the
//! engine samples with and a receipt commits to.
//!
//! The engine checks the ranges (`agora_inference::sampler::validate`, which also needs the
//! model's vocabulary and the JSON-schema compiler); this crate only defines the values, their
//! defaults and their canonical encoding.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash, HashDomain};

/// Sampling parameters of one request. `Default` is OpenAI's: temperature 1, no truncation, no
/// penalties, up to 256 tokens; [`SamplingParams::greedy`] is deterministic decoding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: u32,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// llama.cpp-style multiplicative penalty over the last `penalty_last_n` tokens; 1 disables.
    pub repetition_penalty: f32,
    /// OpenAI-style, over generated tokens: `- count * frequency_penalty`.
    pub frequency_penalty: f32,
    /// OpenAI-style, over generated tokens: `- presence_penalty` once a token appeared.
    pub presence_penalty: f32,
    pub penalty_last_n: u32,
    /// Added to the raw logit of a token id (OpenAI range -100..=100).
    pub logit_bias: Vec<(u32, f32)>,
    pub stop: Vec<String>,
    pub max_tokens: u32,
    pub seed: u64,
    /// Return the chosen token's log-probability and this many alternatives (0..=20).
    pub logprobs: Option<u8>,
    /// Constrain the output to one JSON object.
    pub json: bool,
    /// Constrain the output to a document satisfying this JSON schema (JSON text). Implies JSON
    /// output; takes precedence over `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            stop: Vec::new(),
            max_tokens: 256,
            seed: 0,
            logprobs: None,
            json: false,
            json_schema: None,
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of up to `max_tokens` tokens, otherwise the defaults.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// A hash that pins every parameter, over the canonical encoding (receipts carry it).
    pub fn hash(&self) -> Hash {
        Hash::of_parts(HashDomain::Request, &[b"sampling/v2", &self.encode()])
    }
}

impl Encode for SamplingParams {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_f32(self.temperature);
        out.put_u32(self.top_k);
        out.put_f32(self.top_p);
        out.put_f32(self.min_p);
        out.put_f32(self.repetition_penalty);
        out.put_f32(self.frequency_penalty);
        out.put_f32(self.presence_penalty);
        out.put_u32(self.penalty_last_n);
        out.put_len(self.logit_bias.len());
        for &(token, bias) in &self.logit_bias {
            out.put_u32(token);
            out.put_f32(bias);
        }
        out.put_len(self.stop.len());
        for s in &self.stop {
            out.put_bytes(s.as_bytes());
        }
        out.put_u32(self.max_tokens);
        out.put_u64(self.seed);
        out.put_option(&self.logprobs);
        out.put_bool(self.json);
        match &self.json_schema {
            None => out.put_u8(0),
            Some(s) => {
                out.put_u8(1);
                out.put_bytes(s.as_bytes());
            }
        }
        out.put_bool(self.ignore_eos);
    }
}

/// Decoding limits, generous: a job's own check bounds the lists and texts tighter.
const MAX_LOGIT_BIAS: usize = 4096;
const MAX_STOP: usize = 64;
const MAX_STOP_BYTES: usize = 64 * 1024;
const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// The inverse of [`Encode`] for jobs on the wire: every float must be finite.
impl Decode for SamplingParams {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let temperature = r.finite_f32("temperature")?;
        let top_k = r.u32()?;
        let top_p = r.finite_f32("top_p")?;
        let min_p = r.finite_f32("min_p")?;
        let repetition_penalty = r.finite_f32("repetition_penalty")?;
        let frequency_penalty = r.finite_f32("frequency_penalty")?;
        let presence_penalty = r.finite_f32("presence_penalty")?;
        let penalty_last_n = r.u32()?;
        let n = r.len("logit_bias", MAX_LOGIT_BIAS, 8)?;
        let logit_bias = (0..n)
            .map(|_| Ok((r.u32()?, r.finite_f32("logit_bias")?)))
            .collect::<Result<_, DecodeError>>()?;
        let n = r.len("stop", MAX_STOP, 4)?;
        let stop = (0..n)
            .map(|_| r.string("stop", MAX_STOP_BYTES))
            .collect::<Result<_, _>>()?;
        Ok(SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            frequency_penalty,
            presence_penalty,
            penalty_last_n,
            logit_bias,
            stop,
            max_tokens: r.u32()?,
            seed: r.u64()?,
            logprobs: r.option("logprobs")?,
            json: r.bool("json")?,
            json_schema: if r.bool("json_schema")? {
                Some(r.string("json_schema", MAX_SCHEMA_BYTES)?)
            } else {
                None
            },
            ignore_eos: r.bool("ignore_eos")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_decode_as_encoded_and_only_finite_floats_decode() {
        let p = SamplingParams {
            temperature: 0.7,
            top_k: 40,
            logit_bias: vec![(5, -1.5)],
            stop: vec!["\n\n".into()],
            seed: 9,
            logprobs: Some(3),
            json_schema: Some("{}".into()),
            ..SamplingParams::default()
        };
        assert_eq!(SamplingParams::decode(&p.encode()), Ok(p.clone()));
        let mut nan = p.clone();
        nan.temperature = f32::NAN;
        assert!(SamplingParams::decode(&nan.encode()).is_err());
        let bytes = p.encode();
        for cut in 0..bytes.len() {
            assert!(SamplingParams::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn every_parameter_moves_the_hash() {
        let base = SamplingParams::default();
        let variants = [
            SamplingParams {
                temperature: 0.5,
                ..base.clone()
            },
            SamplingParams {
                top_k: 40,
                ..base.clone()
            },
            SamplingParams {
                top_p: 0.9,
                ..base.clone()
            },
            SamplingParams {
                min_p: 0.05,
                ..base.clone()
            },
            SamplingParams {
                repetition_penalty: 1.1,
                ..base.clone()
            },
            SamplingParams {
                frequency_penalty: 0.5,
                ..base.clone()
            },
            SamplingParams {
                presence_penalty: 0.5,
                ..base.clone()
            },
            SamplingParams {
                penalty_last_n: 32,
                ..base.clone()
            },
            SamplingParams {
                logit_bias: vec![(1, 2.0)],
                ..base.clone()
            },
            SamplingParams {
                stop: vec!["\n".into()],
                ..base.clone()
            },
            SamplingParams {
                max_tokens: 7,
                ..base.clone()
            },
            SamplingParams {
                seed: 9,
                ..base.clone()
            },
            SamplingParams {
                logprobs: Some(0),
                ..base.clone()
            },
            SamplingParams {
                json: true,
                ..base.clone()
            },
            SamplingParams {
                json_schema: Some("{}".into()),
                ..base.clone()
            },
            SamplingParams {
                ignore_eos: true,
                ..base.clone()
            },
        ];
        let mut seen = vec![base.hash()];
        for v in variants {
            let h = v.hash();
            assert!(!seen.contains(&h), "{v:?} collides");
            seen.push(h);
        }
    }

    #[test]
    fn stop_lists_with_the_same_bytes_split_differently_hash_apart() {
        let a = SamplingParams {
            stop: vec!["ab".into(), "c".into()],
            ..Default::default()
        };
        let b = SamplingParams {
            stop: vec!["a".into(), "bc".into()],
            ..Default::default()
        };
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn missing_wire_fields_take_the_defaults() {
        let p: SamplingParams = serde_json::from_str(r#"{"max_tokens": 5}"#).unwrap();
        assert_eq!(
            p,
            SamplingParams {
                max_tokens: 5,
                ..SamplingParams::default()
            }
        );
        assert_eq!(SamplingParams::greedy(5).temperature, 0.0);
    }
}
