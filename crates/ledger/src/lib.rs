//! The pure deterministic ledger state machine: apply(state, block) -> (state', receipts, events).
