//! Model files: reading and writing named tensor sets.

pub mod npy;

use std::path::Path;

use nnc_tensor::Tensor;

pub use npy::{read_npy, read_npz, write_npy, write_npz};

/// Errors of model file I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's format is not one we read or write.
    #[error("{path}: unknown model file format (expected .npy or .npz)")]
    UnknownFormat {
        /// File concerned.
        path: String,
    },
    /// An array's element type is not supported.
    #[error("{path}: array {name:?} has unsupported dtype {dtype}")]
    UnsupportedDType {
        /// File concerned.
        path: String,
        /// Array name.
        name: String,
        /// The type as NumPy spells it.
        dtype: String,
    },
    /// The content contradicts itself (e.g. a shape that does not match the data).
    #[error("{path}: array {name:?}: {what}")]
    Malformed {
        /// File concerned.
        path: String,
        /// Array name.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A single-array format was asked to hold several tensors.
    #[error("{path}: a .npy file holds exactly one tensor, {count} given (use .npz)")]
    NotOneTensor {
        /// File concerned.
        path: String,
        /// Number of tensors given.
        count: usize,
    },
}

/// Model file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// NumPy `.npy`: one array.
    Npy,
    /// NumPy `.npz`: a zip of named arrays.
    Npz,
}

impl FileFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "npy" => Some(FileFormat::Npy),
            "npz" => Some(FileFormat::Npz),
            _ => None,
        }
    }
}

/// Reads every tensor in a model file, in file order. A `.npy` file gives one tensor named
/// `default_name`.
pub fn read_tensors(path: &Path, default_name: &str) -> Result<Vec<Tensor>, IoError> {
    match FileFormat::from_path(path) {
        Some(FileFormat::Npy) => Ok(vec![read_npy(path, default_name)?]),
        Some(FileFormat::Npz) => read_npz(path),
        None => Err(IoError::UnknownFormat {
            path: path.display().to_string(),
        }),
    }
}

/// Writes tensors to a model file chosen by extension.
pub fn write_tensors(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    match FileFormat::from_path(path) {
        Some(FileFormat::Npy) => match tensors {
            [one] => write_npy(path, one),
            _ => Err(IoError::NotOneTensor {
                path: path.display().to_string(),
                count: tensors.len(),
            }),
        },
        Some(FileFormat::Npz) => write_npz(path, tensors),
        None => Err(IoError::UnknownFormat {
            path: path.display().to_string(),
        }),
    }
}
