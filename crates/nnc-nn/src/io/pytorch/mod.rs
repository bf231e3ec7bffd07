//! PyTorch checkpoints (`torch.save` zip archives: `.pt`, `.pth`, `.bin`), read and written
//! without Python (writing: a state dict, see [`write_pytorch`] and the private `save` module).
//!
//! # Why our own pickle reader
//! A checkpoint is a zip holding `<archive>/data.pkl` (a pickle describing the object) and one
//! raw little-endian entry per storage (`<archive>/data/<key>`). The zip part goes through the
//! `zip` crate (built for stored and deflated entries only, in pure Rust; `.npz` files use it
//! too). For the pickle part the candidates were:
//! - `candle-core`'s `pickle` module: well kept, but the crate always builds its CPU
//!   backend (gemm, rand, tokenizers, ...: about 156 crates), knows only six storage types (no
//!   bool, int32, int16, int8), returns tensors in hash-map order and prints "skipping" to
//!   stderr for what it cannot read;
//! - `repugnant-pickle` 0.0.1: a single release, panics (`expect`) on some inputs, no bool, no
//!   plain or nested dicts;
//! - `serde-pickle`: well kept, but has no `BINPERSID`, which every checkpoint uses.
//!
//! None meets the brief (every dtype, file order, typed errors, no panic on hostile input), so
//! the private module `pickle` is a ~500-line interpreter for the opcodes `torch.save` emits,
//! with every length checked against the input and memory proportional to the pickle's size.
//!
//! # What is read
//! The top-level object must be a dict (`torch.save(model.state_dict(), f)` or a checkpoint
//! dict). The state dict is chosen like common tools (timm's `load_state_dict`, Lightning,
//! `torch.hub` scripts) do:
//! 1. with [`PyTorchOptions::state_dict_key`], that entry of the top-level dict;
//! 2. else the first of `state_dict`, `model_state_dict`, `model`, `module` whose value is a
//!    dict (other entries such as optimizer state and epoch counters are then left out, and
//!    named by [`read_pytorch_summarized`], which `nnc encode` uses to say so);
//! 3. else the top-level dict itself.
//!
//! Tensors are collected in pickle (insertion) order. A dict nested inside the chosen one is
//! flattened with `.`-joined keys (`{"enc": {"w": t}}` gives `enc.w`, the names
//! `nn.Module.state_dict()` would use), lists and tuples with their indices; integer keys become
//! decimal text; values that are not tensors (numbers, strings, `None`) are skipped (and named in
//! [`CheckpointSummary::skipped_values`]).
//!
//! Names are kept exactly as stored, so that decoding gives back the names the file had:
//! wrapper prefixes such as `module.` (DataParallel) or `model.` (Lightning) stay unless
//! [`PyTorchOptions::strip_prefix`] removes them (timm's `clean_state_dict` strips `module.`).
//!
//! Storage types map to [`DType`]: `Double`/`Float`/`Half`/`BFloat16` → f64/f32/f16/bf16,
//! `Long`/`Int`/`Short`/`Char` → i64/i32/i16/i8, `Byte` → u8, `Bool` → bool; `uint16`,
//! `uint32`, `uint64` tensors (saved by torch 2.3+ as untyped storages with an explicit dtype,
//! `_rebuild_tensor_v3`) → u16/u32/u64. Complex, quantized, sparse and 8-bit float tensors are
//! [`IoError::UnsupportedDType`] / [`IoError::Malformed`]. Strided views (e.g. a saved
//! transpose) are gathered into row-major order; big-endian archives (`byteorder` = `big`) are
//! swapped. The legacy pre-1.6 (non-zip) format is refused with a clear message.
//!
//! Limits: the pickle may be at most 64 MiB and build at most 8 Mi objects (a state dict
//! needs about 15 per tensor), and the decoded tensors at most 8 times the file
//! size plus 64 MiB (a few expanded views are fine; a file whose tensors all alias one huge
//! storage is refused as [`IoError::LimitExceeded`]).

pub(crate) mod pickle;
pub(crate) mod save;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::path::Path;

