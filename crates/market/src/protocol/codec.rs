//! The binary encoding of jobs and frames on `/agora/infer/3`, in `agora_types::codec`'s rules:
//! fixed-width integers, lengths checked against a per-field maximum and the bytes left before
//! anything is allocated, unknown tags refused, no trailing bytes. Floats travel as their IEEE-754
//! bits and must be finite, as JSON (the encoding of `/agora/infer/1`) could carry no other.
//!
//! Binary because JSON cost a fifth of the gateway benchmark's CPU: bech32 addresses and hex
//! hashes in every receipt, hex proofs, and a parse per token frame.

use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::{ChatMessage, SamplingParams, Tool, ToolCall, ToolChoice, Tools, Usage};

use super::{
    Frame, Job, MAX_CONTINUATION, MAX_ITEMS, MAX_TEXT_BYTES, MAX_TOOLS, ProofBytes, SignedReceipt,
    Tok, Work,
};
use crate::failure::FailureCode;

/// Longest role name (`system`, `user`, `assistant`; the engine refuses others).
const MAX_ROLE: usize = 64;
/// Longest tool call id and function name.
const MAX_TOOL_NAME: usize = 256;
/// Most tool calls in one assistant message.
const MAX_CALLS: usize = 128;
/// Longest text one token frame entry carries (a token's piece plus bytes held back before it).
const MAX_TOKEN_TEXT: usize = 64 * 1024;
/// Most tokens in one frame, and most alternatives per token.
const MAX_TOKENS_PER_FRAME: usize = 64 * 1024;
const MAX_TOP: usize = 256;
/// Longest finish reason and failure code name.
const MAX_NAME: usize = 64;
/// Longest failure message.
const MAX_MESSAGE: usize = 16 * 1024;
/// Most dimensions of one embedding vector.
const MAX_DIMS: usize = 64 * 1024;
/// Longest proof of inference one frame carries (frames are capped lower by the overlay).
const MAX_PROOF: usize = 16 << 20;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_bytes(s.as_bytes());
}

fn strings(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<Vec<String>, DecodeError> {
    let n = r.len(what, MAX_ITEMS, 4)?;
    (0..n).map(|_| r.string(what, max)).collect()
}

fn put_strings(out: &mut Vec<u8>, v: &[String]) {
    out.put_len(v.len());
    for s in v {
        put_str(out, s);
    }
}

impl Encode for Work {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Work::Chat { messages, tools } => {
                out.put_u8(0);
                out.put_len(messages.len());
                for m in messages {
                    put_message(out, m);
                }
                match tools {
                    None => out.put_u8(0),
                    Some(t) => {
                        out.put_u8(1);
                        put_tools(out, t);
                    }
                }
            }
            Work::Text { prompt } => {
                out.put_u8(1);
                put_str(out, prompt);
            }
            Work::Embed { inputs } => {
                out.put_u8(2);
                put_strings(out, inputs);
            }
        }
    }
}

impl Decode for Work {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => {
                let n = r.len("messages", MAX_ITEMS, 8)?;
                let messages = (0..n)
                    .map(|_| message(r))
                    .collect::<Result<_, DecodeError>>()?;
                let tools = match r.u8()? {
                    0 => None,
                    1 => Some(tools(r)?),
                    tag => return Err(DecodeError::InvalidTag { what: "tools", tag }),
                };
                Work::Chat { messages, tools }
            }
            1 => Work::Text {
                prompt: r.string("prompt", MAX_TEXT_BYTES)?,
            },
            2 => Work::Embed {
                inputs: strings(r, "inputs", MAX_TEXT_BYTES)?,
            },
            tag => return Err(DecodeError::InvalidTag { what: "work", tag }),
        })
    }
}

// ChatMessage and Tools are agora-types' (the engine renders them); their encoding, bounded by
// this protocol's limits, lives here as functions.
fn put_message(out: &mut Vec<u8>, m: &ChatMessage) {
    put_str(out, &m.role);
    put_str(out, &m.content);
    out.put_len(m.tool_calls.len());
    for c in &m.tool_calls {
        put_str(out, &c.id);
        put_str(out, &c.name);
        put_str(out, &c.arguments);
    }
    match &m.tool_call_id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            put_str(out, id);
        }
    }
}

