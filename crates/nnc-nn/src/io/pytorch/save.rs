//! Writing checkpoints that `torch.load` reads (with `weights_only=True`, its default): a state
//! dict, that is an `OrderedDict` of contiguous CPU tensors in the given order, as
//! `torch.save(model.state_dict(), f)` stores it.
//!
//! The archive holds `archive/data.pkl` (protocol-2 pickle), one stored (uncompressed) entry
//! `archive/data/<i>` per tensor, its data aligned to 64 bytes as torch aligns it (so
//! `torch.load(..., mmap=True)` works too), and the small records torch writes beside them
//! (`byteorder`, `version`, `.format_version`, `.storage_alignment`). The pickle is written
//! first, from the plan alone, so tensors can follow one at a time as a decoder hands them out.
//!
//! Storage types are torch's legacy typed storages (`torch.FloatStorage`, ...) called through
//! `torch._utils._rebuild_tensor_v2`; `uint16`/`uint32`/`uint64`, which have none, go as an
//! untyped storage with the dtype beside it (`_rebuild_tensor_v3`), as torch 2.3+ saves them.

use std::io::{Seek, Write};
use std::path::Path;

use nnc_tensor::{DType, Tensor, TensorSpec};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::pickle::{
    BININT, BINPERSID, BINUNICODE, EMPTY_TUPLE, GLOBAL, LONG1, MARK, NEWFALSE, PROTO, REDUCE,
    SETITEMS, STOP, TUPLE,
};
use crate::io::IoError;

/// Directory of every record, as current torch names it.
const ARCHIVE: &str = "archive";
/// Alignment of each storage's bytes within the file (torch's `.storage_alignment`).
const ALIGNMENT: u16 = 64;

/// Starts a checkpoint for the tensors of `plan` (names unique, checked by the caller): writes
/// the pickle and the small records. Storage `i` is `plan[i]`'s.
pub(crate) fn start<W: Write + Seek>(out: W, plan: &[TensorSpec]) -> std::io::Result<ZipWriter<W>> {
    let mut zip = ZipWriter::new(out);
    let records: [(&str, Vec<u8>); 5] = [
        ("data.pkl", state_dict_pickle(plan)),
        ("byteorder", b"little".to_vec()),
        (".format_version", b"1".to_vec()),
        (".storage_alignment", ALIGNMENT.to_string().into_bytes()),
        ("version", b"3\n".to_vec()),
    ];
    for (name, bytes) in records {
        zip.start_file(format!("{ARCHIVE}/{name}"), options(false))
            .map_err(std::io::Error::other)?;
        zip.write_all(&bytes)?;
    }
    Ok(zip)
}

/// Writes the bytes of storage `index` (the tensor planned at that index).
pub(crate) fn write_storage<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    index: usize,
    tensor: &Tensor,
) -> std::io::Result<()> {
    let size = (tensor.len() * tensor.dtype().size_in_bytes()) as u64;
    zip.start_file(
        format!("{ARCHIVE}/data/{index}"),
        options(size >= u64::from(u32::MAX)),
    )
    .map_err(std::io::Error::other)?;
    // Each write into the entry would otherwise update its CRC for a few bytes at a time.
    let mut entry = std::io::BufWriter::with_capacity(crate::io::npy::ENTRY_BUFFER, &mut *zip);
    crate::io::raw::write_le(&tensor.data, &mut entry)?;
    entry.flush()
}

/// Completes the archive (its central directory) and returns the sink.
pub(crate) fn finish<W: Write + Seek>(zip: ZipWriter<W>) -> std::io::Result<W> {
    zip.finish().map_err(std::io::Error::other)
}

/// A stored entry whose data starts at a multiple of [`ALIGNMENT`] in the file.
fn options(large: bool) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(large)
        .with_alignment(ALIGNMENT)
}

/// The pickle of `OrderedDict([(name, tensor), ...])` for the plan, storage keys `"0"`, `"1"`, ...
fn state_dict_pickle(plan: &[TensorSpec]) -> Vec<u8> {
    let mut p = Pickler::default();
    p.proto2();
    p.global("collections", "OrderedDict");
    p.op(EMPTY_TUPLE);
    p.op(REDUCE);
    p.op(MARK);
    for (index, spec) in plan.iter().enumerate() {
        p.unicode(&spec.name);
        tensor(&mut p, index, spec);
    }
    p.op(SETITEMS);
    p.op(STOP);
    p.out
}

/// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`, or `_v3`
/// with the dtype for the unsigned types wider than a byte.
fn tensor(p: &mut Pickler, index: usize, spec: &TensorSpec) {
    let numel: usize = spec.shape.iter().product();
    // `check_plan` has refused the types without a storage.
    let (storage_class, v3_dtype) = storage_type(spec.dtype).unwrap_or(("UntypedStorage", None));
    let rebuild = if v3_dtype.is_some() {
        "_rebuild_tensor_v3"
    } else {
        "_rebuild_tensor_v2"
    };
    p.global("torch._utils", rebuild);
    p.op(MARK);
    // The storage: ('storage', class, key, location, size), size in elements for a typed
    // storage and in bytes for an untyped one.
    p.op(MARK);
    p.unicode("storage");
    // torch's typed storages are `torch.FloatStorage`, ...; the untyped one lives in
    // `torch.storage`, which is where `weights_only` loading allows it.
    let module = if v3_dtype.is_some() {
        "torch.storage"
    } else {
        "torch"
    };
    p.global(module, storage_class);
    p.unicode(&index.to_string());
    p.unicode("cpu");
    let storage_len = if v3_dtype.is_some() {
        numel * spec.dtype.size_in_bytes()
    } else {
        numel
    };
    p.int(storage_len as u64);
    p.op(TUPLE);
    p.op(BINPERSID);
    p.int(0);
    p.op(MARK);
    for &d in &spec.shape {
        p.int(d as u64);
    }
    p.op(TUPLE);
    p.op(MARK);
    for s in contiguous_strides(&spec.shape) {
        p.int(s as u64);
    }
    p.op(TUPLE);
    p.op(NEWFALSE);
    p.global("collections", "OrderedDict");
    p.op(EMPTY_TUPLE);
    p.op(REDUCE);
    if let Some(dtype) = v3_dtype {
        p.global("torch", dtype);
    }
    p.op(TUPLE);
    p.op(REDUCE);
}

/// The storage class of `dtype` and, for an untyped storage, the dtype name beside it.
fn storage_type(dtype: DType) -> Option<(&'static str, Option<&'static str>)> {
    Some(match dtype {
        DType::F64 => ("DoubleStorage", None),
        DType::F32 => ("FloatStorage", None),
        DType::F16 => ("HalfStorage", None),
        DType::BF16 => ("BFloat16Storage", None),
        DType::I64 => ("LongStorage", None),
        DType::I32 => ("IntStorage", None),
        DType::I16 => ("ShortStorage", None),
        DType::I8 => ("CharStorage", None),
        DType::U8 => ("ByteStorage", None),
        DType::Bool => ("BoolStorage", None),
        DType::U16 => ("UntypedStorage", Some("uint16")),
        DType::U32 => ("UntypedStorage", Some("uint32")),
        DType::U64 => ("UntypedStorage", Some("uint64")),
        _ => return None,
    })
}

/// Refuses, before any file is created, a plan with an element type torch has no storage for.
pub(crate) fn check_plan(path: &Path, plan: &[TensorSpec]) -> Result<(), IoError> {
    match plan.iter().find(|s| storage_type(s.dtype).is_none()) {
        Some(s) => Err(IoError::DTypeNotWritable {
            path: path.display().to_string(),
            name: s.name.clone(),
            dtype: s.dtype,
            format: "PyTorch",
            hint: "",
        }),
        None => Ok(()),
    }
}

/// Row-major strides as torch computes them: a dimension of size 0 counts as 1.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

/// The few pickle opcodes a state dict needs.
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    fn proto2(&mut self) {
        self.out.extend_from_slice(&[PROTO, 2]);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.op(GLOBAL);
        for part in [module, name] {
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
    }

    fn unicode(&mut self, s: &str) {
        self.op(BINUNICODE);
        // Names come from a bitstream or a model file, far below 4 GiB.
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: u64) {
        if let Ok(small) = i32::try_from(v) {
            self.op(BININT);
            self.out.extend_from_slice(&small.to_le_bytes());
        } else {
            // LONG1: little-endian two's complement; nine bytes keep the sign bit clear.
            let bytes = v.to_le_bytes();
            let len = 8 - (v.leading_zeros() as usize) / 8;
            let needs_pad = bytes[len - 1] & 0x80 != 0;
            self.op(LONG1);
            self.out.push((len + usize::from(needs_pad)) as u8);
            self.out.extend_from_slice(&bytes[..len]);
            if needs_pad {
                self.out.push(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_count_empty_dimensions_as_one() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(contiguous_strides(&[0, 3]), [3, 1]);
        assert_eq!(contiguous_strides(&[3, 0, 2]), [2, 2, 1]);
        assert!(contiguous_strides(&[]).is_empty());
    }

    #[test]
    fn large_ints_are_long1_with_a_clear_sign_bit() {
        let mut p = Pickler::default();
        p.int(5);
        p.int(1 << 31);
        p.int(u64::MAX);
        assert_eq!(
            p.out,
            [
                &[BININT, 5, 0, 0, 0][..],
                &[LONG1, 5, 0, 0, 0, 0x80, 0],
                &[LONG1, 9, 255, 255, 255, 255, 255, 255, 255, 255, 0],
            ]
            .concat()
        );
    }
}
