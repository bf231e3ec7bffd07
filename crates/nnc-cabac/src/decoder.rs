//! Binary arithmetic decoder (deepcabac.md §1.6–1.8).

use crate::context::ContextModel;
use crate::entry_point::EntryPoint;
use crate::Error;

/// Arithmetic decoding engine over one NDU payload.
///
/// Reads past the end of `payload` yield zero bytes and are counted ([`ArithDecoder::over_read`]),
/// so garbage input can never make it panic; the caller rejects a stream whose consumed length
/// ([`ArithDecoder::finish`]) differs from the payload length.
#[derive(Clone, Debug)]
pub struct ArithDecoder<'a> {
    data: &'a [u8],
    /// Index of the next byte to read; equals the reference's `bytesRead`.
    pos: usize,
    range: u32,
    /// Offset register with 7 fraction bits below `range`.
    value: u32,
    bits_needed: i32,
    /// The first two bytes cannot start a valid codeword (value outside the initial range).
    bad_start: bool,
}

impl<'a> ArithDecoder<'a> {
    /// Start decoding `payload`: reads 2 bytes.
    pub fn new(payload: &'a [u8]) -> Self {
        let mut d = Self {
            data: payload,
            pos: 0,
            range: 510,
            value: 0,
            bits_needed: -8,
            bad_start: false,
        };
        let b0 = u32::from(d.next_byte());
        let b1 = u32::from(d.next_byte());
        d.value = (b0 << 8) | b1;
        d.bad_start = d.value >= 510 << 7;
        d
    }

    #[inline(always)]
    fn next_byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Decode one context-coded bin and adapt `ctx`.
    #[inline(always)]
    pub fn decode_bin(&mut self, ctx: &mut ContextModel) -> bool {
        let rlps = ctx.rlps(self.range);
        let rmps = self.range.wrapping_sub(rlps);
        let scaled = rmps << 7;
        let bin;
        if self.value >= scaled {
            bin = !ctx.mps();
            self.value -= scaled;
            self.range = rlps;
        } else {
            bin = ctx.mps();
            self.range = rmps;
        }
        let n = self.range.leading_zeros().saturating_sub(23);
        self.range <<= n;
        self.value <<= n;
        self.bits_needed += n as i32;
        if self.bits_needed >= 0 {
            let b = u32::from(self.next_byte());
            self.value = self.value.wrapping_add(b << self.bits_needed);
            self.bits_needed -= 8;
        }
        ctx.update(bin);
        bin
    }

    /// Decode one bypass (equiprobable) bin.
    #[inline(always)]
    pub fn decode_bypass(&mut self) -> bool {
        self.value <<= 1;
        self.bits_needed += 1;
        if self.bits_needed >= 0 {
            let b = u32::from(self.next_byte());
            self.value = self.value.wrapping_add(b);
            self.bits_needed = -8;
        }
        let scaled = self.range << 7;
        if self.value >= scaled {
            self.value -= scaled;
            true
        } else {
            false
        }
    }

