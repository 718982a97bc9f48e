//! Proofs of inference and the checks an auditor runs on them: TOPLOC hidden-state proofs, the replayable sampler and a token-level replay check, pure and runtime free.
//!
//! ```text
//!   provider (agora-inference)                     auditor (one prefill of prompt ++ output)
//!   decode: hidden rows, sampled tokens            its own hidden rows and logits
//!        |                                                  |
//!        |  toploc::prove(rows, prompt_len) -> Proof        |
//!        |  (258 B per 32 tokens + 258 B prefill)           |
//!        +---------- Proof, tokens, SamplingParams -------->|
//!                                                           |  toploc::verify(proof, rows, ..)
//!                                                           |    -> Verdict (per-chunk stats)
//!                                                           |  tokens::check(params, tokens, logits, ..)
//!                                                           |    -> TokenReport (per-token margins)
//! ```
//!
//! * [`toploc`]: the TOPLOC proof (arXiv 2501.16007) over final-norm hidden states, integer-only
//!   and byte-compatible with the upstream wire format; catches a different model, prompt or
//!   precision.
//! * [`sampler`]: Agora's replayable sampler (Gumbel-max over a keyed PRF). It lives here so that
//!   the provider (through `agora_inference::sampler`, a re-export) and the auditor run the same
//!   code.
//! * [`tokens`]: the token-level replay check (Token-DiFR style), which closes TOPLOC's prefill
//!   attack: every claimed token must be the one our sampler picks from the auditor's logits, up
//!   to a near-tie tolerance.
//!
//! Nothing here needs a runtime, the network or a model: inputs are rows of numbers and token ids.
//! Design notes: `docs/design/verification.md`.

pub mod sampler;
pub mod tokens;
pub mod toploc;

mod rows;

pub use rows::{Rows, RowsError, flatten};
