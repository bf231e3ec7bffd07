//! MSB-first bit writer, the mirror of [`BitReader`](crate::BitReader), plus the coded-length
//! helpers [`ue_bits`] / [`ie_bits`].
//!
//! The descriptor methods do not fail: values are the caller's responsibility. A value that
//! does not fit its descriptor is a programming error (debug assertion); in release builds it is
//! truncated to the descriptor's width. The unit writers validate every value before calling
//! these methods and report [`Error`](crate::Error)s instead.

/// Writes NNR descriptors into a growing byte buffer, most significant bit first. Untouched
/// padding bits are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitWriter {
    buf: Vec<u8>,
    bit_len: u64,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            bit_len: 0,
        }
    }

    /// Number of bits written so far.
    pub fn bit_len(&self) -> u64 {
        self.bit_len
    }

    /// Whether the position is on a byte boundary.
    pub fn is_byte_aligned(&self) -> bool {
        self.bit_len & 7 == 0
    }

    /// The bytes written so far (a partial last byte is zero padded).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The written bytes (a partial last byte is zero padded).
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// `u(n)`: the low `n ≤ 64` bits of `v`, MSB first (`n = 0` writes nothing).
    pub fn write_u(&mut self, n: u32, v: u64) {
        debug_assert!(n <= 64, "u(n) with n > 64");
        debug_assert!(n >= 64 || v >> n == 0, "value {v} does not fit u({n})");
        let mut remaining = n.min(64);
        while remaining > 0 {
            let used = (self.bit_len & 7) as u32;
            if used == 0 {
                self.buf.push(0);
            }
            let free = 8 - used;
            let take = free.min(remaining);
            let chunk = ((v >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << (free - take);
            }
            self.bit_len += u64::from(take);
            remaining -= take;
        }
    }

    /// `u(1)`.
    pub fn write_flag(&mut self, b: bool) {
        self.write_u(1, u64::from(b));
    }

    /// `i(n)`: two's complement in `1 ≤ n ≤ 64` bits.
    pub fn write_i(&mut self, n: u32, v: i64) {
        debug_assert!((1..=64).contains(&n), "i(n) needs 1 <= n <= 64");
        debug_assert!(
            n >= 64 || (-(1i64 << (n - 1))..(1i64 << (n - 1))).contains(&v),
            "value {v} does not fit i({n})"
        );
        let masked = if n >= 64 {
            v as u64
        } else {
            (v as u64) & ((1u64 << n) - 1)
        };
        self.write_u(n, masked);
    }

    /// `ue(k)`: k-th order Exp-Golomb code of `v` (`k ≤ 63`).
    pub fn write_ue(&mut self, k: u32, v: u64) {
        self.write_ue_code(k, u128::from(v));
    }

    /// `ie(k)`: signed Exp-Golomb (`x ≤ 0 → −2x`, `x > 0 → 2x − 1`, then `ue(k)`).
    pub fn write_ie(&mut self, k: u32, v: i64) {
        self.write_ue_code(k, ie_code(v));
    }

    fn write_ue_code(&mut self, k: u32, code: u128) {
        debug_assert!(k <= 63, "Exp-Golomb order above 63");
        let (zeros, suffix_bits, suffix) = eg_split(k.min(63), code);
        // at most 64 zeros (code 2^64 with k = 0)
        self.write_u(zeros, 0);
        self.write_u(1, 1);
        self.write_u(suffix_bits, suffix);
    }

    /// `flt(32)`: the IEEE-754 bits of `f` as four `u(8)`, least significant byte first.
    ///
    /// Reference quirk: little-endian byte order inside an MSB-first bitstream.
    pub fn write_flt32(&mut self, f: f32) {
        for b in f.to_le_bytes() {
            self.write_u(8, u64::from(b));
        }
    }

    /// `st`: the UTF-8 bytes of `s` then a NUL byte. The syntax requires byte alignment here
    /// (the reader enforces it) and `s` must not contain NUL.
    pub fn write_st(&mut self, s: &str) {
        debug_assert!(self.is_byte_aligned(), "st must start byte-aligned");
        debug_assert!(!s.as_bytes().contains(&0), "st must not contain NUL");
        self.write_bytes(s.as_bytes());
        self.write_u(8, 0);
    }

    /// Raw bytes (byte-aligned fast path, bitwise otherwise).
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if self.is_byte_aligned() {
            self.buf.extend_from_slice(bytes);
            self.bit_len += (bytes.len() as u64) * 8;
        } else {
            for &b in bytes {
                self.write_u(8, u64::from(b));
            }
        }
    }

    /// `byte_alignment()`: one `1` bit, then `0` bits up to the next byte boundary.
    ///
    /// Reference quirk: the `1` bit is written even when already aligned, producing a whole
    /// `0x80` byte.
    pub fn byte_alignment(&mut self) {
        self.write_u(1, 1);
        self.bit_len = (self.bit_len + 7) & !7;
    }
}

