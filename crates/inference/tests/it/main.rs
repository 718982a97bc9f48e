//! Integration tests on the real model files (SmolLM2-135M-Instruct, Gemma 3 270M, MiniLM).
//!
//! The files come from `scripts/fetch-models.sh`; the tests read `AGORA_MODELS_DIR` (default: the
//! workspace's `models/`) and fail with instructions when a file is missing. Everything runs on one
//! thread and generates few tokens to keep CI cheap.

mod common;
mod embeddings;
mod errors;
mod generation;
mod hidden;
mod resume;
mod schema;
mod template;
