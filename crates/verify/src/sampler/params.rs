//! The checks that bound what a request asks of the sampler. The parameters themselves are
//! `agora_types::SamplingParams`, the one definition the gateway, the job and the receipt share.

pub use agora_types::SamplingParams;

/// Alternatives per token OpenAI allows (`top_logprobs`).
const MAX_TOP_LOGPROBS: u8 = 20;
const MAX_STOP: usize = 16;
const MAX_STOP_LEN: usize = 256;
/// The repetition-penalty window (llama.cpp's default is 64).
const MAX_PENALTY_LAST_N: u32 = 8192;

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
    Schema(#[from] agora_json::SchemaError),
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

/// Check every field of `p` against its range and the model's vocabulary size.
pub fn validate(p: &SamplingParams, n_vocab: usize) -> Result<(), InvalidParams> {
    range("temperature", p.temperature, 0.0, 100.0, "[0, 100]")?;
    range("top_p", p.top_p, f32::MIN_POSITIVE, 1.0, "(0, 1]")?;
    range("min_p", p.min_p, 0.0, 1.0, "[0, 1]")?;
    range(
        "repetition_penalty",
        p.repetition_penalty,
        0.01,
        10.0,
        "[0.01, 10]",
    )?;
    range(
        "frequency_penalty",
        p.frequency_penalty,
        -2.0,
        2.0,
        "[-2, 2]",
    )?;
    range("presence_penalty", p.presence_penalty, -2.0, 2.0, "[-2, 2]")?;
    if p.penalty_last_n > MAX_PENALTY_LAST_N {
        return Err(InvalidParams::OutOfRange {
            name: "penalty_last_n",
            value: p.penalty_last_n.to_string(),
            range: "[0, 8192]",
        });
    }
    if p.max_tokens == 0 {
        return Err(InvalidParams::ZeroMaxTokens);
    }
    if let Some(n) = p.logprobs
        && n > MAX_TOP_LOGPROBS
    {
        return Err(InvalidParams::OutOfRange {
            name: "top_logprobs",
            value: n.to_string(),
            range: "[0, 20]",
        });
    }
    for &(token, bias) in &p.logit_bias {
        if token as usize >= n_vocab {
            return Err(InvalidParams::UnknownToken { token, n_vocab });
        }
        range("logit_bias", bias, -100.0, 100.0, "[-100, 100]")?;
    }
    if p.stop.len() > MAX_STOP {
        return Err(InvalidParams::TooManyStops {
            count: p.stop.len(),
        });
    }
    for (index, s) in p.stop.iter().enumerate() {
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
    if let Some(schema) = &p.json_schema {
        agora_json::Schema::parse(schema)?;
    }
    Ok(())
}
