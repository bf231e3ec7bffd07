//! NumPy `.npy` / `.npz` files (via `npyz`), keeping each array's dtype.
//!
//! `float16` (`<f2`) is read and written; NumPy has no bfloat16, so writing a bf16 tensor is an
//! [`IoError::DTypeNotWritable`] (checked before the file is created).

use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Seek, Write};
use std::path::Path;

use half::f16;
use nnc_tensor::encode::{NamedElements, TensorSource};
use nnc_tensor::{DType, Tensor, TensorData};
use npyz::{NpyFile, WriterBuilder};

use super::mmap::{map_file, parse_file};
use super::{check_unique_names, io_error, IoError};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| io_error(path, source)
}

/// Fails for dtypes NumPy cannot store.
fn check_writable(path: &Path, tensor: &Tensor, format: &'static str) -> Result<(), IoError> {
    check_dtype_writable(path, &tensor.name, tensor.dtype(), format)
}

/// Fails for a dtype NumPy cannot store (bfloat16).
pub(crate) fn check_dtype_writable(
    path: &Path,
    name: &str,
    dtype: DType,
    format: &'static str,
) -> Result<(), IoError> {
    if dtype == DType::BF16 {
        return Err(IoError::DTypeNotWritable {
            path: path.display().to_string(),
            name: name.to_string(),
            dtype: DType::BF16,
            format,
            hint: " (NumPy has no bfloat16; use .safetensors, or cast to float32 first)",
        });
    }
    Ok(())
}

fn malformed(path: &Path, name: &str, what: impl Into<String>) -> IoError {
    IoError::Malformed {
        path: path.display().to_string(),
        name: name.to_string(),
        what: what.into(),
    }
}

/// The array's shape as `usize` dimensions.
fn shape_of<R: Read>(npy: &NpyFile<R>, path: &Path, name: &str) -> Result<Vec<usize>, IoError> {
    npy.shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| malformed(path, name, "dimension too large")))
        .collect()
}

/// Reads one array from an `.npy` stream.
fn read_array<R: Read>(npy: NpyFile<R>, path: &Path, name: &str) -> Result<Tensor, IoError> {
    // `np.save(path, w.T)` writes a Fortran-ordered file; its elements are put in row-major
    // order below, so the tensor is the same array.
    let fortran = npy.order() == npyz::Order::Fortran && npy.shape().len() > 1;
    let shape = shape_of(&npy, path, name)?;
    let descr = npy.dtype().descr();
    let type_code = descr
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '|', '=']);
    let data = match type_code {
        "f8" => TensorData::F64(npy.into_vec().map_err(io_err(path))?),
        "f4" => TensorData::F32(npy.into_vec().map_err(io_err(path))?),
        "f2" => TensorData::F16(
            npy.into_vec::<f16>()
                .map_err(io_err(path))?
                .into_iter()
                .map(f16::to_bits)
                .collect(),
        ),
        "i8" => TensorData::I64(npy.into_vec().map_err(io_err(path))?),
        "i4" => TensorData::I32(npy.into_vec().map_err(io_err(path))?),
        "i2" => TensorData::I16(npy.into_vec().map_err(io_err(path))?),
        "i1" => TensorData::I8(npy.into_vec().map_err(io_err(path))?),
        "u8" => TensorData::U64(npy.into_vec().map_err(io_err(path))?),
        "u4" => TensorData::U32(npy.into_vec().map_err(io_err(path))?),
        "u2" => TensorData::U16(npy.into_vec().map_err(io_err(path))?),
        "u1" => TensorData::U8(npy.into_vec().map_err(io_err(path))?),
        "b1" => TensorData::Bool(npy.into_vec().map_err(io_err(path))?),
        _ => {
            return Err(IoError::UnsupportedDType {
                path: path.display().to_string(),
                name: name.to_string(),
                dtype: descr,
            })
        }
    };
    let data = if fortran {
        row_major(data, &shape).map_err(|e| malformed(path, name, e))?
    } else {
        data
    };
    Tensor::try_new(name, shape, data).map_err(|e| malformed(path, name, e.to_string()))
}