fn message(r: &mut Reader<'_>) -> Result<ChatMessage, DecodeError> {
    let role = r.string("role", MAX_ROLE)?;
    let content = r.string("content", MAX_TEXT_BYTES)?;
    let n = r.len("tool_calls", MAX_CALLS, 12)?;
    let tool_calls = (0..n)
        .map(|_| {
            Ok(ToolCall {
                id: r.string("tool call id", MAX_TOOL_NAME)?,
                name: r.string("tool call name", MAX_TOOL_NAME)?,
                arguments: r.string("tool call arguments", MAX_TEXT_BYTES)?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let tool_call_id = match r.u8()? {
        0 => None,
        1 => Some(r.string("tool_call_id", MAX_TOOL_NAME)?),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "tool_call_id",
                tag,
            });
        }
    };
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

fn put_tools(out: &mut Vec<u8>, tools: &Tools) {
    out.put_len(tools.list.len());
    for t in &tools.list {
        put_str(out, &t.name);
        put_str(out, &t.description);
        put_str(out, &t.parameters);
    }
    match &tools.choice {
        ToolChoice::Auto => out.put_u8(0),
        ToolChoice::Required => out.put_u8(1),
        ToolChoice::Function(name) => {
            out.put_u8(2);
            put_str(out, name);
        }
    }
    out.put_bool(tools.parallel);
}

fn tools(r: &mut Reader<'_>) -> Result<Tools, DecodeError> {
    let n = r.len("tools", MAX_TOOLS, 12)?;
    let list = (0..n)
        .map(|_| {
            Ok(Tool {
                name: r.string("tool name", MAX_TOOL_NAME)?,
                description: r.string("tool description", MAX_TEXT_BYTES)?,
                parameters: r.string("tool parameters", MAX_TEXT_BYTES)?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let choice = match r.u8()? {
        0 => ToolChoice::Auto,
        1 => ToolChoice::Required,
        2 => ToolChoice::Function(r.string("tool_choice", MAX_TOOL_NAME)?),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "tool_choice",
                tag,
            });
        }
    };
    Ok(Tools {
        list,
        choice,
        parallel: r.bool("parallel_tool_calls")?,
    })
}

impl Encode for Job {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.request_id.encode_to(out);
        self.work.encode_to(out);
        self.sampling.encode_to(out);
        out.put_len(self.continuation.len());
        for &t in &self.continuation {
            out.put_u32(t);
        }
        self.payer.encode_to(out);
        self.channel.encode_to(out);
        self.price.encode_to(out);
    }
}

impl Decode for Job {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request_id = Decode::decode_from(r)?;
        let work = Work::decode_from(r)?;
        let sampling = SamplingParams::decode_from(r)?;
        let n = r.len("continuation", MAX_CONTINUATION, 4)?;
        let continuation = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
        Ok(Job {
            request_id,
            work,
            sampling,
            continuation,
            payer: Decode::decode_from(r)?,
            channel: Decode::decode_from(r)?,
            price: Decode::decode_from(r)?,
        })
    }
}

impl Encode for Tok {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u32(self.id);
        put_str(out, &self.text);
        match self.logprob {
            None => out.put_u8(0),
            Some(l) => {
                out.put_u8(1);
                out.put_f32(l);
            }
        }
        out.put_len(self.top.len());
        for &(id, l) in &self.top {
            out.put_u32(id);
            out.put_f32(l);
        }
        put_strings(out, &self.top_text);
    }
}

