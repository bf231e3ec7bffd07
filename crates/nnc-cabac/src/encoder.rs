//! Binary arithmetic encoder (deepcabac.md §1.1–1.4, §1.8).

use crate::context::ContextModel;
use crate::entry_point::RestartMark;
#[cfg(feature = "rayon")]
use crate::stream_bits::StreamBits;

/// Arithmetic encoding engine producing one NDU payload.
#[derive(Clone, Debug)]
pub struct ArithEncoder {
    low: u32,
    range: u32,
    /// Free bit positions in `low` before a byte must be emitted.
    bits_left: i32,
    /// The byte output, in an allocation of its own: [`write_out`] then reaches nothing of
    /// the engine but this, so a level loop can keep `low`, `range` and `bits_left` in
    /// registers across its calls instead of storing and reloading them on every bin.
    tail: Box<Tail>,
}

/// Bytes emitted so far and those still outstanding.
#[derive(Clone, Debug)]
struct Tail {
    /// Outstanding bytes: the first one plus a run of 0xFF that a carry may still change.
    num_buffered: u32,
    buffered_byte: u8,
    out: Vec<u8>,
}

impl Default for ArithEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ArithEncoder {
    /// Start a new codeword.
    pub fn new() -> Self {
        Self {
            low: 0,
            range: 510,
            bits_left: 23,
            tail: Box::new(Tail {
                num_buffered: 0,
                buffered_byte: 0xFF,
                out: Vec::new(),
            }),
        }
    }

    /// Number of bytes already emitted (the final length is known only after [`ArithEncoder::finish`]).
    pub fn bytes_written(&self) -> usize {
        self.tail.out.len()
    }

    /// Left shifts of the offset register since the start: the decoder's bit offset at the same
    /// point of the stream (23 free bits at the start, 8 more for every byte taken out of `low`).
    pub fn bit_offset(&self) -> u64 {
        let taken = self.tail.out.len() as u64 + u64::from(self.tail.num_buffered);
        (8 * taken + 23).wrapping_sub(self.bits_left as u64)
    }

    /// Where a block row restarts (call right after [`ArithEncoder::reset_range`]), for its entry
    /// point once the payload is finished ([`crate::EntryMarks`]).
    pub(crate) fn restart_mark(&self, dq_state: u8) -> RestartMark {
        RestartMark {
            bit_offset: self.bit_offset(),
            low8: self.low as u8,
            dq_state: dq_state & 7,
        }
    }

    /// Everything written so far as one number: the bytes emitted, then `low`, as stream bits
    /// `0 ..= bit_offset() + 8` ([`StreamBits`]).
    #[cfg(feature = "rayon")]
    pub(crate) fn exact_bits(&self) -> StreamBits {
        let shifts = self.bit_offset();
        let mut bits = StreamBits::from_bytes(self.tail.out.clone());
        bits.extend_to(shifts + 9);
        let taken = self.tail.out.len() as u64;
        if self.tail.num_buffered > 0 {
            bits.add_value(u64::from(self.tail.buffered_byte), 8, 8 * taken + 7);
            for k in 1..u64::from(self.tail.num_buffered) {
                bits.add_value(0xFF, 8, 8 * (taken + k) + 7);
            }
        }
        // `low` may hold a carry into the last byte above its window.
        let width = (32 - self.bits_left) as u32 + 1;
        bits.add_value(u64::from(self.low), width, shifts + 8);
        bits
    }

    /// The state a serial encoder has after `shifts` shifts in total and range `range`, when
    /// what it has written is `bits` ([`ArithEncoder::exact_bits`] of the whole stream so far).
    /// After every call, an encoder has emitted as many bytes as leave 12 to 23 free bits, so
    /// the shifts alone fix how many bytes were taken out of `low`; bytes that a carry could
    /// still change (the last one and the 0xFF bytes after it) are held back as `write_out`
    /// holds them.
    #[cfg(feature = "rayon")]
    pub(crate) fn load_exact_bits(&mut self, bits: &StreamBits, shifts: u64, range: u32) {
        let taken = if shifts < 12 {
            0
        } else {
            (shifts - 11).div_ceil(8)
        };
        let bits_left = 23 - (shifts - 8 * taken) as i32;
        let width = (32 - bits_left) as u32;
        let bytes = &bits.bytes()[..taken as usize];
        let ff_run = bytes.iter().rev().take_while(|&&b| b == 0xFF).count();
        let tail = &mut *self.tail;
        tail.out.clear();
        if ff_run == bytes.len() {
            tail.buffered_byte = 0xFF;
            tail.num_buffered = ff_run as u32;
        } else {
            let held = bytes.len() - ff_run - 1;
            tail.out.extend_from_slice(&bytes[..held]);
            tail.buffered_byte = bytes[held];
            tail.num_buffered = ff_run as u32 + 1;
        }
        self.low = bits.read(8 * taken, width);
        self.bits_left = bits_left;
        self.range = range;
    }

