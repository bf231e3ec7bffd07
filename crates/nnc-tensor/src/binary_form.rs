//! The compact binary form nnc saves its states in: a magic string naming the kind of value, a
//! version byte, then the value in postcard's encoding (variable-length integers).
//!
//! [`IncrementalState::to_bytes`](crate::IncrementalState::to_bytes) uses it; crates above
//! define kinds of their own, each with its own magic. Reading checks the magic and the version
//! and refuses cut or extended copies, so a file of one kind is never taken for another or half
//! read.
//!
//! ```
//! use nnc_tensor::binary_form::{from_bytes, to_bytes, Kind};
//!
//! const COUNTS: Kind = Kind { magic: b"my-counts", version: 1, what: "count table" };
//! let bytes = to_bytes(&COUNTS, &vec![3u32, 1, 4]).unwrap();
//! assert!(COUNTS.matches(&bytes));
//! assert_eq!(from_bytes::<Vec<u32>>(&COUNTS, &bytes).unwrap(), vec![3, 1, 4]);
//! assert!(from_bytes::<Vec<u32>>(&COUNTS, &bytes[..bytes.len() - 1]).is_err());
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// One kind of value in the binary form.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The first bytes of every value of this kind; no kind's magic may start another's.
    pub magic: &'static [u8],
    /// The version this build writes and the only one it reads.
    pub version: u8,
    /// What the value is, for error messages ("nnc state").
    pub what: &'static str,
}

impl Kind {
    /// Whether `bytes` start with this kind's magic (of any version).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(self.magic)
    }

    /// The version byte of `bytes` if they start with this kind's magic.
    pub fn version_of(&self, bytes: &[u8]) -> Option<u8> {
        bytes.strip_prefix(self.magic)?.first().copied()
    }
}

/// `value` in the binary form of `kind`.
pub fn to_bytes<T: Serialize + ?Sized>(kind: &Kind, value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(kind.magic.len() + 1);
    out.extend_from_slice(kind.magic);
    out.push(kind.version);
    postcard::to_extend(value, out).map_err(|e| Error::InvalidArgument {
        what: format!("the {} cannot be encoded: {e}", kind.what),
    })
}

/// Reads [`to_bytes`]'s output for `kind`. Fails with [`Error::InvalidArgument`] for anything
/// else, including a cut or extended copy and another version of the form.
pub fn from_bytes<T: DeserializeOwned>(kind: &Kind, bytes: &[u8]) -> Result<T> {
    let what = kind.what;
    let invalid = |what: String| Error::InvalidArgument { what };
    let Some(rest) = bytes.strip_prefix(kind.magic) else {
        let magic = String::from_utf8_lossy(kind.magic);
        return Err(invalid(format!("not an {what} (no `{magic}` header)")));
    };
    match rest {
        [v, payload @ ..] if *v == kind.version => {
            let (value, extra) = postcard::take_from_bytes(payload).map_err(|e| {
                let why = match e {
                    postcard::Error::DeserializeUnexpectedEnd => "it ends early".to_string(),
                    // The reason (e.g. a cut level varint) does not survive postcard's error.
                    postcard::Error::SerdeDeCustom => "a malformed value".to_string(),
                    e => e.to_string(),
                };
                invalid(format!("not a valid {what}: {why}"))
            })?;
            if !extra.is_empty() {
                return Err(invalid(format!(
                    "not a valid {what}: {} bytes after its end",
                    extra.len()
                )));
            }
            Ok(value)
        }
        [v, ..] => Err(invalid(format!(
            "an {what} of another version ({v}; this nnc reads version {})",
            kind.version
        ))),
        [] => Err(invalid(format!("not a valid {what}: no version byte"))),
    }
}

/// Serde `with` module for `Vec<i32>` fields holding levels: in binary serializers (postcard)
/// one byte string of zigzag LEB128 varints, which is written and read in a tight loop instead
/// of element by element through serde (and read into a vector allocated once, at most as long
/// as the input); in human-readable ones (JSON) the plain list of numbers.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Update {
///     #[serde(with = "nnc_tensor::binary_form::packed_i32")]
///     levels: Vec<i32>,
/// }
/// let u = Update { levels: vec![0, -1, 1, 300, i32::MIN] };
/// assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"levels":[0,-1,1,300,-2147483648]}"#);
/// let bytes = postcard::to_stdvec(&u).unwrap();
/// assert_eq!(&bytes[..5], &[10, 0, 1, 2, 0xD8]); // 10 bytes follow: 0, -1, 1, 300, ...
/// assert_eq!(postcard::from_bytes::<Update>(&bytes).unwrap(), u);
/// ```
pub mod packed_i32 {
    use serde::{Deserializer, Serializer};

