//! One module per command family.
pub mod net;