/// The elements of a column-major (Fortran-ordered) array of `shape` in row-major order.
fn row_major(data: TensorData, shape: &[usize]) -> Result<TensorData, String> {
    fn reorder<T: Clone>(v: Vec<T>, shape: &[usize]) -> Result<Vec<T>, String> {
        use ndarray::ShapeBuilder;
        let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape).f(), v)
            .map_err(|e| format!("Fortran-ordered data: {e}"))?;
        Ok(array.iter().cloned().collect())
    }
    Ok(match data {
        TensorData::F64(v) => TensorData::F64(reorder(v, shape)?),
        TensorData::F32(v) => TensorData::F32(reorder(v, shape)?),
        TensorData::F16(v) => TensorData::F16(reorder(v, shape)?),
        TensorData::BF16(v) => TensorData::BF16(reorder(v, shape)?),
        TensorData::I64(v) => TensorData::I64(reorder(v, shape)?),
        TensorData::I32(v) => TensorData::I32(reorder(v, shape)?),
        TensorData::I16(v) => TensorData::I16(reorder(v, shape)?),
        TensorData::I8(v) => TensorData::I8(reorder(v, shape)?),
        TensorData::U64(v) => TensorData::U64(reorder(v, shape)?),
        TensorData::U32(v) => TensorData::U32(reorder(v, shape)?),
        TensorData::U16(v) => TensorData::U16(reorder(v, shape)?),
        TensorData::U8(v) => TensorData::U8(reorder(v, shape)?),
        TensorData::Bool(v) => TensorData::Bool(reorder(v, shape)?),
        other => {
            return Err(format!(
                "Fortran-ordered {:?} arrays are not supported",
                other.dtype()
            ))
        }
    })
}

/// Reads a `.npy` file as one tensor called `name` (through a memory map of the file).
pub fn read_npy(path: &Path, name: &str) -> Result<Tensor, IoError> {
    parse_file(path, |bytes| parse_npy(bytes, path, name))
}

/// Reads every array of a `.npz` file, in archive order (through a memory map of the file:
/// stored members are read where they lie, deflated ones inflated one at a time).
pub fn read_npz(path: &Path) -> Result<Vec<Tensor>, IoError> {
    parse_file(path, |bytes| parse_npz(bytes, path))
}

/// Reads a `.npz` file for the encoder without copying what it can read in place: a stored
/// member (`np.savez` stores them) holding a little-endian float32 or int32 array in C order
/// whose elements are aligned for their type in the file is lent from a read-only map of its
/// bytes, as [`map_npy_source`] lends a `.npy` file; any other member is read as [`read_npz`]
/// reads it. `np.savez` does not align its members, so whether a member is lent is a matter of
/// where it lands (about half of MiniLM's float32 members are 4-byte aligned). Archive order.
/// The file must not be truncated or rewritten while the sources live (see
/// [`super::map_safetensors_sources`]).
pub fn map_npz_sources(path: &Path) -> Result<Vec<TensorSource<'static>>, IoError> {
    let Some((file, whole)) = map_file(path)? else {
        return Ok(read_npz(path)?
            .into_iter()
            .map(TensorSource::from)
            .collect());
    };
    each_npz_member(&whole, path, |name, image, offset| match offset {
        Some(offset) => npy_source(&file, image, offset as u64, path, name),
        None => parse_npy(image, path, name).map(TensorSource::from),
    })
}

/// Decodes one `.npy` image held in memory (`path` only names it in errors).
pub(crate) fn parse_npy(bytes: &[u8], path: &Path, name: &str) -> Result<Tensor, IoError> {
    read_array(open_npy(bytes, path, name)?.0, path, name)
}

