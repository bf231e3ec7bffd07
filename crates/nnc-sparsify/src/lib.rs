//! NNCodec's encoder-side sparsification, bit-exact with NNCodec 2.1.3
//! (`framework/applications/utils/sparsification.py`, as `nncodec.tensor`, `nncodec.nn` and
//! `nncodec.fl` call it before compression).
//!
//! Two steps, both on `float32` data with numpy 1.26 semantics:
//!
//! 1. **Unstructured** ([`apply_unstructured`]): every weight below half the quantization step of
//!    the requested qp is zeroed; if the model is still below the target sparsity, a threshold
//!    `max(|μ − δσ|, |μ + δσ|)` per tensor is searched by raising δ ([`achieve_target_sparsity`]).
//! 2. **Structured** ([`apply_structured`]): per tensor, the output channels (rows) with the
//!    smallest mean absolute value are zeroed; how many is the share of rows below
//!    `struct_spars_factor ×` the average row mean.
//!
//! Only float tensors with two or more dimensions, some non-zero value and no `.weight_scaling`
//! in the name are changed. The crate knows nothing about quantization or bitstreams.
//!
//! ```
//! use nnc_sparsify::{sparsify, sparsity, SparsifyOptions, Tensor};
//!
//! let values: Vec<f32> = (0..64).map(|i| ((i * 29) % 64) as f32 / 64.0 - 0.5).collect();
//! let mut tensors = vec![Tensor::from_f32("fc.weight", vec![8, 8], values)?];
//! let opts = SparsifyOptions { qp: -32, qp_density: 2, sparsity: 0.5, struct_spars_factor: 0.9 };
//! sparsify(&mut tensors, &opts);
//! assert!(sparsity(&tensors) >= 0.5);
//! # Ok::<(), nnc_sparsify::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod numpy;
mod structured;
mod tensor;
mod unstructured;

pub use error::{Error, ErrorKind, Result};
pub use structured::{apply_structured, filter_percentages};
pub use tensor::{sparsity, Tensor, TensorValues};
pub use unstructured::{
    achieve_target_sparsity, apply_unstructured, stats_based_sparsify, step_size_f64,
};

/// The sparsification arguments of the reference's `tensor`/`nn` APIs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SparsifyOptions {
    /// The `qp` argument (the weight qp, not any per-tensor override); its step sets the
    /// QP-induced threshold.
    pub qp: i32,
    /// `qp_density` for that step (the `tensor` API always uses 2).
    pub qp_density: u8,
    /// Target sparsity (`sparsity`); `<= 0` disables sparsification altogether.
    pub sparsity: f64,
    /// `struct_spars_factor` (gain of the structured step); `<= 0` skips that step.
    pub struct_spars_factor: f64,
}

/// What `nncodec.tensor.encode` / `nncodec.nn.encode` do with `sparsity > 0`: unstructured
/// sparsification towards the target, then structured sparsification if `struct_spars_factor > 0`.
pub fn sparsify(tensors: &mut [Tensor], opts: &SparsifyOptions) {
    if opts.sparsity > 0.0 {
        apply_unstructured(tensors, opts.qp, opts.qp_density, opts.sparsity);
        if opts.struct_spars_factor > 0.0 {
            apply_structured(tensors, opts.struct_spars_factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_by_zero_sparsity() {
        let mut t = vec![Tensor::from_f32("w", vec![2, 2], vec![1e-6, 1.0, -1e-6, 2.0]).unwrap()];
        let before = t.clone();
        let opts = SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity: 0.0,
            struct_spars_factor: 0.9,
        };
        sparsify(&mut t, &opts);
        assert_eq!(t, before);
        sparsify(
            &mut t,
            &SparsifyOptions {
                sparsity: 0.1,
                ..opts
            },
        );
        assert_ne!(t, before);
    }
}