use nnc_tensor::encode::{NamedElements, TensorSource};
use nnc_tensor::{DType, Tensor};
use zip::{CompressionMethod, ZipArchive};

use self::pickle::{Id, Obj, Pickle};
use super::mmap::{lend, map_file, map_range, parse_file};
use super::raw::{self, ByteOrder};
use super::{check_unique_names, io_error, IoError, TensorName};

/// How to pick tensors out of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PyTorchOptions {
    /// Key of the state dict in the top-level dict (e.g. `"state_dict"`, `"ema"`); `None`
    /// chooses automatically (see the module doc).
    pub state_dict_key: Option<String>,
    /// A prefix removed from every tensor name that starts with it (e.g. `"module."`).
    pub strip_prefix: Option<String>,
}

const MAX_PICKLE_BYTES: u64 = 64 << 20;
const MAX_NESTING: usize = 64;
const AUTO_KEYS: [&str; 4] = ["state_dict", "model_state_dict", "model", "module"];

/// Reads every tensor of a PyTorch checkpoint with the default [`PyTorchOptions`].
pub fn read_pytorch(path: &Path) -> Result<Vec<Tensor>, IoError> {
    read_pytorch_with(path, &PyTorchOptions::default())
}

/// Reads every tensor of a PyTorch checkpoint, in pickle order.
pub fn read_pytorch_with(path: &Path, options: &PyTorchOptions) -> Result<Vec<Tensor>, IoError> {
    parse_file(path, |bytes| parse_checkpoint(bytes, path, options))
}

/// What reading a checkpoint left out, so that a tool can say so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The top-level key the state dict was taken from; `None` when it is the top-level dict.
    pub state_dict_key: Option<String>,
    /// The other top-level entries when the state dict was taken from a key (optimizer state,
    /// epoch counters, ...), by key, in file order.
    pub other_entries: Vec<String>,
    /// Values inside the state dict that are not tensors (numbers, strings, `None`, objects), by
    /// dotted name, in file order. A dict key that is neither a string nor an integer is named
    /// `<prefix><kind key>`.
    pub skipped_values: Vec<String>,
}

impl CheckpointSummary {
    /// Whether anything was left out.
    pub fn is_empty(&self) -> bool {
        self.other_entries.is_empty() && self.skipped_values.is_empty()
    }
}

/// [`read_pytorch_with`], also telling what was left out.
pub fn read_pytorch_summarized(
    path: &Path,
    options: &PyTorchOptions,
) -> Result<(Vec<Tensor>, CheckpointSummary), IoError> {
    let mut summary = CheckpointSummary::default();
    let tensors = parse_file(path, |bytes| {
        checkpoint_tensors(bytes, path, options, &mut summary)
    })?;
    Ok((tensors, summary))
}

/// Writes `tensors` as a PyTorch checkpoint of a state dict (`torch.load(path)` returns an
/// `OrderedDict` of them, in this order, dtypes and shapes kept; see the `save` notes in the
/// module doc). Names must be unique.
pub fn write_pytorch(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    let plan: Vec<nnc_tensor::TensorSpec> = tensors.iter().map(Into::into).collect();
    let mut writer = super::TensorWriter::open_as(
        path,
        &plan,
        super::FileFormat::PyTorch,
        &super::SafetensorsMetadata::new(),
        || std::fs::File::create(path),
    )?;
    for t in tensors {
        writer.write(t)?;
    }
    writer.finish()
}

