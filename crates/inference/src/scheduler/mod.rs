//! Continuous batching over one [`Engine`](crate::engine::Engine), with streaming, cancellation
//! and prefix reuse.
//!
//! One thread owns the engine. Requests arrive through a bounded queue; a full queue is an
//! immediate [`SubmitError::Overloaded`]. Each admitted request gets a *slot* (a KV-cache
//! sequence). Every step builds one multi-sequence batch: one token for each decoding sequence,
//! then prompt chunks of prefilling sequences up to the batch limit. New requests join between
//! steps, so a long prompt never stalls the others for more than one chunk.
//!
//! ```text
//!  submit() --try_send--> [bounded queue] --admit when a slot is free--> slots[0..n_seq]
//!                                                                         |  prefix reuse:
//!  Stream <--Token/Done events-- sample (our Sampler) <-- logits <-- decode(batch)  keep KV of the
//!                                                                            longest common prefix
//! ```
//!
//! A finished slot keeps its tokens and KV cache; the next request whose prompt shares a prefix
//! with it (the next turn of a conversation) only prefills the new suffix. Dropping a [`Stream`]
//! or calling [`Stream::cancel`] ends the request at the next step and frees its slot.
//!
//! The module is split along that picture: `api` holds what callers see (the [`Scheduler`]
//! handle, [`Request`], [`Event`], [`Usage`], the errors), `runner` the engine thread's loop
//! (slots, batching, prefix reuse), and `generation` one sequence's state between tokens
//! (sampler, stop sequences, JSON constraint, continuation replay).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc::UnboundedSender;

mod api;
mod generation;
mod runner;
#[cfg(test)]
pub(crate) mod tests;

pub use api::{
    Completion, Event, FinishReason, GenerateError, LoadError, Output, Prompt, Request, Scheduler,
    SchedulerConfig, Serve, Stream, SubmitError, Task, TokenEvent, Usage,
};
pub use generation::{JsonMask, replay_generation};

/// One queued request, from [`Scheduler::submit`] to the engine thread.
struct Job {
    request: Request,
    events: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
}
