//! Hugging Face safetensors files, through the `safetensors` crate.
//!
//! Every dtype of [`DType`] maps to a safetensors dtype (`F64`, `F32`, `F16`, `BF16`, `I64`,
//! `I32`, `I16`, `I8`, `U64`, `U32`, `U16`, `U8`, `BOOL`). The crate's other dtypes (the 4/6/8-bit
//! floats, `C64`) are [`IoError::UnsupportedDType`] on reading.
//!
//! Order. Reading gives tensors in data-offset order, the order their bytes lie in the file
//! (the crate parses the JSON header into a hash map, so the header's key order is not
//! available; its `Metadata::offset_keys` is the only stable order). Writing goes through the
//! crate, which lays tensors out by descending dtype (largest elements first: `U64`, `I64`,
//! `F64`, `F32`, ...) and then by name, whatever order they are given in; so a write/read round
//! trip gives that order back, with every name, shape, dtype and value intact. Files written by
//! the Python `safetensors` package follow the same rule, so a model read here and written back
//! keeps its tensor order.
//!
//! Metadata. The optional `__metadata__` string map is returned by
//! [`read_safetensors_with_metadata`] and written by [`write_safetensors_with_metadata`]; its
//! contents survive a round trip. It is written first in the header with its keys in sorted
//! order, so the same tensors and map always give the same bytes. Through the codec the map
//! travels as the stream's attributes ([`nnc_tensor::EncodeInput::attributes`]):
//! [`attributes_to_carry`] leaves out the `{"format": "pt"}` every Hugging Face file holds (so
//! such float32 models still code to the reference's bytes), and [`metadata_to_write`] puts it
//! back when a stream carries none.
//!
//! Memory: reading maps the file read-only: the header is parsed from the map, then each
//! tensor's bytes are mapped and copied into the tensor on their own, so besides the tensors
//! only one tensor's mapped bytes are resident at a time. A header that claims more data
//! than the file holds is rejected by the crate before anything is decoded. Writing packs the
//! elements in small blocks; [`super::TensorWriter`] writes a file tensor by tensor with the same
//! layout as [`write_safetensors`].

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;
use nnc_tensor::encode::{NamedElements, TensorSource};
use nnc_tensor::{DType, Tensor};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};

use super::mmap::{lend, map_range};
use super::raw::{self, ByteOrder};
use super::{check_unique_names, io_error, read_file, IoError};

/// The `__metadata__` map of a safetensors header (free-form string pairs, e.g.
/// `{"format": "pt"}`).
pub type SafetensorsMetadata = BTreeMap<String, String>;

/// The `__metadata__` of every file Hugging Face's libraries save from PyTorch:
/// `{"format": "pt"}`. Some versions of `transformers` refuse a file without it.
pub fn pytorch_format_metadata() -> SafetensorsMetadata {
    [("format".to_string(), "pt".to_string())].into()
}

/// What of a file's `__metadata__` a stream carries as its attributes: nothing when the map is
/// empty or exactly [`pytorch_format_metadata`] (which [`metadata_to_write`] restores), the
/// whole map otherwise.
pub fn attributes_to_carry(metadata: &SafetensorsMetadata) -> SafetensorsMetadata {
    if *metadata == pytorch_format_metadata() {
        SafetensorsMetadata::new()
    } else {
        metadata.clone()
    }
}

/// The `__metadata__` to write for a decoded model: the attributes its stream carries, or
/// [`pytorch_format_metadata`] when it carries none.
pub fn metadata_to_write(attributes: &SafetensorsMetadata) -> SafetensorsMetadata {
    if attributes.is_empty() {
        pytorch_format_metadata()
    } else {
        attributes.clone()
    }
}

