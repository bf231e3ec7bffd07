//! Whole models for NNC: named tensor sets read from and written to model files.
//!
//! Does not know about: arithmetic coding, quantization details, federated learning, ML
//! frameworks at run time (PyTorch checkpoints are parsed, never executed).
//!
//! [`io`] reads safetensors, PyTorch checkpoints (`.pt`/`.pth`/`.bin`), NumPy `.npz`/`.npy` and
//! sharded checkpoints (`*.index.json`), and writes safetensors (with a `__metadata__` map),
//! PyTorch state dicts, NumPy and directories of safetensors shards, keeping each tensor's name,
//! shape and dtype (f64, f32, f16,
//! bf16, i64, i32, i16, i8, u64, u32, u16, u8, bool). Main entry points: [`io::read_tensors`],
//! [`io::write_tensors`], [`io::FileFormat`]; failures are [`io::IoError`]s. Safetensors and
//! `.npy` files are read through memory maps, one tensor at a time; [`io::TensorWriter`] writes
//! a model file, and [`io::ShardedWriter`] a directory of shards, tensor by tensor as a
//! streaming decoder produces them.
//!
//! ```
//! use nnc_nn::io::{read_tensors, write_tensors};
//! use nnc_tensor::{Tensor, TensorData};
//!
//! let dir = std::env::temp_dir().join(format!("nnc-nn-doctest-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("model.safetensors");
//! let w = Tensor::try_new("fc.weight", vec![2, 2], TensorData::BF16(vec![0x3f80; 4]))?;
//! write_tensors(&path, &[w.clone()])?;
//! assert_eq!(read_tensors(&path, "unused")?, vec![w.clone()]);
//!
//! // The same model as Hugging Face shards of at most 8 bytes, with their index.
//! use nnc_nn::io::{pytorch_format_metadata, read_sharded, ShardedWriter};
//! let b = Tensor::try_new("fc.bias", vec![2], TensorData::F32(vec![0.5, -1.0]))?;
//! let plan = [(&w).into(), (&b).into()];
//! let hf = dir.join("hf");
//! std::fs::create_dir(&hf)?;
//! let mut shards = ShardedWriter::create(&hf, &plan, 8, &pytorch_format_metadata())?;
//! shards.write(&b)?; // any order
//! shards.write(&w)?;
//! shards.finish()?;
//! assert_eq!(read_sharded(&hf.join("model.safetensors.index.json"))?, vec![w, b]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// Denied, not forbidden: `io::mmap::map_range` maps files (the crate's only unsafe code).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod io;
