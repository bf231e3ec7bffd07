//! Named tensors as the codec sees them: a name, a shape and typed element data.

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
    /// NumPy's name for the type (`float32`, `int64`, ...).
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
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
        !matches!(self, DType::F64 | DType::F32)
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
        let expected = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or(ShapeMismatch {
                expected: usize::MAX,
                actual: data.len(),
            })?;
        if expected != data.len() {
            return Err(ShapeMismatch {
                expected,
                actual: data.len(),
            });
        }
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
