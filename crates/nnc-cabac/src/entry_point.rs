//! Block-row entry points (deepcabac.md §1.7, §4.4).

/// Restart state of the decoder at the start of a block row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryPoint {
    /// Bit offset: absolute (number of shifts of the decoder's offset register since the start),
    /// or relative to the previous entry point when packed.
    pub bit_offset: u64,
    /// `(value >> 7) & 255` right after the range reset.
    pub val8: u8,
    /// Dependent-quantization state (0..=7).
    pub dq_state: u8,
}

impl EntryPoint {
    /// Packed form `(bit_offset << 11) | (val8 << 3) | dq_state`.
    pub fn pack(&self) -> u64 {
        (self.bit_offset << 11) | (u64::from(self.val8) << 3) | u64::from(self.dq_state & 7)
    }

    /// Inverse of [`EntryPoint::pack`].
    pub fn unpack(packed: u64) -> Self {
        Self {
            bit_offset: packed >> 11,
            val8: ((packed >> 3) & 255) as u8,
            dq_state: (packed & 7) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kat_d_packing() {
        let ep1 = EntryPoint {
            bit_offset: 203,
            val8: 127,
            dq_state: 1,
        };
        let ep2 = EntryPoint {
            bit_offset: 218,
            val8: 236,
            dq_state: 4,
        };
        assert_eq!(ep1.pack(), 416_761);
        assert_eq!(ep2.pack(), 448_356);
        assert_eq!(EntryPoint::unpack(448_356), ep2);
    }
}
