//! Quantization for NNR (ISO/IEC 15938-17), bit-exact with NNCodec 2.1.3.
//!
//! This crate owns everything between float weights and the integer levels the entropy coder
//! sees, in both directions:
//!
//! - step sizes Δ(qp) ([`step_size`], [`step_size_f64`], [`qp_from_step_size`]);
//! - the encoder's `quantLayer` ([`quantize_layer`]): uniform (URQ) or 8-state dependent (TCQ)
//!   quantization in the tensor's scan order, with the qp overflow fallback;
//! - reconstruction ([`dequantize_uniform`], [`dequantize_codebook`]);
//! - zeroed level and value buffers for whole tensors, backed by huge pages where the system
//!   allows ([`buffer`]);
//! - the encoder-side approximation decisions around it: codebooks ([`codebook`]), the
//!   integer-aligned bit-depth mode ([`bitdepth`]) and per-tensor qp selection ([`qp_select`]).
//!
//! It knows nothing about NNR unit syntax or files: levels go in and out as plain `i32` slices in
//! row-major order. Levels are always in *reconstruction units* (`ŵ = level · Δ`); with DQ they
//! are the reconstruction indices `2k − sgn(k)·(state & 1)`, not the coded levels `k`.
//!
//! Unsafe code: none, except that the distortion-only trellis has an AVX-512 forward pass and
//! reconstruction after its traceback (`x86_64` only, chosen at run time when the CPU has
//! AVX-512 F and DQ; `NNC_NO_AVX512=1` rules them out), and AVX2 forms of both (when the CPU has
//! AVX2; `NNC_NO_AVX2=1` rules them out: a hand-written forward pass, and the portable
//! reconstruction built for AVX2), each entered through one `unsafe` call once the CPU is
//! checked. All forms give the same levels, and the tests compare them. [`buffer`] makes one
//! `madvise` call on Linux, advice on how the kernel backs a large level or value buffer.
//!
//! ```
//! use nnc_quant::{dequantize_uniform, quantize_layer, QuantizeOptions};
//!
//! let weights = [0.11f32, -0.52, 0.0, 0.97, -0.25, 0.3];
//! let opts = QuantizeOptions { qp: -20, ..QuantizeOptions::default() }; // Δ = 1/32, DQ on
//! let q = quantize_layer(&weights, &[2, 3], &opts)?;
//! assert_eq!(q.qp, -20);
//!
//! let mut rec = [0.0f32; 6];
//! dequantize_uniform(&q.levels, q.qp, opts.qp_density, &mut rec)?;
//! for (w, r) in weights.iter().zip(&rec) {
//!     assert!((w - r).abs() <= 1.0 / 32.0);
//! }
//! # Ok::<(), nnc_quant::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bitdepth;
pub mod buffer;
pub mod codebook;
mod dequant;
mod error;
mod finite;
pub mod numpy;
pub mod qp_select;
mod quantize;
pub mod scan;
mod step;
pub mod tcq;
mod urq;

pub use dequant::{dequantize_codebook, dequantize_uniform};
pub use error::{Error, ErrorKind, Result};
pub use finite::first_non_finite;
pub use quantize::{
    overflow_fallback_qp, quantize_layer, quantize_layer_into, QuantizeOptions, QuantizedLayer,
    MAX_QP_DENSITY,
};
pub use step::{qp_from_step_size, qp_limit, step_size, step_size_f64};
