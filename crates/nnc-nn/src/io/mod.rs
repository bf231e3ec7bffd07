//! Model files: reading and writing named tensor sets.
//!
//! | extension | read | write | module |
//! | --- | --- | --- | --- |
//! | `.safetensors` | yes, with its `__metadata__` | yes, with a `__metadata__` | [`safetensors`](mod@self::safetensors) |
//! | `.pt`, `.pth`, `.bin` | yes | yes (a state dict) | [`pytorch`] |
//! | `.npz` | yes | yes | [`npy`] |
//! | `.npy` | yes (one tensor) | yes (one tensor) | [`npy`] |
//! | `*.index.json` with its shards | yes | a directory of `model-*-of-*.safetensors` and their index | [`sharded`], [`shard_writer`] |
//!
//! `.pt`, `.pth` and `.bin` files are sniffed: one that starts like a safetensors file is read as
//! safetensors (some tools save safetensors under a `.bin` name). Every tensor keeps its name,
//! shape and dtype; a dtype a format cannot hold (bfloat16 in NumPy files) is an
//! [`IoError::DTypeNotWritable`], never a silent conversion.

mod mmap;
pub mod npy;
pub mod pytorch;
mod raw;
pub mod safetensors;
pub mod shard_writer;
pub mod sharded;
mod writer;

use std::path::Path;

use nnc_tensor::encode::TensorSource;
use nnc_tensor::{DType, Tensor};

pub use npy::{map_npy_source, map_npz_sources, read_npy, read_npz, write_npy, write_npz};
pub use pytorch::{
    map_pytorch_sources, read_pytorch, read_pytorch_summarized, read_pytorch_with, write_pytorch,
    CheckpointSummary, PyTorchOptions,
};
pub use safetensors::{
    attributes_to_carry, map_safetensors_sources, metadata_to_write, pytorch_format_metadata,
    read_safetensors, read_safetensors_with_metadata, write_safetensors,
    write_safetensors_with_metadata, SafetensorsMetadata,
};
pub use shard_writer::ShardedWriter;
pub use sharded::{is_shard_index, read_sharded};
pub use writer::{write_file_atomically, TensorWriter};

/// Errors of model file I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// File concerned.
        path: String,
    },
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
    #[error(
        "{path}: unknown model file format (.safetensors, .pt, .pth, .bin, .npz and .npy are read \
         and written, shard indexes *.index.json are read)"
    )]
    UnknownFormat {
        /// File concerned.
        path: String,
    },
    /// The file is not a valid file of its format (bad magic, truncated, inconsistent header...).
    #[error("{path}: not a valid {format} file: {what}")]
    InvalidFile {
        /// File concerned.
        path: String,
        /// Format name.
        format: &'static str,
        /// What is wrong.
        what: String,
    },
    /// An array's element type is not supported.
    #[error("{path}: array {name:?} has unsupported dtype {dtype}")]
    UnsupportedDType {
        /// File concerned.
        path: String,
        /// Array name.
        name: String,
        /// The type as the file spells it.
        dtype: String,
    },
    /// A tensor's dtype cannot be stored in the requested format.
    #[error(
        "{path}: tensor {name:?} has dtype {} which a {format} file cannot hold{hint}",
        dtype.numpy_name()
    )]
    DTypeNotWritable {
        /// File concerned.
        path: String,
        /// Tensor name.
        name: String,
        /// The tensor's dtype.
        dtype: DType,
        /// Format name.
        format: &'static str,
        /// Advice (may be empty).
        hint: &'static str,
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
    /// Two tensors share a name; model files key tensors by name.
    #[error("{path}: more than one tensor is named {name:?}")]
    DuplicateName {
        /// File concerned.
        path: String,
        /// The repeated name.
        name: String,
    },
    /// The file asks for more memory than its size can justify (a hostile or broken file).
    #[error("{path}: {what}")]
    LimitExceeded {
        /// File concerned.
        path: String,
        /// Which limit, and by how much.
        what: String,
    },
    /// A tensor handed to a [`TensorWriter`] is not the one its plan announced (another dtype or
    /// shape, an unknown name, written twice), or a planned tensor was never written.
    #[error("{path}: tensor {name:?}: {what}")]
    NotAsPlanned {
        /// File concerned.
        path: String,
        /// Tensor name.
        name: String,
        /// What differs.
        what: String,
    },
    /// A directory of shards was asked for with shards of no bytes.
    #[error("{path}: the shard size must be at least one byte")]
    ZeroShardSize {
        /// Directory concerned.
        path: String,
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

/// Builds an [`IoError`] from an `std::io::Error`, giving a missing file its own variant.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> IoError {
    if source.kind() == std::io::ErrorKind::NotFound {
        IoError::NotFound {
            path: path.display().to_string(),
        }
    } else {
        IoError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Reads a whole file, mapping failures to [`IoError`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

/// Model file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// NumPy `.npy`: one array.
    Npy,
    /// NumPy `.npz`: a zip of named arrays.
    Npz,
    /// Hugging Face safetensors: a JSON header and raw little-endian data.
    Safetensors,
    /// PyTorch `torch.save` zip checkpoint (`.pt`, `.pth`, `.bin`); written as a state dict.
    PyTorch,
}

impl FileFormat {
    /// Picks the format from the file extension (`.bin` counts as PyTorch; see
    /// [`FileFormat::detect`] for the content check).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "npy" => Some(FileFormat::Npy),
            "npz" => Some(FileFormat::Npz),
            "safetensors" => Some(FileFormat::Safetensors),
            "pt" | "pth" | "bin" => Some(FileFormat::PyTorch),
            _ => None,
        }
    }

    /// Recognises a format from a file's first bytes (at least 9 are needed for safetensors).
    /// A zip archive answers [`FileFormat::PyTorch`] (`.npz` files are zips too; use the
    /// extension to tell them apart).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"\x93NUMPY") {
            Some(FileFormat::Npy)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(FileFormat::PyTorch)
        } else if safetensors::looks_like_safetensors(head) {
            Some(FileFormat::Safetensors)
        } else {
            None
        }
    }

    /// The format a file is read as: by extension, except that `.pt`/`.pth`/`.bin` files whose
    /// content starts like safetensors are safetensors.
    pub fn detect(path: &Path) -> Result<Self, IoError> {
        let by_name = FileFormat::from_path(path).ok_or_else(|| IoError::UnknownFormat {
            path: path.display().to_string(),
        })?;
        if by_name != FileFormat::PyTorch {
            return Ok(by_name);
        }
        let mut head = [0u8; 16];
        let n = read_head(path, &mut head)?;
        Ok(match FileFormat::sniff(&head[..n]) {
            Some(FileFormat::Safetensors) => FileFormat::Safetensors,
            _ => FileFormat::PyTorch,
        })
    }

    /// A short human name (`safetensors`, `PyTorch`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Npy => ".npy",
            FileFormat::Npz => ".npz",
            FileFormat::Safetensors => "safetensors",
            FileFormat::PyTorch => "PyTorch",
        }
    }
}

