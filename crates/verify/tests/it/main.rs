//! Integration tests of agora-verify: golden TOPLOC vectors from the independent Python
//! reference, and untrusted-byte decoding.

mod decode;
mod golden;
