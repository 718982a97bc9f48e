//! Dev-only helpers: seeded keys, genesis and transaction generators, fixtures.
