//! One tensor across the boundary: `candle_core::Tensor` ⇄ [`nnc_tensor::Tensor`], dtype kept.
//!
//! Each direction copies the elements once at most: candle keeps its storage behind a shared
//! lock, so reading it out takes one copy (`to_vec1`, strided reads included); handing an owned
//! [`nnc_tensor::Tensor`] to [`from_nnc_owned`] moves its buffer into a CPU tensor without any copy.
//! Half-precision elements are reinterpreted between `half::f16`/`half::bf16` and their `u16`
//! bits in place (`half`'s `reinterpret_into`/`reinterpret_cast`), never converted.

use candle_core::{DType as CDType, Device, Tensor as CTensor};
use half::slice::HalfBitsSliceExt;
use half::vec::{HalfBitsVecExt, HalfFloatVecExt};
use half::{bf16, f16};
use nnc_tensor::{DType, TensorData};

use crate::error::{Error, Result};

/// The NNC dtype of a candle dtype, `None` for candle's 8-, 6- and 4-bit float formats.
pub fn nnc_dtype(dtype: CDType) -> Option<DType> {
    Some(match dtype {
        CDType::F64 => DType::F64,
        CDType::F32 => DType::F32,
        CDType::F16 => DType::F16,
        CDType::BF16 => DType::BF16,
        CDType::I64 => DType::I64,
        CDType::I32 => DType::I32,
        CDType::I16 => DType::I16,
        CDType::U32 => DType::U32,
        CDType::U8 => DType::U8,
        _ => return None,
    })
}

/// The candle dtype of an NNC dtype, `None` for `int8`, `uint16`, `uint64` and `bool` (candle has
/// no such types).
pub fn candle_dtype(dtype: DType) -> Option<CDType> {
    Some(match dtype {
        DType::F64 => CDType::F64,
        DType::F32 => CDType::F32,
        DType::F16 => CDType::F16,
        DType::BF16 => CDType::BF16,
        DType::I64 => CDType::I64,
        DType::I32 => CDType::I32,
        DType::I16 => CDType::I16,
        DType::U32 => CDType::U32,
        DType::U8 => CDType::U8,
        _ => return None,
    })
}

/// Copies a candle tensor (any device, any layout) into a named NNC tensor of the same dtype and
/// shape. A rank-0 tensor stays rank 0.
///
/// Fails with [`Error::UnsupportedCandleDType`] for the 8-, 6- and 4-bit float formats.
pub fn to_nnc(name: &str, tensor: &CTensor) -> Result<nnc_tensor::Tensor> {
    let unsupported = || Error::UnsupportedCandleDType {
        name: name.to_string(),
        dtype: tensor.dtype(),
    };
    nnc_dtype(tensor.dtype()).ok_or_else(unsupported)?;
    // `to_vec1` reads strided rank-1 views directly; only other non-contiguous layouts pay for a
    // contiguous copy in `flatten_all`.
    let flat = if tensor.rank() == 1 {
        tensor.clone()
    } else {
        tensor.flatten_all().map_err(Error::candle(name))?
    };
    let c = Error::candle(name);
    let data = match tensor.dtype() {
        CDType::F64 => TensorData::F64(flat.to_vec1().map_err(c)?),
        CDType::F32 => TensorData::F32(flat.to_vec1().map_err(c)?),
        CDType::F16 => TensorData::F16(flat.to_vec1::<f16>().map_err(c)?.reinterpret_into()),
        CDType::BF16 => TensorData::BF16(flat.to_vec1::<bf16>().map_err(c)?.reinterpret_into()),
        CDType::I64 => TensorData::I64(flat.to_vec1().map_err(c)?),
        CDType::I32 => TensorData::I32(flat.to_vec1().map_err(c)?),
        CDType::I16 => TensorData::I16(flat.to_vec1().map_err(c)?),
        CDType::U32 => TensorData::U32(flat.to_vec1().map_err(c)?),
        CDType::U8 => TensorData::U8(flat.to_vec1().map_err(c)?),
        _ => return Err(unsupported()),
    };
    nnc_tensor::Tensor::try_new(name, tensor.dims().to_vec(), data).map_err(|source| Error::Shape {
        name: name.to_string(),
        source,
    })
}

/// Builds a candle tensor of the same dtype and shape on `device` from a borrowed NNC tensor
/// (one copy of the elements).
///
/// Fails with [`Error::UnsupportedNncDType`] for `int8`, `uint16`, `uint64` and `bool`.
pub fn from_nnc(tensor: &nnc_tensor::Tensor, device: &Device) -> Result<CTensor> {
    let name = tensor.name.as_str();
    let shape = tensor.shape.as_slice();
    let c = Error::candle(name);
    match &tensor.data {
        TensorData::F64(v) => CTensor::from_slice(v, shape, device),
        TensorData::F32(v) => CTensor::from_slice(v, shape, device),
        TensorData::F16(v) => CTensor::from_slice(v.reinterpret_cast::<f16>(), shape, device),
        TensorData::BF16(v) => CTensor::from_slice(v.reinterpret_cast::<bf16>(), shape, device),
        TensorData::I64(v) => CTensor::from_slice(v, shape, device),
        TensorData::I32(v) => CTensor::from_slice(v, shape, device),
        TensorData::I16(v) => CTensor::from_slice(v, shape, device),
        TensorData::U32(v) => CTensor::from_slice(v, shape, device),
        TensorData::U8(v) => CTensor::from_slice(v, shape, device),
        other => return Err(unsupported_nnc(name, other.dtype())),
    }
    .map_err(c)
}

