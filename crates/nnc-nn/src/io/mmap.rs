//! Read-only memory maps of model files: the crate's only unsafe code.
//!
//! The safetensors reader maps one tensor's bytes at a time, copies them into the tensor and
//! drops the map. The `.npy` and `.npz` readers and the PyTorch in-place reader map the whole
//! file ([`map_file`]) and parse it where it lies, so it is never copied into the heap whole;
//! its pages become resident only as they are read. So do the copying PyTorch reader and
//! [`super::read_tensors`] for its PyTorch and `.npz` files ([`parse_file`]). The encoder's
//! in-place sources keep a tensor's own map instead ([`MappedSlice`]) until the encoder has
//! quantized that tensor.

use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;
use nnc_tensor::encode::{Elements, ParameterData};
use nnc_tensor::DType;

use super::{io_error, IoError};

/// A map of a float32 or int32 tensor's little-endian bytes as the encoder's elements, held by
/// the map itself; the map back when the dtype is another one, the host is big-endian, or the
/// bytes are not a whole number of aligned elements.
pub(crate) fn lend(map: Mmap, dtype: DType) -> Result<ParameterData<'static>, Mmap> {
    if cfg!(target_endian = "big") || map.is_empty() {
        return Err(map);
    }
    match dtype {
        DType::F32 => {
            MappedSlice::<f32>::new(map).map(|m| ParameterData::F32(Elements::shared(Arc::new(m))))
        }
        DType::I32 => {
            MappedSlice::<i32>::new(map).map(|m| ParameterData::I32(Elements::shared(Arc::new(m))))
        }
        _ => Err(map),
    }
}

/// A map of one tensor's bytes, lent as elements of type `T` (checked once: the bytes are a
/// whole number of `T`, aligned for it).
pub(crate) struct MappedSlice<T> {
    map: Mmap,
    elements: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> MappedSlice<T> {
    /// The map as elements of `T`, or the map back when its bytes are not a whole number of
    /// aligned `T`.
    pub(crate) fn new(map: Mmap) -> Result<Self, Mmap> {
        if bytemuck::try_cast_slice::<u8, T>(&map).is_err() {
            return Err(map);
        }
        Ok(MappedSlice {
            map,
            elements: PhantomData,
        })
    }
}

impl<T: bytemuck::Pod> AsRef<[T]> for MappedSlice<T> {
    fn as_ref(&self) -> &[T] {
        // `new` checked size and alignment, and a map's bytes never move.
        bytemuck::try_cast_slice(&self.map).unwrap_or_default()
    }
}

/// Opens `path` and maps the whole file, read-only; `None` for a file with nothing to map
/// (empty, or longer than the address space), which the caller reads another way.
pub(crate) fn map_file(path: &Path) -> Result<Option<(File, Mmap)>, IoError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let Some(len) = usize::try_from(len).ok().filter(|&l| l > 0) else {
        return Ok(None);
    };
    let whole = map_range(&file, 0, len).map_err(|e| io_error(path, e))?;
    Ok(Some((file, whole)))
}

/// Parses the whole of `path` where it lies: `parse` gets a read-only map of the file, or the
/// file read into memory when there is nothing to map (an empty file, whose error the parser
/// gives). The map is dropped before this returns, so nothing parsed may borrow from it.
pub(crate) fn parse_file<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, IoError>,
) -> Result<T, IoError> {
    match map_file(path)? {
        Some((_, whole)) => parse(&whole),
        None => parse(&super::read_file(path)?),
    }
}

/// Maps `len` bytes of `file` from byte `offset`, read-only. `len` 0 gives an empty map.
///
/// The caller must have checked that `offset + len` lies within the file. The map's first byte
/// has the alignment of `offset` in the file modulo the page size.
#[allow(unsafe_code)] // the crate's one mapping, see SAFETY
pub(crate) fn map_range(file: &File, offset: u64, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: memmap2 requires that the mapped bytes are not modified or truncated while the map
    // lives. The map is read-only and private to this process, and lives while one tensor is
    // copied out of it or, for an in-place source, until the encoder has quantized that tensor.
    // Another process truncating or rewriting the file in that window is the caveat every
    // mmap-based reader (safetensors, NumPy's memmap, `torch.load(mmap=True)`) shares: a
    // truncation would raise SIGBUS instead of an error.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)
    }
}

/// Whether a source is read in place: elements held by a shared owner (a tensor's map). For
/// the readers' tests.
#[cfg(test)]
pub(crate) fn is_lent(s: &nnc_tensor::encode::TensorSource<'_>) -> bool {
    use nnc_tensor::encode::TensorSource;
    matches!(
        s,
        TensorSource::Elements(e) if matches!(
            e.data(),
            ParameterData::F32(Elements::Shared(_)) | ParameterData::I32(Elements::Shared(_))
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_a_file_where_it_lies_an_empty_one_read_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"model bytes").unwrap();
        let read = parse_file(&path, |b| Ok(b.to_vec())).unwrap();
        assert_eq!(read, b"model bytes");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(parse_file(&path, |b| Ok(b.len())).unwrap(), 0);
        let missing = dir.path().join("missing.bin");
        assert!(matches!(
            parse_file(&missing, |b| Ok(b.len())),
            Err(IoError::NotFound { .. })
        ));
    }

    #[test]
    fn maps_a_range_at_an_unaligned_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let file = File::open(&path).unwrap();
        let map = map_range(&file, 4099, 333).unwrap();
        assert_eq!(&map[..], &bytes[4099..4432]);
        assert!(map_range(&file, 17, 0).unwrap().is_empty());
        let whole = map_range(&file, 0, bytes.len()).unwrap();
        assert_eq!(&whole[..], &bytes[..]);
    }
}
