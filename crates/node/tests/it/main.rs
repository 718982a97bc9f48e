//! Integration tests of the node: one binary, one module per concern.

mod builder;
mod crash;
mod rpc;