fn read_head(path: &Path, buf: &mut [u8]) -> Result<usize, IoError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut n = 0;
    let mut take = file.take(buf.len() as u64);
    loop {
        match take.read(&mut buf[n..]) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
}

/// Reads every tensor in a model file, in file order (see each format's reader for what "file
/// order" means there). A `.npy` file gives one tensor named `default_name`. The format comes
/// from the extension, with the content check of [`FileFormat::detect`]. Safetensors and `.npy`
/// files are memory-mapped rather than read whole. A shard index (`*.index.json`) reads every
/// shard it names ([`read_sharded`]).
pub fn read_tensors(path: &Path, default_name: &str) -> Result<Vec<Tensor>, IoError> {
    if is_shard_index(path) {
        return read_sharded(path);
    }
    match FileFormat::detect(path)? {
        FileFormat::Safetensors => return read_safetensors(path),
        FileFormat::Npy => return Ok(vec![read_npy(path, default_name)?]),
        _ => {}
    }
    let format = FileFormat::from_path(path).ok_or_else(|| IoError::UnknownFormat {
        path: path.display().to_string(),
    })?;
    mmap::parse_file(path, |bytes| {
        read_tensors_from_bytes(bytes, format, path, default_name)
    })
}

/// Decodes a model file already in memory. `source` only names it in errors. As with
/// [`read_tensors`], [`FileFormat::PyTorch`] content that starts like safetensors is read as
/// safetensors.
pub fn read_tensors_from_bytes(
    bytes: &[u8],
    format: FileFormat,
    source: &Path,
    default_name: &str,
) -> Result<Vec<Tensor>, IoError> {
    match format {
        FileFormat::Npy => Ok(vec![npy::parse_npy(bytes, source, default_name)?]),
        FileFormat::Npz => npy::parse_npz(bytes, source),
        FileFormat::Safetensors => Ok(safetensors::parse(bytes, source)?.0),
        // As `FileFormat::detect` decides: a zip's magic wins over a header that could also
        // be read as a safetensors length.
        FileFormat::PyTorch if FileFormat::sniff(bytes) == Some(FileFormat::Safetensors) => {
            Ok(safetensors::parse(bytes, source)?.0)
        }
        FileFormat::PyTorch => pytorch::parse_checkpoint(bytes, source, &PyTorchOptions::default()),
    }
}

/// Writes tensors to a model file chosen by extension (`.pt`/`.pth`/`.bin`: a PyTorch
/// checkpoint of a state dict, see [`write_pytorch`]).
pub fn write_tensors(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    write_tensors_with_metadata(path, tensors, &SafetensorsMetadata::new())
}

