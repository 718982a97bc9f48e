//! Reading and checking request bodies: the size and time limits, JSON with OpenAI's refusal of
//! unknown fields, Agora's routing options, and the sampling fields chat and completions share.

use std::collections::BTreeMap;

use agora_market::protocol::SamplingParams;
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, MAX_BODY_BYTES, MAX_DRAIN_BYTES, MAX_N, MAX_TOKENS_LIMIT};
use crate::market::{Constraints, Verification};

/// Reads a request body of at most `MAX_BODY_BYTES`. The rest of a larger one is read and
/// discarded, up to `MAX_DRAIN_BYTES`, so a client still sending gets the 413 rather than a
/// reset connection; memory stays bounded by `MAX_BODY_BYTES` either way. A body that stops
/// arriving is cut off by the router's body timeout and answered with 408.
pub(super) async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let timed_out = std::error::Error::source(&e)
                .is_some_and(|c| c.is::<tower_http::timeout::TimeoutError>());
            if timed_out {
                ApiError::body_timeout()
            } else {
                ApiError::invalid(format!("Could not read the request body: {e}"), None)
            }
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if seen > MAX_DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::too_large());
    }
    Ok(Bytes::from(buf))
}

/// Parses a JSON object body, refusing unknown top-level fields.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, ApiError>,
    known: &[&str],
) -> Result<T, ApiError> {
    let body = body?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let Value::Object(map) = &v else {
        return Err(ApiError::invalid(
            "The request body must be a JSON object.",
            None,
        ));
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("Unrecognized request argument supplied: {k}"),
            Some(k),
        ));
    }
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("Invalid request: {e}"), None))
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct AgoraOptions {
    max_price_per_mtok: Option<u128>,
    min_trust: Option<u8>,
    verification: Option<String>,
}

/// `sampled`, `redundant` or `tee`: the tier names of `docs/design/verification.md`.
fn verification(name: &str) -> Result<Verification, ApiError> {
    match name {
        "sampled" => Ok(Verification::Sampled),
        "redundant" => Ok(Verification::Redundant),
        // The extension point, not a fake: no provider publishes an attestation yet.
        "tee" => Err(ApiError::invalid(
            "verification \"tee\" is not offered yet: no provider on this network publishes a TEE \
             attestation the gateway could check (docs/design/verification.md, \"Trust tiers\"); \
             use \"sampled\" or \"redundant\"",
            Some("agora"),
        )),
        other => Err(ApiError::invalid(
            format!("verification must be \"sampled\", \"redundant\" or \"tee\", not {other:?}"),
            Some("agora"),
        )),
    }
}

pub(super) fn constraints(
    opts: Option<AgoraOptions>,
    headers: &HeaderMap,
) -> Result<Constraints, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut c = Constraints::default();
    if let Some(o) = opts {
        c.max_price_per_mtok = o.max_price_per_mtok;
        c.min_trust = o.min_trust.unwrap_or(0);
        if let Some(v) = &o.verification {
            c.verification = verification(v)?;
        }
    }
    if let Some(v) = header("x-agora-max-price-per-mtok") {
        c.max_price_per_mtok = Some(v.parse().map_err(|_| {
            ApiError::invalid("x-agora-max-price-per-mtok must be an integer", None)
        })?);
    }
    if let Some(v) = header("x-agora-min-trust") {
        c.min_trust = v
            .parse()
            .map_err(|_| ApiError::invalid("x-agora-min-trust must be 0, 1 or 2", None))?;
    }
    if let Some(v) = header("x-agora-verification") {
        c.verification = verification(v)?;
    }
    if c.min_trust > 2 {
        return Err(ApiError::invalid(
            "min_trust must be 0, 1 or 2",
            Some("agora"),
        ));
    }
    Ok(c)
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StopField {
    One(String),
    Many(Vec<String>),
}
#[derive(Deserialize)]
pub(super) struct StreamOptions {
    pub(super) include_usage: Option<bool>,
}

/// Sampling fields common to chat and completions.
#[derive(Deserialize, Default)]
pub(super) struct SamplingFields {
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<StopField>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<BTreeMap<String, f32>>,
    n: Option<u32>,
    /// The token limit's name in errors when it is not chat's (`max_output_tokens`).
    #[serde(skip)]
    limit_param: Option<&'static str>,
}