/// Safetensors' limit on the JSON header (100 MB), checked by the crate on reading.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Whether `head` (a file's first bytes, at least 9) starts like a safetensors file: a
/// little-endian header length that is plausible, then `{`.
pub(crate) fn looks_like_safetensors(head: &[u8]) -> bool {
    match head {
        [l0, l1, l2, l3, l4, l5, l6, l7, b'{', ..] => {
            let n = u64::from_le_bytes([*l0, *l1, *l2, *l3, *l4, *l5, *l6, *l7]);
            (2..=MAX_HEADER_LEN).contains(&n)
        }
        _ => false,
    }
}

fn to_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U64 => DType::U64,
        Dtype::U32 => DType::U32,
        Dtype::U16 => DType::U16,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

fn from_dtype(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
        _ => return None,
    })
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> IoError {
    IoError::InvalidFile {
        path: path.display().to_string(),
        format: "safetensors",
        what: what.to_string(),
    }
}

/// Reads every tensor of a safetensors file, in data-offset order.
pub fn read_safetensors(path: &Path) -> Result<Vec<Tensor>, IoError> {
    Ok(read_safetensors_with_metadata(path)?.0)
}

/// Reads every tensor of a safetensors file, in data-offset order, and its `__metadata__` map
/// (empty when the header has none). The file is mapped, one tensor at a time.
pub fn read_safetensors_with_metadata(
    path: &Path,
) -> Result<(Vec<Tensor>, SafetensorsMetadata), IoError> {
    let each = |info: &TensorInfo, name: &str, bytes: Mmap| {
        tensor_from(info, name, &bytes, (0, bytes.len()), path)
    };
    match map_each(path, each)? {
        Some(read) => Ok(read),
        None => parse(&read_file(path)?, path),
    }
}

/// Reads a safetensors file for the encoder without copying what it can read in place: every
/// float32 and int32 tensor whose bytes are aligned for their type (as the `safetensors`
/// writers lay them out) becomes [`NamedElements`] held by a read-only memory map of its bytes,
/// which the encoder drops as soon as it has quantized the tensor; every other tensor is read
/// as [`read_safetensors_with_metadata`] reads it. Data-offset order, and the `__metadata__`
/// map.
///
/// The maps live as long as the sources (for [`nnc_tensor::encode()`], until each tensor is
/// quantized), so the file must not be truncated or rewritten meanwhile: a truncation raises
/// `SIGBUS`, as with any memory-mapped reader.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use nnc_nn::io::{map_safetensors_sources, write_safetensors};
/// use nnc_tensor::{encode, EncodeInput, EncodeOptions, Tensor, TensorData};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.safetensors");
/// let values = (0..32).map(|i| i as f32 / 32.0).collect();
/// write_safetensors(&path, &[Tensor::try_new("fc.weight", vec![4, 8], TensorData::F32(values))?])?;
///
/// let (sources, _metadata) = map_safetensors_sources(&path)?;
/// // Given to the encoder, each tensor's map is dropped once the tensor is quantized.
/// let input = EncodeInput::from_state_dict_sources(sources)?;
/// let stream = encode(input, &EncodeOptions::default())?;
/// assert!(!stream.bytes.is_empty());
/// # Ok(())
/// # }
/// ```
pub fn map_safetensors_sources(
    path: &Path,
) -> Result<(Vec<TensorSource<'static>>, SafetensorsMetadata), IoError> {
    let each = |info: &TensorInfo, name: &str, bytes: Mmap| {
        let lent = match to_dtype(info.dtype) {
            Some(dtype) => lend(bytes, dtype),
            None => Err(bytes),
        };
        match lent {
            Ok(data) => NamedElements::try_new(name, info.shape.clone(), data)
                .map(TensorSource::from)
                .map_err(|e| IoError::Malformed {
                    path: path.display().to_string(),
                    name: name.to_string(),
                    what: e.to_string(),
                }),
            Err(bytes) => {
                tensor_from(info, name, &bytes, (0, bytes.len()), path).map(TensorSource::from)
            }
        }
    };
    match map_each(path, each)? {
        Some(read) => Ok(read),
        None => {
            let (tensors, metadata) = parse(&read_file(path)?, path)?;
            Ok((
                tensors.into_iter().map(TensorSource::from).collect(),
                metadata,
            ))
        }
    }
}

