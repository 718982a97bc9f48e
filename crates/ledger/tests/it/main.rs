//! Integration tests of the ledger: one binary, one module per concern.

mod golden;
mod model;
mod scenarios;