/// The `ue` code number of a signed value (wide: `i64::MIN` maps to 2^64).
fn ie_code(v: i64) -> u128 {
    let v = i128::from(v);
    if v <= 0 {
        (-v as u128) << 1
    } else {
        ((v as u128) << 1) - 1
    }
}

/// Splits a `ue(k)` code number into (leading zeros, suffix width, suffix value).
fn eg_split(k: u32, code: u128) -> (u32, u32, u64) {
    let mut k = k;
    let mut x = code;
    let mut zeros = 0;
    while x >= (1u128 << k) {
        x -= 1u128 << k;
        k += 1;
        zeros += 1;
    }
    // x < 2^k and k ≤ 64 for every code of a u64 / i64 with k ≤ 63
    (zeros, k, x as u64)
}

/// Length in bits of `v` coded as `ue(k)`.
pub fn ue_bits(k: u32, v: u64) -> u32 {
    let (zeros, suffix_bits, _) = eg_split(k.min(63), u128::from(v));
    zeros + 1 + suffix_bits
}

/// Length in bits of `v` coded as `ie(k)`.
pub fn ie_bits(k: u32, v: i64) -> u32 {
    let (zeros, suffix_bits, _) = eg_split(k.min(63), ie_code(v));
    zeros + 1 + suffix_bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BitReader;
    use proptest::prelude::*;

    fn bitstring(w: &BitWriter) -> String {
        let mut s = String::new();
        for i in 0..w.bit_len() {
            let byte = w.as_bytes()[(i / 8) as usize];
            s.push(if byte & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            });
        }
        s
    }

    #[test]
    fn ue_spec_examples() {
        let cases: &[(u32, u64, &str)] = &[
            (1, 0, "10"),
            (1, 1, "11"),
            (1, 2, "0100"),
            (1, 3, "0101"),
            (1, 4, "0110"),
            (7, 4, "10000100"),
            (7, 20, "10010100"),
            (5, 0, "100000"),
            (5, 2, "100010"),
            (4, 1, "10001"),
            (0, 0, "1"),
            (0, 1, "010"),
            (0, 2, "011"),
            (0, 5, "00110"),
        ];
        for &(k, v, code) in cases {
            let mut w = BitWriter::new();
            w.write_ue(k, v);
            assert_eq!(bitstring(&w), code, "ue({k}) of {v}");
            assert_eq!(ue_bits(k, v) as usize, code.len());
        }
    }

    #[test]
    fn ie_spec_examples() {
        let mut w = BitWriter::new();
        for v in [0, 1, -1, 2, -2] {
            w.write_ie(0, v);
        }
        assert_eq!(bitstring(&w), "1010011001000010 1".replace(' ', ""));
        assert_eq!(ie_bits(0, -2), 5);
        assert_eq!(ie_bits(2, 0), 3);
        assert_eq!(ie_bits(7, 3), 8);
    }

    #[test]
    fn descriptors() {
        let mut w = BitWriter::new();
        w.write_u(6, 5);
        w.write_flag(true);
        w.write_flag(false);
        assert_eq!(w.as_bytes(), &[0x16]);
        w.write_i(13, 0);
        w.write_u(3, 2);
        assert_eq!(w.as_bytes(), &[0x16, 0x00, 0x02]);
        let mut w = BitWriter::new();
        w.write_i(8, -1);
        w.write_i(64, i64::MIN);
        assert_eq!(w.as_bytes()[0], 0xff);
        assert_eq!(w.as_bytes()[1], 0x80);
        assert_eq!(w.bit_len(), 72);
    }

    #[test]
    fn byte_alignment_quirk() {
        let mut w = BitWriter::new();
        w.byte_alignment();
        assert_eq!(w.as_bytes(), &[0x80]);
        w.write_u(3, 0b101);
        w.byte_alignment();
        assert_eq!(w.as_bytes(), &[0x80, 0b1011_0000]);
        assert!(w.is_byte_aligned());
        w.write_u(7, 0);
        w.byte_alignment();
        assert_eq!(w.finish(), vec![0x80, 0b1011_0000, 0x01]);
    }

    #[test]
    fn flt32_and_st() {
        let mut w = BitWriter::new();
        w.write_flt32(1.0);
        w.write_st("ab");
        assert_eq!(w.as_bytes(), &[0, 0, 0x80, 0x3f, b'a', b'b', 0]);
        let mut w = BitWriter::new();
        w.write_flag(true);
        w.write_flt32(1.0);
        assert_eq!(w.as_bytes(), &[0x80, 0x00, 0x40, 0x1f, 0x80]);
    }

    #[test]
    fn extreme_exp_golomb_round_trip() {
        for k in [0, 1, 7, 11, 62, 63] {
            for v in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
                let mut w = BitWriter::new();
                w.write_ue(k, v);
                assert_eq!(w.bit_len(), u64::from(ue_bits(k, v)));
                let bytes = w.finish();
                assert_eq!(BitReader::new(&bytes).read_ue(k).unwrap(), v, "k={k} v={v}");
            }
            for v in [0, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1] {
                let mut w = BitWriter::new();
                w.write_ie(k, v);
                assert_eq!(w.bit_len(), u64::from(ie_bits(k, v)));
                let bytes = w.finish();
                assert_eq!(BitReader::new(&bytes).read_ie(k).unwrap(), v, "k={k} v={v}");
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Item {
        U(u32, u64),
        I(u32, i64),
        Ue(u32, u64),
        Ie(u32, i64),
        Flt(f32),
        Align,
        St(String),
    }

    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            (0u32..=64, any::<u64>())
                .prop_map(|(n, v)| Item::U(n, if n == 64 { v } else { v & ((1u64 << n) - 1) })),
            (1u32..=64, any::<i64>())
                .prop_map(|(n, v)| Item::I(n, if n == 64 { v } else { v >> (64 - n) })),
            (0u32..=16, any::<u64>(), 0u32..64).prop_map(|(k, v, s)| Item::Ue(k, v >> s)),
            (0u32..=16, any::<i64>(), 0u32..64).prop_map(|(k, v, s)| Item::Ie(k, v >> s)),
            any::<f32>().prop_map(Item::Flt),
            Just(Item::Align),
            "[a-z.0-9_]{0,12}".prop_map(Item::St),
        ]
    }

    proptest! {
        #[test]
        fn write_then_read_is_identity(items in proptest::collection::vec(item(), 0..40)) {
            let mut w = BitWriter::new();
            for it in &items {
                match it {
                    Item::U(n, v) => w.write_u(*n, *v),
                    Item::I(n, v) => w.write_i(*n, *v),
                    Item::Ue(k, v) => w.write_ue(*k, *v),
                    Item::Ie(k, v) => w.write_ie(*k, *v),
                    Item::Flt(f) => w.write_flt32(*f),
                    Item::Align => w.byte_alignment(),
                    Item::St(s) => { w.byte_alignment(); w.write_st(s) }
                }
            }
            let total = w.bit_len();
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for it in &items {
                match it {
                    Item::U(n, v) => prop_assert_eq!(r.read_u(*n).unwrap(), *v),
                    Item::I(n, v) => prop_assert_eq!(r.read_i(*n).unwrap(), *v),
                    Item::Ue(k, v) => prop_assert_eq!(r.read_ue(*k).unwrap(), *v),
                    Item::Ie(k, v) => prop_assert_eq!(r.read_ie(*k).unwrap(), *v),
                    Item::Flt(f) => prop_assert_eq!(r.read_flt32().unwrap().to_bits(), f.to_bits()),
                    Item::Align => r.byte_alignment().unwrap(),
                    Item::St(s) => { r.byte_alignment().unwrap(); prop_assert_eq!(&r.read_st().unwrap(), s) }
                }
            }
            prop_assert_eq!(r.bit_offset(), total);
        }

        #[test]
        fn coded_lengths_match(k in 0u32..=16, v in any::<u64>(), s in 0u32..64, sv in any::<i64>()) {
            let v = v >> s;
            let mut w = BitWriter::new();
            w.write_ue(k, v);
            prop_assert_eq!(w.bit_len(), u64::from(ue_bits(k, v)));
            let mut w = BitWriter::new();
            w.write_ie(k, sv);
            prop_assert_eq!(w.bit_len(), u64::from(ie_bits(k, sv)));
        }
    }
}
