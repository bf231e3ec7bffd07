//! Shared by the `fedavg` example and the integration tests: the digits data (or a synthetic
//! stand-in), the reference's client split, and a candle-nn MLP trainer.
#![allow(dead_code)]

pub mod digits;
pub mod mlp;
pub mod rng;