/// Reads a PyTorch checkpoint for the encoder without copying what it can read in place, and
/// tells what was left out (as [`read_pytorch_summarized`]). Every float32 and int32 tensor of a
/// little-endian archive whose view is row-major (no transpose, no gaps) and whose bytes are
/// aligned for their type becomes [`NamedElements`] held by a read-only memory map of exactly
/// its bytes; `torch.save` aligns each storage to 64 bytes, so in practice every such tensor
/// is. The encoder drops each map as soon as it has quantized the tensor. Other tensors
/// (other dtypes, strided views, big-endian archives) are copied as [`read_pytorch_with`]
/// copies them. Tensors come in pickle order; names, shapes and dtypes are the copying
/// reader's.
///
/// The file must not be truncated or rewritten while the sources live (see
/// [`super::map_safetensors_sources`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use nnc_nn::io::{map_pytorch_sources, write_pytorch, PyTorchOptions};
/// use nnc_tensor::{encode, EncodeInput, EncodeOptions, Tensor, TensorData};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.pt");
/// let values = (0..32).map(|i| i as f32 / 32.0).collect();
/// write_pytorch(&path, &[Tensor::try_new("fc.weight", vec![4, 8], TensorData::F32(values))?])?;
///
/// let (sources, summary) = map_pytorch_sources(&path, &PyTorchOptions::default())?;
/// assert!(summary.is_empty());
/// let stream = encode(EncodeInput::from_state_dict_sources(sources)?, &EncodeOptions::default())?;
/// assert!(!stream.bytes.is_empty());
/// # Ok(())
/// # }
/// ```
pub fn map_pytorch_sources(
    path: &Path,
    options: &PyTorchOptions,
) -> Result<(Vec<TensorSource<'static>>, CheckpointSummary), IoError> {
    // The directory, the pickle and any copied tensor are read through this map of the whole
    // file; lent tensors get maps of their own, which outlive it.
    let Some((file, whole)) = map_file(path)? else {
        // Nothing to map: the copying reader says why this is no checkpoint.
        let (tensors, summary) = read_pytorch_summarized(path, options)?;
        return Ok((
            tensors.into_iter().map(TensorSource::from).collect(),
            summary,
        ));
    };
    let mut summary = CheckpointSummary::default();
    let Located { order, tensors } = locate(&whole, path, options, &mut summary)?;
    let mut sources = Vec::with_capacity(tensors.len());
    for t in tensors {
        sources.push(t.source(&file, &whole, order, path)?);
    }
    finish_names(&mut sources, path, options)?;
    Ok((sources, summary))
}

/// Decodes a checkpoint held in memory (`path` only names it in errors).
pub(crate) fn parse_checkpoint(
    bytes: &[u8],
    path: &Path,
    options: &PyTorchOptions,
) -> Result<Vec<Tensor>, IoError> {
    checkpoint_tensors(bytes, path, options, &mut CheckpointSummary::default())
}

fn checkpoint_tensors(
    bytes: &[u8],
    path: &Path,
    options: &PyTorchOptions,
    summary: &mut CheckpointSummary,
) -> Result<Vec<Tensor>, IoError> {
    let mut tensors = parse(bytes, path, options, summary)?;
    finish_names(&mut tensors, path, options)?;
    Ok(tensors)
}