    /// Serializes `levels`.
    pub fn serialize<S: Serializer>(levels: &[i32], serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize_packed(levels, serializer, pack)
    }

    /// Deserializes what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i32>, D::Error> {
        let expecting = "levels as a byte string of zigzag varints";
        super::deserialize_packed(deserializer, expecting, unpack)
    }

    /// Zigzag LEB128 varints, one per level.
    pub(crate) fn pack(levels: &[i32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(levels.len() + levels.len() / 4 + 8);
        let mut chunks = levels.chunks_exact(8);
        for chunk in &mut chunks {
            // Most levels of an update are small: eight one-byte varints at once.
            let z: [u32; 8] = std::array::from_fn(|i| zigzag(chunk[i]));
            if z.iter().all(|&z| z < 0x80) {
                out.extend(z.map(|z| z as u8));
            } else {
                z.iter().for_each(|&z| push_varint(&mut out, z));
            }
        }
        for &l in chunks.remainder() {
            push_varint(&mut out, zigzag(l));
        }
        out
    }

    fn zigzag(l: i32) -> u32 {
        (l.wrapping_shl(1) ^ (l >> 31)) as u32
    }

    fn unzigzag(z: u32) -> i32 {
        (z >> 1) as i32 ^ -((z & 1) as i32)
    }

    fn push_varint(out: &mut Vec<u8>, mut z: u32) {
        while z >= 0x80 {
            out.push(z as u8 | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// The inverse of [`pack`]; refuses a varint that is cut, longer than five bytes or beyond
    /// 32 bits.
    pub(crate) fn unpack(bytes: &[u8]) -> Result<Vec<i32>, &'static str> {
        let count = bytes.iter().filter(|&&b| b < 0x80).count();
        let mut out = Vec::with_capacity(count);
        let mut rest = bytes;
        while !rest.is_empty() {
            if let Some(chunk) = rest.first_chunk::<8>() {
                if u64::from_le_bytes(*chunk) & 0x8080_8080_8080_8080 == 0 {
                    out.extend(chunk.map(|b| unzigzag(u32::from(b))));
                    rest = &rest[8..];
                    continue;
                }
            }
            let mut z = 0u64;
            let mut used = 0;
            loop {
                let Some(&b) = rest.get(used) else {
                    return Err("the last level is cut");
                };
                z |= u64::from(b & 0x7F) << (7 * used);
                used += 1;
                if b < 0x80 {
                    break;
                }
                if used == 5 {
                    return Err("a level longer than five bytes");
                }
            }
            let z = u32::try_from(z).map_err(|_| "a level beyond 32 bits")?;
            out.push(unzigzag(z));
            rest = &rest[used..];
        }
        Ok(out)
    }
}

/// Serde `with` module for `Vec<f32>` fields holding whole models: in binary serializers one
/// byte string of the values' little-endian bytes (copied, not sent value by value through
/// serde); in human-readable ones the plain list.
pub mod packed_f32 {
    use serde::{Deserializer, Serializer};

    /// Serializes `values`.
    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize_packed(values, serializer, pack)
    }

    /// Deserializes what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let expecting = "float32 values as little-endian bytes";
        super::deserialize_packed(deserializer, expecting, unpack)
    }

    fn pack(values: &[f32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    fn unpack(bytes: &[u8]) -> Result<Vec<f32>, &'static str> {
        if !bytes.len().is_multiple_of(4) {
            return Err("float32 values in a byte string whose length is not a multiple of 4");
        }
        let values = bytes.chunks_exact(4);
        Ok(values
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// [`packed_f32`](self) for `Option<Vec<f32>>` fields.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        struct Packed<'a>(&'a [f32]);

        impl Serialize for Packed<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, serializer)
            }
        }

        struct Owned(Vec<f32>);

        impl<'de> Deserialize<'de> for Owned {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::deserialize(deserializer).map(Owned)
            }
        }

        /// Serializes `values`.
        pub fn serialize<S: Serializer>(
            values: &Option<Vec<f32>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            values.as_deref().map(Packed).serialize(serializer)
        }

        /// Deserializes what [`serialize`] wrote.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<f32>>, D::Error> {
            Ok(Option::<Owned>::deserialize(deserializer)?.map(|o| o.0))
        }
    }
}