/// Maps the header of the safetensors file at `path`, then each tensor's bytes in data-offset
/// order, handing them to `each` with the tensor's info and name (a map starts at the bytes'
/// alignment in the file, which [`lend`] checks). `None` for a file too short to map (under 8
/// bytes), which the caller parses from memory.
fn map_each<T>(
    path: &Path,
    mut each: impl FnMut(&TensorInfo, &str, Mmap) -> Result<T, IoError>,
) -> Result<Option<(Vec<T>, SafetensorsMetadata)>, IoError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let Ok(len) = usize::try_from(file_len) else {
        return Err(invalid(path, "file too large to map"));
    };
    if len < 8 {
        return Ok(None);
    }
    let (header_len, metadata) = {
        // Parsing the header touches only the header's pages of the map.
        let whole = map_range(&file, 0, len).map_err(|e| io_error(path, e))?;
        SafeTensors::read_metadata(&whole[..]).map_err(|e| invalid(path, e))?
    };
    // `read_metadata` checked that the offsets tile the data section, which ends the file.
    let data_start = 8 + header_len as u64;
    let mut out = Vec::new();
    for name in metadata.offset_keys() {
        let info = metadata
            .info(&name)
            .ok_or_else(|| invalid(path, format!("tensor {name:?} listed without info")))?;
        let (start, end) = info.data_offsets;
        let bytes = map_range(&file, data_start + start as u64, end.saturating_sub(start))
            .map_err(|e| io_error(path, e))?;
        out.push(each(info, &name, bytes)?);
    }
    Ok(Some((out, header_metadata(&metadata))))
}