/// Removes [`PyTorchOptions::strip_prefix`] from the names that start with it, then checks
/// that the names are unique.
fn finish_names<T: TensorName>(
    tensors: &mut [T],
    path: &Path,
    options: &PyTorchOptions,
) -> Result<(), IoError> {
    if let Some(prefix) = &options.strip_prefix {
        for t in tensors.iter_mut() {
            if let Some(rest) = t.tensor_name().strip_prefix(prefix.as_str()) {
                let rest = rest.to_string();
                t.set_tensor_name(rest);
            }
        }
    }
    check_unique_names(path, tensors)
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> IoError {
    IoError::InvalidFile {
        path: path.display().to_string(),
        format: "PyTorch",
        what: what.to_string(),
    }
}

fn malformed(path: &Path, name: &str, what: impl Into<String>) -> IoError {
    IoError::Malformed {
        path: path.display().to_string(),
        name: name.to_string(),
        what: what.into(),
    }
}

/// Where a tensor's elements are, as `_rebuild_tensor_v2/v3` describes them.
#[derive(Debug)]
struct TensorSpec {
    dtype: DType,
    storage_key: String,
    /// In elements of `dtype`.
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A checkpoint's tensors, located in its bytes but not read yet.
struct Located {
    /// The storages' byte order (the archive's `byteorder` record).
    order: ByteOrder,
    tensors: Vec<LocatedTensor>,
}

/// One tensor of a checkpoint: its name, its view, and its storage's bytes within the file.
struct LocatedTensor {
    name: String,
    spec: TensorSpec,
    numel: usize,
    storage: Range<usize>,
}

impl LocatedTensor {
    /// The tensor, copied out of the checkpoint's `bytes` in row-major order.
    fn read(self, bytes: &[u8], order: ByteOrder, path: &Path) -> Result<Tensor, IoError> {
        let name = self.name;
        // `locate` checked the range against these very bytes.
        let storage = bytes
            .get(self.storage)
            .ok_or_else(|| malformed(path, &name, "storage runs past the file end"))?;
        let packed =
            gather(storage, &self.spec, self.numel).map_err(|what| malformed(path, &name, what))?;
        let data = raw::decode(self.spec.dtype, &packed, order)
            .map_err(|e| malformed(path, &name, e.to_string()))?;
        Tensor::try_new(name.clone(), self.spec.shape, data)
            .map_err(|e| malformed(path, &name, e.to_string()))
    }

    /// The tensor lent from a map of its bytes in `file` when it can be, else copied out of
    /// `bytes` (the whole file).
    fn source(
        self,
        file: &File,
        bytes: &[u8],
        order: ByteOrder,
        path: &Path,
    ) -> Result<TensorSource<'static>, IoError> {
        let dtype = self.spec.dtype;
        if order == ByteOrder::Little && matches!(dtype, DType::F32 | DType::I32) {
            let view = view_range(self.storage.len(), &self.spec, self.numel)
                .map_err(|what| malformed(path, &self.name, what))?;
            if let Some(view) = view.filter(|v| !v.is_empty()) {
                let start = (self.storage.start + view.start) as u64;
                let map = map_range(file, start, view.len()).map_err(|e| io_error(path, e))?;
                if let Ok(data) = lend(map, dtype) {
                    return NamedElements::try_new(self.name.clone(), self.spec.shape, data)
                        .map(TensorSource::from)
                        .map_err(|e| malformed(path, &self.name, e.to_string()));
                }
            }
        }
        self.read(bytes, order, path).map(TensorSource::from)
    }
}

fn parse(
    bytes: &[u8],
    path: &Path,
    options: &PyTorchOptions,
    summary: &mut CheckpointSummary,
) -> Result<Vec<Tensor>, IoError> {
    let Located { order, tensors } = locate(bytes, path, options, summary)?;
    tensors
        .into_iter()
        .map(|t| t.read(bytes, order, path))
        .collect()
}

/// Reads the archive's directory, its byte order and its pickle, and finds every tensor of the
/// chosen state dict and its storage in `bytes` (the whole file), without reading the elements.
fn locate(
    bytes: &[u8],
    path: &Path,
    options: &PyTorchOptions,
    summary: &mut CheckpointSummary,
) -> Result<Located, IoError> {
    if !bytes.starts_with(b"PK") {
        return Err(invalid(
            path,
            if bytes.first() == Some(&0x80) {
                "legacy (pre-1.6, non-zip) PyTorch serialization is not supported; re-save it \
                 with torch.save from PyTorch 1.6 or later"
            } else {
                "not a zip archive"
            },
        ));
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| invalid(path, e))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| Some(zip.by_index_raw(i).ok()?.name().ok()?.into_owned()))
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| {
            invalid(
                path,
                "no data.pkl in the archive (is this a PyTorch checkpoint?)",
            )
        })?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];

    let pkl = {
        let entry = zip.by_name(&pkl_name).map_err(|e| invalid(path, e))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(IoError::LimitExceeded {
                path: path.display().to_string(),
                what: format!(
                    "data.pkl is {} bytes (limit {MAX_PICKLE_BYTES})",
                    entry.size()
                ),
            });
        }
        let mut buf = Vec::new();
        entry
            .take(MAX_PICKLE_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| invalid(path, format!("reading data.pkl: {e}")))?;
        buf
    };
    let order = match zip.by_name(&format!("{prefix}byteorder")) {
        Ok(mut entry) => {
            let mut text = String::new();
            (&mut entry)
                .take(16)
                .read_to_string(&mut text)
                .map_err(|e| invalid(path, format!("reading byteorder: {e}")))?;
            match text.trim() {
                "little" => ByteOrder::Little,
                "big" => ByteOrder::Big,
                other => return Err(invalid(path, format!("byteorder is {other:?}"))),
            }
        }
        Err(_) => ByteOrder::Little,
    };

    let p = pickle::load(&pkl).map_err(|e| invalid(path, e))?;
    let dict = select_state_dict(&p, path, options)?;
    if dict != p.root {
        if let Obj::Dict(items) = p.get(p.root) {
            for &(k, v) in items {
                if v == dict {
                    summary.state_dict_key = p.str(k).map(str::to_string);
                } else {
                    summary.other_entries.push(key_name(&p, k));
                }
            }
        }
    }
    let mut specs = Vec::new();
    let mut budget = p.len() + 16;
    let mut walk = Walk {
        p: &p,
        path,
        budget: &mut budget,
        out: &mut specs,
        skipped: &mut summary.skipped_values,
    };
    walk.collect(dict, "", 0)?;

    let limit = (bytes.len() as u64)
        .saturating_mul(8)
        .saturating_add(64 << 20);
    let mut total = 0u64;
    let mut storages: HashMap<String, Range<usize>> = HashMap::new();
    let mut tensors = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let storage = match storages.get(&spec.storage_key) {
            Some(s) => s.clone(),
            None => {
                let s = storage_range(
                    &mut zip,
                    bytes.len(),
                    prefix,
                    &spec.storage_key,
                    path,
                    &name,
                )?;
                storages.insert(spec.storage_key.clone(), s.clone());
                s
            }
        };
        let numel = spec
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| malformed(path, &name, "element count overflows"))?;
        total =
            total.saturating_add((numel as u64).saturating_mul(spec.dtype.size_in_bytes() as u64));
        if total > limit {
            return Err(IoError::LimitExceeded {
                path: path.display().to_string(),
                what: format!(
                    "tensors would decode to more than {limit} bytes from a {}-byte file",
                    bytes.len()
                ),
            });
        }
        tensors.push(LocatedTensor {
            name,
            spec,
            numel,
            storage,
        });
    }
    Ok(Located { order, tensors })
}

