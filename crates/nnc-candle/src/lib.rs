//! NNC for candle: encode and decode `candle_core::Tensor`s, named tensor maps and
//! `candle_nn::VarMap`s as NNR bitstreams (ISO/IEC 15938-17), keeping names, dtypes and shapes.
//!
//! Does not know about: the bitstream syntax or the codec's internals (all coding is
//! [`nnc_tensor`]'s), model architectures, files.
//!
//! Main items:
//! - [`to_nnc`] / [`from_nnc`] / [`from_nnc_owned`]: one tensor across the boundary, dtype kept
//!   (f64, f32, f16, bf16, i64, i32, i16, u32, u8; see [`nnc_dtype`] and [`candle_dtype`]).
//! - [`encode_tensors`] / [`decode_tensors`]: a named map (`HashMap`, `BTreeMap`, slice or `Vec`
//!   of `(name, Tensor)`) to one bitstream and back, in name order.
//! - [`encode_varmap`] / [`load_into_varmap`] (feature `varmap`, default): a whole `VarMap`.
//!
//! Float tensors are quantized (lossy; the step follows [`nnc_tensor::EncodeOptions::qp`]);
//! integer tensors are coded exactly and must fit `int32`. Errors are [`Error`] values naming the
//! tensor.
//!
//! ```
//! use std::collections::HashMap;
//! use candle_core::{DType, Device, Tensor};
//! use nnc_tensor::EncodeOptions;
//!
//! let dev = Device::Cpu;
//! let mut model = HashMap::new();
//! model.insert("fc.weight".to_string(), Tensor::randn(0f32, 0.1, (16, 8), &dev)?);
//! model.insert("fc.bias".to_string(), Tensor::zeros(16, DType::F16, &dev)?);
//! model.insert("steps".to_string(), Tensor::new(&[7i64], &dev)?);
//!
//! let bytes = nnc_candle::encode_tensors(&model, &EncodeOptions::default())?;
//! let decoded = nnc_candle::decode_tensors(&bytes, &dev)?;
//!
//! let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
//! assert_eq!(names, ["fc.bias", "fc.weight", "steps"]);
//! assert_eq!(decoded[0].1.dtype(), DType::F16);
//! assert_eq!(decoded[1].1.dims(), &[16, 8]);
//! assert_eq!(decoded[2].1.to_vec1::<i64>()?, [7]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod error;
mod map;
#[cfg(feature = "varmap")]
mod varmap;

pub use convert::{candle_dtype, from_nnc, from_nnc_owned, nnc_dtype, to_nnc};
pub use error::{Error, Result};
pub use map::{
    decode_tensor_map, decode_tensors, decode_tensors_with, encode_tensors, to_nnc_tensors,
    NamedTensor,
};
#[cfg(feature = "varmap")]
pub use varmap::{encode_varmap, load_into_varmap, LoadSummary};
