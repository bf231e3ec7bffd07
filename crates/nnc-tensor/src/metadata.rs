//! What the reference forgets and we carry: each tensor's original dtype and shape, tensors
//! that are not coded at all (PyTorch's `num_batches_tracked`), the model file's free-form
//! string attributes, and files attached to the model (a Hugging Face directory's
//! `config.json`, tokenizer, ...; each deflated, then base64-encoded), as a JSON document in
//! the topology unit's `topology_data` string.
//!
//! The reference writes an empty `topology_data` and its decoder reads and ignores the string for
//! unrecognised and PyTorch topologies, so streams with metadata stay decodable by it. Nothing is
//! written when every tensor is float32 or int32 with its coded shape and nothing extra is
//! carried: the stream is then byte-identical with the reference's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tensor::{DType, Tensor, TensorData};

/// Marker key of our document.
const FORMAT: &str = "nnc-metadata/1";

/// Original type and shape of a coded tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMeta {
    /// Element type the user gave.
    pub dtype: DType,
    /// Shape the user gave (a scalar is coded as `[1]`).
    pub shape: Vec<usize>,
}

/// A tensor carried verbatim (not coded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtraTensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values (integers and floats both fit an f64 exactly for what is carried here).
    pub values: Vec<f64>,
}

/// The metadata document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// Format marker.
    pub format: String,
    /// Per coded tensor whose dtype or shape the coding changed.
    pub tensors: BTreeMap<String, TensorMeta>,
    /// Tensors carried verbatim, in their original order.
    pub extra: Vec<ExtraTensor>,
    /// Every tensor name in the user's order, when verbatim tensors are interleaved with coded
    /// ones (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Free-form string pairs of the model as a whole (a safetensors file's `__metadata__`);
    /// empty when there are none to carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Files attached to the model, by name, packed by [`AttachedFile::pack`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, AttachedFile>,
}

/// Largest attached file [`unpack_each`] unpacks (a stream is untrusted input).
pub const MAX_ATTACHED_FILE_BYTES: u64 = 64 << 20;
/// Largest total of attached files [`unpack_each`] unpacks.
pub const MAX_ATTACHED_TOTAL_BYTES: u64 = 256 << 20;

/// Unpacks attached files one by one in name order, each bounded by
/// [`MAX_ATTACHED_FILE_BYTES`] and by what [`MAX_ATTACHED_TOTAL_BYTES`] leaves after the files
/// before it ([`AttachedFile::unpack`]'s errors past that).
pub fn unpack_each(
    files: &BTreeMap<String, AttachedFile>,
) -> impl Iterator<Item = (&str, crate::Result<Vec<u8>>)> {
    let mut total = 0u64;
    files.iter().map(move |(name, file)| {
        let budget = MAX_ATTACHED_FILE_BYTES.min(MAX_ATTACHED_TOTAL_BYTES - total);
        let bytes = file.unpack(budget);
        if let Ok(b) = &bytes {
            total += b.len() as u64;
        }
        (name.as_str(), bytes)
    })
}

/// A file attached to a model, as the metadata holds it: its bytes deflated (RFC 1951), then
/// base64-encoded (standard alphabet, padded). Unpacked only when asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachedFile(String);

impl AttachedFile {
    /// Packs a file's bytes.
    pub fn pack(bytes: &[u8]) -> Self {
        use base64::Engine;
        use std::io::Write;
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let deflated = deflater
            .write_all(bytes)
            .and_then(|()| deflater.finish())
            .unwrap_or_default();
        AttachedFile(base64::engine::general_purpose::STANDARD.encode(deflated))
    }

    /// Bytes the packed form takes in the stream.
    pub fn packed_len(&self) -> usize {
        self.0.len()
    }

