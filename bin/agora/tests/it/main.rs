//! End-to-end tests of the `agora` binary: real processes, real sockets.

mod doctor;
mod logs;
mod markets;
mod wallet;
