//! Integration tests of the types crate.

mod fuzz;
mod json;