/// Checks the header of a `.npy` image and opens it; also gives where its data starts.
fn open_npy<'b>(
    bytes: &'b [u8],
    path: &Path,
    name: &str,
) -> Result<(NpyFile<&'b [u8]>, usize), IoError> {
    // npyz allocates the header length it is told; check it against what is there first.
    let header_end = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, l0, l1, ..] => {
            10 + usize::from(u16::from_le_bytes([*l0, *l1]))
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, l0, l1, l2, l3, ..] => {
            12usize.saturating_add(u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize)
        }
        _ => {
            return Err(malformed(
                path,
                name,
                "not a .npy image (bad magic or version)",
            ))
        }
    };
    if header_end > bytes.len() {
        return Err(malformed(
            path,
            name,
            "header runs past the end of the data",
        ));
    }
    let header_start = if bytes[6] == 1 { 10 } else { 12 };
    let header = &bytes[header_start..header_end];
    check_nesting(header).map_err(|what| malformed(path, name, what))?;
    check_shape_literal(header).map_err(|what| malformed(path, name, what))?;
    let npy = NpyFile::new(bytes).map_err(|e| malformed(path, name, e.to_string()))?;
    Ok((npy, header_end))
}

/// Reads a `.npy` file as one tensor called `name` for the encoder, without copying it when it
/// can be read in place: a little-endian float32 or int32 array in C order whose data exactly
/// fills the rest of the file and is aligned for its type (as `np.save` writes it) is lent from
/// a read-only map of its bytes, which the encoder drops once it has quantized it. Any other
/// file is read as [`read_npy`] reads it. The file must not be truncated or rewritten while the
/// source lives (see [`super::map_safetensors_sources`]).
pub fn map_npy_source(path: &Path, name: &str) -> Result<TensorSource<'static>, IoError> {
    let Some((file, whole)) = map_file(path)? else {
        return read_npy(path, name).map(TensorSource::from);
    };
    npy_source(&file, &whole, 0, path, name)
}

/// One `.npy` image of `file` (the whole file, or a stored `.npz` member), lying at
/// `image_offset`, for the encoder: its elements lent from a map of their bytes when the array
/// is little-endian float32 or int32 in C order, fills the rest of the image and is aligned for
/// its type; otherwise parsed from `image`.
fn npy_source(
    file: &File,
    image: &[u8],
    image_offset: u64,
    path: &Path,
    name: &str,
) -> Result<TensorSource<'static>, IoError> {
    let len = image.len();
    let (npy, data_start) = open_npy(image, path, name)?;
    let row_major = npy.order() == npyz::Order::C || npy.shape().len() <= 1;
    let count = npy
        .shape()
        .iter()
        .try_fold(4u64, |n, &d| n.checked_mul(d))
        .and_then(|n| usize::try_from(n).ok());
    let fills_the_rest = count == Some(len - data_start) && data_start < len;
    let in_place = row_major && fills_the_rest;
    let descr = npy.dtype().descr();
    let dtype = match descr.trim_matches('\'') {
        "<f4" if in_place => DType::F32,
        "<i4" if in_place => DType::I32,
        _ => return parse_npy(image, path, name).map(TensorSource::from),
    };
    let shape = shape_of(&npy, path, name)?;
    let bytes = super::mmap::map_range(file, image_offset + data_start as u64, len - data_start)
        .map_err(io_err(path))?;
    match super::mmap::lend(bytes, dtype) {
        Ok(data) => NamedElements::try_new(name, shape, data)
            .map(TensorSource::from)
            .map_err(|e| malformed(path, name, e.to_string())),
        // Not lent after all (data not aligned for its type, or a big-endian host): a copy.
        Err(_) => parse_npy(image, path, name).map(TensorSource::from),
    }
}

/// Deepest bracket nesting accepted in a header. NumPy's headers nest two deep (the dict and its
/// shape tuple), structured dtypes (not supported) a few more.
const MAX_HEADER_NESTING: usize = 8;

