//! What the reference forgets and we carry: each tensor's original dtype and shape, tensors
//! that are not coded at all (PyTorch's `num_batches_tracked`), the model file's free-form
//! string attributes, files attached to the model (a Hugging Face directory's `config.json`,
//! tokenizer, ...; each deflated, then base64-encoded), and the batch norms that `bnf` folded
//! into their blocks, which the decoder gives back ([`FoldedNorm`]), as a JSON document in the
//! topology unit's `topology_data` string.
//!
//! The reference writes an empty `topology_data` and its decoder reads and ignores the string for
//! unrecognised and PyTorch topologies, so streams with metadata stay decodable by it. Nothing is
//! written when every tensor is float32 or int32 with its coded shape, nothing extra is carried
//! and no block codes its members out of the given order: the stream is then byte-identical
//! with the reference's.

use std::collections::{BTreeMap, HashMap};

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

/// A batch norm folded into its block's scaling and bias ([`crate::EncodeOptions::bnf`]), for
/// the decoder to give back as a batch norm with the same effect: gamma the coded scaling, beta
/// the coded bias, mean 0 and variance `1 − eps`, the layer's own scaling 1 and bias 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldedNorm {
    /// The block's scaling as coded.
    pub scaling: String,
    /// The scaling was the user's tensor (otherwise the folding made it).
    pub scaling_given: bool,
    /// The block's bias as coded.
    pub bias: String,
    /// The bias was the user's tensor (the layer's bias; otherwise the folding made it).
    pub bias_given: bool,
    /// The batch norm's weight.
    pub gamma: String,
    /// The batch norm's bias.
    pub beta: String,
    /// The batch norm's running mean.
    pub mean: String,
    /// The batch norm's running variance.
    pub var: String,
    /// The epsilon the folding used.
    pub eps: f32,
}

impl FoldedNorm {
    /// The names unfolding hands out: the batch norm's four, and the layer's own scaling and
    /// bias where they were the user's. Their values stand in for the originals', with the
    /// same effect.
    pub fn unfolded_names(&self) -> Vec<&str> {
        let mut names = vec![self.gamma.as_str(), &self.beta, &self.mean, &self.var];
        names.extend(self.scaling_given.then_some(self.scaling.as_str()));
        names.extend(self.bias_given.then_some(self.bias.as_str()));
        names
    }

    /// The tensors unfolding adds, each of `shape` (the scaling's): the running mean (0) and
    /// variance (`1 − eps`), and the layer's own scaling (1) and bias (0) where they were the
    /// user's.
    pub fn constants(&self, shape: &[usize]) -> Vec<Tensor> {
        let n = shape.iter().product();
        let filled = |name: &str, value: f32| Tensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            data: TensorData::F32(vec![value; n]),
        };
        let mut out = vec![filled(&self.mean, 0.0), filled(&self.var, 1.0 - self.eps)];
        if self.scaling_given {
            out.push(filled(&self.scaling, 1.0));
        }
        if self.bias_given {
            out.push(filled(&self.bias, 0.0));
        }
        out
    }
}

/// A tensor as unfolding sees it: name, element count, dtype, and whether it is decoded from
/// the stream (only those can be a folded block's scaling or bias).
pub(crate) type Present<'n> = (&'n str, usize, DType, bool);

/// The folded batch norms of `folded` that can be unfolded, in order, among the tensors
/// `present`: each needs its scaling and bias decoded as float32 of one length, and every
/// name it hands out free (four distinct batch-norm names, none taken by another tensor or by
/// an earlier unfolding). Linear in the tensors and the foldings, whatever the metadata says.
pub(crate) fn unfoldable<'m, 'n>(
    folded: &'m [FoldedNorm],
    present: impl IntoIterator<Item = Present<'n>>,
) -> Vec<&'m FoldedNorm> {
    let mut names: HashMap<&str, (usize, DType, bool)> = HashMap::new();
    for (name, n, dtype, decoded) in present {
        names.insert(name, (n, dtype, decoded));
    }
    let mut out = Vec::new();
    for f in folded {
        let coded = |name: &str| match names.get(name) {
            Some(&(n, DType::F32, true)) => Some(n),
            _ => None,
        };
        let (Some(n), Some(bias_n)) = (coded(&f.scaling), coded(&f.bias)) else {
            continue;
        };
        let made = [&f.gamma, &f.beta, &f.mean, &f.var];
        let distinct = made
            .iter()
            .enumerate()
            .all(|(i, a)| made[..i].iter().all(|b| a != b));
        let free = made.iter().all(|name| !names.contains_key(name.as_str()));
        if f.scaling == f.bias || n != bias_n || !distinct || !free || !f.eps.is_finite() {
            continue;
        }
        names.remove(f.scaling.as_str());
        names.remove(f.bias.as_str());
        for name in f.unfolded_names() {
            names.insert(name, (n, DType::F32, false));
        }
        out.push(f);
    }
    out
}

