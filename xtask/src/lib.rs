//! Project tasks behind `cargo xtask`: the conformance runner (also used by `cargo test`).
#![forbid(unsafe_code)]

pub mod conformance;
mod encode_case;
