//! An arithmetic codeword as a plain bit string, for joining codewords coded apart.
//!
//! What an [`crate::ArithEncoder`] has written is a number: the bytes it emitted, then the bits
//! of its `low` register. Coding is linear in `low` (each bin adds to it and shifts it; nothing
//! reads it back), so a stretch coded by an encoder of its own from `low = 0` adds its number,
//! placed at the bit offset where it starts, to what the whole stream would hold. This module
//! keeps such numbers as big-endian bit strings (bit 0 is the most significant) and adds them.
//!
//! [`read_bits`] reads such a string at any bit offset; the encoder's and decoder's entry points
//! use it on finished payloads too.

/// The `width` bits (`width ≤ 32`) of the big-endian bit string `bytes` from stream bit `first`
/// on, as a number; bits past the end read as zeros.
pub(crate) fn read_bits(bytes: &[u8], first: u64, width: u32) -> u32 {
    debug_assert!(width <= 32);
    let mut v = 0u64;
    let byte0 = first / 8;
    for k in 0..5u64 {
        let b = usize::try_from(byte0.saturating_add(k))
            .ok()
            .and_then(|i| bytes.get(i))
            .copied()
            .unwrap_or(0);
        v = (v << 8) | u64::from(b);
    }
    let skip = (first % 8) as u32;
    ((v << (24 + skip)) >> (64 - width)) as u32
}

/// A big-endian bit string: stream bit `i` is bit `7 − i % 8` of byte `i / 8`.
#[cfg(feature = "rayon")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamBits {
    bytes: Vec<u8>,
}

#[cfg(feature = "rayon")]
impl StreamBits {
    /// `bits` zero bits (rounded up to whole bytes).
    #[cfg(test)]
    pub fn zeros(bits: u64) -> Self {
        Self {
            bytes: vec![0; byte_len(bits)],
        }
    }

    /// The bit string held in `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// The bytes, the last one padded with zero bits.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Grows the string with zero bits to hold at least `bits` bits.
    pub fn extend_to(&mut self, bits: u64) {
        let len = byte_len(bits);
        if self.bytes.len() < len {
            self.bytes.resize(len, 0);
        }
    }

    /// Adds the `width`-bit number `value` (`width ≤ 40`) whose least significant bit is stream
    /// bit `last`, carrying into the bits before it.
    pub fn add_value(&mut self, value: u64, width: u32, last: u64) {
        debug_assert!(width <= 40 && value >> width <= 1);
        // Align to a byte boundary: the value's least significant bit moves to bit 0 of a byte.
        let pad = 7 - (last % 8) as u32;
        let mut v = u128::from(value) << pad;
        let mut at = usize::try_from(last / 8).unwrap_or(usize::MAX);
        while v != 0 {
            let Some(byte) = self.bytes.get_mut(at) else {
                debug_assert!(false, "a carry ran past the string");
                return;
            };
            let sum = u128::from(*byte) + (v & 0xFF);
            *byte = sum as u8;
            v = (v >> 8) + (sum >> 8);
            if at == 0 {
                debug_assert!(v == 0, "a carry ran past the first byte");
                return;
            }
            at -= 1;
        }
    }

    /// Adds `other` placed so that its bit 0 is stream bit `at`, carrying into the bits before.
    /// `other` must fit in this string.
    pub fn add_at(&mut self, other: &StreamBits, at: u64) {
        let shift = (at % 8) as u32;
        let first = usize::try_from(at / 8).unwrap_or(usize::MAX);
        // `other` shifted right by `shift` bits spans one byte more than it has.
        let span = other.bytes.len() + usize::from(shift > 0);
        let shifted = |j: usize| -> u32 {
            let hi = other.bytes.get(j).copied();
            let lo = j.checked_sub(1).and_then(|j| other.bytes.get(j)).copied();
            let hi = u32::from(hi.unwrap_or(0)) >> shift;
            let lo = if shift == 0 {
                0
            } else {
                (u32::from(lo.unwrap_or(0)) << (8 - shift)) & 0xFF
            };
            hi | lo
        };
        let mut carry = 0u32;
        for j in (0..span).rev() {
            let Some(byte) = self.bytes.get_mut(first + j) else {
                debug_assert!(shifted(j) == 0, "bits past the string's end");
                continue;
            };
            let sum = u32::from(*byte) + shifted(j) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let mut at = first;
        while carry != 0 && at > 0 {
            at -= 1;
            let sum = u32::from(self.bytes[at]) + carry;
            self.bytes[at] = sum as u8;
            carry = sum >> 8;
        }
        debug_assert!(carry == 0, "a carry ran past the first byte");
    }

    /// The `width` bits (`width ≤ 32`) from stream bit `first` on ([`read_bits`]).
    pub fn read(&self, first: u64, width: u32) -> u32 {
        read_bits(&self.bytes, first, width)
    }
}

#[cfg(feature = "rayon")]
fn byte_len(bits: u64) -> usize {
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

#[cfg(all(test, feature = "rayon"))]
mod tests {
    use super::*;

    /// The string as a number, for strings of at most 128 bits.
    fn value(s: &StreamBits) -> u128 {
        s.bytes.iter().fold(0, |v, &b| (v << 8) | u128::from(b))
    }

    #[test]
    fn adds_shifted_strings_like_numbers() {
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Below 2^63 and 2^62 once placed: the sum fits the 64 bits.
            let base = StreamBits::from_bytes((x & 0x7FFF_FFFF_FFFF).to_be_bytes()[2..].to_vec());
            let other = StreamBits::from_bytes(((x >> 40) as u16).to_be_bytes().to_vec());
            let at = 2 + (x >> 20) % 32;
            let mut sum = StreamBits::zeros(64);
            sum.add_at(&base, 0);
            sum.add_at(&other, at);
            let expected = (value(&base) << 16) + (value(&other) << (48 - at));
            assert_eq!(value(&sum), expected, "at {at}");
        }
    }

    #[test]
    fn adds_values_and_reads_windows() {
        let mut s = StreamBits::zeros(48);
        s.add_value(0x1FF, 9, 20);
        assert_eq!(value(&s), 0x1FF << (47 - 20));
        s.add_value(1, 1, 20);
        assert_eq!(value(&s), 0x200 << (47 - 20));
        assert_eq!(s.read(12, 8), (value(&s) >> (48 - 20)) as u32 & 0xFF);
        assert_eq!(s.read(44, 8), (value(&s) as u32 & 0xF) << 4);
    }
}
