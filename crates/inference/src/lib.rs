//! One Engine trait with a llama.cpp serving backend and a candle backend, and Agora's own replayable sampler, scheduler and hidden-state capture above it.
//!
//! ```text
//!   agora generate / chat / provider / gateway
//!                 |  Request -> Stream of Event (Token, Text, Done, Error)
//!        +--------v---------+
//!        |    Scheduler     |  continuous batching, bounded queue, cancellation, prefix reuse
//!        |  Sampler (ours)  |  Gumbel-max with PRF(seed, position, token): replayable anywhere
//!        |  TextStream/JSON |  UTF-8-safe streaming, stop sequences, JSON mode
//!        +--------+---------+
//!                 |  Engine trait: tokenize, decode(batch), logits(i), hidden(i), truncate_seq
//!      +----------+-----------+
//!      | backends::llama_cpp  |  llama.cpp via llama-cpp-2 (CPU, CUDA, Vulkan, Metal)
//!      | backends::candle     |  embeddings (MiniLM), quantized-llama comparison
//!      +----------------------+
//! ```
//!
//! Model files come from the [`store`]; every GGUF file passes [`gguf::inspect`] before a backend
//! opens it. Design notes and measured tolerances: `docs/design/inference.md`.

pub mod backends;
#[cfg(feature = "llama-cpp")]
pub mod bench;
pub mod engine;
pub mod gguf;
#[cfg(feature = "llama-cpp")]
pub mod proof_bench;
pub mod requant;
pub mod scheduler;
pub mod store;
pub mod template;
pub mod text;
pub mod vocab;

/// JSON mode and JSON-schema constraints (the `agora-json` crate).
pub use agora_json as json;
/// The replayable sampler (it lives in `agora-verify`, so an auditor replays the very same code).
pub use agora_verify::sampler;
pub use engine::{ChatMessage, Engine, ModelInfo, TokenId};
pub use sampler::SamplingParams;
pub use scheduler::{
    Completion, Event, FinishReason, GenerateError, JsonMask, LoadError, Output, Prompt, Request,
    Scheduler, SchedulerConfig, Stream, SubmitError, Task, TokenEvent, Usage, replay_generation,
};
pub use vocab::{Pieces, Vocabulary};