    /// The file's bytes. Fails with [`Error::Malformed`](crate::Error::Malformed) when the packed form is not base64 of
    /// a deflate stream, and with [`Error::LimitExceeded`](crate::Error::LimitExceeded) when the file is larger than
    /// `max_bytes` (checked while inflating, so a hostile stream cannot make it allocate more).
    pub fn unpack(&self, max_bytes: u64) -> crate::Result<Vec<u8>> {
        use base64::Engine;
        use std::io::Read;
        let malformed = |what: String| crate::Error::Malformed {
            at: crate::Location::default(),
            what,
        };
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(self.0.as_bytes())
            .map_err(|e| malformed(format!("attached file: not base64: {e}")))?;
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(deflated.as_slice())
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| malformed(format!("attached file: not deflated data: {e}")))?;
        if out.len() as u64 > max_bytes {
            return Err(crate::Error::LimitExceeded {
                at: crate::Location::default(),
                what: "attached file size",
                declared: out.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(out)
    }
}

impl StreamMetadata {
    /// An empty document.
    pub fn new() -> Self {
        StreamMetadata {
            format: FORMAT.to_string(),
            ..Default::default()
        }
    }

    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
            && self.extra.is_empty()
            && self.attributes.is_empty()
            && self.files.is_empty()
    }

    /// The `topology_data` string.
    pub fn to_topology_data(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads our document from a `topology_data` string; `None` for anything else (the
    /// reference's empty string, or foreign data).
    pub fn from_topology_data(s: &str) -> Option<Self> {
        let meta: StreamMetadata = serde_json::from_str(s).ok()?;
        (meta.format == FORMAT).then_some(meta)
    }

    /// Carries a small tensor verbatim. `None` if its values do not fit an f64 exactly or are
    /// not finite (an empty tensor is carried whatever its dtype).
    pub fn extra_from(t: &Tensor) -> Option<ExtraTensor> {
        let values: Vec<f64> = match &t.data {
            _ if t.is_empty() => Vec::new(),
            TensorData::F64(v) => v.clone(),
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v
                .iter()
                .map(|&x| x as f64)
                .filter(|&x| x.abs() < 9.0e15)
                .collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            _ => return None,
        };
        // JSON has no NaN or infinity: such a value would turn the whole document unreadable.
        let exact = values.len() == t.len() && values.iter().all(|v| v.is_finite());
        exact.then(|| ExtraTensor {
            name: t.name.clone(),
            dtype: t.dtype(),
            shape: t.shape.clone(),
            values,
        })
    }
}

/// Casts decoded data to `dtype` (floats round to nearest; integers must fit, else `None`).
pub fn cast(data: &TensorData, dtype: DType) -> Option<TensorData> {
    if data.dtype() == dtype {
        return Some(data.clone());
    }
    let floats: Option<Vec<f64>> = match data {
        TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Some(v.clone()),
        _ => None,
    };
    if let Some(f) = floats {
        let f32s: Vec<f32> = f.iter().map(|&x| x as f32).collect();
        return match dtype {
            DType::F64 => Some(TensorData::F64(f)),
            _ => TensorData::from_f32_cast(dtype, &f32s),
        };
    }
    let ints: Vec<i64> = match data {
        TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        _ => return None,
    };
    Some(match dtype {
        DType::I64 => TensorData::I64(ints),
        DType::I16 => TensorData::I16(
            ints.iter()
                .map(|&x| i16::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::I8 => TensorData::I8(
            ints.iter()
                .map(|&x| i8::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::U8 => TensorData::U8(
            ints.iter()
                .map(|&x| u8::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::U16 => TensorData::U16(
            ints.iter()
                .map(|&x| u16::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::U32 => TensorData::U32(
            ints.iter()
                .map(|&x| u32::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::U64 => TensorData::U64(
            ints.iter()
                .map(|&x| u64::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        DType::Bool => TensorData::Bool(ints.iter().map(|&x| x != 0).collect()),
        _ => return None,
    })
}

/// Rebuilds a verbatim tensor.
pub fn extra_tensor(e: &ExtraTensor) -> Option<Tensor> {
    let data = cast(&TensorData::F64(e.values.clone()), e.dtype).or_else(|| {
        let ints: Vec<i32> = e.values.iter().map(|&x| x as i32).collect();
        match e.dtype {
            DType::I64 => Some(TensorData::I64(
                e.values.iter().map(|&x| x as i64).collect(),
            )),
            _ => cast(&TensorData::I32(ints), e.dtype),
        }
    })?;
    Tensor::try_new(e.name.clone(), e.shape.clone(), data).ok()
}

/// Gives decoded tensors back their original dtypes and shapes and appends the verbatim ones.
/// A tensor whose values do not fit its original integer type keeps the decoded type.
pub fn apply(meta: &StreamMetadata, tensors: &mut Vec<crate::decode::DecodedTensor>) {
    for t in tensors.iter_mut() {
        let Some(m) = meta.tensors.get(&t.tensor.name) else {
            continue;
        };
        if m.shape.iter().product::<usize>() != t.tensor.len() {
            continue;
        }
        if let Some(data) = cast(&t.tensor.data, m.dtype) {
            t.tensor.data = data;
        }
        t.tensor.shape = m.shape.clone();
    }
    for e in &meta.extra {
        if tensors.iter().any(|t| t.tensor.name == e.name) {
            continue;
        }
        if let Some(tensor) = extra_tensor(e) {
            tensors.push(crate::decode::DecodedTensor {
                tensor,
                levels: None,
                approximation: crate::decode::Approximation::Verbatim,
            });
        }
    }
    if !meta.order.is_empty() {
        let rank = |name: &str| {
            meta.order
                .iter()
                .position(|n| n == name)
                .unwrap_or(usize::MAX)
        };
        tensors.sort_by_key(|t| rank(&t.tensor.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trips_and_foreign_data_is_ignored() {
        let mut m = StreamMetadata::new();
        m.tensors.insert(
            "w".into(),
            TensorMeta {
                dtype: DType::F16,
                shape: vec![2, 2],
            },
        );
        let counter =
            Tensor::try_new("bn.num_batches_tracked", vec![], TensorData::I64(vec![42])).unwrap();
        m.extra.push(StreamMetadata::extra_from(&counter).unwrap());
        let s = m.to_topology_data();
        assert_eq!(StreamMetadata::from_topology_data(&s), Some(m.clone()));
        assert_eq!(extra_tensor(&m.extra[0]), Some(counter));
        assert_eq!(StreamMetadata::from_topology_data(""), None);
        assert_eq!(
            StreamMetadata::from_topology_data("{\"format\":\"other\"}"),
            None
        );
    }

    #[test]
    fn only_finite_values_are_carried_verbatim() {
        // JSON writes NaN and infinity as null, which would make the document unreadable and
        // lose every dtype it carries.
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let t = Tensor::try_new("c", vec![2], TensorData::F64(vec![1.0, bad])).unwrap();
            assert_eq!(StreamMetadata::extra_from(&t), None, "{bad}");
        }
        let empty = Tensor::try_new("e", vec![4, 0], TensorData::F16(vec![])).unwrap();
        let mut m = StreamMetadata::new();
        m.extra.push(StreamMetadata::extra_from(&empty).unwrap());
        let back = StreamMetadata::from_topology_data(&m.to_topology_data()).unwrap();
        assert_eq!(extra_tensor(&back.extra[0]), Some(empty));
    }

    #[test]
    fn casts_back_to_the_original_types() {
        let f = TensorData::F32(vec![0.5, -1.25]);
        assert_eq!(
            cast(&f, DType::F64),
            Some(TensorData::F64(vec![0.5, -1.25]))
        );
        let i = TensorData::I32(vec![3, -4]);
        assert_eq!(cast(&i, DType::I8), Some(TensorData::I8(vec![3, -4])));
        assert_eq!(cast(&i, DType::U8), None);
        assert_eq!(
            cast(&TensorData::I32(vec![0, 1]), DType::Bool),
            Some(TensorData::Bool(vec![false, true]))
        );
    }
}
