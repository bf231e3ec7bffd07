//! Decode and encode NNR bitstreams into named tensors (ISO/IEC 15938-17 tensor pipeline).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod tensor;

pub use tensor::{DType, ShapeMismatch, Tensor, TensorData};
