//! Errors of the tch adapter: a dtype or device one side cannot handle, a libtorch failure, or a
//! codec failure, each naming the tensor when there is one.

use nnc_tensor::encode::InputError;
use nnc_tensor::ShapeMismatch;
use tch::{Device, Kind, TchError};

/// Result of the adapter's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a tensor, tensor list or VarStore could not be converted, encoded, decoded or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tch tensor's element kind has no NNC counterpart (complex, quantized and 8-bit float
    /// kinds).
    #[error(
        "tensor {name:?}: tch kind {kind:?} has no NNC counterpart \
         (supported: Double, Float, Half, BFloat16, Int64, Int, Int16, Int8, Uint8, Bool)"
    )]
    UnsupportedTchKind {
        /// Tensor name.
        name: String,
        /// Its tch kind.
        kind: Kind,
    },
    /// The decoded tensor's element type has no tch counterpart (`uint16`, `uint32`, `uint64`).
    #[error(
        "tensor {name:?}: NNC dtype {} has no tch counterpart \
         (supported: float64, float32, float16, bfloat16, int64, int32, int16, int8, uint8, bool)",
        dtype.numpy_name()
    )]
    UnsupportedNncDType {
        /// Tensor name.
        name: String,
        /// Its NNC dtype.
        dtype: nnc_tensor::DType,
    },
    /// The tensor (or VarStore) is not on the CPU; move it with `.to_device(Device::Cpu)` (or
    /// `VarStore::set_device`) first.
    #[error("tensor {name:?}: on device {device:?}, the adapter only handles CPU tensors")]
    UnsupportedDevice {
        /// Tensor name (empty for a whole VarStore).
        name: String,
        /// Where it lives.
        device: Device,
    },
    /// A libtorch operation failed.
    #[error("tensor {name:?}: tch: {source}")]
    Tch {
        /// Tensor name.
        name: String,
        /// What tch reported.
        #[source]
        source: TchError,
    },
    /// Element count and shape disagree, or a dimension does not fit the other side's index type.
    #[error("tensor {name:?}: {source}")]
    Shape {
        /// Tensor name.
        name: String,
        /// The mismatch.
        #[source]
        source: ShapeMismatch,
    },
    /// Two tensors of one list share a name.
    #[error("tensor name {0:?} appears twice")]
    DuplicateName(String),
    /// The codec refused a tensor (empty, integer out of int32 range, ...).
    #[error(transparent)]
    Input(#[from] InputError),
    /// Encoding or decoding the bitstream failed.
    #[error(transparent)]
    Codec(#[from] nnc_tensor::Error),
    /// A decoded tensor's shape differs from the shape of the variable it should be loaded into.
    #[error(
        "variable {name:?}: the bitstream has shape {found:?}, the VarStore holds {expected:?}"
    )]
    VarShape {
        /// Variable name.
        name: String,
        /// Shape of the variable.
        expected: Vec<i64>,
        /// Shape of the decoded tensor.
        found: Vec<i64>,
    },
    /// A decoded tensor's kind cannot be cast to the kind of the variable it should be loaded
    /// into (only float-to-float casts are made).
    #[error(
        "variable {name:?}: the bitstream has kind {found:?}, the VarStore holds {expected:?}"
    )]
    VarKind {
        /// Variable name.
        name: String,
        /// Kind of the variable.
        expected: Kind,
        /// Kind of the decoded tensor.
        found: Kind,
    },
    /// Another thread panicked while holding the VarStore's lock.
    #[error("the VarStore's lock is poisoned")]
    Poisoned,
}

impl Error {
    /// Wraps a tch error with the tensor's name.
    pub(crate) fn tch(name: &str) -> impl FnOnce(TchError) -> Error + '_ {
        move |source| Error::Tch {
            name: name.to_string(),
            source,
        }
    }
}
