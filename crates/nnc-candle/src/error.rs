//! Errors of the candle adapter: a dtype one side cannot represent, a candle failure, or a codec
//! failure, each naming the tensor when there is one.

use nnc_tensor::encode::InputError;
use nnc_tensor::ShapeMismatch;

/// Result of the adapter's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a tensor or map could not be converted, encoded, decoded or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The candle tensor's element type has no NNC counterpart (the 8-, 6- and 4-bit float
    /// formats).
    #[error(
        "tensor {name:?}: candle dtype {} has no NNC counterpart \
         (supported: f64, f32, f16, bf16, i64, i32, i16, u32, u8)",
        dtype.as_str()
    )]
    UnsupportedCandleDType {
        /// Tensor name.
        name: String,
        /// Its candle dtype.
        dtype: candle_core::DType,
    },
    /// The decoded tensor's element type has no candle counterpart (`int8`, `uint16`, `uint64`,
    /// `bool`).
    #[error(
        "tensor {name:?}: NNC dtype {} has no candle counterpart \
         (supported: float64, float32, float16, bfloat16, int64, int32, int16, uint32, uint8)",
        dtype.numpy_name()
    )]
    UnsupportedNncDType {
        /// Tensor name.
        name: String,
        /// Its NNC dtype.
        dtype: nnc_tensor::DType,
    },
    /// A candle operation failed.
    #[error("tensor {name:?}: candle: {source}")]
    Candle {
        /// Tensor name.
        name: String,
        /// What candle reported.
        #[source]
        source: candle_core::Error,
    },
    /// Element count and shape disagree.
    #[error("tensor {name:?}: {source}")]
    Shape {
        /// Tensor name.
        name: String,
        /// The mismatch.
        #[source]
        source: ShapeMismatch,
    },
    /// Two tensors of one map share a name.
    #[error("tensor name {0:?} appears twice")]
    DuplicateName(String),
    /// The codec refused a tensor (empty, integer out of int32 range, ...).
    #[error(transparent)]
    Input(#[from] InputError),
    /// Encoding or decoding the bitstream failed.
    #[error(transparent)]
    Codec(#[from] nnc_tensor::Error),
    /// A decoded tensor's shape differs from the shape of the variable it should be loaded into.
    #[error("variable {name:?}: the bitstream has shape {found:?}, the VarMap holds {expected:?}")]
    VarShape {
        /// Variable name.
        name: String,
        /// Shape of the variable.
        expected: Vec<usize>,
        /// Shape of the decoded tensor.
        found: Vec<usize>,
    },
    /// A decoded tensor's dtype cannot be cast to the dtype of the variable it should be loaded
    /// into (only float-to-float casts are made).
    #[error(
        "variable {name:?}: the bitstream has dtype {}, the VarMap holds {}",
        found.as_str(),
        expected.as_str()
    )]
    VarDType {
        /// Variable name.
        name: String,
        /// Dtype of the variable.
        expected: candle_core::DType,
        /// Dtype of the decoded tensor.
        found: candle_core::DType,
    },
    /// Another thread panicked while holding the VarMap's lock.
    #[error("the VarMap's lock is poisoned")]
    Poisoned,
}

impl Error {
    /// Wraps a candle error with the tensor's name.
    pub(crate) fn candle(name: &str) -> impl FnOnce(candle_core::Error) -> Error + '_ {
        move |source| Error::Candle {
            name: name.to_string(),
            source,
        }
    }
}
