//! Block-row entry points (deepcabac.md §1.7, §4.4).

use crate::stream_bits::read_bits;

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

/// A block-row restart as the encoder sees it: the decoder's offset register there is the
/// codeword's next bits minus the encoder's `low` (the final codeword lies within 256 of `low`
/// once the range is reset), so its `val8` is known once the payload is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RestartMark {
    /// Absolute bit offset (shifts of the offset register since the start).
    pub bit_offset: u64,
    /// The low 8 bits of the encoder's `low`.
    pub low8: u8,
    pub dq_state: u8,
}

impl RestartMark {
    /// The decoder's entry point at this restart, in a finished `payload`: `val8` is the 8
    /// codeword bits `bit_offset + 1 ..= bit_offset + 8` (the integer part of the register, less
    /// its top bit) minus `low8`, modulo 256. Bits past the payload read as zeros, as the
    /// decoder's do.
    fn resolve(&self, payload: &[u8]) -> EntryPoint {
        let bits = read_bits(payload, self.bit_offset.saturating_add(1), 8);
        EntryPoint {
            bit_offset: self.bit_offset,
            val8: (bits as u8).wrapping_sub(self.low8),
            dq_state: self.dq_state,
        }
    }
}

/// The entry points of one tensor, recorded while [`crate::encode_layer_marking_entry_points`]
/// codes it: what the reference's encoder gets by decoding its own payload
/// ([`crate::decode_layer_and_create_entry_points`]), without the decode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMarks {
    /// Bit offset where block row 0 starts (the first entry point's delta is taken from it).
    pub(crate) start: u64,
    pub(crate) marks: Vec<RestartMark>,
    /// See [`EntryMarks::reference_decoder_desyncs`].
    pub(crate) desyncs: bool,
}

impl EntryMarks {
    /// Packed entry points (`(delta_bit_offset << 11) | (val8 << 3) | dq_state`), as
    /// [`crate::decode_layer_and_create_entry_points`] returns them, once `payload` (the NDU's
    /// whole finished CABAC payload) is known.
    pub fn resolve(&self, payload: &[u8]) -> Vec<u64> {
        let mut last = self.start;
        self.marks
            .iter()
            .map(|m| {
                let mut ep = m.resolve(payload);
                ep.bit_offset = m.bit_offset.wrapping_sub(last);
                last = m.bit_offset;
                ep.pack()
            })
            .collect()
    }

    /// Reference quirk (see [`crate::decode_layer_and_create_entry_points`]): the tensor is
    /// block-scanned with a single block row, which the reference's entry-point decoder decodes
    /// out of sync. It then has no entry points of its own, but the entry points of the tensors
    /// after it in the same NDU are whatever that desynchronised decode finds; only a decode
    /// reproduces them.
    pub fn reference_decoder_desyncs(&self) -> bool {
        self.desyncs
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
