//! What a request asks of the sampler, and the checks that bound it.

/// Largest value the Gumbel noise can take: `-ln(-ln(1 - 2^-53))` is about 36.7.
const MAX_TOP_LOGPROBS: u8 = 20;
const MAX_STOP: usize = 16;
const MAX_STOP_LEN: usize = 256;

/// Sampling parameters of one request. `Default` is greedy decoding of up to 256 tokens.
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
    /// Constrain the output to a document satisfying this JSON schema (JSON text; see
    /// [`crate::json::Schema`]). Implies JSON output; takes precedence over `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
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

/// A sampling parameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    #[error("{name} = {value} is outside {range}")]
    OutOfRange {
        name: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    #[error("stop sequence #{index} is empty")]
    EmptyStop { index: usize },
    #[error("stop sequence #{index} is {len} bytes; the limit is {MAX_STOP_LEN}")]
    StopTooLong { index: usize, len: usize },
    #[error("{count} stop sequences given; the limit is {MAX_STOP}")]
    TooManyStops { count: usize },
    #[error("logit_bias names token {token}, but the vocabulary has {n_vocab} tokens")]
    UnknownToken { token: u32, n_vocab: usize },
    #[error(transparent)]
    Schema(#[from] crate::json::SchemaError),
}

fn range(
    name: &'static str,
    v: f32,
    lo: f32,
    hi: f32,
    text: &'static str,
) -> Result<(), InvalidParams> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(InvalidParams::OutOfRange {
            name,
            value: v.to_string(),
            range: text,
        })
    }
}

impl SamplingParams {
    /// Greedy decoding of `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens,
            ..Self::default()
        }
    }

    /// Check every field against its range and the model's vocabulary size.
    pub fn validate(&self, n_vocab: usize) -> Result<(), InvalidParams> {
        range("temperature", self.temperature, 0.0, 100.0, "[0, 100]")?;
        range("top_p", self.top_p, f32::MIN_POSITIVE, 1.0, "(0, 1]")?;
        range("min_p", self.min_p, 0.0, 1.0, "[0, 1]")?;
        range(
            "repetition_penalty",
            self.repetition_penalty,
            0.01,
            10.0,
            "[0.01, 10]",
        )?;
        range(
            "frequency_penalty",
            self.frequency_penalty,
            -2.0,
            2.0,
            "[-2, 2]",
        )?;
        range(
            "presence_penalty",
            self.presence_penalty,
            -2.0,
            2.0,
            "[-2, 2]",
        )?;
        if self.max_tokens == 0 {
            return Err(InvalidParams::ZeroMaxTokens);
        }
        if let Some(n) = self.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return Err(InvalidParams::OutOfRange {
                name: "top_logprobs",
                value: n.to_string(),
                range: "[0, 20]",
            });
        }
        for &(token, bias) in &self.logit_bias {
            if token as usize >= n_vocab {
                return Err(InvalidParams::UnknownToken { token, n_vocab });
            }
            range("logit_bias", bias, -100.0, 100.0, "[-100, 100]")?;
        }
        if self.stop.len() > MAX_STOP {
            return Err(InvalidParams::TooManyStops {
                count: self.stop.len(),
            });
        }
        for (index, s) in self.stop.iter().enumerate() {
            if s.is_empty() {
                return Err(InvalidParams::EmptyStop { index });
            }
            if s.len() > MAX_STOP_LEN {
                return Err(InvalidParams::StopTooLong {
                    index,
                    len: s.len(),
                });
            }
        }
        if let Some(schema) = &self.json_schema {
            crate::json::Schema::parse(schema)?;
        }
        Ok(())
    }
}
