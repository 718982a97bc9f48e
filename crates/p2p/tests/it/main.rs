//! Integration tests of the overlay over real sockets on loopback (and, for NAT traversal, in
//! network namespaces made by the test).

mod common;
mod discovery;
mod hostile;
mod nat;
mod streaming;
mod swarm20;
