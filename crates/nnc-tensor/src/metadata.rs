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
    /// Packs a file's bytes: deflated at the best level, then base64. The deflate bytes are
    /// those of flate2's backend, miniz_oxide in nnc's own builds; an application whose build
    /// turns on another flate2 backend packs other bytes, which unpack the same.
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
        "Zd07bizJEUZhX6sQZgVVGW9tRpAhT5Y8YaC9D7uqAWb+x7x1nQB5gCDrA6P//OM///rfv//7z+uPf/z9+v/f/vz+",
        "8/7559zz+2D9PGjr3wf286Cifh/4z4Os/H0QPw9i4vdBfh7c/vugfh642e+D/nlgsX4fzM+DVfc22GfQe/ZRP7Pe",
        "1zbr/Rl2bbPen2HHt2Hvz7Sd27T3Z9zqbdz7M29d27z3Z+Bc28D3Z+LwbeL7M7LnNvL6jGy9jbw+I6/Zv7zPyPc2",
        "8/rMfNs28/rMHNvI6zPy1Dby+ozcs428PiP3vY28PiOXbSOvz8gZ28j2GTlqG9k+I3tvI9tnZL/2JD4j29pGts/I",
        "y7eZ7TPzndvM9sy8jfx8uSTFtSRFvyXFvDTF0RRbUyxNMTXF0BQdKZqmeC9J0W5NMS6kOEixkWIhxUSKgRQdKZqk",
        "aNfSFNetKfqlKQ5SbKRYSDGRYiBFR4qmKc7SFO9bU7QLKQ5SbE2xzhRTUwxN0TVFkxR7nSnmdUuK69IUR1NsTbGQ",
        "YiLF0BQdKZqmWEtTnFtTvC+kOEixkWIhxUSKgRQdKZqkmEtT7FtSnOtCioMUGykWUkykGEjRkaJpivuae1Pc95y9",
        "M58pjqbYmmJpiqkphqbomqJJivt2e1Lcl9uT4r7bvikOUmxNsZBiIsVAio4UTVPcd9ub4r7b3hT33fZNcZBiI8VC",
        "iqkpBlJ0pGia4rHfnhT3BfemuG+4b4qDFBspFlJMpBhI0TVFO1M8ltzz/7e0uO+4t8XRFltbLG0xtcXQFl1bNGlx",
        "7cvtbXFfbvf7YwxaHLTYaLHQYqLFQIuOFk1b3Jfb2+K+3N4W9+X2bXG0xUaLhRYTLQZadLRo2uK+454WY19yb4v7",
        "lvu2OGix0WJpiykthrbo2qJJi/uOe75S+4p7Wtw33NviaIutLZa2mGgx0KJri6Yt7tvtbXHfbk+LvW+3b4uDFhst",
        "FlpMtBho0dGiaYv7dnta3Jfb2+K+3b4tDlpstFhoMdFioEVHi6Yt7nvubXFfdG+L+6Z7WxxpsbXF0hZTWwxt0bVF",
        "kxb3Dfe0uC+4p8V9v70tDlpstFjaYqLFQIuOFk1b3Nfb2+K+3t4W9/X2bXHQYqPFQouJFkNbdLRo2uK+4N4Wjw33",
        "tLivuG+LgxYbLRZaTLQYaNHRokmL977pnm/xLTEev8M9MY7G2BpjaYypMYbG6BqjSYz7fntj3PfbG+O+394YBzE2",
        "YizEmIgxEKMjRtMY9/32xOj7fntj3PfbN8ZBjK0xFmJMxBiI0RGjaYz7kntj3LfcG+O+5r4xDmJsxFiIMRFjSIyu",
        "MZrEuO+5J8Z9zT1fqn3LvTGOxtgaY2mMqTEGYnTEaBLjvt/eGI+3lE+Mx1vKN8ZBjI0YCzEmYgzE6IjRNMZ9wb0x",
        "Hq8pn5kvxDiIsRFjIcZEjIEYHTGaxrgvujfG4zXlE+PxmvKNcRBjS4ylMabGGBqja4wmMe5b7olxX3JPjPuOe2Mc",
        "jbERYyHG1BgDMTpiNI3x+BXuifF4UfnEeLyofGMcxNiIsRBjIsZAjK4xmsS4NMXjLeWT4rHh3hQHKTZSLKSYSDGQ",
        "oiNF0xSP15RPivume36oUXZxZZdUdunSFFNTVHZxZZdUdmlhF7uUXdYCu5iyS4BdCuwyiRTBLgZ2CbBLgV1G2cXv",
        "CymCXRzsksourewSSBHo4kCXBLq0okteF1IEuhjQJYAuBXSZQIqqLsouoexSyi5zaYqjKSq7uLJLKrt0aIqOFMEu",
        "ruySYJcGu8wgRbCLgV0C7FJgl3GkCHYxsEuAXUrZpZVdGikCXRzokkCXdqSo6BIL6OJAlwS6FNBlGimKupiySyi7",
        "lLLLCLvUrexiyi6h7JLKLt2aYiFFsIsruyTYpZVd5lJ26QV2cbBLgF0K7DKFFMEuBnYJsEspu4yyyw11MaiLQ10S",
        "6tKFFhMtQl0c6pJQl1Z1WZeqy72EXUzdJdRdSt1lUltUdzF1l1B3KXWXEXex+0KLcBdXd0m4SydaDLQId3G4S8Jd",
        "Wt0lrgstwl0M7hJwl1J3GXWXG+xiYJcAuxTYZS60OGgR7OJglwS7dKBFR4viLq7ukuoure4yoy2qu5i6S6i7lLrL",
        "uLYIdzG4S6i7FNylBy02WoS7ONwl4S7taFHdxRfcxeEuCXcpdZdRd7nBLgZ2CbBLgV1G2SVvsIuBXQLskmCXbrRY",
        "aFHcxdVdUt2lxV36Eneppe7i6i6h7lLqLlPaItzF4C6h7lJwl1F3mRvuYnAXh7sk3KULLSZahLs43CXhLq3ucl8K",
        "LwvuYnCXgLsU3GUSMcJdDO4ScJeCu4y6y7ovxCjw4govqfDSqTGGxqjw4govqfDSAi9+XRoj4MUAL6HwUoCXCcQI",
        "eDHASwBeCvAyF2IcxAh4ccBLAl46EKPKywK8OOAlAS8NeJlBjIAXA7wE4KUAL+OIEfBiAi+h8FIKLz0aY2uMCi+u",
        "8JIKL+0ao8CLLcCLA15S4aUAL9OIEfBigJcAvBTgZRRe4ga8GOAlAC8JeOlGjCovC/DigJcEvLTCS10KL7kALw54",
        "CcBLAV6mECPgxQReQuGlFF5G4KVvhRdTeHGFl1R46dIYU2MEvDjgJRVeWuFF2WUW2MXALgF2KbDLJFIEuxjYJcAu",
        "BXYZZZf7VndZYBcHuyTYpRMpBlIEuzjYJcEurexi14UUwS4m7BLKLqXsMqEpKruYsksou5Syy1ya4miKYBcHu6Sy",
        "Syu7OFIEujjQJYEuDXSZQYpAFwO6BNClgC7jSFHVxcAuAXYpsEsPUmykCHZxsEuCXdqRorLLWmAXF3ZJZZdSdpnW",
        "FJVdTNkllF1K2WWEXfxWdjGwS4BdUtmllV0KKQJdHOiSQJdWdMlL0SUW0MWBLgF0KaDLFFJUdTGwS4BdCuwyyi51",
        "g10M7OJglwS7dCHFRIpgFxd2SWWXFnaZS9ill7KLKbuEskspu0xqisouBnYJsEspu4yyy32hRaiLQ10S6tKJFgMt",
        "Ql0c6pJQl1Z1WdeFFpVdDO4ScJeCu0ygRbiLwV0C7lJwl7nQ4qBFuIvrX7uou3Roi64tqru4ukuqu7S6y4y2qO5i",
        "cJeAu5S6y6i73GAXA7sE2KXALj1osdEi2MXBLgl2aUeLyi73UndxuEvCXQruMo0W4S4Gdwm4S8FdRt3FbriLwV1C",
        "3CXVXbq1xdIW1V1c3SXVXVrcJS5xF1/qLg53CbhLqbuMussNdjGwS4BdCuwyyi55g10M7OJglwS7dKHFRIvqLg53",
        "SbhLq7v0pe5SC+5icJeAuxTcZRItwl0M7hLiLqXuMuIuc1/aorqLq7ukukunthjaorqLw10S7tLqLvel8HLDXQzu",
        "EnCXgrtMIEa4i8FdAu5ScJe5EOMgRoUXB7wk4KUDMTpiBLw44CUBLw14mUGMgBcDvITASym8jGuMCi+m8BIKL6Xw",
        "0qMxtsao8OKAlwS8tCNGlZcFeHHASwJeCvAyjRgBLwZ4CcBLAV5G4WXdgBdTeAnASwJeuhFjIUbAiwNeEvDSCi9+",
        "KbzYArw44CUEXkrhZUpjVHgxhZdQeCmFlxF4iVvhxRReHPCSgJcuxKjysgAvDnhJwEsrvNSl8JIL8GKAlwC8FOBl",
        "EjECXkzhJQAvBXgZhZe+L8QIeHHASwJeOhFjIEbAiwNeUuClBV4uTVHZxZRdQtmllF0mNEVlF1N2CbBLgV3mQorq",
        "Lgvs4mCXBLt0IEVHimAXB7sk2KXBLjNIEexiyi4BdimwyzhSBLsY2CXALgV26UGKjRTBLg52SWGXFnYRdDlOmjwp",
        "uqJLKrqUosu0pqjoYoouAXQpoMsoupw3TZ6fZMAuAXZJsEs3UiykCHZxsEuCXVrZ5bxp8v5UAXZxZZcAuxTYZQop",
        "gl0M7BJglwK7jLLLedPkSdHALg52SWGXFnZJTVHRxRVdUtGlBV2OkyZPikvRxRRdAuhSQJdJpKjqYmCXALsU2GWU",
        "Xc6bJm+KYBcHuyTYpRMpBlIEu7iyS4JdWtnlvGnypgh2MbBLgF0K7DKBFMEuBnYJsEsJu4yyi6ao6OKKLqno0qEp",
        "uqao6OKKLgl0aaDLDFJUdTGwS4BdCuwyjhTBLgZ2CbBLgV16kGIjRbCLK7sk2KUdKSq7nDdNnhQd7JJglwK7TCNF",
        "sIuBXQLsUsIuI+xyq7qYqkuouqSqS7e2WNqiqouruiTUpVVdzpsmT4tL2cXBLgF2KbDLFFoEuxjYJcAuBXYZZZfz",
        "psnTooFdXNklwS5daDHRItjFwS4Jdmlll/OmyfNVXmAXA7sE2KWEXUbY5VZ1MVWXUHUpVZcRdTlOmrwtqrq4qktC",
        "XTrRYqBFZRcHuyTYpZVdzpsmb4tgFwO7BNilwC4TaBHsYmCXUHYpsMtcaHHQItjFwS4JdulAi44WwS4OdkmwS+uV",
        "MWGXW9XFVF1C1aVUXca1RVUXU3UJVZeCuvSgxUaLyi4OdkmwSztaVHY5b5o8LTrYJcEuBXaZRotgFwO7hLJLgV1G",
        "2eW8afK0aGCXALsk2KUbLRZaBLs42CXBLq1nxi5xl6Xs4souoexSyi5TGqOyiym7hLJLgV1G2eW8afLEaMouDnZJ",
        "sEsXYkzECHZxsEuCXVrZ5bxp8sS4wC4GdglllwK7TCJGsIuBXQLsUmCXUXY5b5q8MYJdHOySYJfWO2OXuMtSdnFl",
        "l1R2aWGX46TJG6Oyiym7hLJLgV0mECPYxZRdAuxSYJe5EOMgRrCLg10S7NKBGB0xgl0c7JLKLg12mUGMYBcDuwTY",
        "pcAu44gR7GJglwC7FNil9dDYJe6ylF1c2SWVXdo1RmGX46TJE6Mru6SyS4FdphEj2MWUXQLsUmCXUXY5b5o8MRrY",
        "JcAuCXbpRoyFGMEuDnZJZZdWdlF0OW+aPCk60CWALgV0mUKKQBcDugTQpYAuI+hynDR5L6dqisouqezSpSmmpqjs",
        "4souqezSyi7nTZMnxQV2MWWXALsU2GUSKYJdDOwSYJcCu4yyy3nT5E0R7OJgl1R2aWWXQIpAFwe6JNClFV3OmyZv",
        "ikAXA7oE0KWALhOaoqqLsksou5Syy1ya4miKyi6u7JLKLh1I0ZEi2MWVXRLs0mCXGaQIdjGwS4BdCuwyjhTBLgZ2",
        "CbBLKbu0sksjRaCLA10S6NKOFBVdzpsmT4oOdEmgSwFdpjVFURdTdglll1J2GWGX46TJk6Ipu4SySyq7dCPFQopg",
        "F1d2SbBLK7ucN02e7+sCuzjYJcAuBXaZQopgFwO7BNillF1G2eWGuhjUxaEuCXXpQouJFqEuDnVJqEuruhw3Td5r",
        "3cIupu4S6i6l7jKpLaq7mLpLqLuUusuou5w3Td4W4S6u7pJwl060GGgR7uJwl4S7tLrLedPkbRHuYnCXgLsUPttF",
        "3eUGuxjYJcAuBXaZCy0OWgS7ONglwS4daNG1RXEXV3dJdZdWd5nRFtVdTN0l1F1K3WUcLcJdDO4S6i4Fd+lBi40W",
        "4S4Od0m4SztaVHc5b5q8nwECd0m4S+HDXdRdbrCLgV0C7FJgl1F2OW+aPC0a2CXALgl26UaLpS2Ku7i6S6q7tLjL",
        "cdLkaXGpu7i6S6i7lLrLFFqEuxjcJdRdCu4y6i7nTZOnRYO7ONwl4S5daDHRItzF4S4Jd2mcGbsUXhbcxeAuAXcp",
        "uMskYoS7GNwl4C4Fdxl1l+OmyRujwIsrvKTCS6fGGBqjwosrvKTCSwu8HCdNvjECXgzwEgovBXiZQIyAFwO8BOCl",
        "AC9zIcZBjIAXB7wk4KVxZ+xSeVmAFwe8JOClAS8ziBHwYoCXALwU4GUcMSq8mMBLKLyUwkuPxtgao8KLK7ykwku7",
        "xqjwct40eV/LA15S4aUAL9OIEfBigJcAvBTgZRRezpsmT4wGeAnASwJeGofGLpWXBXhxwEsCXlrh5bxp8sS4AC8O",
        "eAnASwFephCjwosJvITCSym8jMDLcdLkidEUXlzhJRVeujTGRIyAFwe8pMJLK7wou5w3Td4UwS4BdimwyyRSBLsY",
        "2CXALgV2GWWX86bJ830FuzjYJcEunUgxkCLYxcEuCXZpZZfzpsmborKLCbuEskspu0xoisoupuwSyi6l7DKXpjhI",
        "EeziYJdUdmllF0eKQBcHuiTQpYEuM0gR6GJAlwC6FNBlHCmquhjYJcAuBXbpQYqNFMEuDnZJsEs7UlR2OW6aPCm6",
        "sEsqu5Syy7SmqOxiyi6h7FLKLiPscpw0eVM0sEuAXVLZpZVdCikCXRzokkCXVnQ5bpq8KS6giwNdAuhSQJcppKjq",
        "YmCXALsU2GWUXc6bJk8OBnZxsEuCXbqQYiJFZRcXdklllxZ2OU6aPCkuZRdTdglll1J2mdQUwS4GdgmwS+HDXZRd",
        "7gstQl0c6pJQl060GGgR6uJQl4S6tKrLedPkbVHZxeAuAXcpuMsEWoS7GNwl4C4Fd5kLLQ5aVHdx/WsXdZcObdG1",
        "RXUXV3dJdZdWd5nRFuEuBncJuEvhs13UXW6wi4FdAuxSYJcetNhoEeziYJcEu7SjRWWX86ZJ/iE3TZ4WE+5ScJdp",
        "tAh3MbhLwF0K7jLqLudNk/cXf3WXEHdJdZdubbG0RXUXV3dJdZcWdzlOmjwtLriLw10C7lL8cBdtEexiYJcAuxTY",
        "ZZRdjpsmb4sGdnGwS4JdutBiokV1F4e7JNyl1V2OmyZviwvuYnCXgLsU3GUSLcJdTN0lxF1K3WXEXY6TJm+L6i6u",
        "7pLqLp3aYmiLcBeHuyTcpXlmTOHlhrsY3CXgLgV3mUCMcBeDuwTcpeAucyHGQYwKLw54ScBLB2J0xAh4ccBLAl4a",
        "8DKDGAEvpvASAi+l8DKuMSq8mMJLKLyUwkuPxtgaI+DFAS8JeGncGbtUXhbgxQEvCXgpwMs0YgS8GOAlAC8FeBmF",
        "l/OmyROjKbwE4CUBL92IsRAj4MUBLwl4aYWX86bJe70U8OIKLyHwUgovUxqjwospvITCSym8jMDLcdLkidEALw54",
        "ScBL49DYpfKyAC8OeEnASyu8nDdNnhgX4MUALwF4KcDLJGIEvJjCSwBeCvAyCi/HTZNvjIAXB7wk4KUTMQZiBLy4",
        "wksKvHwW3V8=",
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
