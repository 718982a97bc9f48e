//! Integration tests for agora-consensus: deterministic simulations of validator networks, the
//! block codec and the mempool.

mod codec;
mod mempool;
mod sim;
