//! MSB-first bit reader implementing the NNR descriptors `u(n)`, `i(n)`, `ue(k)`, `ie(k)`,
//! `flt(32)`, `st` and `byte_alignment()` (hls.md §1).

use crate::error::{Error, Result};

/// Reads NNR descriptors from a byte slice, most significant bit first.
///
/// Every read is bounded by the data: running past the end gives
/// [`Error::UnexpectedEnd`], never a panic.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: u64,
    len_bits: u64,
}

impl<'a> BitReader<'a> {
    /// A reader positioned at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            len_bits: (data.len() as u64) * 8,
        }
    }

    /// Number of bits consumed so far.
    pub fn bit_offset(&self) -> u64 {
        self.pos
    }

    /// Number of bits not yet consumed.
    pub fn bits_left(&self) -> u64 {
        self.len_bits - self.pos
    }

    /// Whether the position is on a byte boundary.
    pub fn is_byte_aligned(&self) -> bool {
        self.pos & 7 == 0
    }

    /// Number of bytes touched so far (the current partial byte counts as touched).
    pub fn bytes_touched(&self) -> usize {
        self.pos.div_ceil(8) as usize
    }

    /// The bytes from the current (byte-aligned) position to the end of the data.
    pub fn remaining_bytes(&self) -> Result<&'a [u8]> {
        if !self.is_byte_aligned() {
            return Err(Error::NotByteAligned {
                element: "remaining bytes",
                bit_offset: self.pos,
            });
        }
        Ok(self.data.get((self.pos / 8) as usize..).unwrap_or(&[]))
    }

    /// `u(n)`: unsigned integer of `n ≤ 64` bits (`n = 0` reads nothing and gives 0).
    pub fn read_u(&mut self, n: u32) -> Result<u64> {
        self.u(n, "u(n)")
    }

    /// `u(1)` as a boolean.
    pub fn read_flag(&mut self) -> Result<bool> {
        self.flag("flag")
    }

    /// `i(n)`: two's-complement signed integer of `1 ≤ n ≤ 64` bits.
    pub fn read_i(&mut self, n: u32) -> Result<i64> {
        self.i(n, "i(n)")
    }

    /// `ue(k)`: k-th order Exp-Golomb code (zeros-then-one prefix), `k ≤ 63`.
    ///
    /// The prefix is bounded: a code whose suffix would need more than 64 bits, or whose value
    /// does not fit `u64`, gives [`Error::ExpGolombOverflow`].
    pub fn read_ue(&mut self, k: u32) -> Result<u64> {
        self.ue(k, "ue(k)")
    }

    /// `ie(k)`: signed k-th order Exp-Golomb code (`0, 1, −1, 2, −2, …`).
    pub fn read_ie(&mut self, k: u32) -> Result<i64> {
        self.ie(k, "ie(k)")
    }

    /// `flt(32)`: IEEE-754 binary32 stored as four `u(8)` in little-endian byte order.
    ///
    /// Reference quirk: the byte order is little-endian although every other descriptor is
    /// MSB-first; the value need not be byte-aligned.
    pub fn read_flt32(&mut self) -> Result<f32> {
        self.flt32("flt(32)")
    }

    /// `st`: UTF-8 string terminated by a NUL byte; must start byte-aligned. The search for the
    /// NUL byte is bounded by the data.
    pub fn read_st(&mut self) -> Result<String> {
        self.st("st")
    }

    /// `byte_alignment()`: consumes one bit (its value is not checked, as in the reference) and
    /// then skips to the next byte boundary.
    pub fn byte_alignment(&mut self) -> Result<()> {
        self.u(1, "byte_alignment")?;
        self.pos = (self.pos + 7) & !7;
        Ok(())
    }

    // --- element-named variants used by the syntax layer ---

    pub(crate) fn u(&mut self, n: u32, element: &'static str) -> Result<u64> {
        if n > 64 {
            return Err(Error::InvalidArgument {
                element,
                reason: "u(n) reads at most 64 bits",
            });
        }
        if u64::from(n) > self.bits_left() {
            return Err(Error::UnexpectedEnd {
                element,
                bit_offset: self.pos,
            });
        }
        let mut value = 0u64;
        let mut remaining = n;
        let mut pos = self.pos;
        while remaining > 0 {
            let byte = match self.data.get((pos >> 3) as usize) {
                Some(&b) => u64::from(b),
                None => {
                    return Err(Error::UnexpectedEnd {
                        element,
                        bit_offset: self.pos,
                    })
                }
            };
            let avail = 8 - (pos & 7) as u32;
            let take = avail.min(remaining);
            let bits = (byte >> (avail - take)) & ((1u64 << take) - 1);
            value = (value << take) | bits;
            pos += u64::from(take);
            remaining -= take;
        }
        self.pos = pos;
        Ok(value)
    }

    pub(crate) fn flag(&mut self, element: &'static str) -> Result<bool> {
        Ok(self.u(1, element)? != 0)
    }

    pub(crate) fn u8_bits(&mut self, n: u32, element: &'static str) -> Result<u8> {
        debug_assert!(n <= 8);
        Ok(self.u(n.min(8), element)? as u8)
    }

    pub(crate) fn i(&mut self, n: u32, element: &'static str) -> Result<i64> {
        if n == 0 || n > 64 {
            return Err(Error::InvalidArgument {
                element,
                reason: "i(n) needs 1 <= n <= 64",
            });
        }
        let v = self.u(n, element)?;
        if n == 64 {
            return Ok(v as i64);
        }
        let half = 1u64 << (n - 1);
        Ok(if v >= half {
            (i128::from(v) - (1i128 << n)) as i64
        } else {
            v as i64
        })
    }

    /// The Exp-Golomb code number, wide enough for every code `ie` can produce.
    fn ue_code(&mut self, k: u32, element: &'static str) -> Result<u128> {
        let start = self.pos;
        if k > 63 {
            return Err(Error::InvalidArgument {
                element,
                reason: "Exp-Golomb order above 63",
            });
        }
        let mut zeros = 0u32;
        while self.u(1, element)? == 0 {
            zeros += 1;
            if k + zeros > 64 {
                return Err(Error::ExpGolombOverflow {
                    element,
                    bit_offset: start,
                });
            }
        }
        let width = k + zeros;
        let suffix = self.u(width, element)?;
        let prefix_sum = ((1u128 << zeros) - 1) << k;
        Ok(prefix_sum + u128::from(suffix))
    }

    pub(crate) fn ue(&mut self, k: u32, element: &'static str) -> Result<u64> {
        let start = self.pos;
        let code = self.ue_code(k, element)?;
        u64::try_from(code).map_err(|_| Error::ExpGolombOverflow {
            element,
            bit_offset: start,
        })
    }

    pub(crate) fn ie(&mut self, k: u32, element: &'static str) -> Result<i64> {
        let start = self.pos;
        let code = self.ue_code(k, element)?;
        let value: i128 = if code & 1 == 1 {
            ((code + 1) >> 1) as i128
        } else {
            -((code >> 1) as i128)
        };
        i64::try_from(value).map_err(|_| Error::ExpGolombOverflow {
            element,
            bit_offset: start,
        })
    }

    pub(crate) fn flt32(&mut self, element: &'static str) -> Result<f32> {
        let mut bytes = [0u8; 4];
        for b in &mut bytes {
            *b = self.u(8, element)? as u8;
        }
        Ok(f32::from_le_bytes(bytes))
    }

    pub(crate) fn st(&mut self, element: &'static str) -> Result<String> {
        if !self.is_byte_aligned() {
            return Err(Error::NotByteAligned {
                element,
                bit_offset: self.pos,
            });
        }
        let start = self.pos;
        let rest = self.data.get((start / 8) as usize..).unwrap_or(&[]);
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(Error::UnterminatedString {
                element,
                bit_offset: start,
            });
        };
        let s = std::str::from_utf8(&rest[..len]).map_err(|_| Error::InvalidUtf8 {
            element,
            bit_offset: start,
        })?;
        self.pos += (len as u64 + 1) * 8;
        Ok(s.to_owned())
    }

    /// Fails unless `count` items of at least `min_bits` bits each can still fit in the data;
    /// called before allocating storage for a counted list.
    pub(crate) fn ensure_fits(
        &self,
        count: u128,
        min_bits: u32,
        element: &'static str,
    ) -> Result<()> {
        if count.saturating_mul(u128::from(min_bits)) > u128::from(self.bits_left()) {
            return Err(Error::TooManyItems {
                element,
                count,
                bits_left: self.bits_left(),
                bit_offset: self.pos,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Packs a string of '0'/'1' (spaces ignored) MSB-first, zero padded.
    fn bits(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, c) in s.chars().filter(|c| !c.is_whitespace()).enumerate() {
            if n % 8 == 0 {
                out.push(0);
            }
            if c == '1' {
                *out.last_mut().unwrap() |= 0x80 >> (n % 8);
            }
        }
        out
    }

    #[test]
    fn u_and_i() {
        let data = [0b1010_1100, 0xff, 0x01];
        let mut r = BitReader::new(&data);
        assert_eq!(r.read_u(3).unwrap(), 0b101);
        assert_eq!(r.read_u(0).unwrap(), 0);
        assert!(!r.read_flag().unwrap());
        assert_eq!(r.read_u(12).unwrap(), 0b1100_1111_1111);
        assert_eq!(r.bit_offset(), 16);
        assert_eq!(r.read_i(8).unwrap(), 1);
        assert_eq!(r.bits_left(), 0);
        let e = r.read_flag().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);

        let mut r = BitReader::new(&[0xff, 0xf0]);
        assert_eq!(r.read_i(13).unwrap(), -2);
        let mut r = BitReader::new(&[0x80; 8]);
        assert_eq!(r.read_i(64).unwrap(), i64::from_be_bytes([0x80; 8]));
        let mut r = BitReader::new(&[0xff; 9]);
        assert_eq!(r.read_u(64).unwrap(), u64::MAX);
        assert!(r.read_u(65).is_err());
        assert!(r.read_i(0).is_err());
    }

    #[test]
    fn ue_spec_examples() {
        // hls.md §1 examples
        let cases: &[(u32, &str, u64)] = &[
            (1, "10", 0),
            (1, "11", 1),
            (1, "0100", 2),
            (1, "0101", 3),
            (1, "0110", 4),
            (7, "1 0000100", 4),
            (7, "1 0010100", 20),
            (5, "100000", 0),
            (5, "100010", 2),
            (4, "10001", 1),
            (0, "1", 0),
            (0, "010", 1),
            (0, "011", 2),
            (0, "00110", 5),
        ];
        for &(k, code, v) in cases {
            let data = bits(code);
            let mut r = BitReader::new(&data);
            assert_eq!(r.read_ue(k).unwrap(), v, "ue({k}) {code}");
            let len = code.chars().filter(|c| !c.is_whitespace()).count() as u64;
            assert_eq!(r.bit_offset(), len);
        }
    }

    #[test]
    fn ie_mapping() {
        // ue(0) codes 0,1,2,3,4 -> 0,1,-1,2,-2
        let data = bits("1 010 011 00100 00101");
        let mut r = BitReader::new(&data);
        let got: Vec<i64> = (0..5).map(|_| r.read_ie(0).unwrap()).collect();
        assert_eq!(got, [0, 1, -1, 2, -2]);
    }

    #[test]
    fn exp_golomb_is_bounded() {
        let zeros = [0u8; 16];
        let mut r = BitReader::new(&zeros);
        let e = r.read_ue(0).unwrap_err();
        assert!(matches!(e, Error::ExpGolombOverflow { .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        // 64 zeros, a one and a 64-bit suffix of 1: value 2^64 overflows u64
        let mut code = vec![0u8; 8];
        code.push(0x80);
        code.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80]);
        let mut r = BitReader::new(&code);
        assert!(matches!(r.read_ue(0), Err(Error::ExpGolombOverflow { .. })));
        // ...but the same code is i64::MIN as ie(0)
        let mut r = BitReader::new(&code);
        assert_eq!(r.read_ie(0).unwrap(), i64::MIN);
        // truncated suffix
        let mut r = BitReader::new(&[0x01]);
        assert!(matches!(r.read_ue(3), Err(Error::UnexpectedEnd { .. })));
    }

    #[test]
    fn flt32_little_endian() {
        // 1.0f32 = 0x3f800000, stored LSB byte first
        let mut r = BitReader::new(&[0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(r.read_flt32().unwrap(), 1.0);
        // unaligned
        let mut r = BitReader::new(&[0x80, 0x00, 0x40, 0x1f, 0x80]);
        assert!(r.read_flag().unwrap());
        assert_eq!(r.read_flt32().unwrap(), 1.0);
    }

    #[test]
    fn strings() {
        let mut r = BitReader::new(b"ab\0\0x");
        assert_eq!(r.read_st().unwrap(), "ab");
        assert_eq!(r.read_st().unwrap(), "");
        assert!(matches!(
            r.read_st(),
            Err(Error::UnterminatedString { bit_offset: 32, .. })
        ));
        let mut r = BitReader::new(b"\xff\0");
        assert!(matches!(r.read_st(), Err(Error::InvalidUtf8 { .. })));
        let mut r = BitReader::new(b"a\0");
        r.read_flag().unwrap();
        assert!(matches!(r.read_st(), Err(Error::NotByteAligned { .. })));
    }

    #[test]
    fn byte_alignment_skips_to_boundary() {
        let mut r = BitReader::new(&[0b0110_0000, 0x80, 0x12]);
        r.read_u(2).unwrap();
        r.byte_alignment().unwrap();
        assert_eq!(r.bit_offset(), 8);
        // aligned already: consumes a whole byte (the writer's 0x80)
        r.byte_alignment().unwrap();
        assert_eq!(r.bit_offset(), 16);
        assert_eq!(r.remaining_bytes().unwrap(), &[0x12]);
        r.read_u(8).unwrap();
        assert!(r.byte_alignment().is_err());
    }

    #[test]
    fn ensure_fits_rejects_huge_counts() {
        let r = BitReader::new(&[0; 4]);
        assert!(r.ensure_fits(4, 8, "x").is_ok());
        assert!(matches!(
            r.ensure_fits(5, 8, "x"),
            Err(Error::TooManyItems { count: 5, .. })
        ));
        assert!(r.ensure_fits(u128::MAX, 8, "x").is_err());
    }
}