    /// The current range (9 bits).
    #[cfg(any(feature = "rayon", test))]
    pub(crate) fn range(&self) -> u32 {
        self.range
    }

    /// Encode one context-coded bin and adapt `ctx`.
    #[inline(always)]
    pub fn encode_bin(&mut self, bin: bool, ctx: &mut ContextModel) {
        self.with_local(|e| e.encode_bin(bin, ctx));
    }

    /// Encode one bypass bin.
    #[inline(always)]
    pub fn encode_bypass(&mut self, bin: bool) {
        self.with_local(|e| e.encode_bypass_bins(1, u32::from(bin)));
    }

    /// Encode the low `n` bits of `v` (n <= 32) as bypass bins, MSB first.
    #[inline]
    pub fn encode_bypass_bins(&mut self, n: u32, v: u32) {
        self.with_local(|e| e.encode_bypass_bins(n, v));
    }

    /// Runs `f` on a copy of the engine's registers, then stores them back. A level loop that
    /// reaches the engine through a reference may load and store them at every bin (the
    /// per-position loop did: 3–5 % of an update's encode); a local copy whose address goes
    /// nowhere stays in registers.
    #[inline(always)]
    pub(crate) fn with_local<R>(&mut self, f: impl FnOnce(&mut LocalEncoder<'_>) -> R) -> R {
        let mut local = LocalEncoder {
            low: self.low,
            range: self.range,
            bits_left: self.bits_left,
            tail: &mut self.tail,
        };
        let r = f(&mut local);
        (self.low, self.range, self.bits_left) = (local.low, local.range, local.bits_left);
        r
    }

    /// `uae_v(n, v)`: n bypass bins, MSB first (n <= 32). Bits of `v` above `n` are ignored
    /// (the reference rejects such values).
    pub fn uae_v(&mut self, n: u32, v: u32) {
        self.encode_bypass_bins(n, v);
    }

    /// `iae_v(n, v)`: the low n bits of `v` in two's complement (n <= 32).
    pub fn iae_v(&mut self, n: u32, v: i32) {
        self.encode_bypass_bins(n, v as u32);
    }

    /// Set range = 256 without touching `low` (block-row restart point, §1.7).
    #[inline]
    pub fn reset_range(&mut self) {
        self.range = 256;
    }

    /// Encode the terminating bin.
    pub fn encode_terminate(&mut self, bin: bool) {
        self.range -= 2;
        if bin {
            self.low = self.low.wrapping_add(self.range);
            self.low <<= 7;
            self.range = 256;
            self.bits_left -= 7;
        } else if self.range >= 256 {
            return;
        } else {
            self.low <<= 1;
            self.range <<= 1;
            self.bits_left -= 1;
        }
        self.with_local(|e| e.write_out_if_due());
    }

    /// Terminating bin 1, then flush with stop bit and byte alignment; returns the payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.encode_terminate(true);
        let top_shift = 32 - self.bits_left;
        let tail = &mut *self.tail;
        if (self.low >> top_shift) != 0 {
            tail.out.push(tail.buffered_byte.wrapping_add(1));
            for _ in 1..tail.num_buffered {
                tail.out.push(0x00);
            }
            self.low = self.low.wrapping_sub(1 << top_shift);
        } else {
            if tail.num_buffered > 0 {
                tail.out.push(tail.buffered_byte);
            }
            for _ in 1..tail.num_buffered {
                tail.out.push(0xFF);
            }
        }
        // Remaining payload bits plus the stop bit, left-aligned and padded with zeros.
        let nbits = (24 - self.bits_left + 1) as u32;
        let last_bits = ((self.low >> 8) << 1) | 1;
        let aligned = last_bits << (32 - nbits);
        let mut i = 0;
        while i < nbits {
            self.tail.out.push((aligned >> (24 - i)) as u8);
            i += 8;
        }
        self.tail.out
    }
}

/// An [`ArithEncoder`]'s registers in a level loop's locals, its byte output borrowed
/// ([`ArithEncoder::with_local`]). The bin coding itself lives here; the encoder's own methods
/// run it on a copy of their registers.
pub(crate) struct LocalEncoder<'t> {
    low: u32,
    range: u32,
    /// Free bit positions in `low` before a byte must be emitted.
    bits_left: i32,
    tail: &'t mut Tail,
}

