//! Integration tests of the node: one binary, one module per concern.

mod crash;
mod rpc;
