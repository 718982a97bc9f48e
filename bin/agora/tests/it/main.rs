//! End-to-end tests of the `agora` binary: real processes, real sockets.

mod markets;
mod wallet;