/// Where the bytes of one storage entry lie in a file of `file_len` bytes (stored
/// uncompressed, as `torch.save` writes them).
fn storage_range(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    file_len: usize,
    prefix: &str,
    key: &str,
    path: &Path,
    tensor: &str,
) -> Result<Range<usize>, IoError> {
    let entry_name = format!("{prefix}data/{key}");
    let entry = zip
        .by_name(&entry_name)
        .map_err(|e| malformed(path, tensor, format!("storage {entry_name}: {e}")))?;
    if entry.compression() != CompressionMethod::Stored {
        return Err(malformed(
            path,
            tensor,
            format!("storage {entry_name} is compressed (PyTorch writes storages uncompressed)"),
        ));
    }
    let start = entry.data_start().and_then(|s| usize::try_from(s).ok());
    let len = usize::try_from(entry.size()).ok();
    start
        .zip(len)
        .and_then(|(s, l)| Some(s..s.checked_add(l)?))
        .filter(|r| r.end <= file_len)
        .ok_or_else(|| {
            malformed(
                path,
                tensor,
                format!("storage {entry_name} runs past the file end"),
            )
        })
}

/// Where a view's elements lie in its storage of `storage_len` bytes, checked to stay inside
/// it: the byte range of a row-major view, or `None` for a strided one.
fn view_range(
    storage_len: usize,
    spec: &TensorSpec,
    numel: usize,
) -> Result<Option<Range<usize>>, String> {
    let size = spec.dtype.size_in_bytes();
    if numel == 0 {
        return Ok(Some(0..0));
    }
    let available = storage_len / size;
    let rank = spec.shape.len();
    if spec.stride.len() != rank {
        return Err(format!(
            "stride {:?} does not match shape {:?}",
            spec.stride, spec.shape
        ));
    }
    // Last element's index in the storage; everything else lies between `offset` and it.
    let mut last = spec.offset;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or("strides overflow")?;
    }
    if last >= available {
        return Err(format!(
            "view reaches element {last} of a storage of {available} elements"
        ));
    }
    let mut expected = 1usize;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride).rev() {
        if d != 1 && s != expected {
            return Ok(None);
        }
        expected = expected.saturating_mul(d);
    }
    let start = spec.offset * size;
    Ok(Some(start..start + numel * size))
}

