//! Integration tests of the ledger: one binary, one module per concern.

mod audits;
mod audits_model;
mod consensus_evidence;
mod emission;
mod golden;
mod markets;
mod model;
mod scenarios;
mod strangers;
mod yuma;
mod yuma_sim;