/// npyz's header parser takes time exponential in the nesting depth of brackets (a 229-byte
/// file with 90 nested `[` ran for minutes; each level doubles the time), so deeper headers are
/// refused before it sees them.
fn check_nesting(header: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'[' | b'(' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(format!(
                        "header nests brackets more than {MAX_HEADER_NESTING} deep"
                    ));
                }
            }
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// npyz multiplies the dimensions without overflow checks (a panic in debug builds), so the
/// header's `shape` is checked first: plain decimal integers (what NumPy writes) whose product
/// fits in 64 bits. A header without a shape is left to npyz to reject.
fn check_shape_literal(header: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(header);
    let Some(at) = text.find("'shape'").or_else(|| text.find("\"shape\"")) else {
        return Ok(());
    };
    let rest = text[at + 7..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .map(str::trim_start)
        .ok_or("malformed shape entry")?;
    let close = match rest.chars().next() {
        Some('(') => ')',
        Some('[') => ']',
        _ => return Err("shape is not a tuple".into()),
    };
    let end = rest.find(close).ok_or("unterminated shape")?;
    let mut count: u64 = 1;
    for token in rest[1..end]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let digits = token.trim_end_matches(['L', 'l']);
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("unsupported shape entry {token:?}"));
        }
        let d: u64 = digits
            .parse()
            .map_err(|_| format!("dimension {token} too large"))?;
        count = count
            .checked_mul(d)
            .ok_or("shape element count overflows")?;
    }
    Ok(())
}

/// Decodes every array of a `.npz` archive held in memory, in archive order (the order the
/// arrays were written, not the hash order of npyz's `array_names`).
///
/// A member named without `.npy` is read too, under its whole name, as `np.load` reads it when
/// it holds an array; one that holds no array is refused rather than left out. Directory
/// entries are skipped.
pub(crate) fn parse_npz(bytes: &[u8], path: &Path) -> Result<Vec<Tensor>, IoError> {
    each_npz_member(bytes, path, |name, image, _| parse_npy(image, path, name))
}

/// Calls `visit` on each member of the `.npz` archive `bytes`, in archive order, with the
/// array's name (the member's without `.npy`), its `.npy` image, and where the image lies in
/// `bytes` when the member is stored (read where it lies, its checksum verified) rather than
/// deflated (inflated into a buffer of its own, one member at a time).
fn each_npz_member<T>(
    bytes: &[u8],
    path: &Path,
    mut visit: impl FnMut(&str, &[u8], Option<usize>) -> Result<T, IoError>,
) -> Result<Vec<T>, IoError> {
    let invalid = |what: String| IoError::InvalidFile {
        path: path.display().to_string(),
        format: ".npz",
        what,
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| invalid(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        let member = entry.name().map_err(|e| invalid(e.to_string()))?;
        let name = member.strip_suffix(".npy").unwrap_or(&member).to_string();
        let stored = (entry.compression() == zip::CompressionMethod::Stored)
            .then(|| {
                let start = usize::try_from(entry.data_start()?).ok()?;
                let len = usize::try_from(entry.size()).ok()?;
                let image = bytes.get(start..start.checked_add(len)?)?;
                Some((start, image))
            })
            .flatten();
        if let Some((start, image)) = stored {
            if crc32fast::hash(image) != entry.crc32() {
                return Err(malformed(path, &name, "member checksum mismatch"));
            }
            out.push(visit(&name, image, Some(start))?);
            continue;
        }
        // Grows with the data actually inflated, never with the size the entry claims.
        let mut image = Vec::new();
        let declared = entry.size();
        entry
            .take(declared)
            .read_to_end(&mut image)
            .map_err(|e| malformed(path, &name, e.to_string()))?;
        out.push(visit(&name, &image, None)?);
    }
    Ok(out)
}

/// Writes one tensor as an `.npy` stream with its own dtype.
pub(crate) fn write_array<W: Write>(mut out: W, tensor: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = tensor.shape.iter().map(|&d| d as u64).collect();
    macro_rules! typed {
        ($values:expr, $t:ty) => {{
            let mut w = npyz::WriteOptions::<$t>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()?;
            w.extend($values)?;
            w.finish()
        }};
    }
    match &tensor.data {
        TensorData::F64(v) => typed!(v.iter().copied(), f64),
        TensorData::F32(v) => typed!(v.iter().copied(), f32),
        TensorData::F16(v) => typed!(v.iter().map(|&b| f16::from_bits(b)), f16),
        TensorData::I64(v) => typed!(v.iter().copied(), i64),
        TensorData::I32(v) => typed!(v.iter().copied(), i32),
        TensorData::I16(v) => typed!(v.iter().copied(), i16),
        TensorData::I8(v) => typed!(v.iter().copied(), i8),
        TensorData::U64(v) => typed!(v.iter().copied(), u64),
        TensorData::U32(v) => typed!(v.iter().copied(), u32),
        TensorData::U16(v) => typed!(v.iter().copied(), u16),
        TensorData::U8(v) => typed!(v.iter().copied(), u8),
        TensorData::Bool(v) => typed!(v.iter().copied(), bool),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cannot write dtype {:?}", other.dtype()),
        )),
    }
}