fn header_metadata(metadata: &safetensors::tensor::Metadata) -> SafetensorsMetadata {
    metadata
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Decodes a whole safetensors file held in memory.
pub(crate) fn parse(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<Tensor>, SafetensorsMetadata), IoError> {
    let (header_len, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| invalid(path, e))?;
    // `read_metadata` checked that the offsets tile the data section, which ends the file.
    let data = bytes
        .get(8 + header_len..)
        .ok_or_else(|| invalid(path, "data section missing"))?;
    let mut tensors = Vec::new();
    for name in metadata.offset_keys() {
        let info = metadata
            .info(&name)
            .ok_or_else(|| invalid(path, format!("tensor {name:?} listed without info")))?;
        tensors.push(tensor_from(info, &name, data, info.data_offsets, path)?);
    }
    Ok((tensors, header_metadata(&metadata)))
}

/// The tensor `info` describes, from bytes `start..end` of `data`.
fn tensor_from(
    info: &TensorInfo,
    name: &str,
    data: &[u8],
    (start, end): (usize, usize),
    path: &Path,
) -> Result<Tensor, IoError> {
    let malformed = |what: String| IoError::Malformed {
        path: path.display().to_string(),
        name: name.to_string(),
        what,
    };
    let dtype = to_dtype(info.dtype).ok_or_else(|| IoError::UnsupportedDType {
        path: path.display().to_string(),
        name: name.to_string(),
        dtype: info.dtype.to_string(),
    })?;
    let bytes = data
        .get(start..end)
        .ok_or_else(|| malformed(format!("data offsets {start}..{end} outside the file")))?;
    let values =
        raw::decode(dtype, bytes, ByteOrder::Little).map_err(|e| malformed(e.to_string()))?;
    Tensor::try_new(name, info.shape.clone(), values).map_err(|e| malformed(e.to_string()))
}

/// Writes tensors to a safetensors file (no `__metadata__`). See the module doc for the order
/// tensors are laid out in.
pub fn write_safetensors(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    write_safetensors_with_metadata(path, tensors, &SafetensorsMetadata::new())
}

/// Writes tensors and a `__metadata__` map (omitted when empty) to a safetensors file. The file
/// is written to a temporary sibling and renamed into place, so a failed write leaves no partial
/// file (and a file being replaced is never truncated under a map of it).
pub fn write_safetensors_with_metadata(
    path: &Path,
    tensors: &[Tensor],
    metadata: &SafetensorsMetadata,
) -> Result<(), IoError> {
    check_unique_names(path, tensors)?;
    for t in tensors {
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(t.len()) {
            return Err(IoError::Malformed {
                path: path.display().to_string(),
                name: t.name.clone(),
                what: format!("shape {:?} does not hold {} elements", t.shape, t.len()),
            });
        }
    }
    let plan: Vec<nnc_tensor::TensorSpec> = tensors.iter().map(Into::into).collect();
    let mut writer =
        super::TensorWriter::replacing_as(path, &plan, super::FileFormat::Safetensors, metadata)?;
    for t in tensors {
        writer.write(t)?;
    }
    writer.finish()
}

/// The header and data layout [`write_safetensors`] gives these tensors (the crate's order:
/// descending dtype, then name): the header bytes (length prefix included, padded to 8) and
/// each tensor's byte offset from the start of the file, in the order given.
pub(crate) fn layout(
    path: &Path,
    specs: &[nnc_tensor::TensorSpec],
    file_metadata: &SafetensorsMetadata,
) -> Result<(Vec<u8>, Vec<u64>), IoError> {
    let mut order: Vec<(usize, Dtype)> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let dtype = from_dtype(s.dtype).ok_or_else(|| IoError::DTypeNotWritable {
            path: path.display().to_string(),
            name: s.name.clone(),
            dtype: s.dtype,
            format: "safetensors",
            hint: "",
        })?;
        order.push((i, dtype));
    }
    order.sort_by(|(a, da), (b, db)| db.cmp(da).then(specs[*a].name.cmp(&specs[*b].name)));
    let mut infos = Vec::with_capacity(specs.len());
    let mut offsets = vec![0u64; specs.len()];
    let mut offset = 0usize;
    for &(i, dtype) in &order {
        let s = &specs[i];
        let n = s
            .shape
            .iter()
            .try_fold(s.dtype.size_in_bytes(), |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_add(offset).map(|end| (n, end)));
        let Some((n, end)) = n else {
            return Err(IoError::Malformed {
                path: path.display().to_string(),
                name: s.name.clone(),
                what: format!("shape {:?} is too large", s.shape),
            });
        };
        infos.push((
            s.name.clone(),
            TensorInfo {
                dtype,
                shape: s.shape.clone(),
                data_offsets: (offset, offset + n),
            },
        ));
        offsets[i] = offset as u64;
        offset = end;
    }
    let metadata = safetensors::tensor::Metadata::new(None, infos).map_err(|e| IoError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let json_error = |e: serde_json::Error| IoError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut header = serde_json::to_string(&metadata)
        .map_err(json_error)?
        .into_bytes();
    if !file_metadata.is_empty() {
        // First in the header, where the crate puts it, but from a sorted map so that the bytes
        // do not depend on a hash order.
        let mut entry = b"\"__metadata__\":".to_vec();
        entry.extend(serde_json::to_vec(file_metadata).map_err(json_error)?);
        if header.len() > 2 {
            entry.push(b',');
        }
        header.splice(1..1, entry);
    }
    header.resize(header.len().next_multiple_of(8), b' ');
    if header.len() as u64 > MAX_HEADER_LEN {
        return Err(IoError::LimitExceeded {
            path: path.display().to_string(),
            what: format!("safetensors header of {} bytes", header.len()),
        });
    }
    let data_start = 8 + header.len() as u64;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    Ok((bytes, offsets.into_iter().map(|o| o + data_start).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mmap::is_lent;
    use nnc_tensor::TensorData;

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::try_new(name, shape, data).unwrap()
    }

    #[test]
    fn known_file_bytes_decode() {
        // The example file of the safetensors documentation: one 2x2 I32 tensor of zeros.
        let mut bytes = b"<\x00\x00\x00\x00\x00\x00\x00".to_vec();
        bytes.extend_from_slice(br#"{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}"#);
        bytes.extend_from_slice(&[0u8; 16]);
        let (tensors, meta) = parse(&bytes, Path::new("mem")).unwrap();
        assert_eq!(
            tensors,
            vec![t("test", vec![2, 2], TensorData::I32(vec![0; 4]))]
        );
        assert!(meta.is_empty());
        assert!(looks_like_safetensors(&bytes));
    }

    #[test]
    fn order_is_data_offset_order_not_header_order() {
        let header = br#"{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[7, 9]);
        let (tensors, _) = parse(&bytes, Path::new("mem")).unwrap();
        let names: Vec<_> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(tensors[1].data, TensorData::U8(vec![9]));
    }

    #[test]
    fn unsupported_dtype_and_bad_bool_are_errors() {
        let header = br#"{"x":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.push(0);
        let err = parse(&bytes, Path::new("mem")).unwrap_err();
        assert!(matches!(err, IoError::UnsupportedDType { .. }), "{err}");

        let header = br#"{"x":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.push(3);
        let err = parse(&bytes, Path::new("mem")).unwrap_err();
        assert!(matches!(err, IoError::Malformed { .. }), "{err}");
    }

    #[test]
    fn encoder_sources_read_aligned_float32_and_int32_in_place_and_the_rest_as_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let w: Vec<f32> = (0..300).map(|i| (i as f32 * 0.37).sin()).collect();
        let tensors = vec![
            t("a.weight", vec![20, 15], TensorData::F32(w)),
            t("a.bias", vec![3], TensorData::F32(vec![0.5, -1.0, 2.0])),
            t("ids", vec![2, 2], TensorData::I32(vec![1, -2, 3, 1 << 30])),
            t("n.num_batches_tracked", vec![], TensorData::I64(vec![7])),
            t("h", vec![2], TensorData::F16(vec![0x3c00, 0xc000])),
            t("empty", vec![0], TensorData::F32(vec![])),
        ];
        let metadata = pytorch_format_metadata();
        write_safetensors_with_metadata(&path, &tensors, &metadata).unwrap();
        let (read, read_metadata) = read_safetensors_with_metadata(&path).unwrap();
        let (sources, source_metadata) = map_safetensors_sources(&path).unwrap();
        assert_eq!(source_metadata, read_metadata);
        let names: Vec<&str> = sources.iter().map(TensorSource::name).collect();
        let read_names: Vec<&str> = read.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, read_names);
        for (s, r) in sources.iter().zip(&read) {
            let expected = matches!(r.dtype(), DType::F32 | DType::I32) && !r.is_empty();
            assert_eq!(is_lent(s), expected, "{}", r.name);
            assert_eq!(s.shape(), r.shape.as_slice());
        }
        // Both readings give the encoder the same model, so the same stream.
        let opts = nnc_tensor::EncodeOptions::default();
        let copied = nnc_tensor::encode(
            nnc_tensor::EncodeInput::from_state_dict_owned(read).unwrap(),
            &opts,
        )
        .unwrap();
        let mapped = nnc_tensor::encode(
            nnc_tensor::EncodeInput::from_state_dict_sources(sources).unwrap(),
            &opts,
        )
        .unwrap();
        assert_eq!(mapped.bytes, copied.bytes);
    }

    #[test]
    fn misaligned_float32_is_copied_not_lent() {
        // A one-byte tensor first puts the float32 tensor at an odd offset in the file.
        let header = br#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.push(9);
        for x in [1.5f32, -0.25] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let (sources, _) = map_safetensors_sources(&path).unwrap();
        assert!(sources.iter().all(|s| !is_lent(s)));
        match &sources[1] {
            TensorSource::Tensor(b) => assert_eq!(b.data, TensorData::F32(vec![1.5, -0.25])),
            other => panic!("not read as a tensor: {other:?}"),
        }
    }
}
