//! Named tensors as the codec sees them: a name, a shape and typed element data.

use std::borrow::Cow;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Element type of a tensor as a user handed it in (or as the decoder returns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DType {
    /// 64-bit IEEE float.
    F64,
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float (binary16).
    F16,
    /// bfloat16 (the upper half of an IEEE `f32`).
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 64-bit integer.
    U64,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean (one byte per element).
    Bool,
}

impl DType {
    /// NumPy's name for the type (`float32`, `int64`, ...). NumPy itself has no bfloat16;
    /// [`DType::BF16`] answers `bfloat16`, the name the `ml_dtypes` extension and PyTorch use.
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U64 => "uint64",
            DType::U32 => "uint32",
            DType::U16 => "uint16",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Whether the type holds integers (booleans included).
    pub fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// Bytes per element in the usual packed layouts (NumPy, safetensors, PyTorch).
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
}

/// Element data of a tensor, row-major (C order).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// `float64` elements.
    F64(Vec<f64>),
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float16` elements as raw IEEE binary16 bits (see [`half::f16::from_bits`]).
    F16(Vec<u16>),
    /// `bfloat16` elements as raw bits (see [`half::bf16::from_bits`]).
    BF16(Vec<u16>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `int16` elements.
    I16(Vec<i16>),
    /// `int8` elements.
    I8(Vec<i8>),
    /// `uint64` elements.
    U64(Vec<u64>),
    /// `uint32` elements.
    U32(Vec<u32>),
    /// `uint16` elements.
    U16(Vec<u16>),
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

macro_rules! for_each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F64($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::Bool($v) => $body,
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F64(_) => DType::F64,
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I16(_) => DType::I16,
            TensorData::I8(_) => DType::I8,
            TensorData::U64(_) => DType::U64,
            TensorData::U32(_) => DType::U32,
            TensorData::U16(_) => DType::U16,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        for_each_variant!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32` when that loses nothing: `f32` data is borrowed, `f16`/`bf16`
    /// data is widened exactly. `None` for `f64` (narrowing would round) and integer types.
    pub fn as_f32_lossless(&self) -> Option<Cow<'_, [f32]>> {
        match self {
            TensorData::F32(v) => Some(Cow::Borrowed(v)),
            TensorData::F16(v) => Some(Cow::Owned(
                v.iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
            )),
            TensorData::BF16(v) => Some(Cow::Owned(
                v.iter().map(|&b| bf16::from_bits(b).to_f32()).collect(),
            )),
            _ => None,
        }
    }

    /// Casts `f32` values to a floating-point `dtype` (round to nearest, ties to even, for
    /// `f16`/`bf16`; exact for `f64`). This is how a decoder gives a tensor back its own float
    /// type after coding it as `f32`. `None` when `dtype` is not a float type.
    pub fn from_f32_cast(dtype: DType, values: &[f32]) -> Option<TensorData> {
        Some(match dtype {
            DType::F32 => TensorData::F32(values.to_vec()),
            DType::F64 => TensorData::F64(values.iter().map(|&x| f64::from(x)).collect()),
            DType::F16 => {
                TensorData::F16(values.iter().map(|&x| f16::from_f32(x).to_bits()).collect())
            }
            DType::BF16 => TensorData::BF16(
                values
                    .iter()
                    .map(|&x| bf16::from_f32(x).to_bits())
                    .collect(),
            ),
            _ => return None,
        })
    }
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Name (NNR `topology_elem_id`).
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements in row-major order; `data.len()` equals the product of `shape`.
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn try_new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Self, ShapeMismatch> {
        ShapeMismatch::check(&shape, data.len())?;
        Ok(Tensor {
            name: name.into(),
            shape,
            data,
        })
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The element count does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape holds {expected} elements but {actual} were given")]
pub struct ShapeMismatch {
    /// Product of the shape (saturated at `usize::MAX` on overflow).
    pub expected: usize,
    /// Number of elements given.
    pub actual: usize,
}

impl ShapeMismatch {
    /// Whether `shape` holds exactly `actual` elements.
    pub(crate) fn check(shape: &[usize], actual: usize) -> Result<(), ShapeMismatch> {
        let expected = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or(ShapeMismatch {
                expected: usize::MAX,
                actual,
            })?;
        if expected != actual {
            return Err(ShapeMismatch { expected, actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_types_are_floats_of_two_bytes() {
        for d in [DType::F16, DType::BF16] {
            assert!(d.is_float());
            assert!(!d.is_integer());
            assert_eq!(d.size_in_bytes(), 2);
        }
        assert_eq!(DType::F16.numpy_name(), "float16");
        assert_eq!(DType::BF16.numpy_name(), "bfloat16");
        assert!(DType::Bool.is_integer());
        assert_eq!(DType::I64.size_in_bytes(), 8);
    }

    #[test]
    fn f16_and_bf16_widen_exactly_and_cast_back() {
        // 1.0, -2.0, 65504 (max f16), smallest f16 subnormal.
        let bits = vec![0x3c00, 0xc000, 0x7bff, 0x0001];
        let data = TensorData::F16(bits.clone());
        let wide = data.as_f32_lossless().unwrap();
        assert_eq!(&wide[..3], &[1.0, -2.0, 65504.0]);
        assert_eq!(wide[3], 2f32.powi(-24));
        assert_eq!(TensorData::from_f32_cast(DType::F16, &wide), Some(data));

        // bf16 1.0 = 0x3f80; 0x4049 = 3.140625.
        let data = TensorData::BF16(vec![0x3f80, 0x4049]);
        let wide = data.as_f32_lossless().unwrap();
        assert_eq!(&wide[..], &[1.0, 3.140625]);
        assert_eq!(TensorData::from_f32_cast(DType::BF16, &wide), Some(data));
    }

    #[test]
    fn casts_round_to_nearest_even() {
        // 1 + 2^-11 lies halfway between two f16 values: ties to even gives 1.0.
        let x = 1.0 + 2f32.powi(-11);
        assert_eq!(
            TensorData::from_f32_cast(DType::F16, &[x]),
            Some(TensorData::F16(vec![0x3c00]))
        );
        // 1 + 3 * 2^-8 lies halfway between bf16 0x3f81 and 0x3f82: ties to even gives 0x3f82.
        let x = 1.0 + 3.0 * 2f32.powi(-8);
        assert_eq!(
            TensorData::from_f32_cast(DType::BF16, &[x]),
            Some(TensorData::BF16(vec![0x3f82]))
        );
        assert_eq!(TensorData::from_f32_cast(DType::I32, &[1.0]), None);
        assert!(TensorData::F64(vec![0.5]).as_f32_lossless().is_none());
        assert!(TensorData::I8(vec![1]).as_f32_lossless().is_none());
    }
}
