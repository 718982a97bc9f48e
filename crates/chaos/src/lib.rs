//! The chaos and soak suite (issue 18): a local network of separate `agora` processes, each in
//! its own network namespace, driven by client load while a nemesis kills, stalls, partitions
//! and drops packets on a schedule; every operation and fault is written to a history as it
//! happens, and a checker judges the history and the chain afterwards.
//!
//! Ideas taken: CometBFT's e2e runner (a scenario file names the topology and the
//! perturbations), Jepsen (invoke/ok/fail histories checked after the fact, with the smallest
//! failing slice printed), commonware's deterministic runtime (a seed fixes every random choice
//! of the run, so a failing run is replayed with the same scenario and seed).

pub mod check;
pub mod clock;
pub mod disk;
pub mod facts;
pub mod history;
pub mod lab;
pub mod load;
pub mod net;
pub mod procs;
pub mod report;
pub mod run;
pub mod scenario;
pub mod settle;
