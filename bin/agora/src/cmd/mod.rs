//! One module per command family.

pub mod agent;
pub mod ask;
pub mod bench;
#[cfg(feature = "llama-cpp")]
pub mod bench_inference;
pub mod bench_ledger;
#[cfg(feature = "llama-cpp")]
pub mod bench_proofs;
#[cfg(feature = "llama-cpp")]
pub mod chat;
#[cfg(feature = "llama-cpp")]
pub mod chat_remote;
pub mod dev;
pub mod doctor;
#[cfg(feature = "llama-cpp")]
pub mod generate;
pub mod market;
pub mod models;
pub mod net;
pub mod node;
pub mod serve;
pub mod testnet;
pub mod wallet;