/// Copies a tensor's elements out of its storage in row-major order.
fn gather<'a>(
    storage: &'a [u8],
    spec: &TensorSpec,
    numel: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    use std::borrow::Cow;
    if let Some(range) = view_range(storage.len(), spec, numel)? {
        return storage
            .get(range)
            .map(Cow::Borrowed)
            .ok_or_else(|| "view outside its storage".to_string());
    }
    let size = spec.dtype.size_in_bytes();
    let rank = spec.shape.len();
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; rank];
    let mut at = spec.offset;
    for _ in 0..numel {
        let from = at * size;
        out.extend_from_slice(
            storage
                .get(from..from + size)
                .ok_or("view outside its storage")?,
        );
        // Odometer step. Wrapping arithmetic: a size-1 dimension may carry any stride, and
        // the transient sum can overflow although every index actually used is in range.
        for d in (0..rank).rev() {
            index[d] += 1;
            at = at.wrapping_add(spec.stride[d]);
            if index[d] < spec.shape[d] {
                break;
            }
            at = at.wrapping_sub(spec.stride[d].wrapping_mul(spec.shape[d]));
            index[d] = 0;
        }
    }
    Ok(Cow::Owned(out))
}

/// `kind` with its indefinite article, for messages ("an int", "a list", "None").
fn with_article(kind: &str) -> String {
    match kind {
        "None" => kind.to_string(),
        k if k.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {k}"),
        k => format!("a {k}"),
    }
}

fn kind(obj: &Obj) -> &'static str {
    match obj {
        Obj::None => "None",
        Obj::Bool(_) => "bool",
        Obj::Int(_) | Obj::BigInt => "int",
        Obj::Float(_) => "float",
        Obj::Str(_) => "str",
        Obj::Bytes(_) => "bytes",
        Obj::Tuple(_) => "tuple",
        Obj::List(_) => "list",
        Obj::Dict(_) => "dict",
        Obj::Global { .. } => "class",
        Obj::PersId(_) => "persistent id",
        Obj::Call { .. } => "object",
        Obj::Opaque => "object",
    }
}

fn dict_get<'p>(p: &'p Pickle, items: &'p [(Id, Id)], key: &str) -> Option<Id> {
    items
        .iter()
        .find(|&&(k, _)| p.str(k) == Some(key))
        .map(|&(_, v)| v)
}

fn select_state_dict(p: &Pickle, path: &Path, options: &PyTorchOptions) -> Result<Id, IoError> {
    let Obj::Dict(items) = p.get(p.root) else {
        return Err(invalid(
            path,
            format!(
                "the checkpoint holds {} rather than a dict of tensors (TorchScript archives \
                 and pickled nn.Modules are not supported; save model.state_dict())",
                with_article(kind(p.get(p.root)))
            ),
        ));
    };
    if let Some(key) = &options.state_dict_key {
        let v = dict_get(p, items, key)
            .ok_or_else(|| invalid(path, format!("the checkpoint has no key {key:?}")))?;
        return match p.get(v) {
            Obj::Dict(_) => Ok(v),
            other => Err(invalid(
                path,
                format!("checkpoint entry {key:?} is a {}, not a dict", kind(other)),
            )),
        };
    }
    for key in AUTO_KEYS {
        if let Some(v) = dict_get(p, items, key) {
            if matches!(p.get(v), Obj::Dict(_)) {
                return Ok(v);
            }
        }
    }
    Ok(p.root)
}

/// A key as the names of the tensors under it use it: a string as it is, an integer in
/// decimal; anything else is named by its kind (`<float key>`).
fn key_name(p: &Pickle, k: Id) -> String {
    match p.get(k) {
        Obj::Str(s) => s.clone(),
        Obj::Int(i) => i.to_string(),
        other => format!("<{} key>", kind(other)),
    }
}

