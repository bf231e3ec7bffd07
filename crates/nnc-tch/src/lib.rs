//! NNC for PyTorch through tch: encode and decode `tch::Tensor`s, named tensor lists and
//! `tch::nn::VarStore`s as NNR bitstreams (ISO/IEC 15938-17), keeping names, kinds and shapes.
//!
//! Does not know about: the bitstream syntax or the codec's internals (all coding is
//! [`nnc_tensor`]'s), model architectures, files.
//!
//! Building needs libtorch 2.13.0 (tch 0.26 accepts no other version): `cargo xtask
//! setup-libtorch` installs it and prints the `LIBTORCH` and `RUSTFLAGS` to export. The crate is
//! its own workspace, excluded from the main one, so the default build never compiles torch-sys.
//!
//! Main items:
//! - [`to_nnc`] / [`from_nnc`]: one CPU tensor across the boundary, kind kept (Double, Float,
//!   Half, BFloat16, Int64, Int, Int16, Int8, Uint8, Bool; see [`nnc_dtype`] and [`tch_kind`]).
//! - [`encode_tensors`] / [`decode_tensors`]: a named list or map (`Vec<(String, Tensor)>`,
//!   `HashMap`, `BTreeMap`, slices) to one bitstream and back, in name order.
//! - [`encode_varstore`] / [`load_into_varstore`]: a whole `VarStore`.
//!
//! Float tensors are quantized (lossy; the step follows [`nnc_tensor::EncodeOptions::qp`]);
//! integer and bool tensors are coded exactly and must fit `int32`. Only CPU tensors are handled.
//! Errors are [`Error`] values naming the tensor.
//!
//! ```no_run
//! use nnc_tensor::EncodeOptions;
//! use tch::{Device, Kind, Tensor};
//!
//! let model: Vec<(String, Tensor)> = vec![
//!     ("fc.weight".into(), Tensor::randn([16, 8], (Kind::Float, Device::Cpu)) * 0.1),
//!     ("fc.bias".into(), Tensor::zeros([16], (Kind::Half, Device::Cpu))),
//!     ("steps".into(), Tensor::from_slice(&[7i64])),
//! ];
//!
//! let bytes = nnc_tch::encode_tensors(&model, &EncodeOptions::default())?;
//! let decoded = nnc_tch::decode_tensors(&bytes)?;
//!
//! let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
//! assert_eq!(names, ["fc.bias", "fc.weight", "steps"]);
//! assert_eq!(decoded[0].1.kind(), Kind::Half);
//! assert_eq!(decoded[1].1.size(), [16, 8]);
//! assert_eq!(decoded[2].1.int64_value(&[0]), 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A model's weights through a `VarStore`:
//!
//! ```no_run
//! use nnc_tensor::EncodeOptions;
//! use tch::{nn, Device};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let _fc = nn::linear(vs.root() / "fc", 8, 4, Default::default());
//! let bytes = nnc_tch::encode_varstore(&vs, &EncodeOptions::default().with_qp(-38))?;
//!
//! let mut restored = nn::VarStore::new(Device::Cpu);
//! let _fc = nn::linear(restored.root() / "fc", 8, 4, Default::default());
//! let summary = nnc_tch::load_into_varstore(&bytes, &mut restored)?;
//! assert_eq!(summary.updated, ["fc.bias", "fc.weight"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod error;
mod map;
mod varstore;

pub use convert::{from_nnc, nnc_dtype, tch_kind, to_nnc};
pub use error::{Error, Result};
pub use map::{
    decode_tensor_map, decode_tensors, decode_tensors_with, encode_tensors, to_nnc_tensors,
    NamedTensor,
};
pub use varstore::{encode_varstore, load_into_varstore, LoadSummary};
