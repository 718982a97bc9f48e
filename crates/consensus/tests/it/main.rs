//! Integration tests for agora-consensus: deterministic simulations of validator networks.

mod codec;
mod sim;
