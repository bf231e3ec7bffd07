//! One tensor across the boundary: `tch::Tensor` ⇄ [`nnc_tensor::Tensor`], kind and shape kept.
//!
//! Each direction copies the elements exactly once: libtorch owns its storage, so reading goes
//! through `at_copy_data` straight into the NNC tensor's typed buffer (strided tensors are made
//! contiguous by libtorch first), and writing builds a fresh libtorch tensor from the NNC buffer's
//! bytes. Half-precision elements travel as their `u16` bits, never converted.

use std::borrow::Cow;

use nnc_tensor::{DType, ShapeMismatch, TensorData};
use tch::{Device, Kind, Tensor as TTensor};

use crate::error::{Error, Result};

/// The NNC dtype of a tch kind, `None` for the complex, quantized and 8-bit float kinds.
pub fn nnc_dtype(kind: Kind) -> Option<DType> {
    Some(match kind {
        Kind::Double => DType::F64,
        Kind::Float => DType::F32,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Int64 => DType::I64,
        Kind::Int => DType::I32,
        Kind::Int16 => DType::I16,
        Kind::Int8 => DType::I8,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::Bool,
        _ => return None,
    })
}

/// The tch kind of an NNC dtype, `None` for `uint16`, `uint32` and `uint64` (tch 0.26 has no
/// such kinds).
pub fn tch_kind(dtype: DType) -> Option<Kind> {
    Some(match dtype {
        DType::F64 => Kind::Double,
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
        _ => return None,
    })
}

/// Copies a CPU tch tensor (any layout, gradients ignored) into a named NNC tensor of the same
/// dtype and shape. A rank-0 tensor stays rank 0.
///
/// Fails with [`Error::UnsupportedTchKind`] for complex, quantized and 8-bit float kinds and with
/// [`Error::UnsupportedDevice`] for a tensor that is not on the CPU.
pub fn to_nnc(name: &str, tensor: &TTensor) -> Result<nnc_tensor::Tensor> {
    let kind = tensor.f_kind().map_err(Error::tch(name))?;
    let device = tensor.device();
    if device != Device::Cpu {
        return Err(Error::UnsupportedDevice {
            name: name.to_string(),
            device,
        });
    }
    let numel = tensor.numel();
    let shape = tensor
        .size()
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| shape_error(name, numel))?;
    let data = match kind {
        Kind::Double => TensorData::F64(read(name, tensor, numel)?),
        Kind::Float => TensorData::F32(read(name, tensor, numel)?),
        Kind::Half => TensorData::F16(read(name, tensor, numel)?),
        Kind::BFloat16 => TensorData::BF16(read(name, tensor, numel)?),
        Kind::Int64 => TensorData::I64(read(name, tensor, numel)?),
        Kind::Int => TensorData::I32(read(name, tensor, numel)?),
        Kind::Int16 => TensorData::I16(read(name, tensor, numel)?),
        Kind::Int8 => TensorData::I8(read(name, tensor, numel)?),
        Kind::Uint8 => TensorData::U8(read(name, tensor, numel)?),
        Kind::Bool => TensorData::Bool(
            read::<u8>(name, tensor, numel)?
                .into_iter()
                .map(|b| b != 0)
                .collect(),
        ),
        _ => {
            return Err(Error::UnsupportedTchKind {
                name: name.to_string(),
                kind,
            })
        }
    };
    nnc_tensor::Tensor::try_new(name, shape, data).map_err(|source| Error::Shape {
        name: name.to_string(),
        source,
    })
}

/// Reads `numel` elements of `T`'s size into a new buffer; libtorch checks the element size.
fn read<T: bytemuck::Pod>(name: &str, tensor: &TTensor, numel: usize) -> Result<Vec<T>> {
    let mut out = vec![T::zeroed(); numel];
    tensor
        .f_copy_data_u8(bytemuck::cast_slice_mut(&mut out), numel)
        .map_err(Error::tch(name))?;
    Ok(out)
}

