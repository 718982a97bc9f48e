//! Slow tests (excluded from the default nextest profile).
