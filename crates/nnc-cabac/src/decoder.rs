//! Binary arithmetic decoder (deepcabac.md §1.6–1.8).

use crate::context::{ContextLayout, ContextModel};
use crate::dq;
use crate::entry_point::EntryPoint;
use crate::stream_bits::read_bits;
use crate::Error;

#[cfg(all(target_arch = "x86_64", feature = "asm"))]
mod flags_x86_64;

/// Fetch bytes into the look-ahead until it holds more than `K − 8` bits. By value, so the hot
/// loop can keep the engine state in registers around this rarely taken call.
#[cold]
#[inline(never)]
fn refill_window(
    data: &[u8],
    mut pos: usize,
    mut window: u64,
    mut avail: u32,
) -> (usize, u64, u32) {
    if avail <= K - 32 {
        if let Some(bytes) = data.get(pos..pos + 4) {
            let word = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            return (pos + 4, window | (word << (K - 32 - avail)), avail + 32);
        }
    }
    while avail <= K - 8 {
        let b = u64::from(data.get(pos).copied().unwrap_or(0));
        pos += 1;
        window |= b << (K - 8 - avail);
        avail += 8;
    }
    (pos, window, avail)
}

/// `ceil(2^32 / r)` for every 9-bit range `r` (0 for 0): `x · RECIPROCAL[r] >> 32` is
/// `x / r` exactly for `x < 2^17`, since the error stays below `2^-15 < 1/r`.
const RECIPROCAL: [u32; 512] = {
    let mut t = [0u32; 512];
    let mut r = 1;
    while r < 512 {
        t[r] = ((1u64 << 32).div_ceil(r as u64)) as u32;
        r += 1;
    }
    t
};

/// Position of the reference's value register inside the 64-bit window: bits above `K` hold the
/// reference value `V` (with its 7 fraction bits), bits below hold up to `K` look-ahead stream bits.
const K: u32 = 40;

/// Where [`ArithDecoder::decode_dq_zero_run`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ZeroRun {
    /// 0 bins decoded.
    pub zeros: usize,
    /// The DQ state after them (the state of the position whose bin was 1, if `one`).
    pub state: u8,
    /// The run ended on a 1 bin (otherwise after `max` bins).
    pub one: bool,
}