/// Writes one tensor to a `.npy` file with its own dtype.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), IoError> {
    check_writable(path, tensor, ".npy")?;
    let file = File::create(path).map_err(io_err(path))?;
    let mut out = BufWriter::new(file);
    write_array(&mut out, tensor).map_err(io_err(path))?;
    out.flush().map_err(io_err(path))
}

/// Writes tensors to a `.npz` archive (uncompressed entries, as `numpy.savez`), each under its name.
pub fn write_npz(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    check_unique_names(path, tensors)?;
    for t in tensors {
        check_writable(path, t, ".npz")?;
    }
    let file = File::create(path).map_err(io_err(path))?;
    write_npz_to(BufWriter::new(file), tensors).map_err(io_err(path))
}

fn write_npz_to<W: Write + Seek>(writer: W, tensors: &[Tensor]) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(writer);
    for tensor in tensors {
        write_npz_entry(&mut zip, tensor)?;
    }
    let mut inner = zip.finish().map_err(std::io::Error::other)?;
    inner.flush()
}

/// Appends one tensor to an `.npz` archive (an uncompressed entry, as `numpy.savez`).
pub(crate) fn write_npz_entry<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    tensor: &Tensor,
) -> std::io::Result<()> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    zip.start_file(format!("{}.npy", tensor.name), options)
        .map_err(std::io::Error::other)?;
    // The array is written element by element; each write into the zip entry would otherwise
    // update its CRC and statistics for a few bytes at a time.
    let mut entry = BufWriter::with_capacity(ENTRY_BUFFER, zip);
    write_array(&mut entry, tensor)?;
    entry.flush()
}