/// [`write_tensors`], with a `__metadata__` map for a safetensors file (the other formats have
/// no such map and ignore it).
pub fn write_tensors_with_metadata(
    path: &Path,
    tensors: &[Tensor],
    metadata: &SafetensorsMetadata,
) -> Result<(), IoError> {
    let format = FileFormat::from_path(path).ok_or_else(|| IoError::UnknownFormat {
        path: path.display().to_string(),
    })?;
    match format {
        FileFormat::Npy => match tensors {
            [one] => write_npy(path, one),
            _ => Err(IoError::NotOneTensor {
                path: path.display().to_string(),
                count: tensors.len(),
            }),
        },
        FileFormat::Npz => write_npz(path, tensors),
        FileFormat::Safetensors => write_safetensors_with_metadata(path, tensors, metadata),
        FileFormat::PyTorch => write_pytorch(path, tensors),
    }
}

/// What a reader gives per tensor: a [`Tensor`], or a [`TensorSource`] for the encoder.
pub trait TensorName {
    /// The tensor's name.
    fn tensor_name(&self) -> &str;
    /// Renames the tensor (e.g. once a prefix is removed).
    fn set_tensor_name(&mut self, name: String);
}

impl TensorName for Tensor {
    fn tensor_name(&self) -> &str {
        &self.name
    }
    fn set_tensor_name(&mut self, name: String) {
        self.name = name;
    }
}

impl TensorName for TensorSource<'_> {
    fn tensor_name(&self) -> &str {
        self.name()
    }
    fn set_tensor_name(&mut self, name: String) {
        self.set_name(name);
    }
}

/// Fails with [`IoError::DuplicateName`] when two tensors share a name.
pub(crate) fn check_unique_names<T: TensorName>(path: &Path, tensors: &[T]) -> Result<(), IoError> {
    let mut seen = std::collections::HashSet::with_capacity(tensors.len());
    for t in tensors {
        if !seen.insert(t.tensor_name()) {
            return Err(IoError::DuplicateName {
                path: path.display().to_string(),
                name: t.tensor_name().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_that_could_pass_for_safetensors_is_read_as_a_checkpoint() {
        // "PK\x03\x04" and four zeros read as a plausible safetensors header length, and a
        // '{' follows (fuzzing found it): the zip's magic decides, as in `FileFormat::detect`.
        let bytes = b"PK\x03\x04\0\0\0\0{\"__metadata__\":{}}";
        assert!(safetensors::looks_like_safetensors(bytes));
        assert_eq!(FileFormat::sniff(bytes), Some(FileFormat::PyTorch));
        let err = read_tensors_from_bytes(bytes, FileFormat::PyTorch, Path::new("m.pt"), "x")
            .unwrap_err();
        assert!(
            matches!(
                err,
                IoError::InvalidFile {
                    format: "PyTorch",
                    ..
                }
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pt");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(FileFormat::detect(&path).unwrap(), FileFormat::PyTorch);
    }

    #[test]
    fn formats_from_extension() {
        let f = |p: &str| FileFormat::from_path(Path::new(p));
        assert_eq!(f("a/model.safetensors"), Some(FileFormat::Safetensors));
        assert_eq!(f("m.PT"), Some(FileFormat::PyTorch));
        assert_eq!(f("m.pth"), Some(FileFormat::PyTorch));
        assert_eq!(f("pytorch_model.bin"), Some(FileFormat::PyTorch));
        assert_eq!(f("x.npz"), Some(FileFormat::Npz));
        assert_eq!(f("x.npy"), Some(FileFormat::Npy));
        assert_eq!(f("x.onnx"), None);
        assert_eq!(f("noext"), None);
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            FileFormat::sniff(b"PK\x03\x04rest"),
            Some(FileFormat::PyTorch)
        );
        assert_eq!(
            FileFormat::sniff(b"\x93NUMPY\x01\x00"),
            Some(FileFormat::Npy)
        );
        assert_eq!(
            FileFormat::sniff(b"\x02\x00\x00\x00\x00\x00\x00\x00{}"),
            Some(FileFormat::Safetensors)
        );
        assert_eq!(FileFormat::sniff(b"\x80\x02}q\x00"), None);
        assert_eq!(FileFormat::sniff(b""), None);
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read_tensors(Path::new("/nonexistent/dir/m.safetensors"), "0").unwrap_err();
        assert!(matches!(err, IoError::NotFound { .. }), "{err}");
        let err = read_tensors(Path::new("/nonexistent/dir/m.bin"), "0").unwrap_err();
        assert!(matches!(err, IoError::NotFound { .. }), "{err}");
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = read_tensors(Path::new("model.onnx"), "0").unwrap_err();
        assert!(matches!(err, IoError::UnknownFormat { .. }));
        let err = write_tensors(Path::new("model.onnx"), &[]).unwrap_err();
        assert!(matches!(err, IoError::UnknownFormat { .. }));
    }
}