impl LocalEncoder<'_> {
    /// [`ArithEncoder::encode_bin`].
    #[inline(always)]
    pub fn encode_bin(&mut self, bin: bool, ctx: &mut ContextModel) {
        let step = RangeStep::new(self.range, bin, ctx);
        self.range = step.range;
        self.low = self.low.wrapping_add(step.low_add) << step.shifts;
        self.bits_left -= step.shifts as i32;
        self.write_out_if_due();
        ctx.update(bin);
    }

    /// [`ArithEncoder::encode_bypass_bins`].
    #[inline]
    pub fn encode_bypass_bins(&mut self, n: u32, v: u32) {
        let mut rem = n.min(32);
        // Chunks of up to 8 bins are identical to 8 single bins (the reference's fast path).
        while rem > 0 {
            let k = rem.min(8);
            rem -= k;
            let chunk = (v >> rem) & ((1u32 << k) - 1);
            self.low = (self.low << k).wrapping_add(self.range * chunk);
            self.bits_left -= k as i32;
            self.write_out_if_due();
        }
    }

    /// Emit a byte once fewer than 12 bits are free. The call passes only the byte output and
    /// the two registers, so the engine state stays in registers around it.
    #[inline(always)]
    fn write_out_if_due(&mut self) {
        if self.bits_left < 12 {
            (self.low, self.bits_left) = write_out(self.tail, self.low, self.bits_left);
        }
    }
}

/// One context-coded bin's step of the range (§1.2), before the context adapts.
///
/// Branch-free MPS/LPS handling, as in the decoder: the LPS renormalisation comes from the
/// packed table and the MPS path needs at most one shift.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RangeStep {
    /// The renormalised range.
    pub range: u32,
    /// Renormalising shifts.
    pub shifts: u32,
    /// Added to the offset register before the shifts: rMPS for an LPS, 0 for an MPS.
    pub low_add: u32,
}

impl RangeStep {
    #[inline(always)]
    pub fn new(range: u32, bin: bool, ctx: &ContextModel) -> Self {
        let e = ctx.rlps_packed(range);
        let rmps = range - (e & 0xFF);
        let lps = bin != ctx.mps();
        let mask = 0u32.wrapping_sub(u32::from(lps));
        let mps_n = u32::from(rmps < 256);
        let r_mps = rmps << mps_n;
        Self {
            range: r_mps ^ ((r_mps ^ (e >> 16)) & mask),
            shifts: mps_n ^ ((mps_n ^ ((e >> 8) & 0xF)) & mask),
            low_add: rmps & mask,
        }
    }
}

/// `write_out` (§1.3): emit the byte at the top of `low`, holding back 0xFF bytes a carry may
/// still change; returns the new `low` and `bits_left`.
#[inline(never)]
fn write_out(tail: &mut Tail, low: u32, bits_left: i32) -> (u32, i32) {
    let lead = low >> (24 - bits_left);
    let bits_left = bits_left + 8;
    let low = low & (u32::MAX >> bits_left);
    if lead == 0xFF {
        tail.num_buffered += 1;
    } else if tail.num_buffered > 0 {
        let carry = lead >> 8;
        tail.out.push(tail.buffered_byte.wrapping_add(carry as u8));
        tail.buffered_byte = lead as u8;
        let fill = 0xFFu8.wrapping_add(carry as u8);
        for _ in 1..tail.num_buffered {
            tail.out.push(fill);
        }
        tail.num_buffered = 1;
    } else {
        tail.num_buffered = 1;
        tail.buffered_byte = lead as u8;
    }
    (low, bits_left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn kat_a_bypass_codes() {
        let mut e = ArithEncoder::new();
        e.iae_v(8, -3);
        e.uae_v(5, 17);
        e.iae_v(7, 21);
        assert_eq!(hex(&e.finish()), "fc8bd698");
    }

    #[test]
    fn kat_a_empty_stream() {
        assert_eq!(hex(&ArithEncoder::new().finish()), "fe80");
    }

    #[test]
    fn chunked_bypass_equals_single_bins() {
        let mut a = ArithEncoder::new();
        let mut b = ArithEncoder::new();
        let mut ctx_a = ContextModel::new(0);
        let mut ctx_b = ContextModel::new(0);
        for i in 0..200u32 {
            a.encode_bin(i % 3 == 0, &mut ctx_a);
            b.encode_bin(i % 3 == 0, &mut ctx_b);
            let v = i.wrapping_mul(2_654_435_761);
            let n = i % 33;
            a.encode_bypass_bins(n, v);
            for k in (0..n).rev() {
                b.encode_bypass((v >> k) & 1 == 1);
            }
        }
        assert_eq!(a.finish(), b.finish());
    }
}