impl SamplingFields {
    /// The fields the Responses API has: a token limit (named `limit_param` in errors),
    /// temperature and top-p.
    pub(super) fn from_limits(
        max_tokens: Option<u32>,
        temperature: Option<f32>,
        top_p: Option<f32>,
        limit_param: &'static str,
    ) -> Self {
        Self {
            max_completion_tokens: max_tokens,
            temperature,
            top_p,
            limit_param: Some(limit_param),
            ..Self::default()
        }
    }

    pub(super) fn to_sampling(&self, default_max: u32) -> Result<(SamplingParams, u32), ApiError> {
        let max_tokens = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(default_max);
        let param = match self.limit_param {
            Some(p) => p,
            None if self.max_completion_tokens.is_some() => "max_completion_tokens",
            None => "max_tokens",
        };
        if max_tokens == 0 {
            return Err(ApiError::invalid(
                format!("{param} must be at least 1"),
                Some(param),
            ));
        }
        if max_tokens > MAX_TOKENS_LIMIT {
            return Err(ApiError::invalid(
                format!(
                    "{param} is {max_tokens}; the most this gateway accepts is {MAX_TOKENS_LIMIT} (providers also enforce their context length)"
                ),
                Some(param),
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                format!("temperature must be between 0 and 2, got {temperature}"),
                Some("temperature"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                format!("top_p must be in (0, 1], got {top_p}"),
                Some("top_p"),
            ));
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if let Some(v) = v
                && !(-2.0..=2.0).contains(&v)
            {
                return Err(ApiError::invalid(
                    format!("{name} must be between -2 and 2, got {v}"),
                    Some(name),
                ));
            }
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(ApiError::invalid(
                "stop must be up to 4 non-empty sequences of at most 256 bytes",
                Some("stop"),
            ));
        }
        let mut logit_bias = Vec::new();
        if let Some(b) = &self.logit_bias {
            if b.len() > 300 {
                return Err(ApiError::invalid(
                    "logit_bias has more than 300 entries",
                    Some("logit_bias"),
                ));
            }
            for (k, v) in b {
                let id: u32 = k.parse().map_err(|_| {
                    ApiError::invalid(
                        format!("logit_bias key {k:?} is not a token id"),
                        Some("logit_bias"),
                    )
                })?;
                if !(-100.0..=100.0).contains(v) {
                    return Err(ApiError::invalid(
                        "logit_bias values must be between -100 and 100",
                        Some("logit_bias"),
                    ));
                }
                logit_bias.push((id, *v));
            }
        }
        let n = self.n.unwrap_or(1);
        if n == 0 || n > MAX_N {
            return Err(ApiError::invalid(
                format!("n must be between 1 and {MAX_N}"),
                Some("n"),
            ));
        }
        // Without a client seed the gateway picks one, so a failover continues the same text.
        let seed = self.seed.map_or_else(rand::random::<u64>, |s| s as u64);
        Ok((
            SamplingParams {
                temperature,
                top_p,
                frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
                presence_penalty: self.presence_penalty.unwrap_or(0.0),
                stop,
                max_tokens,
                seed,
                logit_bias,
                ..SamplingParams::default()
            },
            n,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sampling_fields_are_validated_with_the_offending_param() {
        let f = |v: Value| {
            serde_json::from_value::<SamplingFields>(v)
                .unwrap()
                .to_sampling(16)
        };
        assert_eq!(
            f(json!({"max_tokens": 0})).unwrap_err().param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            f(json!({"max_completion_tokens": 2_000_000}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_completion_tokens")
        );
        assert_eq!(
            f(json!({"temperature": 3.0})).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(f(json!({"n": 9})).unwrap_err().param.as_deref(), Some("n"));
        assert_eq!(
            f(json!({"stop": ["a","b","c","d","e"]}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("stop")
        );
        assert_eq!(
            f(json!({"stop": [""]})).unwrap_err().param.as_deref(),
            Some("stop")
        );
        assert_eq!(
            f(json!({"logit_bias": {"x": 1}}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("logit_bias")
        );
        let (s, n) = f(json!({"max_tokens": 5, "seed": 3, "stop": "x", "n": 2})).unwrap();
        assert_eq!(
            (s.max_tokens, s.seed, s.stop, n),
            (5, 3, vec!["x".to_string()], 2)
        );
    }
}