/// The serializing half of the packed `with` modules: the plain list in human-readable
/// formats, `pack`'s bytes in binary ones.
fn serialize_packed<T: Serialize, S: serde::Serializer>(
    values: &[T],
    serializer: S,
    pack: fn(&[T]) -> Vec<u8>,
) -> std::result::Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.collect_seq(values)
    } else {
        serializer.serialize_bytes(&pack(values))
    }
}

/// The deserializing half: the plain list, or a byte string through `unpack`.
fn deserialize_packed<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
    unpack: Unpack<T>,
) -> std::result::Result<Vec<T>, D::Error> {
    use serde::de::Error as _;
    if deserializer.is_human_readable() {
        return <Vec<T> as serde::Deserialize>::deserialize(deserializer);
    }
    struct Packed<T> {
        expecting: &'static str,
        unpack: Unpack<T>,
    }
    impl<T> serde::de::Visitor<'_> for Packed<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> std::result::Result<Vec<T>, E> {
            (self.unpack)(bytes).map_err(E::custom)
        }
    }
    deserializer
        .deserialize_bytes(Packed { expecting, unpack })
        .map_err(|e: D::Error| D::Error::custom(format_args!("{expecting}: {e}")))
}

/// Decodes a packed byte string, or says why it cannot.
type Unpack<T> = fn(&[u8]) -> std::result::Result<Vec<T>, &'static str>;

#[cfg(test)]
mod tests {
    use super::packed_i32::{pack, unpack};

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Model {
        #[serde(with = "super::packed_f32")]
        values: Vec<f32>,
        #[serde(with = "super::packed_f32::option")]
        residual: Option<Vec<f32>>,
    }

    #[test]
    fn packed_values_are_bytes_in_postcard_and_lists_in_json() {
        let m = Model {
            values: vec![1.5, -0.0, f32::MAX],
            residual: Some(vec![0.25]),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"values":[1.5,-0.0,3.4028235e+38],"residual":[0.25]}"#
        );
        assert_eq!(serde_json::from_str::<Model>(&json).unwrap(), m);
        let bytes = postcard::to_stdvec(&m).unwrap();
        assert_eq!(bytes.len(), 1 + 12 + 1 + 1 + 4);
        assert_eq!(&bytes[..5], &[12, 0, 0, 0xC0, 0x3F]);
        assert_eq!(postcard::from_bytes::<Model>(&bytes).unwrap(), m);
        let none = Model {
            values: vec![],
            residual: None,
        };
        let bytes = postcard::to_stdvec(&none).unwrap();
        assert_eq!(bytes, [0, 0]);
        assert_eq!(postcard::from_bytes::<Model>(&bytes).unwrap(), none);
        // A byte string that is not whole floats.
        assert!(postcard::from_bytes::<Model>(&[3, 1, 2, 3, 0]).is_err());
    }

    #[test]
    fn packed_levels_round_trip_and_refuse_malformed_varints() {
        let levels = [
            0,
            1,
            -1,
            63,
            -64,
            64,
            8191,
            -8192,
            1 << 20,
            i32::MAX,
            i32::MIN,
        ];
        let bytes = pack(&levels);
        assert_eq!(bytes.len(), 1 + 1 + 1 + 1 + 1 + 2 + 2 + 2 + 4 + 5 + 5);
        assert_eq!(unpack(&bytes).unwrap(), levels);
        assert_eq!(unpack(&[]).unwrap(), Vec::<i32>::new());
        assert_eq!(unpack(&[3, 0x80]), Err("the last level is cut"));
        assert_eq!(unpack(&[0x80; 6]), Err("a level longer than five bytes"));
        assert_eq!(
            unpack(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]),
            Err("a level beyond 32 bits")
        );
    }
}