fn shape_error(name: &str, actual: usize) -> Error {
    Error::Shape {
        name: name.to_string(),
        source: ShapeMismatch {
            expected: usize::MAX,
            actual,
        },
    }
}

/// Builds a CPU tch tensor of the same dtype and shape from an NNC tensor (one copy of the
/// elements). The tensor does not require gradients.
///
/// Fails with [`Error::UnsupportedNncDType`] for `uint16`, `uint32` and `uint64`, and with
/// [`Error::Shape`] when the element count does not match the shape (the fields of
/// [`nnc_tensor::Tensor`] are public, so this is checked here before libtorch reads the buffer).
pub fn from_nnc(tensor: &nnc_tensor::Tensor) -> Result<TTensor> {
    let name = tensor.name.as_str();
    let dtype = tensor.dtype();
    let kind = tch_kind(dtype).ok_or_else(|| Error::UnsupportedNncDType {
        name: name.to_string(),
        dtype,
    })?;
    let len = tensor.data.len();
    let expected = tensor
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected != len {
        return Err(Error::Shape {
            name: name.to_string(),
            source: ShapeMismatch {
                expected,
                actual: len,
            },
        });
    }
    let size = tensor
        .shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| shape_error(name, len))?;
    let bytes: Cow<'_, [u8]> = match &tensor.data {
        TensorData::F64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::F16(v) | TensorData::BF16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::I32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::I16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::I8(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        TensorData::U8(v) => Cow::Borrowed(v.as_slice()),
        TensorData::Bool(v) => Cow::Owned(v.iter().map(|&b| u8::from(b)).collect()),
        _ => {
            return Err(Error::UnsupportedNncDType {
                name: name.to_string(),
                dtype,
            })
        }
    };
    // `from_data_size` takes the kind explicitly: tch 0.26's `Element` impl for `half::bf16`
    // claims `Kind::Half`, so `Tensor::from_slice::<bf16>` would build a float16 tensor.
    TTensor::f_from_data_size(&bytes, &size, kind).map_err(Error::tch(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: [(Kind, DType); 10] = [
        (Kind::Double, DType::F64),
        (Kind::Float, DType::F32),
        (Kind::Half, DType::F16),
        (Kind::BFloat16, DType::BF16),
        (Kind::Int64, DType::I64),
        (Kind::Int, DType::I32),
        (Kind::Int16, DType::I16),
        (Kind::Int8, DType::I8),
        (Kind::Uint8, DType::U8),
        (Kind::Bool, DType::Bool),
    ];

    #[test]
    fn kind_maps_are_inverse_where_defined() {
        for (kind, dtype) in PAIRS {
            assert_eq!(nnc_dtype(kind), Some(dtype));
            assert_eq!(tch_kind(dtype), Some(kind));
        }
        for kind in [
            Kind::ComplexFloat,
            Kind::QInt8,
            Kind::QUInt8,
            Kind::QInt32,
            Kind::Float8e4m3fn,
            Kind::Float8e5m2,
        ] {
            assert_eq!(nnc_dtype(kind), None, "{kind:?}");
        }
        for dtype in [DType::U16, DType::U32, DType::U64] {
            assert_eq!(tch_kind(dtype), None, "{dtype:?}");
        }
    }

    #[test]
    fn bools_are_widened_and_narrowed() {
        let n =
            nnc_tensor::Tensor::try_new("b", vec![3], TensorData::Bool(vec![true, false, true]))
                .unwrap();
        let t = from_nnc(&n).unwrap();
        assert_eq!(t.kind(), Kind::Bool);
        assert_eq!(to_nnc("b", &t).unwrap().data, n.data);
    }

    #[test]
    fn dimensions_beyond_i64_are_shape_errors() {
        let n = nnc_tensor::Tensor {
            name: "huge".into(),
            shape: vec![0, usize::MAX],
            data: TensorData::F32(Vec::new()),
        };
        assert!(matches!(from_nnc(&n), Err(Error::Shape { ref name, .. }) if name == "huge"));
    }
}