/// The walk over dicts, lists and tuples under the state dict, collecting tensors under dotted
/// names and naming what is not a tensor.
struct Walk<'a> {
    p: &'a Pickle,
    path: &'a Path,
    /// Containers left to visit: a pickle can share one container many times over.
    budget: &'a mut usize,
    out: &'a mut Vec<(String, TensorSpec)>,
    skipped: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn collect(&mut self, id: Id, prefix: &str, depth: usize) -> Result<(), IoError> {
        let (p, path) = (self.p, self.path);
        if depth > MAX_NESTING {
            return Err(invalid(
                path,
                format!("containers nested deeper than {MAX_NESTING}"),
            ));
        }
        let children: Vec<(String, Id, bool)> = match p.get(id) {
            Obj::Dict(items) => items
                .iter()
                .map(|&(k, v)| {
                    let named = matches!(p.get(k), Obj::Str(_) | Obj::Int(_));
                    (key_name(p, k), v, named)
                })
                .collect(),
            Obj::List(items) | Obj::Tuple(items) => items
                .iter()
                .enumerate()
                .map(|(i, &v)| (i.to_string(), v, true))
                .collect(),
            _ => return Ok(()),
        };
        for (key, v, named) in children {
            *self.budget = self.budget.checked_sub(1).ok_or_else(|| {
                invalid(path, "the object graph shares containers too often to walk")
            })?;
            let name = format!("{prefix}{key}");
            if !named {
                self.skipped.push(name);
                continue;
            }
            match p.get(v) {
                Obj::Dict(_) | Obj::List(_) | Obj::Tuple(_) => {
                    self.collect(v, &format!("{name}."), depth + 1)?
                }
                Obj::Call { func, args } => match tensor_spec(p, *func, *args, &name, path)? {
                    Some(spec) => self.out.push((name, spec)),
                    None => self.skipped.push(name),
                },
                _ => self.skipped.push(name),
            }
        }
        Ok(())
    }
}

/// Reads a recorded `torch._utils._rebuild_tensor*` call; `Ok(None)` for calls of other things.
fn tensor_spec(
    p: &Pickle,
    func: Id,
    args: Id,
    name: &str,
    path: &Path,
) -> Result<Option<TensorSpec>, IoError> {
    let Some((module, fname)) = p.global(func) else {
        return Ok(None);
    };
    let args_list = p.seq(args).unwrap_or(&[]);
    match (module, fname) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_tensor_v3") => {}
        // Tensor subclasses: (rebuild function, class, its args, state).
        ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") => {
            return match args_list {
                [f, _, a, ..] => tensor_spec(p, *f, *a, name, path),
                _ => Err(malformed(path, name, format!("bad {fname} arguments"))),
            };
        }
        ("torch._utils", other) if other.starts_with("_rebuild_") => {
            return Err(malformed(
                path,
                name,
                format!("{other} tensors (quantized, sparse, meta, ...) are not supported"),
            ))
        }
        _ => return Ok(None),
    }
    let bad = |what: &str| malformed(path, name, format!("{fname}: {what}"));
    let [storage, offset, size, stride, rest @ ..] = args_list else {
        return Err(bad("fewer than 4 arguments"));
    };
    let dims = |id: Id, what: &str| -> Result<Vec<usize>, IoError> {
        p.seq(id)
            .ok_or_else(|| bad(&format!("{what} is not a tuple")))?
            .iter()
            .map(|&d| {
                p.int(d)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| bad(&format!("{what} has a non-integer or negative entry")))
            })
            .collect()
    };
    let shape = dims(*size, "size")?;
    let stride = dims(*stride, "stride")?;
    let offset = p
        .int(*offset)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| bad("storage offset is not a non-negative integer"))?;
    let Obj::PersId(pid) = p.get(*storage) else {
        return Err(bad("storage is not a persistent reference"));
    };
    // ('storage', storage class, key, location, numel)
    let [tag, class, key, _location, _numel, ..] = p.seq(*pid).unwrap_or(&[]) else {
        return Err(bad("storage reference is not a 5-tuple"));
    };
    if p.str(*tag) != Some("storage") {
        return Err(bad("storage reference does not start with 'storage'"));
    }
    let key = match p.get(*key) {
        Obj::Str(s) => s.clone(),
        Obj::Int(i) => i.to_string(),
        _ => return Err(bad("storage key is not a string")),
    };
    let (_, class_name) = p
        .global(*class)
        .ok_or_else(|| bad("storage class missing"))?;
    let (dtype, type_name) = if fname == "_rebuild_tensor_v3" {
        // (storage, offset, size, stride, requires_grad, hooks, dtype, ...) on an untyped storage.
        let dt = rest.get(2).and_then(|&d| p.global(d)).map(|(_, n)| n);
        let dt = dt.ok_or_else(|| bad("dtype argument missing"))?;
        (torch_dtype(dt), dt)
    } else {
        (storage_dtype(class_name), class_name)
    };
    let dtype = dtype.ok_or_else(|| IoError::UnsupportedDType {
        path: path.display().to_string(),
        name: name.to_string(),
        dtype: type_name.to_string(),
    })?;
    Ok(Some(TensorSpec {
        dtype,
        storage_key: key,
        offset,
        shape,
        stride,
    }))
}

fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        "UInt16Storage" => DType::U16,
        "UInt32Storage" => DType::U32,
        "UInt64Storage" => DType::U64,
        _ => return None,
    })
}

fn torch_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "float64" | "double" => DType::F64,
        "float32" | "float" => DType::F32,
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        "int64" | "long" => DType::I64,
        "int32" | "int" => DType::I32,
        "int16" | "short" => DType::I16,
        "int8" => DType::I8,
        "uint8" => DType::U8,
        "bool" => DType::Bool,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dtype: DType, offset: usize, shape: Vec<usize>, stride: Vec<usize>) -> TensorSpec {
        TensorSpec {
            dtype,
            storage_key: "0".into(),
            offset,
            shape,
            stride,
        }
    }

    #[test]
    fn gather_contiguous_strided_and_out_of_bounds() {
        let storage: Vec<u8> = (0..12).collect();
        // Contiguous 2x3 at offset 1 (u8).
        let s = spec(DType::U8, 1, vec![2, 3], vec![3, 1]);
        assert_eq!(&gather(&storage, &s, 6).unwrap()[..], &[1, 2, 3, 4, 5, 6]);
        // Transpose of a 3x2: shape (2, 3), strides (1, 2).
        let s = spec(DType::U8, 0, vec![2, 3], vec![1, 2]);
        assert_eq!(&gather(&storage, &s, 6).unwrap()[..], &[0, 2, 4, 1, 3, 5]);
        // Expanded (stride 0) rows.
        let s = spec(DType::U8, 4, vec![3, 2], vec![0, 1]);
        assert_eq!(&gather(&storage, &s, 6).unwrap()[..], &[4, 5, 4, 5, 4, 5]);
        // Two-byte elements, transposed.
        let s = spec(DType::I16, 0, vec![2, 3], vec![1, 2]);
        assert_eq!(
            &gather(&storage, &s, 6).unwrap()[..],
            &[0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]
        );
        // A size-1 dimension with an absurd stride is harmless.
        let s = spec(DType::U8, 0, vec![1, 3], vec![usize::MAX, 2]);
        assert_eq!(&gather(&storage, &s, 3).unwrap()[..], &[0, 2, 4]);
        // Past the end, and huge strides.
        let s = spec(DType::U8, 7, vec![2, 3], vec![3, 1]);
        assert!(gather(&storage, &s, 6).is_err());
        let s = spec(DType::U8, 0, vec![2, 2], vec![usize::MAX, 1]);
        assert!(gather(&storage, &s, 4).is_err());
        let s = spec(DType::U8, 0, vec![2, 2], vec![1]);
        assert!(gather(&storage, &s, 4).is_err());
    }

    #[test]
    fn dtype_names() {
        assert_eq!(storage_dtype("BoolStorage"), Some(DType::Bool));
        assert_eq!(storage_dtype("CharStorage"), Some(DType::I8));
        assert_eq!(storage_dtype("ComplexFloatStorage"), None);
        assert_eq!(torch_dtype("uint16"), Some(DType::U16));
        assert_eq!(torch_dtype("float8_e4m3fn"), None);
    }
}
