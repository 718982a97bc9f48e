//! Backends behind the [`crate::Engine`] trait (and the candle embedder).

pub mod candle;
#[cfg(feature = "llama-cpp")]
pub mod llama_cpp;
pub mod test_engine;
