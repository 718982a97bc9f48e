//! The most a job can cost, computed by the payer from what it sent, never from what the
//! provider reports.
//!
//! A provider's `Started { prompt_tokens }` and its token frames are claims. The gateway pays for
//! them only inside these bounds; a frame beyond them is refused, unpaid, and the provider counts
//! as failed. The bounds hold for every tokenizer we serve:
//! - a token of a byte-level BPE or a SentencePiece model with byte fallback covers at least one
//!   byte of its text, so a text of `b` bytes is at most `b` tokens;
//! - the chat template adds its markers and possibly a default system prompt: at most
//!   [`TEMPLATE_TOKENS`] per request plus [`TOKENS_PER_MESSAGE`] per message (generous: a
//!   template that injects a long default system prompt needs a larger allowance);
//! - a chat with tools or tool turns may render natively (the template's own tool section): the
//!   engine does so only within `agora_json::tools::native_limit` bytes, which the bound
//!   covers, and otherwise falls back to the format counted above;
//! - a continuation is counted exactly: the payer sent those token ids;
//! - an embedding input adds at most [`TOKENS_PER_INPUT`] special tokens (`[CLS]`, `[SEP]`).

use agora_json::tools::{native_limit, prompt_messages};
use agora_types::{Amount, SamplingParams};

use crate::protocol::{Price, Work};

/// Template tokens a chat request may add once (markers, BOS, a default system prompt).
pub const TEMPLATE_TOKENS: u64 = 256;
/// Template tokens a chat request may add per message (role markers, separators).
pub const TOKENS_PER_MESSAGE: u64 = 16;
/// Special tokens a plain prompt or an embedding input may add (BOS, `[CLS]`, `[SEP]`).
pub const TOKENS_PER_INPUT: u64 = 4;

