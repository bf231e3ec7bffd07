//! Packed element bytes to and from [`TensorData`] (the layout of safetensors and PyTorch
//! storages: elements back to back, no padding, booleans one byte each).

use nnc_tensor::{DType, TensorData};

/// Byte order of packed elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    Little,
    Big,
}

/// Why packed bytes could not become elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawError {
    /// The byte count is not a multiple of the element size.
    Length { bytes: usize, size: usize },
    /// A boolean byte other than 0 or 1.
    Bool { index: usize, byte: u8 },
    /// A [`DType`] this crate does not know (the enum is non-exhaustive).
    Unsupported(DType),
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Length { bytes, size } => {
                write!(
                    f,
                    "{bytes} bytes is not a whole number of {size}-byte elements"
                )
            }
            RawError::Bool { index, byte } => {
                write!(f, "boolean element {index} is {byte}, not 0 or 1")
            }
            RawError::Unsupported(d) => write!(f, "dtype {d:?} is not supported"),
        }
    }
}

fn unpack<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        })
        .collect()
}

/// Elements copied as they are, for bytes already in the target's own byte order.
fn copy_native<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let mut out = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
    out
}

macro_rules! unpack_as {
    ($bytes:expr, $order:expr, $t:ty) => {
        match $order {
            ByteOrder::Little if cfg!(target_endian = "little") => copy_native::<$t>($bytes),
            ByteOrder::Big if cfg!(target_endian = "big") => copy_native::<$t>($bytes),
            ByteOrder::Little => unpack($bytes, <$t>::from_le_bytes),
            ByteOrder::Big => unpack($bytes, <$t>::from_be_bytes),
        }
    };
}

/// Decodes packed elements of `dtype`.
pub(crate) fn decode(dtype: DType, bytes: &[u8], order: ByteOrder) -> Result<TensorData, RawError> {
    let size = dtype.size_in_bytes();
    if !bytes.len().is_multiple_of(size) {
        return Err(RawError::Length {
            bytes: bytes.len(),
            size,
        });
    }
    Ok(match dtype {
        DType::F64 => TensorData::F64(unpack_as!(bytes, order, f64)),
        DType::F32 => TensorData::F32(unpack_as!(bytes, order, f32)),
        DType::F16 => TensorData::F16(unpack_as!(bytes, order, u16)),
        DType::BF16 => TensorData::BF16(unpack_as!(bytes, order, u16)),
        DType::I64 => TensorData::I64(unpack_as!(bytes, order, i64)),
        DType::I32 => TensorData::I32(unpack_as!(bytes, order, i32)),
        DType::I16 => TensorData::I16(unpack_as!(bytes, order, i16)),
        DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        DType::U64 => TensorData::U64(unpack_as!(bytes, order, u64)),
        DType::U32 => TensorData::U32(unpack_as!(bytes, order, u32)),
        DType::U16 => TensorData::U16(unpack_as!(bytes, order, u16)),
        DType::U8 => TensorData::U8(bytes.to_vec()),
        DType::Bool => {
            if let Some(index) = bytes.iter().position(|&b| b > 1) {
                return Err(RawError::Bool {
                    index,
                    byte: bytes[index],
                });
            }
            TensorData::Bool(bytes.iter().map(|&b| b == 1).collect())
        }
        other => return Err(RawError::Unsupported(other)),
    })
}

#[cfg(test)]
fn pack<const N: usize, T: Copy>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&to(v));
    }
    out
}

/// The elements' own memory when it already is their little-endian packing: every numeric
/// type and booleans on a little-endian target, one-byte types anywhere. `None` otherwise.
fn le_in_memory(data: &TensorData) -> Option<&[u8]> {
    match data {
        TensorData::U8(v) => return Some(v),
        TensorData::I8(v) => return Some(bytemuck::cast_slice(v)),
        TensorData::Bool(v) => return Some(bytemuck::cast_slice(v)),
        _ => {}
    }
    if cfg!(target_endian = "big") {
        return None;
    }
    Some(match data {
        TensorData::F64(v) => bytemuck::cast_slice(v),
        TensorData::F32(v) => bytemuck::cast_slice(v),
        TensorData::F16(v) | TensorData::BF16(v) | TensorData::U16(v) => bytemuck::cast_slice(v),
        TensorData::I64(v) => bytemuck::cast_slice(v),
        TensorData::I32(v) => bytemuck::cast_slice(v),
        TensorData::I16(v) => bytemuck::cast_slice(v),
        TensorData::U64(v) => bytemuck::cast_slice(v),
        TensorData::U32(v) => bytemuck::cast_slice(v),
        _ => return None,
    })
}