/// Arithmetic decoding engine over one NDU payload.
///
/// Reads past the end of `payload` yield zero bytes and are counted ([`ArithDecoder::over_read`]),
/// so garbage input can never make it panic; the caller rejects a stream whose consumed length
/// ([`ArithDecoder::finish`]) differs from the payload length.
///
/// Internally the offset register is kept in a 64-bit window with look-ahead bits below it, so
/// bytes are fetched four at a time; every observable quantity (bytes consumed, bit offsets,
/// entry-point values) is derived to match the reference's byte-at-a-time register exactly.
#[derive(Clone, Debug)]
pub struct ArithDecoder<'a> {
    data: &'a [u8],
    /// Index of the next byte to fetch into the window.
    pos: usize,
    range: u32,
    /// `V << K | look-ahead`, where `V` is the reference's offset register (compared with `range << 7`).
    window: u64,
    /// Number of look-ahead bits below `V` (0..=K).
    avail: u32,
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
            window: 0,
            avail: 0,
            bad_start: false,
        };
        let b0 = u64::from(d.fetch());
        let b1 = u64::from(d.fetch());
        let v = (b0 << 8) | b1;
        d.bad_start = v >= 510 << 7;
        d.window = v << K;
        d.refill();
        d
    }

    #[inline(always)]
    fn fetch(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Top up the look-ahead to more than `K − 8` bits.
    #[inline(always)]
    fn refill(&mut self) {
        (self.pos, self.window, self.avail) =
            refill_window(self.data, self.pos, self.window, self.avail);
    }

    /// Make sure at least 8 look-ahead bits are present (a bin consumes at most 7).
    #[inline(always)]
    fn ensure(&mut self) {
        if self.avail < 8 {
            self.refill();
        }
    }

    /// Number of bits shifted into the reference's register since the start (its `bitOffset`).
    #[inline]
    fn consumed_bits(&self) -> u64 {
        (self.pos as u64)
            .wrapping_mul(8)
            .wrapping_sub(16)
            .wrapping_sub(u64::from(self.avail))
    }

    /// Decode one context-coded bin and adapt `ctx`.
    #[inline(always)]
    pub fn decode_bin(&mut self, ctx: &mut ContextModel) -> bool {
        let bin = self.decode_decision(ctx);
        ctx.update(bin);
        bin
    }

    /// Decode one context-coded bin with `ctx` without adapting it (the caller does, with
    /// [`ContextModel::update`]), so the caller can prepare the adapted state before the bin is
    /// known.
    #[inline(always)]
    pub(crate) fn decode_decision(&mut self, ctx: &ContextModel) -> bool {
        // Branch-free MPS/LPS selection (the decision is data dependent and poorly predictable).
        // The LPS range and shift come precomputed from the table, and the MPS path needs at most
        // one shift, so no leading-zero count sits on the range dependency chain.
        let e = ctx.rlps_packed(self.range);
        let rmps = self.range.wrapping_sub(e & 0xFF);
        let scaled = u64::from(rmps) << (7 + K);
        let lps = self.window >= scaled;
        let mask = 0u32.wrapping_sub(u32::from(lps));
        let mps_n = u32::from(rmps < 256);
        let n = mps_n ^ ((mps_n ^ ((e >> 8) & 0xF)) & mask);
        let r_mps = rmps << mps_n;
        self.range = r_mps ^ ((r_mps ^ (e >> 16)) & mask);
        self.window = (self.window - (scaled & 0u64.wrapping_sub(u64::from(lps)))) << n;
        self.avail = self.avail.wrapping_sub(n);
        let bin = ctx.mps() ^ lps;
        self.ensure();
        bin
    }

    /// Decode a unary run: bin `j` in `ctxs[start + STEP·j]`, up to `max_ones` bins of 1, each
    /// context adapting; stops after the first 0 bin. Returns the number of 1 bins.
    #[inline(always)]
    pub(crate) fn decode_unary<const STEP: usize>(
        &mut self,
        ctxs: &mut [ContextModel],
        start: usize,
        max_ones: usize,
    ) -> usize {
        #[cfg(all(target_arch = "x86_64", feature = "asm"))]
        return self.decode_unary_asm::<STEP>(ctxs, start, max_ones);
        #[cfg(not(all(target_arch = "x86_64", feature = "asm")))]
        return self.decode_unary_portable::<STEP>(ctxs, start, max_ones);
    }

    /// [`ArithDecoder::decode_unary`] in Rust: each context update sits on the side of the
    /// branch its bin takes anyway, so it updates with a constant bin.
    #[inline(always)]
    pub(crate) fn decode_unary_portable<const STEP: usize>(
        &mut self,
        ctxs: &mut [ContextModel],
        start: usize,
        max_ones: usize,
    ) -> usize {
        let mut ones = 0;
        while ones < max_ones {
            let Some(ctx) = ctxs.get_mut(start + STEP * ones) else {
                break;
            };
            if !self.decode_decision(ctx) {
                ctx.update(false);
                break;
            }
            ctx.update(true);
            ones += 1;
        }
        ones
    }

    /// Decode the sig flags of a zero run under dependent quantization whose neighbour class is
    /// 0: the flag at DQ state `s` is in `ctxs[ContextLayout::sig(s, 0)]` (that is `3·s`), and
    /// each 0 bin moves `s` to its successor after a zero level. Stops after the first 1 bin
    /// (its context adapted) or after `max` bins.
    ///
    /// Meant for the states a zero moves on (1 → 7 → 4 → 2 → 1 and 3 → 6 → 3), whose runs use
    /// a different context at every position; in states 0 and 5 a run stays in one context.
    #[inline(always)]
    pub(crate) fn decode_dq_zero_run(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        max: usize,
    ) -> ZeroRun {
        #[cfg(all(target_arch = "x86_64", feature = "asm"))]
        return self.decode_dq_zero_run_asm(ctxs, state, max);
        #[cfg(not(all(target_arch = "x86_64", feature = "asm")))]
        return self.decode_dq_zero_run_portable(ctxs, state, max);
    }

    /// [`ArithDecoder::decode_dq_zero_run`] in Rust.
    #[inline(always)]
    pub(crate) fn decode_dq_zero_run_portable(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        max: usize,
    ) -> ZeroRun {
        let mut run = ZeroRun {
            zeros: 0,
            state: state & 7,
            one: false,
        };
        while run.zeros < max {
            let Some(ctx) = ctxs.get_mut(ContextLayout::sig(usize::from(run.state), 0)) else {
                break;
            };
            if self.decode_decision(ctx) {
                ctx.update(true);
                run.one = true;
                break;
            }
            ctx.update(false);
            run.state = dq::next_state(run.state, 0);
            run.zeros += 1;
        }
        run
    }

    /// Decode the sig flags of a zero run whose neighbour class is 0 at positions whose
    /// contexts also follow their TCA base level: the flag of a position with base level `b` in
    /// DQ state `s` is in `ctxs[ContextLayout::sig(s, 0)]` where `b` is 0 and in
    /// `ctxs[ContextLayout::sig_tca(s, |b| > 1)]` elsewhere, and each 0 bin moves `s` to its
    /// successor after a zero level (without DQ, `s` stays 0). One position per element of
    /// `bases`; stops after the first 1 bin (its context adapted) or after all of them.
    #[inline(always)]
    pub(crate) fn decode_tca_zero_run(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        bases: &[i32],
    ) -> ZeroRun {
        #[cfg(all(target_arch = "x86_64", feature = "asm"))]
        return self.decode_tca_zero_run_asm(ctxs, state, bases);
        #[cfg(not(all(target_arch = "x86_64", feature = "asm")))]
        return self.decode_tca_zero_run_portable(ctxs, state, bases);
    }

    /// [`ArithDecoder::decode_tca_zero_run`] in Rust.
    #[inline(always)]
    pub(crate) fn decode_tca_zero_run_portable(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        bases: &[i32],
    ) -> ZeroRun {
        let mut run = ZeroRun {
            zeros: 0,
            state: state & 7,
            one: false,
        };
        for &b in bases {
            let s = usize::from(run.state);
            let at = if b == 0 {
                ContextLayout::sig(s, 0)
            } else {
                ContextLayout::sig_tca(s, b.unsigned_abs() > 1)
            };
            let Some(ctx) = ctxs.get_mut(at) else {
                break;
            };
            if self.decode_decision(ctx) {
                ctx.update(true);
                run.one = true;
                break;
            }
            ctx.update(false);
            run.state = dq::next_state(run.state, 0);
            run.zeros += 1;
        }
        run
    }

    /// Decode one bypass (equiprobable) bin.
    #[inline(always)]
    pub fn decode_bypass(&mut self) -> bool {
        self.window <<= 1;
        self.avail = self.avail.wrapping_sub(1);
        self.ensure();
        let scaled = u64::from(self.range) << (7 + K);
        if self.window >= scaled {
            self.window -= scaled;
            true
        } else {
            false
        }
    }

    /// Decode `n` bypass bins (n <= 32), MSB first.
    ///
    /// Up to 8 bins per step: `k` bypass bins are `k` steps of binary long division of the
    /// offset by `range << 7`, so their value is one quotient, taken with a reciprocal.
    #[inline(always)]
    pub fn decode_bypass_bins(&mut self, n: u32) -> u32 {
        let mut rem = n.min(32);
        let mut v = 0u32;
        while rem > 0 {
            let k = rem.min(8);
            rem -= k;
            if self.window >= u64::from(self.range) << (7 + K) {
                // Only a stream that cannot be valid gets here (a first codeword outside the
                // initial range, or bins read after the terminating one): bin by bin, as before.
                for _ in 0..k {
                    v = (v << 1) | u32::from(self.decode_bypass());
                }
                continue;
            }
            // `ensure` keeps at least 8 look-ahead bits, and `window < range << (7 + K)` < 2^56,
            // so the shifted window fits in 64 bits and the quotient below is under 2^k.
            let x = self.window >> (7 + K - k);
            let q = (x * u64::from(RECIPROCAL[self.range as usize & 511])) >> 32;
            self.window = (self.window << k) - ((q * u64::from(self.range)) << (7 + K));
            self.avail = self.avail.wrapping_sub(k);
            self.ensure();
            v = (v << k) | q as u32;
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
        let scaled = u64::from(self.range) << (7 + K);
        if self.window >= scaled {
            // Nothing may follow a terminating 1; keep the range valid so misuse cannot underflow.
            self.range = self.range.max(256);
            return true;
        }
        if self.range < 256 {
            self.range <<= 1;
            self.window <<= 1;
            self.avail = self.avail.wrapping_sub(1);
            self.ensure();
        }
        false
    }

    /// Decode the terminating bin that ends the NDU and return the number of bytes consumed.
    ///
    /// Errors if the bin decodes as 0 (the reference throws) or if the first two bytes could not
    /// start a valid codeword.
    ///
    /// Reference quirk: a bad stop-bit/alignment pattern is accepted (the reference only warns);
    /// check [`ArithDecoder::stop_pattern_ok`] to be strict. The count includes bytes read past
    /// the end of the payload ([`ArithDecoder::over_read`]), so compare it with the payload length.
    pub fn finish(&mut self) -> Result<usize, Error> {
        if !self.decode_terminate() {
            return Err(Error::MissingTerminatingBin);
        }
        if self.bad_start {
            return Err(Error::InvalidCodewordStart);
        }
        Ok(self.bytes_read())
    }

    /// The reference's `bitsNeeded` (−8..=−1) for the current position.
    fn bits_needed(&self) -> i64 {
        (self.consumed_bits().wrapping_add(8))
            .wrapping_sub((self.bytes_read() as u64).wrapping_mul(8)) as i64
    }

    /// After [`ArithDecoder::finish`]: whether the last byte read carries the stop bit followed by zero
    /// padding, as a conforming encoder writes it.
    pub fn stop_pattern_ok(&self) -> bool {
        let last = self
            .bytes_read()
            .checked_sub(1)
            .and_then(|i| self.data.get(i))
            .copied()
            .unwrap_or(0);
        let shift = (8 + self.bits_needed()).clamp(0, 31) as u32;
        ((u32::from(last) << shift) & 0xFF) == 0x80
    }

    /// Bytes requested beyond the payload end so far.
    pub fn over_read(&self) -> usize {
        self.bytes_read().saturating_sub(self.data.len())
    }

    /// Bytes read so far by the reference decoder (its `bytesRead`), including any over-read:
    /// `ceil((bit_offset + 9) / 8)`.
    pub fn bytes_read(&self) -> usize {
        (self.consumed_bits().wrapping_add(9).div_ceil(8)) as usize
    }

    /// Set range = 256 without touching the offset register (block-row restart point, §1.7).
    #[inline]
    pub fn reset_range(&mut self) {
        self.range = 256;
    }

    /// Total number of left shifts of the offset register since the start: `8·bytesRead − 8 + bitsNeeded`.
    pub fn bit_offset(&self) -> u64 {
        self.consumed_bits()
    }

    /// Capture the restart state at the current position (call right after [`ArithDecoder::reset_range`]).
    pub fn capture_entry_point(&self, dq_state: u8) -> EntryPoint {
        EntryPoint {
            bit_offset: self.bit_offset(),
            val8: ((self.window >> (7 + K)) & 255) as u8,
            dq_state: dq_state & 7,
        }
    }

    /// Restore the engine at an absolute entry point (reference `setEntryPoint`): range = 256 and the
    /// offset register rebuilt from `val8` plus the 7 stream bits below it.
    pub fn seek_entry_point(&mut self, ep: &EntryPoint) {
        // The register's lowest bit is stream bit `bit_offset + 15`; its 7 fraction bits are
        // stream bits bit_offset + 9 ..= bit_offset + 15, untouched by any subtraction.
        let fraction = read_bits(self.data, ep.bit_offset.saturating_add(9), 7);
        let v = (u64::from(ep.val8) << 7) | u64::from(fraction);
        let next = ep.bit_offset.saturating_add(16);
        let byte = usize::try_from(next / 8).unwrap_or(usize::MAX);
        let used = (next % 8) as u32;
        self.range = 256;
        self.window = v << K;
        if used == 0 {
            self.pos = byte;
            self.avail = 0;
        } else {
            let rest =
                u64::from(self.data.get(byte).copied().unwrap_or(0)) & ((1u64 << (8 - used)) - 1);
            self.avail = 8 - used;
            self.window |= rest << (K - self.avail);
            self.pos = byte.saturating_add(1);
        }
        self.refill();
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
    fn bypass_chunks_match_single_bins() {
        // Mixed context and bypass bins, decoded with bin-by-bin bypass and with chunks.
        let mut enc = crate::ArithEncoder::new();
        let mut ctx = ContextModel::new(0);
        let mut x = 7u32;
        let mut script = Vec::new();
        for i in 0..5000u32 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            // 1..=32 bins; the value keeps only its low n bits.
            let n = 1 + (x >> 27);
            let v = (u64::from(x.rotate_left(7)) & ((1u64 << n) - 1)) as u32;
            let bin = i % 3 == 0;
            enc.encode_bin(bin, &mut ctx);
            enc.encode_bypass_bins(n, v);
            script.push((bin, n, v));
        }
        let bytes = enc.finish();
        let (mut a, mut b) = (ArithDecoder::new(&bytes), ArithDecoder::new(&bytes));
        let (mut ca, mut cb) = (ContextModel::new(0), ContextModel::new(0));
        for &(bin, n, v) in &script {
            assert_eq!(a.decode_bin(&mut ca), bin);
            assert_eq!(b.decode_bin(&mut cb), bin);
            assert_eq!(a.decode_bypass_bins(n), v);
            let single = (0..n).fold(0u32, |acc, _| (acc << 1) | u32::from(b.decode_bypass()));
            assert_eq!(single, v);
        }
        assert_eq!(a.finish(), Ok(bytes.len()));
        assert_eq!(b.finish(), Ok(bytes.len()));
    }

    #[test]
    fn bypass_chunks_on_an_invalid_start_match_single_bins() {
        // Fuzzer finding: a first codeword outside the initial range broke the chunked decode's
        // precondition (quotient >= 2^k, then an overflow in the caller).
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x12, 0x34, 0xff, 0x00, 0xab];
        let (mut a, mut b) = (ArithDecoder::new(&bytes), ArithDecoder::new(&bytes));
        for n in [3, 8, 5, 1, 13] {
            let single = (0..n).fold(0u32, |acc, _| (acc << 1) | u32::from(b.decode_bypass()));
            let chunked = a.decode_bypass_bins(n);
            assert_eq!(chunked, single);
            assert!(u64::from(chunked) < 1u64 << n);
        }
        assert!(a.finish().is_err());
    }

    #[test]
    fn reciprocal_division_is_exact() {
        for r in 256..=510u64 {
            for x in (0..r << 8).step_by(7).chain([(r << 8) - 1]) {
                assert_eq!((x * u64::from(RECIPROCAL[r as usize])) >> 32, x / r);
            }
        }
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