impl Decode for Tok {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u32()?;
        let text = r.string("token text", MAX_TOKEN_TEXT)?;
        let logprob = if r.bool("logprob")? {
            // A log-probability that is not finite travelled as JSON `null`: absent.
            Some(f32::from_bits(r.u32()?)).filter(|l| l.is_finite())
        } else {
            None
        };
        let n = r.len("top logprobs", MAX_TOP, 8)?;
        let top = (0..n)
            .map(|_| Ok((r.u32()?, r.finite_f32("top logprob")?)))
            .collect::<Result<_, DecodeError>>()?;
        let n = r.len("top texts", MAX_TOP, 4)?;
        let top_text = (0..n)
            .map(|_| r.string("top text", MAX_TOKEN_TEXT))
            .collect::<Result<_, _>>()?;
        Ok(Tok {
            id,
            text,
            logprob,
            top,
            top_text,
        })
    }
}

fn put_usage(out: &mut Vec<u8>, u: &Usage) {
    out.put_u32(u.prompt_tokens);
    out.put_u32(u.completion_tokens);
    out.put_u32(u.cached_tokens);
}

fn usage(r: &mut Reader<'_>) -> Result<Usage, DecodeError> {
    Ok(Usage {
        prompt_tokens: r.u32()?,
        completion_tokens: r.u32()?,
        cached_tokens: r.u32()?,
    })
}

impl Encode for ProofBytes {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.0);
    }
}

impl Decode for ProofBytes {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProofBytes(r.bytes("proof", MAX_PROOF)?))
    }
}

impl Encode for Frame {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Started {
                prompt_tokens,
                cached_tokens,
            } => {
                out.put_u8(0);
                out.put_u32(*prompt_tokens);
                out.put_u32(*cached_tokens);
            }
            Frame::Tokens { tokens } => {
                out.put_u8(1);
                out.put_vec(tokens);
            }
            Frame::Text { text } => {
                out.put_u8(2);
                put_str(out, text);
            }
            Frame::Embeddings {
                first_index,
                vectors,
            } => {
                out.put_u8(3);
                out.put_u32(*first_index);
                out.put_len(vectors.len());
                for v in vectors {
                    out.put_len(v.len());
                    for &x in v {
                        out.put_f32(x);
                    }
                }
            }
            Frame::Done {
                finish_reason,
                usage,
                receipt,
                proof,
            } => {
                out.put_u8(4);
                put_str(out, finish_reason);
                put_usage(out, usage);
                receipt.encode_to(out);
                out.put_option(proof);
            }
            Frame::Failed {
                code,
                message,
                receipt,
                proof,
            } => {
                out.put_u8(5);
                put_str(out, &code.to_string());
                put_str(out, message);
                match receipt {
                    None => out.put_u8(0),
                    Some(r) => {
                        out.put_u8(1);
                        r.encode_to(out);
                    }
                }
                out.put_option(proof);
            }
        }
    }
}