/// Elements packed little-endian one by one, into a new buffer (the tests' model of
/// [`write_le`]).
#[cfg(test)]
fn packed_le(data: &TensorData) -> Option<Vec<u8>> {
    Some(match data {
        TensorData::U8(v) => v.clone(),
        TensorData::F64(v) => pack(v, f64::to_le_bytes),
        TensorData::F32(v) => pack(v, f32::to_le_bytes),
        TensorData::F16(v) | TensorData::BF16(v) | TensorData::U16(v) => pack(v, u16::to_le_bytes),
        TensorData::I64(v) => pack(v, i64::to_le_bytes),
        TensorData::I32(v) => pack(v, i32::to_le_bytes),
        TensorData::I16(v) => pack(v, i16::to_le_bytes),
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::U64(v) => pack(v, u64::to_le_bytes),
        TensorData::U32(v) => pack(v, u32::to_le_bytes),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
        _ => return None,
    })
}

/// Writes elements little-endian: straight from their memory where it already is that packing
/// ([`le_in_memory`]), else packing at most 64 KiB at a time (no copy of the whole tensor).
/// Fails with `InvalidInput` for a [`TensorData`] variant this crate does not know.
pub(crate) fn write_le<W: std::io::Write>(data: &TensorData, out: &mut W) -> std::io::Result<()> {
    if let Some(bytes) = le_in_memory(data) {
        return out.write_all(bytes);
    }
    const BLOCK: usize = 1 << 16;
    fn blocks<const N: usize, T: Copy, W: std::io::Write>(
        values: &[T],
        to: fn(T) -> [u8; N],
        out: &mut W,
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(BLOCK);
        for chunk in values.chunks(BLOCK / N) {
            buf.clear();
            for &v in chunk {
                buf.extend_from_slice(&to(v));
            }
            out.write_all(&buf)?;
        }
        Ok(())
    }
    // Only multi-byte types on a big-endian target get here: `le_in_memory` took the rest.
    match data {
        TensorData::F64(v) => blocks(v, f64::to_le_bytes, out),
        TensorData::F32(v) => blocks(v, f32::to_le_bytes, out),
        TensorData::F16(v) | TensorData::BF16(v) | TensorData::U16(v) => {
            blocks(v, u16::to_le_bytes, out)
        }
        TensorData::I64(v) => blocks(v, i64::to_le_bytes, out),
        TensorData::I32(v) => blocks(v, i32::to_le_bytes, out),
        TensorData::I16(v) => blocks(v, i16::to_le_bytes, out),
        TensorData::U64(v) => blocks(v, u64::to_le_bytes, out),
        TensorData::U32(v) => blocks(v, u32::to_le_bytes, out),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cannot write dtype {:?}", other.dtype()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_and_big_endian() {
        let le = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0];
        assert_eq!(
            decode(DType::F32, &le, ByteOrder::Little).unwrap(),
            TensorData::F32(vec![1.0, -2.0])
        );
        let be = [0x3f, 0x80, 0x00, 0x00];
        assert_eq!(
            decode(DType::F32, &be, ByteOrder::Big).unwrap(),
            TensorData::F32(vec![1.0])
        );
        assert_eq!(
            decode(DType::I16, &[0xff, 0x7f, 0x00, 0x80], ByteOrder::Little).unwrap(),
            TensorData::I16(vec![i16::MAX, i16::MIN])
        );
    }

    #[test]
    fn bad_lengths_and_bools_are_errors() {
        assert_eq!(
            decode(DType::I32, &[1, 2, 3], ByteOrder::Little),
            Err(RawError::Length { bytes: 3, size: 4 })
        );
        assert_eq!(
            decode(DType::Bool, &[0, 1, 2], ByteOrder::Little),
            Err(RawError::Bool { index: 2, byte: 2 })
        );
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let all = [
            TensorData::F64(vec![0.1, -0.0, f64::INFINITY]),
            TensorData::F32(vec![1.5, f32::MIN_POSITIVE]),
            TensorData::F16(vec![0x3c00, 0x8001]),
            TensorData::BF16(vec![0x3f80, 0xff80]),
            TensorData::I64(vec![i64::MIN, 7]),
            TensorData::I32(vec![-1, i32::MAX]),
            TensorData::I16(vec![-300]),
            TensorData::I8(vec![-128, 127]),
            TensorData::U64(vec![u64::MAX]),
            TensorData::U32(vec![1 << 31]),
            TensorData::U16(vec![65535]),
            TensorData::U8(vec![0, 255]),
            TensorData::Bool(vec![true, false, true]),
        ];
        for data in all {
            if cfg!(target_endian = "little") {
                let in_memory = le_in_memory(&data).expect("every type is borrowed");
                assert_eq!(in_memory, packed_le(&data).unwrap());
            }
            let bytes = packed_le(&data).unwrap();
            let mut written = Vec::new();
            write_le(&data, &mut written).unwrap();
            assert_eq!(written, bytes);
            assert_eq!(bytes.len(), data.len() * data.dtype().size_in_bytes());
            assert_eq!(
                decode(data.dtype(), &bytes, ByteOrder::Little).unwrap(),
                data
            );
        }
    }
}
