//! Whole models for NNC: named tensor sets read from and written to model files.
//!
//! Does not know about: arithmetic coding, quantization details, federated learning, ML frameworks.
//!
//! Today this crate reads and writes NumPy `.npy` / `.npz` files with each array's dtype, name and
//! shape kept ([`io`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod io;