/// Bytes gathered before they are handed to a zip entry (also by the PyTorch writer's storages).
pub(crate) const ENTRY_BUFFER: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mmap::is_lent;
    use nnc_tensor::encode::{Elements, ParameterData};

    #[test]
    fn npz_entries_larger_than_the_entry_buffer_round_trip() {
        // Each entry goes through its own 1 MiB buffer: arrays spanning several buffer fills,
        // next to small ones, must land whole in their own entries.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.npz");
        let n = 3 * ENTRY_BUFFER / 4 + 123;
        let big = (0..n).map(|i| (i as f32).sin()).collect::<Vec<f32>>();
        let tensors = vec![
            Tensor::try_new("big", vec![n], TensorData::F32(big)).unwrap(),
            Tensor::try_new("small", vec![2], TensorData::I32(vec![7, -7])).unwrap(),
            Tensor::try_new("wide", vec![n / 2], TensorData::F64(vec![0.5; n / 2])).unwrap(),
        ];
        write_npz(&path, &tensors).unwrap();
        assert_eq!(read_npz(&path).unwrap(), tensors);
    }

    /// An archive with the given members (name, bytes), stored.
    fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in members {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            if name.ends_with('/') {
                zip.add_directory(*name, options).unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                zip.write_all(bytes).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn npz_members_without_the_npy_suffix_are_read_or_refused_not_dropped() {
        let path = Path::new("m.npz");
        let t = Tensor::try_new("w", vec![2], TensorData::F32(vec![1.5, -2.0])).unwrap();
        let mut image = Vec::new();
        write_array(&mut image, &t).unwrap();
        let b = Tensor::try_new("b", vec![1], TensorData::I32(vec![3])).unwrap();
        let mut b_image = Vec::new();
        write_array(&mut b_image, &b).unwrap();
        // `np.load` reads a member named without ".npy" when it holds an array.
        let bytes = zip_of(&[
            ("sub/", Vec::new()),
            ("w", image.clone()),
            ("b.npy", b_image.clone()),
        ]);
        assert_eq!(parse_npz(&bytes, path).unwrap(), vec![t.clone(), b.clone()]);
        // Anything else is refused by name, not left out.
        let bytes = zip_of(&[("README.txt", b"hello".to_vec()), ("b.npy", b_image)]);
        let err = parse_npz(&bytes, path).unwrap_err().to_string();
        assert!(err.contains("README.txt"), "{err}");
    }

    #[test]
    fn npz_sources_lend_stored_members_whose_elements_are_aligned() {
        let tensor = |name: &str, data| Tensor::try_new(name, vec![2, 3], data).unwrap();
        let f = |k: f32| TensorData::F32((0..6).map(|i| i as f32 * k - 1.0).collect());
        // Names of growing length move each member's elements by one byte in the file.
        let mut tensors: Vec<Tensor> = ["a", "bb", "ccc", "dddd", "eeeee"]
            .iter()
            .enumerate()
            .map(|(i, n)| tensor(n, f(i as f32 + 0.5)))
            .collect();
        tensors.push(tensor(
            "ids",
            TensorData::I32(vec![1, -2, 3, -4, 5, 1 << 30]),
        ));
        tensors.push(tensor("wide", TensorData::F64(vec![0.5; 6])));
        let image = |t: &Tensor| {
            let mut v = Vec::new();
            write_array(&mut v, t).unwrap();
            v
        };
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
        for t in &tensors {
            zip.start_file(format!("{}.npy", t.name), stored).unwrap();
            zip.write_all(&image(t)).unwrap();
        }
        let packed = tensor("packed", f(9.0));
        zip.start_file("packed.npy", deflated).unwrap();
        zip.write_all(&image(&packed)).unwrap();
        tensors.push(packed);
        let bytes = zip.finish().unwrap().into_inner();

        // Where each stored member's elements lie: its data start plus the .npy header.
        let mut archive = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let mut expected = Vec::new();
        for (i, t) in tensors.iter().enumerate() {
            let entry = archive.by_index(i).unwrap();
            let start = entry.data_start().unwrap() as usize;
            let stored = entry.compression() == zip::CompressionMethod::Stored;
            let header = usize::from(u16::from_le_bytes([bytes[start + 8], bytes[start + 9]]));
            let aligned = (start + 10 + header).is_multiple_of(4);
            expected.push(stored && aligned && matches!(t.dtype(), DType::F32 | DType::I32));
        }
        assert!(expected.iter().any(|&x| x) && !expected.iter().all(|&x| x));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npz");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_npz(&path).unwrap(), tensors);
        let sources = map_npz_sources(&path).unwrap();
        assert_eq!(sources.len(), tensors.len());
        for ((s, t), lend) in sources.iter().zip(&tensors).zip(&expected) {
            assert_eq!(is_lent(s), *lend, "{}", t.name);
            assert_eq!((s.name(), s.shape()), (t.name.as_str(), t.shape.as_slice()));
            assert_eq!(s.to_tensor().as_ref(), t);
        }

        // A stored member whose bytes no longer match its checksum is refused, read either way.
        let mut corrupt = bytes.clone();
        let first = archive.by_index(0).unwrap().data_start().unwrap() as usize;
        corrupt[first + 130] ^= 0x40;
        std::fs::write(&path, &corrupt).unwrap();
        for err in [
            read_npz(&path).unwrap_err(),
            map_npz_sources(&path).unwrap_err(),
        ] {
            assert!(err.to_string().contains("checksum"), "{err}");
        }
    }

    #[test]
    fn deflated_members_read_and_other_compressors_are_refused_by_name() {
        let path = Path::new("m.npz");
        let t = Tensor::try_new("w", vec![3], TensorData::F64(vec![0.25, -1.0, 8.0])).unwrap();
        let mut image = Vec::new();
        write_array(&mut image, &t).unwrap();
        // `np.savez_compressed` deflates every member.
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("w.npy", deflated).unwrap();
        zip.write_all(&image).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert_eq!(parse_npz(&bytes, path).unwrap(), vec![t]);

        // The same member marked bzip2 (method 12) in its local and central headers: a method
        // nnc is not built with is an error naming it, not a panic or an empty read.
        let mut bytes = zip_of(&[("w.npy", image)]);
        for (signature, method_at) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
            let at = bytes
                .windows(4)
                .position(|w| w == signature)
                .expect("header present");
            bytes[at + method_at..at + method_at + 2].copy_from_slice(&12u16.to_le_bytes());
        }
        let err = parse_npz(&bytes, path).unwrap_err();
        assert!(
            matches!(&err, IoError::Malformed { name, .. } if name == "w"),
            "{err:?}"
        );
        assert!(err.to_string().contains("compression method"), "{err}");
    }

    #[test]
    fn npz_round_trip_keeps_names_shapes_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npz");
        let tensors = vec![
            Tensor::try_new(
                "a.weight",
                vec![2, 3],
                TensorData::F32(vec![1.0, -2.5, 0.0, 3.0, 4.0, -0.0]),
            )
            .unwrap(),
            Tensor::try_new(
                "b",
                vec![4],
                TensorData::I64(vec![1, -2, i64::MAX, i64::MIN]),
            )
            .unwrap(),
            Tensor::try_new("c", vec![2, 1], TensorData::U8(vec![0, 255])).unwrap(),
            Tensor::try_new("d", vec![1], TensorData::F64(vec![0.1])).unwrap(),
        ];
        write_npz(&path, &tensors).unwrap();
        let back = read_npz(&path).unwrap();
        assert_eq!(back, tensors);
    }

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let t =
            Tensor::try_new("0", vec![3, 1, 2], TensorData::I32(vec![1, 2, 3, 4, 5, -6])).unwrap();
        write_npy(&path, &t).unwrap();
        assert_eq!(read_npy(&path, "0").unwrap(), t);
    }

    #[test]
    fn f16_round_trips_and_bf16_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.npy");
        let t =
            Tensor::try_new("h", vec![3], TensorData::F16(vec![0x3c00, 0xfc00, 0x0001])).unwrap();
        write_npy(&path, &t).unwrap();
        assert_eq!(read_npy(&path, "h").unwrap(), t);

        let path = dir.path().join("b.npz");
        let b = Tensor::try_new("b", vec![1], TensorData::BF16(vec![0x3f80])).unwrap();
        let err = write_npz(&path, &[t, b]).unwrap_err();
        assert!(matches!(err, IoError::DTypeNotWritable { .. }), "{err}");
        assert!(!path.exists(), "no file is left behind");
    }

    #[test]
    fn hostile_shapes_are_errors() {
        for shape in [
            "(4294967296, 4294967296, 2)",
            "(99999999999999999999999,)",
            "(0x10,)",
            "-1",
        ] {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            bytes.extend_from_slice(dict.as_bytes());
            bytes.extend_from_slice(&[0; 8]);
            let err = parse_npy(&bytes, Path::new("h.npy"), "h").unwrap_err();
            assert!(matches!(err, IoError::Malformed { .. }), "{shape}: {err}");
        }
        assert_eq!(
            check_shape_literal(b"{'shape': (2, 3L), 'descr': '<f4'}"),
            Ok(())
        );
        assert_eq!(check_shape_literal(b"{'shape': (), }"), Ok(()));
    }

    /// Found by the `model_files` fuzz target: a 229-byte `.npy` whose header opened 90
    /// brackets kept npyz's header parser busy for minutes (the time doubles with each level).
    /// Deep headers are refused at once now; NumPy's own, and one at the limit, still parse.
    #[test]
    fn deeply_nested_headers_are_refused_quickly() {
        let npy = |header: &str| {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&[0; 24]);
            bytes
        };
        let hostile = format!(
            "{{'descr': '<f4', {}'fortran_order': False, 'shape': (2, 3), }}\n",
            "[".repeat(90)
        );
        let err = parse_npy(&npy(&hostile), Path::new("d.npy"), "d").unwrap_err();
        assert!(err.to_string().contains("nests brackets"), "{err}");

        let plain = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
        assert!(parse_npy(&npy(plain), Path::new("p.npy"), "p").is_ok());
        assert_eq!(check_nesting(&[b'('; MAX_HEADER_NESTING]), Ok(()));
        assert!(check_nesting(&[b'('; MAX_HEADER_NESTING + 1]).is_err());
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = super::super::read_tensors(Path::new("model.onnx"), "0").unwrap_err();
        assert!(matches!(err, IoError::UnknownFormat { .. }));
    }

    /// A `.npy` image: `header` padded with spaces so the data starts at a multiple of `align`
    /// plus `shift`, then `data`.
    fn npy_image(header: &str, align: usize, shift: usize, data: &[u8]) -> Vec<u8> {
        let mut dict = header.to_string();
        while (10 + dict.len() + 1) % align != shift {
            dict.push(' ');
        }
        dict.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn encoder_source_lends_c_ordered_little_endian_float32_and_int32_only() {
        let f: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0, -0.5, 3.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let head = |descr: &str, fortran: bool, shape: &str| {
            let order = if fortran { "True" } else { "False" };
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
        };
        let mut longer = f.clone();
        longer.extend_from_slice(&[0; 4]);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "f32",
                npy_image(&head("<f4", false, "(2, 3)"), 64, 0, &f),
                true,
            ),
            (
                "i32",
                npy_image(&head("<i4", false, "(6,)"), 64, 0, &f),
                true,
            ),
            (
                "scalar",
                npy_image(&head("<f4", false, "()"), 64, 0, &f[..4]),
                true,
            ),
            (
                "fortran",
                npy_image(&head("<f4", true, "(2, 3)"), 64, 0, &f),
                false,
            ),
            (
                "f64",
                npy_image(&head("<f8", false, "(3,)"), 64, 0, &longer[..24]),
                false,
            ),
            (
                "big-endian",
                npy_image(&head(">f4", false, "(6,)"), 64, 0, &f),
                false,
            ),
            (
                "misaligned",
                npy_image(&head("<f4", false, "(6,)"), 64, 2, &f),
                false,
            ),
            (
                "longer",
                npy_image(&head("<f4", false, "(6,)"), 64, 0, &longer),
                false,
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (what, bytes, lent) in cases {
            let path = dir.path().join(format!("{what}.npy"));
            std::fs::write(&path, &bytes).unwrap();
            let source = map_npy_source(&path, "x").unwrap();
            let read = read_npy(&path, "x").unwrap();
            match (&source, lent) {
                (TensorSource::Elements(e), true) => {
                    assert_eq!(e.shape(), read.shape.as_slice(), "{what}");
                    match (e.data(), &read.data) {
                        (ParameterData::F32(Elements::Shared(v)), TensorData::F32(r)) => {
                            assert_eq!((**v).as_ref(), r.as_slice(), "{what}")
                        }
                        (ParameterData::I32(Elements::Shared(v)), TensorData::I32(r)) => {
                            assert_eq!((**v).as_ref(), r.as_slice(), "{what}")
                        }
                        other => panic!("{what}: not lent from the map: {other:?}"),
                    }
                }
                (TensorSource::Tensor(t), false) => assert_eq!(**t, read, "{what}"),
                (other, _) => panic!("{what}: expected lent = {lent}, got {other:?}"),
            }
        }
    }
}