    /// Decode `n` bypass bins (n <= 32), MSB first.
    #[inline]
    pub fn decode_bypass_bins(&mut self, n: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            v = (v << 1) | u32::from(self.decode_bypass());
        }
        v
    }

    /// `uae_v(n)`: n bypass bins, MSB first (n <= 32; larger n is treated as 32).
    pub fn uae_v(&mut self, n: u32) -> u32 {
        self.decode_bypass_bins(n)
    }

    /// `iae_v(n)`: n bypass bins, sign-extended from bit n-1 (n = 0 gives 0).
    pub fn iae_v(&mut self, n: u32) -> i32 {
        let n = n.min(32);
        let v = self.decode_bypass_bins(n);
        if n == 0 {
            0
        } else {
            ((v << (32 - n)) as i32) >> (32 - n)
        }
    }

    /// Decode the terminating bin.
    pub fn decode_terminate(&mut self) -> bool {
        self.range = self.range.wrapping_sub(2);
        let scaled = self.range << 7;
        if self.value >= scaled {
            // Nothing may follow a terminating 1; keep the range valid so misuse cannot underflow.
            self.range = self.range.max(256);
            return true;
        }
        if self.range < 256 {
            self.range <<= 1;
            self.value <<= 1;
            self.bits_needed += 1;
            if self.bits_needed == 0 {
                let b = u32::from(self.next_byte());
                self.value = self.value.wrapping_add(b);
                self.bits_needed = -8;
            }
        }
        false
    }

    /// Decode the terminating bin that ends the NDU and return the number of bytes consumed.
    ///
    /// Errors if the bin decodes as 0 (the reference throws) or if the first two bytes could not
    /// start a valid codeword. A bad stop-bit/alignment pattern is accepted, as in the reference
    /// (it only warns); see [`ArithDecoder::stop_pattern_ok`]. The count includes bytes read past
    /// the end of the payload ([`ArithDecoder::over_read`]), so compare it with the payload length.
    pub fn finish(&mut self) -> Result<usize, Error> {
        if !self.decode_terminate() {
            return Err(Error::MissingTerminatingBin);
        }
        if self.bad_start {
            return Err(Error::InvalidCodewordStart);
        }
        Ok(self.pos)
    }

    /// After [`ArithDecoder::finish`]: whether the last byte read carries the stop bit followed by zero
    /// padding, as a conforming encoder writes it.
    pub fn stop_pattern_ok(&self) -> bool {
        let last = self
            .pos
            .checked_sub(1)
            .and_then(|i| self.data.get(i))
            .copied()
            .unwrap_or(0);
        let shift = (8 + self.bits_needed).clamp(0, 31) as u32;
        ((u32::from(last) << shift) & 0xFF) == 0x80
    }

    /// Bytes requested beyond the payload end so far.
    pub fn over_read(&self) -> usize {
        self.pos.saturating_sub(self.data.len())
    }

    /// Bytes read so far (the reference's `bytesRead`), including any over-read.
    pub fn bytes_read(&self) -> usize {
        self.pos
    }

    /// Set range = 256 without touching the offset register (block-row restart point, §1.7).
    #[inline]
    pub fn reset_range(&mut self) {
        self.range = 256;
    }

    /// Total number of left shifts of the offset register since the start: `8·bytesRead − 8 + bitsNeeded`.
    pub fn bit_offset(&self) -> u64 {
        (self.pos as u64)
            .wrapping_mul(8)
            .wrapping_add(self.bits_needed as u64)
            .wrapping_sub(8)
    }

    /// Capture the restart state at the current position (call right after [`ArithDecoder::reset_range`]).
    pub fn capture_entry_point(&self, dq_state: u8) -> EntryPoint {
        EntryPoint {
            bit_offset: self.bit_offset(),
            val8: ((self.value >> 7) & 255) as u8,
            dq_state: dq_state & 7,
        }
    }

    /// Restore the engine at an absolute entry point (reference `setEntryPoint`): range = 256 and the
    /// offset register rebuilt from `val8` plus the stream bits below it.
    pub fn seek_entry_point(&mut self, ep: &EntryPoint) {
        let total = ep.bit_offset.saturating_add(9);
        let bytes_read = usize::try_from(total.div_ceil(8)).unwrap_or(usize::MAX);
        let bits_needed = ep
            .bit_offset
            .wrapping_add(8)
            .wrapping_sub((bytes_read as u64).wrapping_mul(8)) as i64;
        self.range = 256;
        self.pos = bytes_read;
        self.bits_needed = bits_needed.clamp(-8, -1) as i32;
        let prev = self
            .data
            .get(bytes_read.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let low_bits = (u32::from(prev) << (8 + self.bits_needed)) & 127;
        self.value = (u32::from(ep.val8) << 7) | low_bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kat_a_bypass_decode() {
        let bytes = [0xfc, 0x8b, 0xd6, 0x98];
        let mut d = ArithDecoder::new(&bytes);
        assert_eq!(d.iae_v(8), -3);
        assert_eq!(d.uae_v(5), 17);
        assert_eq!(d.iae_v(7), 21);
        assert_eq!(d.finish(), Ok(4));
        assert!(d.stop_pattern_ok());
        assert_eq!(d.over_read(), 0);
    }

    #[test]
    fn empty_stream() {
        let mut d = ArithDecoder::new(&[0xfe, 0x80]);
        assert_eq!(d.finish(), Ok(2));
    }

    #[test]
    fn reads_past_end_are_counted() {
        let mut d = ArithDecoder::new(&[]);
        let _ = d.uae_v(32);
        assert!(d.over_read() >= 2);
        assert!(d.finish().is_err() || d.over_read() > 0);
    }

    #[test]
    fn bad_start_rejected() {
        let mut d = ArithDecoder::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(d.finish().is_err());
    }
}