/// Like [`from_nnc`] but consumes the tensor: on the CPU its buffer becomes the candle tensor's
/// storage without a copy.
pub fn from_nnc_owned(tensor: nnc_tensor::Tensor, device: &Device) -> Result<CTensor> {
    let nnc_tensor::Tensor { name, shape, data } = tensor;
    let c = Error::candle(&name);
    match data {
        TensorData::F64(v) => CTensor::from_vec(v, shape, device),
        TensorData::F32(v) => CTensor::from_vec(v, shape, device),
        TensorData::F16(v) => CTensor::from_vec(v.reinterpret_into::<f16>(), shape, device),
        TensorData::BF16(v) => CTensor::from_vec(v.reinterpret_into::<bf16>(), shape, device),
        TensorData::I64(v) => CTensor::from_vec(v, shape, device),
        TensorData::I32(v) => CTensor::from_vec(v, shape, device),
        TensorData::I16(v) => CTensor::from_vec(v, shape, device),
        TensorData::U32(v) => CTensor::from_vec(v, shape, device),
        TensorData::U8(v) => CTensor::from_vec(v, shape, device),
        other => return Err(unsupported_nnc(&name, other.dtype())),
    }
    .map_err(c)
}

fn unsupported_nnc(name: &str, dtype: DType) -> Error {
    Error::UnsupportedNncDType {
        name: name.to_string(),
        dtype,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_maps_are_inverse_where_defined() {
        for d in [
            CDType::F64,
            CDType::F32,
            CDType::F16,
            CDType::BF16,
            CDType::I64,
            CDType::I32,
            CDType::I16,
            CDType::U32,
            CDType::U8,
        ] {
            let n = nnc_dtype(d).unwrap();
            assert_eq!(candle_dtype(n), Some(d));
        }
        for d in [CDType::F8E4M3, CDType::F4, CDType::F6E2M3] {
            assert_eq!(nnc_dtype(d), None);
        }
        for d in [DType::I8, DType::U16, DType::U64, DType::Bool] {
            assert_eq!(candle_dtype(d), None);
        }
    }

    #[test]
    fn every_dtype_converts_both_ways_exactly() {
        let dev = Device::Cpu;
        let base = CTensor::arange(-3i64, 3, &dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        for d in [
            CDType::F64,
            CDType::F32,
            CDType::F16,
            CDType::BF16,
            CDType::I64,
            CDType::I32,
            CDType::I16,
        ] {
            let t = base.to_dtype(d).unwrap();
            let n = to_nnc("x", &t).unwrap();
            assert_eq!(n.dtype(), nnc_dtype(d).unwrap());
            assert_eq!(n.shape, vec![2, 3]);
            for back in [
                from_nnc(&n, &dev).unwrap(),
                from_nnc_owned(n, &dev).unwrap(),
            ] {
                assert_eq!(back.dtype(), d);
                assert_eq!(back.dims(), &[2, 3]);
                let diff = (back.to_dtype(CDType::F64).unwrap() - t.to_dtype(CDType::F64).unwrap())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert_eq!(diff, 0.0, "{d:?}");
            }
        }
    }

    #[test]
    fn half_bits_are_kept_verbatim() {
        let v = [
            f16::from_f32(0.1),
            f16::NAN,
            f16::NEG_INFINITY,
            f16::MIN_POSITIVE_SUBNORMAL,
        ];
        let t = CTensor::from_slice(&v, 4, &Device::Cpu).unwrap();
        let n = to_nnc("h", &t).unwrap();
        let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(n.data, TensorData::F16(bits.clone()));
        let back = from_nnc(&n, &Device::Cpu)
            .unwrap()
            .to_vec1::<f16>()
            .unwrap();
        let back_bits: Vec<u16> = back.iter().map(|x| x.to_bits()).collect();
        assert_eq!(back_bits, bits);
    }

    #[test]
    fn non_contiguous_and_scalar_tensors() {
        let dev = Device::Cpu;
        let t = CTensor::arange(0u32, 6, &dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let tt = t.t().unwrap();
        let n = to_nnc("t", &tt).unwrap();
        assert_eq!(n.shape, vec![3, 2]);
        assert_eq!(n.data, TensorData::U32(vec![0, 3, 1, 4, 2, 5]));
        let col = t.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
        assert_eq!(to_nnc("c", &col).unwrap().data, TensorData::U32(vec![1, 4]));

        let s = CTensor::new(7u8, &dev).unwrap();
        let n = to_nnc("s", &s).unwrap();
        assert!(n.shape.is_empty());
        assert_eq!(n.data, TensorData::U8(vec![7]));
        let back = from_nnc(&n, &dev).unwrap();
        assert_eq!(back.rank(), 0);
        assert_eq!(back.to_scalar::<u8>().unwrap(), 7);
    }

    #[test]
    fn unsupported_dtypes_are_named_errors() {
        let t = CTensor::zeros(2, CDType::F8E4M3, &Device::Cpu).unwrap();
        let err = to_nnc("fp8", &t).unwrap_err();
        assert!(matches!(err, Error::UnsupportedCandleDType { ref name, .. } if name == "fp8"));
        assert!(err.to_string().contains("f8e4m3"), "{err}");

        let n = nnc_tensor::Tensor::try_new("flags", vec![2], TensorData::Bool(vec![true, false]))
            .unwrap();
        let err = from_nnc(&n, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("bool"), "{err}");
        assert!(matches!(
            from_nnc_owned(n, &Device::Cpu),
            Err(Error::UnsupportedNncDType {
                dtype: DType::Bool,
                ..
            })
        ));
    }
}