/// The most prompt tokens a provider may bill for `work` plus `continuation` tokens: the bytes
/// the payer sent plus the template's overhead (see the module's notes). Saturates at
/// `u32::MAX`, which no honest count reaches.
pub fn prompt_token_bound(work: &Work, continuation: usize) -> u32 {
    let text: u64 = match work {
        // The turns the engine renders: with tools, their instruction and the calls and results
        // written out (`agora_json::tools`), counted from what the payer sent.
        Work::Chat { messages, tools } => {
            let fallback = prompt_messages(messages, tools.as_ref())
                .iter()
                .map(|m| {
                    (m.role.len() as u64)
                        .saturating_add(m.content.len() as u64)
                        .saturating_add(TOKENS_PER_MESSAGE)
                })
                .fold(TEMPLATE_TOKENS, u64::saturating_add);
            if tools.is_some() || agora_json::tools::has_tool_turns(messages) {
                // The engine's native rendering: at most this many bytes, plus BOS.
                let native = native_limit(messages, tools.as_ref()) as u64;
                fallback.max(native.saturating_add(TOKENS_PER_INPUT))
            } else {
                fallback
            }
        }
        Work::Text { prompt } => (prompt.len() as u64).saturating_add(TOKENS_PER_INPUT),
        Work::Embed { inputs } => inputs
            .iter()
            .map(|s| (s.len() as u64).saturating_add(TOKENS_PER_INPUT))
            .fold(0, u64::saturating_add),
    };
    let total = text.saturating_add(continuation as u64);
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The most generated tokens a job may bill: `max_tokens` minus what earlier providers already
/// delivered (a failover continues the same completion); none for embeddings.
pub fn completion_token_bound(work: &Work, sampling: &SamplingParams, delivered: usize) -> u32 {
    match work {
        Work::Embed { .. } => 0,
        _ => sampling
            .max_tokens
            .saturating_sub(u32::try_from(delivered).unwrap_or(u32::MAX)),
    }
}

/// The most a job can cost at `price`: both bounds at once. `None` when even that overflows.
pub fn max_cost(
    price: &Price,
    work: &Work,
    sampling: &SamplingParams,
    continuation: usize,
) -> Option<Amount> {
    price.cost(
        u64::from(prompt_token_bound(work, continuation)),
        u64::from(completion_token_bound(work, sampling, continuation)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatMessage;

    #[test]
    fn the_bound_grows_with_what_was_sent_and_nothing_else() {
        let hi = Work::Chat {
            messages: vec![ChatMessage::new("user", "hi")],
            tools: None,
        };
        // "user" + "hi" + one message's and one request's template allowance.
        assert_eq!(prompt_token_bound(&hi, 0), 4 + 2 + 16 + 256);
        assert_eq!(prompt_token_bound(&hi, 10), 4 + 2 + 16 + 256 + 10);
        let text = Work::Text {
            prompt: "é".into()
        };
        assert_eq!(prompt_token_bound(&text, 0), 2 + 4);
        let embed = Work::Embed {
            inputs: vec!["a".into(), "bc".into()],
        };
        assert_eq!(prompt_token_bound(&embed, 0), 1 + 4 + 2 + 4);
        assert_eq!(
            completion_token_bound(&embed, &SamplingParams::default(), 0),
            0
        );
        let s = SamplingParams::greedy(10);
        assert_eq!(completion_token_bound(&hi, &s, 3), 7);
        assert_eq!(completion_token_bound(&hi, &s, 30), 0);
    }

    #[test]
    fn tools_count_as_the_text_the_engine_renders() {
        use agora_types::{Tool, ToolChoice, Tools};
        let tools = Tools {
            list: vec![Tool {
                name: "get_weather".into(),
                description: "Weather now".into(),
                parameters: "{\"type\":\"object\"}".into(),
            }],
            choice: ToolChoice::Auto,
            parallel: false,
        };
        let plain = vec![ChatMessage::new("user", "hi")];
        let with = Work::Chat {
            messages: plain.clone(),
            tools: Some(tools.clone()),
        };
        // Fallback: the instruction becomes a system message of its own, its bytes and one
        // message's allowance more than the chat without tools. Native: the engine's limit on
        // its rendering, plus BOS. The bound covers both.
        let instruction = agora_json::tools::instruction(&tools);
        let fallback = 4 + 2 + 16 + 256 + ("system".len() + instruction.len()) as u32 + 16;
        let native = native_limit(&plain, Some(&tools)) as u32 + 4;
        assert!(native > fallback);
        assert_eq!(prompt_token_bound(&with, 0), native);
    }

    /// llama.cpp's native renderings of its tool templates (the inference crate's golden
    /// fixture), with Agora's one-line format statement added, are within the bound.
    #[test]
    fn native_tool_renderings_are_within_the_bound() {
        use agora_types::{ToolChoice, Tools};
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../inference/tests/fixtures/chat_templates.json"
        ))
        .unwrap();
        let mut checked = 0;
        for entry in fixture["tool_templates"].as_array().unwrap() {
            for case in entry["cases"].as_array().unwrap() {
                if case["tools"].as_array().is_none() {
                    continue;
                }
                let (messages, list) =
                    agora_testkit::openai_chat(&case["messages"], &case["tools"]);
                let tools = Tools {
                    list,
                    choice: ToolChoice::Auto,
                    parallel: true,
                };
                let rendered = case["prompt"].as_str().unwrap().len()
                    + agora_json::tools::format_line(&tools).len()
                    + "\n\n".len();
                assert!(
                    rendered <= native_limit(&messages, Some(&tools)),
                    "{}: {rendered}",
                    entry["file"]
                );
                let work = Work::Chat {
                    messages,
                    tools: Some(tools),
                };
                // One token per byte, and one more for BOS.
                assert!((rendered as u32) < prompt_token_bound(&work, 0));
                checked += 1;
            }
        }
        assert_eq!(checked, 27);
    }

    #[test]
    fn max_cost_is_the_price_of_both_bounds() {
        let price = Price {
            input_per_million: Amount(1_000_000),
            output_per_million: Amount(2_000_000),
        };
        let work = Work::Text {
            prompt: "abcd".into(),
        };
        let s = SamplingParams::greedy(5);
        assert_eq!(max_cost(&price, &work, &s, 0), Some(Amount(8 + 2 * 5)));
    }
}