impl Decode for Frame {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Frame::Started {
                prompt_tokens: r.u32()?,
                cached_tokens: r.u32()?,
            },
            1 => Frame::Tokens {
                tokens: r.vec("tokens", MAX_TOKENS_PER_FRAME, 17)?,
            },
            2 => Frame::Text {
                text: r.string("text", MAX_TOKEN_TEXT)?,
            },
            3 => {
                let first_index = r.u32()?;
                let n = r.len("vectors", MAX_ITEMS, 4)?;
                let vectors = (0..n)
                    .map(|_| {
                        let dims = r.len("dimensions", MAX_DIMS, 4)?;
                        (0..dims).map(|_| r.finite_f32("embedding")).collect()
                    })
                    .collect::<Result<_, DecodeError>>()?;
                Frame::Embeddings {
                    first_index,
                    vectors,
                }
            }
            4 => Frame::Done {
                finish_reason: r.string("finish reason", MAX_NAME)?,
                usage: usage(r)?,
                receipt: Box::new(SignedReceipt::decode_from(r)?),
                proof: r.option("proof")?,
            },
            5 => Frame::Failed {
                code: FailureCode::from_name(&r.string("failure code", MAX_NAME)?),
                message: r.string("failure message", MAX_MESSAGE)?,
                receipt: if r.bool("receipt")? {
                    Some(Box::new(SignedReceipt::decode_from(r)?))
                } else {
                    None
                },
                proof: r.option("proof")?,
            },
            tag => return Err(DecodeError::InvalidTag { what: "frame", tag }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::InferenceReceipt;
    use agora_types::{Amount, Hash, Price, SecretKey};

    fn receipt() -> SignedReceipt {
        let key = SecretKey::from_test_seed("provider");
        InferenceReceipt {
            chain_id: "agora-test".into(),
            request_id: Hash([1; 32]),
            provider: key.public(),
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([2; 32]),
            model: Hash([3; 32]),
            seed: 7,
            params_hash: Hash([4; 32]),
            work_hash: Hash([5; 32]),
            continuation_hash: Hash([6; 32]),
            prompt_hash: Hash([7; 32]),
            engine: "agora test".into(),
            prompt_tokens: 10,
            completion_tokens: 2,
            continuation_tokens: 0,
            price: Price {
                input_per_million: Amount(1),
                output_per_million: Amount(2),
            },
            charged: Amount(0),
            output_hash: Hash([8; 32]),
            time_ms: 1,
            complete: true,
            proof_hash: Hash([9; 32]),
        }
        .sign(&key)
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Started {
                prompt_tokens: 12,
                cached_tokens: 3,
            },
            Frame::Tokens {
                tokens: vec![
                    Tok {
                        id: 42,
                        text: "héllo".into(),
                        logprob: Some(-0.25),
                        top: vec![(42, -0.25), (7, -2.0)],
                        top_text: vec!["héllo".into(), "x".into()],
                    },
                    Tok {
                        id: 43,
                        text: String::new(),
                        logprob: None,
                        top: vec![],
                        top_text: vec![],
                    },
                ],
            },
            Frame::Text {
                text: "tail".into(),
            },
            Frame::Embeddings {
                first_index: 2,
                vectors: vec![vec![0.5, -1.0], vec![]],
            },
            Frame::Done {
                finish_reason: "stop".into(),
                usage: Usage {
                    prompt_tokens: 10,
                    completion_tokens: 2,
                    cached_tokens: 0,
                },
                receipt: Box::new(receipt()),
                proof: Some(ProofBytes(vec![1, 2, 3])),
            },
            Frame::Failed {
                code: FailureCode::Overloaded,
                message: "busy".into(),
                receipt: Some(Box::new(receipt())),
                proof: None,
            },
        ]
    }

    #[test]
    fn every_frame_decodes_as_it_was_encoded_and_the_receipt_still_verifies() {
        for f in frames() {
            let back = Frame::decode(&f.encode()).unwrap();
            assert_eq!(back, f);
            if let Frame::Done { receipt, .. } = back {
                assert!(receipt.verify());
            }
        }
    }

    /// A hostile provider's bytes: every cut, every extra byte, every flipped tag and length is a
    /// clean error, never a panic or a huge allocation.
    #[test]
    fn truncated_padded_and_mangled_frames_are_refused() {
        for f in frames() {
            let bytes = f.encode();
            for cut in 0..bytes.len() {
                assert!(Frame::decode(&bytes[..cut]).is_err(), "{f:?} cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(Frame::decode(&long).is_err());
            for at in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[at] ^= 0xff;
                let _ = Frame::decode(&bad);
            }
        }
        assert!(Frame::decode(&[9]).is_err());
        // A length far beyond the bytes present is refused before allocating.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frame::decode(&huge).is_err());
        // Floats JSON could not carry are refused where they would be used.
        let mut nan = Frame::Embeddings {
            first_index: 0,
            vectors: vec![vec![f32::NAN]],
        };
        assert!(Frame::decode(&nan.encode()).is_err());
        nan = Frame::Tokens {
            tokens: vec![Tok {
                id: 1,
                text: String::new(),
                logprob: Some(f32::NEG_INFINITY),
                top: vec![],
                top_text: vec![],
            }],
        };
        let Ok(Frame::Tokens { tokens }) = Frame::decode(&nan.encode()) else {
            panic!("a token frame with a -inf logprob")
        };
        assert_eq!(tokens[0].logprob, None);
    }
}
