//! Encoder-side sparsification of named tensors, before quantization (the reference's `sparsity`
//! and `struct_spars_factor` arguments of its tensor, model and FL pipelines).

pub use nnc_sparsify::SparsifyOptions;

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// Sparsifies `tensors` in place as the reference does before compressing: unstructured
/// (statistics-based, towards `opts.sparsity`), then structured per output channel. Float32 tensors
/// with two or more dimensions are changed; integer tensors only count towards the sparsity;
/// other float types are not supported (convert them to float32 first).
pub fn sparsify_tensors(tensors: &mut [Tensor], opts: &SparsifyOptions) -> Result<()> {
    if opts.sparsity <= 0.0 {
        return Ok(());
    }
    let mut work = Vec::with_capacity(tensors.len());
    for t in tensors.iter() {
        let values = match &t.data {
            TensorData::F32(v) => nnc_sparsify::TensorValues::F32(v.clone()),
            TensorData::I64(v) => nnc_sparsify::TensorValues::Int(v.clone()),
            TensorData::I32(v) => {
                nnc_sparsify::TensorValues::Int(v.iter().map(|&x| i64::from(x)).collect())
            }
            TensorData::I16(v) => {
                nnc_sparsify::TensorValues::Int(v.iter().map(|&x| i64::from(x)).collect())
            }
            TensorData::I8(v) => {
                nnc_sparsify::TensorValues::Int(v.iter().map(|&x| i64::from(x)).collect())
            }
            TensorData::U8(v) => {
                nnc_sparsify::TensorValues::Int(v.iter().map(|&x| i64::from(x)).collect())
            }
            other => {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "sparsification of {} tensor {:?} is not supported",
                        other.dtype().numpy_name(),
                        t.name
                    ),
                })
            }
        };
        work.push(
            nnc_sparsify::Tensor::new(t.name.clone(), t.shape.clone(), values).map_err(|e| {
                Error::InvalidArgument {
                    what: e.to_string(),
                }
            })?,
        );
    }
    nnc_sparsify::sparsify(&mut work, opts);
    for (t, w) in tensors.iter_mut().zip(work) {
        if let (TensorData::F32(dst), nnc_sparsify::TensorValues::F32(src)) =
            (&mut t.data, w.into_values())
        {
            *dst = src;
        }
    }
    Ok(())
}