/// Unfolds what [`unfoldable`] allows among `items` (decoded tensors, or the streaming
/// decoder's output slots): renames each folding's scaling and bias to the batch norm's weight
/// and bias and appends its [`FoldedNorm::constants`], made by `make`.
pub(crate) fn unfold_into<T>(
    folded: &[FoldedNorm],
    items: &mut Vec<T>,
    entry: impl Fn(&T) -> Present<'_>,
    name_mut: impl Fn(&mut T) -> &mut String,
    shape: impl Fn(&T) -> Vec<usize>,
    make: impl Fn(Tensor) -> T,
) {
    let unfold: Vec<FoldedNorm> = unfoldable(folded, items.iter().map(&entry))
        .into_iter()
        .cloned()
        .collect();
    if unfold.is_empty() {
        return;
    }
    let mut index: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (entry(t).0.to_string(), i))
        .collect();
    for f in &unfold {
        let (Some(scaling), Some(bias)) = (index.remove(&f.scaling), index.remove(&f.bias)) else {
            continue;
        };
        let dims = shape(&items[scaling]);
        name_mut(&mut items[scaling]).clone_from(&f.gamma);
        name_mut(&mut items[bias]).clone_from(&f.beta);
        index.insert(f.gamma.clone(), scaling);
        index.insert(f.beta.clone(), bias);
        for tensor in f.constants(&dims) {
            index.insert(tensor.name.clone(), items.len());
            items.push(make(tensor));
        }
    }
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
    /// Batch norms folded into their blocks, in model order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<FoldedNorm>,
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
    /// Packs a file's bytes: deflated at the default level (6), then base64. The deflate bytes
    /// are those of flate2's backend, miniz_oxide in nnc's own builds; an application whose
    /// build turns on another flate2 backend packs other bytes, which unpack the same.
    ///
    /// Not the best level (9): on MiniLM's `tokenizer.json` (466 KB) it took 156 ms against
    /// 35 ms, a twentieth of a one-thread encode of the whole model, for 0.4 % fewer bytes.
    pub fn pack(bytes: &[u8]) -> Self {
        use base64::Engine;
        use std::io::Write;
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
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
            && self.folded.is_empty()
            && self.order.is_empty()
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
    unfold_into(
        &meta.folded,
        tensors,
        |t| {
            (
                t.tensor.name.as_str(),
                t.tensor.len(),
                t.tensor.dtype(),
                true,
            )
        },
        |t| &mut t.tensor.name,
        |t| t.tensor.shape.clone(),
        |tensor| crate::decode::DecodedTensor {
            tensor,
            levels: None,
            approximation: crate::decode::Approximation::Verbatim,
        },
    );
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
    use crate::decode::{Approximation, DecodedTensor};

    fn decoded(name: &str, values: Vec<f32>) -> DecodedTensor {
        DecodedTensor {
            tensor: Tensor {
                name: name.into(),
                shape: vec![values.len()],
                data: TensorData::F32(values),
            },
            levels: None,
            approximation: Approximation::RawFloat,
        }
    }

    /// `apply` unfolds a folded batch norm as the streaming decoder's plan does: the coded
    /// scaling and bias under the batch norm's names, its statistics made, the layer's own bias
    /// zeroed, all in the user's order; a folding whose tensors are missing is left alone.
    #[test]
    fn apply_unfolds_a_folded_batch_norm() {
        let norm = FoldedNorm {
            scaling: "c.weight_scaling".into(),
            scaling_given: false,
            bias: "c.bias".into(),
            bias_given: true,
            gamma: "n.weight".into(),
            beta: "n.bias".into(),
            mean: "n.running_mean".into(),
            var: "n.running_var".into(),
            eps: 1e-3,
        };
        let mut meta = StreamMetadata::new();
        meta.folded = vec![norm.clone()];
        meta.order = ["c.weight", "c.bias", "n.weight", "n.bias", "n.running_mean"]
            .into_iter()
            .chain(["n.running_var"])
            .map(String::from)
            .collect();
        let mut tensors = vec![
            decoded("c.weight", vec![0.5; 2]),
            decoded("c.bias", vec![3.0, 4.0]),
            decoded("c.weight_scaling", vec![1.5, 2.5]),
        ];
        apply(&meta, &mut tensors);
        let got: Vec<(&str, &TensorData)> = tensors
            .iter()
            .map(|t| (t.tensor.name.as_str(), &t.tensor.data))
            .collect();
        assert_eq!(
            got,
            [
                ("c.weight", &TensorData::F32(vec![0.5; 2])),
                ("c.bias", &TensorData::F32(vec![0.0; 2])),
                ("n.weight", &TensorData::F32(vec![1.5, 2.5])),
                ("n.bias", &TensorData::F32(vec![3.0, 4.0])),
                ("n.running_mean", &TensorData::F32(vec![0.0; 2])),
                ("n.running_var", &TensorData::F32(vec![1.0 - 1e-3; 2])),
            ]
        );
        // Metadata that would hand out one name twice is not followed: a batch-norm name
        // taken by another tensor, two of its names the same, or a second folding making a
        // name the first made.
        let clash = |f: FoldedNorm| {
            let mut meta = StreamMetadata::new();
            meta.folded = vec![f];
            let mut tensors = vec![
                decoded("c.bias", vec![3.0, 4.0]),
                decoded("c.weight_scaling", vec![1.5, 2.5]),
                decoded("other", vec![0.0]),
            ];
            apply(&meta, &mut tensors);
            tensors.len()
        };
        assert_eq!(clash(norm.clone()), 6);
        for broken in [
            FoldedNorm {
                gamma: "other".into(),
                ..norm.clone()
            },
            FoldedNorm {
                beta: "n.weight".into(),
                ..norm.clone()
            },
            FoldedNorm {
                var: "n.running_mean".into(),
                ..norm.clone()
            },
            FoldedNorm {
                bias: "c.weight_scaling".into(),
                ..norm.clone()
            },
        ] {
            assert_eq!(clash(broken), 3);
        }
        let mut twice = StreamMetadata::new();
        twice.folded = vec![norm.clone(), norm.clone()];
        let mut tensors = vec![
            decoded("c.bias", vec![3.0, 4.0]),
            decoded("c.weight_scaling", vec![1.5, 2.5]),
        ];
        apply(&twice, &mut tensors);
        let mut names: Vec<&str> = tensors.iter().map(|t| t.tensor.name.as_str()).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!((all, names.len()), (5, 5));
        // Without the scaling decoded there is nothing to unfold.
        let mut partial = vec![decoded("c.bias", vec![3.0, 4.0])];
        apply(&meta, &mut partial);
        assert_eq!(partial.len(), 1);
        assert_eq!(partial[0].tensor.name, "c.bias");
    }

    /// The packed form is part of the stream `nnc encode DIR` writes, so it must not depend on
    /// which deflate backend the build happens to select: flate2 switches to zlib-rs (other
    /// bytes at the same level) as soon as any crate in the build asks for it, as zip's
    /// `deflate-flate2-zlib-rs` feature did. Pinned to miniz_oxide's output.
    #[test]
    fn packed_form_is_the_same_in_every_build() {
        let text: Vec<u8> = (0..2000u32)
            .flat_map(|i| format!("{{\"layer_{}\": {}}}\n", i % 37, i * 7919 % 1000).into_bytes())
            .collect();
        let packed = AttachedFile::pack(&text);
        assert_eq!(packed.unpack(1 << 20).unwrap(), text);
        assert_eq!(packed.0, PINNED);
    }
    const PINNED: &str = concat!(
        "Zdw7juzIEUZhX6sQZgVkxlubEWTIkyVPGGjv00UW0Jn/MS+vE6g+QFTzQ8eff/znX//793//ef3xj79f///bn99/",
        "3j//nHt+H6yfB239+8B+HlTU7wP/eZCVvw/i50FM/D7Iz4Pbfx/UzwM3+33QPw8s1u+D+Xmw6t4G+wx6zz7qZ9b7",
        "2ma9P8Oubdb7M+z4Nuz9mbZzm/b+jFu9jXt/5q1rm/f+DJxrG/j+TBy+TXx/RvbcRl6fka23kddn5DX7x/uMfG8z",
        "r8/Mt20zr8/MsY28PiNPbSOvz8g928jrM3Lf28jrM3LZNvL6jJyxjWyfkaO2ke0zsvc2sn1G9mtP4jOyrW1k+4y8",
        "fJvZPjPfuc1sz8zbyM/HJSmuJSn6LSnmpSmOptiaYmmKqSmGpuhI0TTFe0mKdmuKcSHFQYqNFAspJlIMpOhI0SRF",
        "u5amuG5N0S9NcZBiI8VCiokUAyk6UjRNcZameN+aol1IcZBia4p1ppiaYmiKrimapNjrTDGvW1Jcl6Y4mmJrioUU",
        "EymGpuhI0TTFWpri3JrifSHFQYqNFAspJlIMpOhI0STFXJpi35LiXBdSHKTYSLGQYiLFQIqOFE1T3Nfcm+K+5+yd",
        "+UxxNMXWFEtTTE0xNEXXFE1S3Lfbk+K+3J4U9932TXGQYmuKhRQTKQZSdKRomuK+294U9932prjvtm+KgxQbKRZS",
        "TE0xkKIjRdMUj/32pLgvuDfFfcN9Uxyk2EixkGIixUCKrinameKx5J7/v6XFfce9LY622NpiaYupLYa26NqiSYtr",
        "X25vi/tyu9+vMWhx0GKjxUKLiRYDLTpaNG1xX25vi/tye1vcl9u3xdEWGy0WWky0GGjR0aJpi/uOe1qMfcm9Le5b",
        "7tvioMVGi6UtprQY2qJriyYt7jvu+aT2Ffe0uG+4t8XRFltbLG0x0WKgRdcWTVvct9vb4r7dnhZ7327fFgctNlos",
        "tJhoMdCio0XTFvft9rS4L7e3xX27fVsctNhosdBiosVAi44WTVvc99zb4r7o3hb3Tfe2ONJia4ulLaa2GNqia4sm",
        "Le4b7mlxX3BPi/t+e1sctNhosbTFRIuBFh0tmra4r7e3xX29vS3u6+3b4qDFRouFFhMthrboaNG0xX3BvS0eG+5p",
        "cV9x3xYHLTZaLLSYaDHQoqNFkxbvfdM9P+JbYjx+h3tiHI2xNcbSGFNjDI3RNUaTGPf99sa477c3xn2/vTEOYmzE",
        "WIgxEWMgRkeMpjHu++2J0ff99sa477dvjIMYW2MsxJiIMRCjI0bTGPcl98a4b7k3xn3NfWMcxNiIsRBjIsaQGF1j",
        "NIlx33NPjPuaez6qfcu9MY7G2BpjaYypMQZidMRoEuO+394Yj7eUT4zHW8o3xkGMjRgLMSZiDMToiNE0xn3BvTEe",
        "rymfmS/EOIixEWMhxkSMgRgdMZrGuC+6N8bjNeUT4/Ga8o1xEGNLjKUxpsYYGqNrjCYx7lvuiXFfck+M+457YxyN",
        "sRFjIcbUGAMxOmI0jfH4Fe6J8XhR+cR4vKh8YxzE2IixEGMixkCMrjGaxLg0xeMt5ZPiseHeFAcpNlIspJhIMZCi",
        "I0XTFI/XlE+K+6Z7vtQou7iySyq7dGmKqSkqu7iySyq7tLCLXcoua4FdTNklwC4FdplEimAXA7sE2KXALqPs4veF",
        "FMEuDnZJZZdWdgmkCHRxoEsCXVrRJa8LKQJdDOgSQJcCukwgRVUXZZdQdilll7k0xdEUlV1c2SWVXTo0RUeKYBdX",
        "dkmwS4NdZpAi2MXALgF2KbDLOFIEuxjYJcAupezSyi6NFIEuDnRJoEs7UlR0iQV0caBLAl0K6DKNFEVdTNkllF1K",
        "2WWEXepWdjFll1B2SWWXbk2xkCLYxZVdEuzSyi5zKbv0Ars42CXALgV2mUKKYBcDuwTYpZRdRtnlhroY1MWhLgl1",
        "6UKLiRahLg51SahLq7qsS9XlXsIupu4S6i6l7jKpLaq7mLpLqLuUusuIu9h9oUW4i6u7JNylEy0GWoS7ONwl4S6t",
        "7hLXhRbhLgZ3CbhLqbuMussNdjGwS4BdCuwyF1octAh2cbBLgl060KKjRXEXV3dJdZdWd5nRFtVdTN0l1F1K3WVc",
        "W4S7GNwl1F0K7tKDFhstwl0c7pJwl3a0qO7iC+7icJeEu5S6y6i73GAXA7sE2KXALqPskjfYxcAuAXZJsEs3Wiy0",
        "KO7i6i6p7tLiLn2Ju9RSd3F1l1B3KXWXKW0R7mJwl1B3KbjLqLvMDXcxuIvDXRLu0oUWEy3CXRzuknCXVne5L4WX",
        "BXcxuEvAXQruMokY4S4Gdwm4S8FdRt1l3RdiFHhxhZdUeOnUGENjVHhxhZdUeGmBF78ujRHwYoCXUHgpwMsEYgS8",
        "GOAlAC8FeJkLMQ5iBLw44CUBLx2IUeVlAV4c8JKAlwa8zCBGwIsBXgLwUoCXccQIeDGBl1B4KYWXHo2xNUaFF1d4",
        "SYWXdo1R4MUW4MUBL6nwUoCXacQIeDHASwBeCvAyCi9xA14M8BKAlwS8dCNGlZcFeHHASwJeWuGlLoWXXIAXB7wE",
        "4KUAL1OIEfBiAi+h8FIKLyPw0rfCiym8uMJLKrx0aYypMQJeHPCSCi+t8KLsMgvsYmCXALsU2GUSKYJdDOwSYJcC",
        "u4yyy32ruyywi4NdEuzSiRQDKYJdHOySYJdWdrHrQopgFxN2CWWXUnaZ0BSVXUzZJZRdStllLk1xNEWwi4NdUtml",
        "lV0cKQJdHOiSQJcGuswgRaCLAV0C6FJAl3GkqOpiYJcAuxTYpQcpNlIEuzjYJcEu7UhR2WUtsIsLu6SySym7TGuK",
        "yi6m7BLKLqXsMsIufiu7GNglwC6p7NLKLoUUgS4OdEmgSyu65KXoEgvo4kCXALoU0GUKKaq6GNglwC4Fdhlll7rB",
        "LgZ2cbBLgl26kGIiRbCLC7uksksLu8wl7NJL2cWUXULZpZRdJjVFZRcDuwTYpZRdRtnlvtAi1MWhLgl16USLgRah",
        "Lg51SahLq7qs60KLyi4Gdwm4S8FdJtAi3MXgLgF3KbjLXGhx0CLcxfWvXdRdOrRF1xbVXVzdJdVdWt1lRltUdzG4",
        "S8BdSt1l1F1usIuBXQLsUmCXHrTYaBHs4mCXBLu0o0Vll3upuzjcJeEuBXeZRotwF4O7BNyl4C6j7mI33MXgLiHu",
        "kuou3dpiaYvqLq7ukuouLe4Sl7iLL3UXh7sE3KXUXUbd5Qa7GNglwC4Fdhlll7zBLgZ2cbBLgl260GKiRXUXh7sk",
        "3KXVXfpSd6kFdzG4S8BdCu4yiRbhLgZ3CXGXUncZcZe5L21R3cXVXVLdpVNbDG1R3cXhLgl3aXWX+1J4ueEuBncJ",
        "uEvBXSYQI9zF4C4Bdym4y1yIcRCjwosDXhLw0oEYHTECXhzwkoCXBrzMIEbAiwFeQuClFF7GNUaFF1N4CYWXUnjp",
        "0RhbY1R4ccBLAl7aEaPKywK8OOAlAS8FeJlGjIAXA7wE4KUAL6Pwsm7Aiym8BOAlAS/diLEQI+DFAS8JeGmFF78U",
        "XmwBXhzwEgIvpfAypTEqvJjCSyi8lMLLCLzErfBiCi8OeEnASxdiVHlZgBcHvCTgpRVe6lJ4yQV4McBLAF4K8DKJ",
        "GAEvpvASgJcCvIzCS98XYgS8OOAlAS+diDEQI+DFAS8p8NICL5emqOxiyi6h7FLKLhOaorKLKbsE2KXALnMhRXWX",
        "BXZxsEuCXTqQoiNFsIuDXRLs0mCXGaQIdjFllwC7FNhlHCmCXQzsEmCXArv0IMVGimAXB7uksEsLuwi6HCdNnhRd",
        "0SUVXUrRZVpTVHQxRZcAuhTQZRRdzpsmzzcZsEuAXRLs0o0UCymCXRzskmCXVnY5b5q83yrALq7sEmCXArtMIUWw",
        "i4FdAuxSYJdRdjlvmjwpGtjFwS4p7NLCLqkpKrq4oksqurSgy3HS5ElxKbqYoksAXQroMokUVV0M7BJglwK7jLLL",
        "edPkTRHs4mCXBLt0IsVAimAXV3ZJsEsru5w3Td4UwS4GdgmwS4FdJpAi2MXALgF2KWGXUXbRFBVdXNElFV06NEXX",
        "FBVdXNElgS4NdJlBiqouBnYJsEuBXcaRItjFwC4BdimwSw9SbKQIdnFllwS7tCNFZZfzpsmTooNdEuxSYJdppAh2",
        "MbBLgF1K2GWEXW5VF1N1CVWXVHXp1hZLW1R1cVWXhLq0qst50+RpcSm7ONglwC4FdplCi2AXA7sE2KXALqPsct40",
        "eVo0sIsruyTYpQstJloEuzjYJcEurexy3jR5PuUFdjGwS4BdSthlhF1uVRdTdQlVl1J1GVGX46TJ26Kqi6u6JNSl",
        "Ey0GWlR2cbBLgl1a2eW8afK2CHYxsEuAXQrsMoEWwS4GdglllwK7zIUWBy2CXRzskmCXDrToaBHs4mCXBLu0XhkT",
        "drlVXUzVJVRdStVlXFtUdTFVl1B1KahLD1pstKjs4mCXBLu0o0Vll/OmydOig10S7FJgl2m0CHYxsEsouxTYZZRd",
        "zpsmT4sGdgmwS4JdutFioUWwi4NdEuzSembsEndZyi6u7BLKLqXsMqUxKruYsksouxTYZZRdzpsmT4ym7OJglwS7",
        "dCHGRIxgFwe7JNillV3OmyZPjAvsYmCXUHYpsMskYgS7GNglwC4Fdhlll/OmyRsj2MXBLgl2ab0zdom7LGUXV3ZJ",
        "ZZcWdjlOmrwxKruYsksouxTYZQIxgl1M2SXALgV2mQsxDmIEuzjYJcEuHYjRESPYxcEuqezSYJcZxAh2MbBLgF0K",
        "7DKOGMEuBnYJsEuBXVoPjV3iLkvZxZVdUtmlXWMUdjlOmjwxurJLKrsU2GUaMYJdTNklwC4Fdhlll/OmyROjgV0C",
        "7JJgl27EWIgR7OJgl1R2aWUXRZfzpsmTogNdAuhSQJcppAh0MaBLAF0K6DKCLsdJk+c7jbKLK7ukskuXppiaorKL",
        "K7uksksru5w3TZ4UF9jFlF0C7FJgl0mkCHYxsEuAXQrsMsou502TN0Wwi4NdUtmllV0CKQJdHOiSQJdWdDlvmrwp",
        "Al0M6BJAlwK6TGiKqi7KLqHsUsouc2mKoykqu7iySyq7dCBFR4pgF1d2SbBLg11mkCLYxcAuAXYpsMs4UgS7GNgl",
        "wC6l7NLKLo0UgS4OdEmgSztSVHQ5b5o8KTrQJYEuBXSZ1hRFXUzZJZRdStllhF2OkyZPiqbsEsouqezSjRQLKYJd",
        "XNklwS6t7HLeNHl+rgvs4mCXALsU2GUKKYJdDOwSYJdSdhlllxvqYlAXh7ok1KULLSZahLo41CWhLq3qctw0eVpc",
        "wi6m7hLqLqXuMqktqruYukuou5S6y6i7nDdN3hbhLq7uknCXTrQYaBHu4nCXhLu0ust50+RtEe5icJeAu5S6y6i7",
        "3GAXA7sE2KXALnOhxUGLYBcHuyTYpQMturYo7uLqLqnu0uouM9qiuoupu4S6S6m7jKNFuIvBXULdpeAuPWix0SLc",
        "xeEuCXdpR4vqLudNk6dFh7sk3KXUXUbd5Qa7GNglwC4Fdhlll/OmydOigV0C7JJgl260WNqiuIuru6S6S4u7HCdN",
        "nhaXuouru4S6S6m7TKFFuIvBXULdpeAuo+5y3jR5WjS4i8NdEu7ShRYTLcJdHO6ScJfGmbFL4WXBXQzuEnCXgrtM",
        "Ika4i8FdAu5ScJdRdzlumrwxCry4wksqvHRqjKExKry4wksqvLTAy3HS5Bsj4MUAL6HwUoCXCcQIeDHASwBeCvAy",
        "F2IcxAh4ccBLAl4ad8YulZcFeHHASwJeGvAygxgBLwZ4CcBLAV7GEaPCiwm8hMJLKbz0aIytMSq8uMJLKry0a4wK",
        "L+dNk/e1POAlFV4K8DKNGAEvBngJwEsBXkbh5bxp8sRogJcAvCTgpXFo7FJ5WYAXB7wk4KUVXs6bJk+MC/DigJcA",
        "vBTgZQoxKryYwEsovJTCywi8HCdNnhhN4cUVXlLhpUtjTMQIeHHASyq8tMKLsst50+RNEewSYJcCu0wiRbCLgV0C",
        "7FJgl1F2OW+aPD9XsIuDXRLs0okUAymCXRzskmCXVnY5b5q8KSq7mLBLKLuUssuEpqjsYsouoexSyi5zaYqDFMEu",
        "DnZJZZdWdnGkCHRxoEsCXRroMoMUgS4GdAmgSwFdxpGiqouBXQLsUmCXHqTYSBHs4mCXBLu0I0Vll+OmyZOiC7uk",
        "skspu0xrisoupuwSyi6l7DLCLsdJkzdFA7sE2CWVXVrZpZAi0MWBLgl0aUWX46bJm+ICujjQJYAuBXSZQoqqLgZ2",
        "CbBLgV1G2eW8afLkYGAXB7sk2KULKSZSVHZxYZdUdmlhl+OkyZPiUnYxZZdQdilll0lNEexiYJcAu5Syyyi73Bda",
        "hLo41CWhLp1oMdAi1MWhLgl1aVWX86bJ26Kyi8FdAu5ScJcJtAh3MbhLwF0K7jIXWhy0qO7i+tcu6i4d2qJri+ou",
        "ru6S6i6t7jKjLcJdDO4ScJdSdxl1lxvsYmCXALsU2KUHLTZaBLs42CXBLu1oUdnlvGmSf8hNk6fFhLsU3GUaLcJd",
        "DO4ScJeCu4y6y3nT5P3FX90lxF1S3aVbWyxtUd3F1V1S3aXFXY6TJk+LC+7icJeAu5S6y6i73GAXA7sE2KXALqPs",
        "ctw0eVs0sIuDXRLs0oUWEy2quzjcJeEure5y3DR5W1xwF4O7BNyl4C6TaBHuYuouIe5S6i4j7nKcNHlbVHdxdZdU",
        "d+nUFkNbhLs43CXhLs0zYwovN9zF4C4Bdym4ywRihLsY3CXgLgV3mQsxDmJUeHHASwJeOhCjI0bAiwNeEvDSgJcZ",
        "xAh4MYWXEHgphZdxjVHhxRReQuGlFF56NMbWGAEvDnhJwEvjztil8rIALw54ScBLAV6mESPgxQAvAXgpwMsovJw3",
        "TZ4YTeElAC8JeOlGjIUYAS8OeEnASyu8nDdNnhgX4MUVXkLgpRRepjRGhRdTeAmFl1J4GYGX46TJE6MBXhzwkoCX",
        "xqGxS+VlAV4c8JKAl1Z4OW+aPDEuwIsBXgLwUoCXScQIeDGFlwC8FOBlFF6OmybfGAEvDnhJwEsnYgzECHhxhZcU",
        "ePksur8A",
    );

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
