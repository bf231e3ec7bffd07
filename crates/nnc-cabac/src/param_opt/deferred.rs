//! The unary parts of the param_opt pseudo pass, held back and written into their contexts'
//! traces in bulk.
//!
//! A non-zero level of magnitude `a` and sign `s` gives greater-than flag `j` (`j < n`, in
//! context `GTX + 2j + s`) exactly when `a ≥ j + 1`, and the flag is `a ≥ j + 2`. Its
//! remainder's prefix, `k` ones and a terminating zero, gives bin `j` (in context `rem + j`)
//! exactly when `k + 1 ≥ j + 1`, and the bin is `k + 1 ≥ j + 2`. So these bins follow from one
//! code per level and family (`min(a, n + 1)`, `k + 1`): the recorder keeps one byte, and later
//! writes a context's bins for 64 levels at a time, two comparisons and a bit extraction
//! (AVX-512 BW and BMI2), instead of one trace append per bin. Every context still receives
//! its bins in order; the caller writes the held-back bins before anything reads or resets the
//! traces ([`DeferredFlags::settle`]).

use super::Trace;
use crate::binarization::MAX_PREFIX_BINS;
use crate::context::ContextLayout;

/// Codes held back per family before they are written (a few KiB, so they stay in the L1
/// cache while every context of the family reads them).
const CAPACITY: usize = if cfg!(test) { 100 } else { 4096 };

/// Greater-than flags and remainder prefixes held back, as one code per level.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeferredFlags {
    /// `min(|level|, n + 1)` of each held-back level, positive levels first, negative second.
    gtx: [Vec<u8>; 2],
    /// `k + 1` of each held-back remainder prefix of `k` ones.
    prefix: Vec<u8>,
    /// Flags per level, `n` (known from the first level held back; 0 before).
    n: usize,
}

impl DeferredFlags {
    /// Hold back the flags of one level of magnitude `abs` (at least 1): `gtx` holds the `2n`
    /// flag contexts, and receives the held-back flags of this sign when there are
    /// [`CAPACITY`] of them. Returns whether all `n` flags are 1 (the remainder follows), or
    /// `None` when the flags cannot be held back (their codes, up to `n + 1`, must fit a byte)
    /// and the caller must code them itself.
    #[inline(always)]
    pub(crate) fn push_flags(
        &mut self,
        gtx: &mut [Trace],
        negative: bool,
        abs: u64,
    ) -> Option<bool> {
        let n = gtx.len() / 2;
        // Codes go up to n + 1; the bulk writers compare them with j + 2 for the flags j < n.
        if n >= usize::from(u8::MAX) {
            return None;
        }
        self.n = n;
        let sign = usize::from(negative);
        let codes = &mut self.gtx[sign];
        if codes.len() >= CAPACITY {
            write_and_clear(codes, gtx, sign, 2);
        }
        codes.push(abs.min(n as u64 + 1) as u8);
        Some(abs > n as u64)
    }

    /// Hold back a remainder prefix of `ones` ones, then a zero if `ones < MAX_PREFIX_BINS`:
    /// `prefix` holds its [`MAX_PREFIX_BINS`] contexts, and receives the held-back prefixes
    /// when there are [`CAPACITY`] of them. Only done after the level's flags were held back,
    /// which tells where the prefix's contexts start ([`DeferredFlags::settle`] needs it);
    /// returns whether the prefix was held back, else the caller codes it itself.
    #[inline(always)]
    pub(crate) fn push_prefix(&mut self, prefix: &mut [Trace], ones: usize) -> bool {
        if self.n == 0 {
            return false;
        }
        if self.prefix.len() >= CAPACITY {
            write_and_clear(&mut self.prefix, prefix, 0, 1);
        }
        self.prefix.push(ones.min(MAX_PREFIX_BINS) as u8 + 1);
        true
    }

    /// Write every held-back bin into its context (`ctxs`: all contexts of the tensor).
    pub(crate) fn settle(&mut self, ctxs: &mut [Trace]) {
        let flags = ContextLayout::GTX..ContextLayout::GTX + 2 * self.n;
        if let Some(gtx) = ctxs.get_mut(flags) {
            for (sign, codes) in self.gtx.iter_mut().enumerate() {
                write_and_clear(codes, gtx, sign, 2);
            }
        }
        // Prefixes are held back only after held-back flags (so `n` is N, at least 1), and
        // the prefix starts at `GTX + 4N`.
        let rem = ContextLayout::new(self.n as u32).rem();
        if let Some(prefix) = ctxs.get_mut(rem..rem + MAX_PREFIX_BINS) {
            write_and_clear(&mut self.prefix, prefix, 0, 1);
        }
    }
}

/// [`write_unary`], then forget the codes.
fn write_and_clear(codes: &mut Vec<u8>, ctxs: &mut [Trace], first: usize, stride: usize) {
    if !codes.is_empty() {
        write_unary(codes, ctxs, first, stride);
        codes.clear();
    }
}

/// Append the bins of the unary `codes` to their contexts: bin `j` of code `c` (present when
/// `c ≥ j + 1`, 1 when `c ≥ j + 2`) goes to `ctxs[first + j·stride]`.
fn write_unary(codes: &[u8], ctxs: &mut [Trace], first: usize, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512 F and BW and BMI2 (checked by `available`).
        #[allow(unsafe_code)]
        unsafe {
            avx512::write_unary(codes, ctxs, first, stride)
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2, BMI2 and POPCNT (checked by `available`).
        #[allow(unsafe_code)]
        unsafe {
            avx2::write_unary(codes, ctxs, first, stride)
        };
        return;
    }
    write_unary_portable(codes, ctxs, first, stride);
}

/// The loop of the vector forms of [`write_unary`]: for each context `j` that some code
/// reaches, each block of 64 codes (the last padded with zeros, which have no bins), `bins`
/// gives the block's bins in context `j`, packed, and their count.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write_blocks(
    codes: &[u8],
    ctxs: &mut [Trace],
    first: usize,
    stride: usize,
    bins: impl Fn(&[u8; 64], usize) -> (u64, u32),
) {
    let top = codes.iter().copied().max().map_or(0, usize::from);
    let (blocks, tail) = codes.as_chunks::<64>();
    let mut last = [0u8; 64];
    last[..tail.len()].copy_from_slice(tail);
    let contexts = ctxs.iter_mut().skip(first).step_by(stride).take(top);
    for (j, t) in contexts.enumerate() {
        for block in blocks.iter().chain((!tail.is_empty()).then_some(&last)) {
            let (packed, count) = bins(block, j);
            t.append_bits(packed, count);
        }
    }
}

/// [`write_unary`] one bin at a time.
fn write_unary_portable(codes: &[u8], ctxs: &mut [Trace], first: usize, stride: usize) {
    for &code in codes {
        let present = ctxs.iter_mut().skip(first).step_by(stride);
        for (j, t) in present.take(usize::from(code)).enumerate() {
            t.push(usize::from(code) >= j + 2);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::Trace;

    /// Whether this CPU has AVX-512 F and BW and BMI2 and `NNC_NO_AVX512` is unset.
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("bmi2")
                && std::env::var_os("NNC_NO_AVX512").is_none()
        })
    }

    /// [`super::write_unary`], 64 codes per step: per context, two byte comparisons give which
    /// codes have a bin there and which of those bins are 1, and `pext` packs the latter into
    /// consecutive bits.
    #[target_feature(enable = "avx512f,avx512bw,bmi2,popcnt")]
    pub(super) fn write_unary(codes: &[u8], ctxs: &mut [Trace], first: usize, stride: usize) {
        super::write_blocks(codes, ctxs, first, stride, |block, j| {
            let v = load(block);
            let present = _mm512_cmpge_epu8_mask(v, _mm512_set1_epi8((j + 1) as i8));
            let one = _mm512_cmpge_epu8_mask(v, _mm512_set1_epi8((j + 2) as i8));
            (_pext_u64(one, present), present.count_ones())
        });
    }

    #[target_feature(enable = "avx512f")]
    fn load(a: &[u8; 64]) -> __m512i {
        // SAFETY: `a` is 64 readable bytes; the load has no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_loadu_si512(a.as_ptr().cast())
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::Trace;

    /// Whether this CPU has AVX2, BMI2 and POPCNT with a fast `pext`, and `NNC_NO_AVX2` is
    /// unset.
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("bmi2")
                && is_x86_feature_detected!("popcnt")
                && !slow_pext()
                && std::env::var_os("NNC_NO_AVX2").is_none()
        })
    }

    /// AMD's cores before Zen 3 (family 0x19), and Hygon's (Zen 1), run `pext` in microcode,
    /// hundreds of cycles for a dense mask; there the portable form is faster.
    fn slow_pext() -> bool {
        // `__cpuid` is a safe function in recent Rust and an unsafe one in older releases that
        // the workspace's rust-version still admits, hence the block and `unused_unsafe`.
        #[allow(unsafe_code, unused_unsafe)]
        // SAFETY: `cpuid` exists on every x86-64 CPU; leaves 0 and 1 always do.
        let (vendor, signature) = unsafe { (__cpuid(0), __cpuid(1)) };
        let name = [vendor.ebx, vendor.edx, vendor.ecx];
        let amd_like = name == [0x6874_7541, 0x6974_6e65, 0x444d_4163] // "AuthenticAMD"
            || name == [0x6f67_7948, 0x6e65_476e, 0x656e_6975]; // "HygonGenuine"
        let base = (signature.eax >> 8) & 0xf;
        let family = if base == 0xf {
            base + ((signature.eax >> 20) & 0xff)
        } else {
            base
        };
        amd_like && family < 0x19
    }

    /// [`super::write_unary`], 64 codes per step as in the AVX-512 form, each comparison done
    /// on two halves of 32 bytes (an unsigned `c ≥ t` is `max(c, t) = c`).
    #[target_feature(enable = "avx2,bmi2,popcnt")]
    pub(super) fn write_unary(codes: &[u8], ctxs: &mut [Trace], first: usize, stride: usize) {
        super::write_blocks(codes, ctxs, first, stride, |block, j| {
            let (has, set) = (
                _mm256_set1_epi8((j + 1) as i8),
                _mm256_set1_epi8((j + 2) as i8),
            );
            let (lo, hi) = load(block);
            let present = at_least(lo, has) | at_least(hi, has) << 32;
            let one = at_least(lo, set) | at_least(hi, set) << 32;
            (_pext_u64(one, present), present.count_ones())
        });
    }

    /// Bit `i` set where byte `i` of `v` is at least that of `t` (unsigned).
    #[target_feature(enable = "avx2")]
    fn at_least(v: __m256i, t: __m256i) -> u64 {
        let ge = _mm256_cmpeq_epi8(_mm256_max_epu8(v, t), v);
        u64::from(_mm256_movemask_epi8(ge) as u32)
    }

    #[target_feature(enable = "avx2")]
    fn load(a: &[u8; 64]) -> (__m256i, __m256i) {
        // SAFETY: `a` is 64 readable bytes; the loads have no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().cast()),
                _mm256_loadu_si256(a.as_ptr().add(32).cast()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A level's greater-than flags and remainder prefix one bin at a time, as the recorder
    /// wrote them before (and still does when they cannot be held back).
    fn direct(levels: &[(bool, u64)], n: usize) -> Vec<Trace> {
        let layout = ContextLayout::new(n as u32);
        let mut ctxs = vec![Trace::default(); layout.len()];
        for &(negative, abs) in levels {
            push_level(&mut ctxs, n, negative, abs);
        }
        ctxs
    }

    /// One level's flags and, if all of them are 1, its remainder prefix.
    fn push_level(ctxs: &mut [Trace], n: usize, negative: bool, abs: u64) {
        for j in 0..n {
            let flag = abs > j as u64 + 1;
            ctxs[ContextLayout::GTX + 2 * j + usize::from(negative)].push(flag);
            if !flag {
                return;
            }
        }
        let rem = ContextLayout::new(n as u32).rem();
        let r = abs - n as u64 - 1;
        let mut base = 0u64;
        for j in 0..MAX_PREFIX_BINS {
            let more = r >= base + (1u64 << j);
            ctxs[rem + j].push(more);
            if !more {
                break;
            }
            base += 1u64 << j;
        }
    }

    fn deferred(levels: &[(bool, u64)], n: usize) -> Vec<Trace> {
        let layout = ContextLayout::new(n as u32);
        let mut ctxs = vec![Trace::default(); layout.len()];
        let flags = ContextLayout::GTX..ContextLayout::GTX + 2 * n;
        let prefix = layout.rem()..layout.rem() + MAX_PREFIX_BINS;
        let mut held = DeferredFlags::default();
        for &(negative, abs) in levels {
            let all_ones = held.push_flags(&mut ctxs[flags.clone()], negative, abs);
            if n >= 255 {
                // Codes up to n + 1 would not fit a byte: the caller codes these levels itself.
                assert_eq!(all_ones, None);
                held.settle(&mut ctxs);
                push_level(&mut ctxs, n, negative, abs);
                continue;
            }
            assert_eq!(all_ones, Some(abs > n as u64));
            let all_ones = abs > n as u64;
            if all_ones {
                let ones = (abs - n as u64).ilog2() as usize;
                assert!(held.push_prefix(&mut ctxs[prefix.clone()], ones));
            }
        }
        held.settle(&mut ctxs);
        ctxs
    }

    fn same_traces(mut want: Vec<Trace>, mut got: Vec<Trace>) -> Result<(), TestCaseError> {
        prop_assert_eq!(want.len(), got.len());
        for (c, (w, g)) in want.iter_mut().zip(got.iter_mut()).enumerate() {
            prop_assert_eq!(w.len, g.len, "context {}", c);
            prop_assert_eq!(w.all_words(), g.all_words(), "context {}", c);
        }
        Ok(())
    }

    proptest! {
        /// Held back and written in bulk (on AVX-512 where the CPU has it), every context gets
        /// the same bins as one at a time, across the buffers' capacity and with prefixes of
        /// every length (31 ones, without a zero, from 2^32 on).
        #[test]
        fn same_traces_as_one_bin_at_a_time(
            levels in prop::collection::vec(
                (any::<bool>(), prop_oneof![1u64..40, 1u64..300, 1u64..(1 << 34)]),
                0..700,
            ),
            n in prop_oneof![1usize..20, 250usize..=256],
        ) {
            same_traces(direct(&levels, n), deferred(&levels, n))?;
        }
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        /// The AVX2 form (where the CPU can run it, whatever else it has) writes the same bins
        /// as the portable one, up to the most flags a level can hold back (254, codes up to 255).
        #[test]
        fn avx2_form_matches_the_portable_one(
            codes in prop::collection::vec(1u8..=255, 0..300),
            stride in 1usize..3,
        ) {
            if !avx2::available() {
                return Ok(());
            }
            let contexts = 254 * stride;
            let mut want = vec![Trace::default(); contexts];
            write_unary_portable(&codes, &mut want, stride - 1, stride);
            let mut got = vec![Trace::default(); contexts];
            // SAFETY: `available` checked the CPU.
            #[allow(unsafe_code)]
            unsafe {
                avx2::write_unary(&codes, &mut got, stride - 1, stride)
            };
            same_traces(want, got)?;
        }
    }

    #[test]
    fn the_portable_form_matches_too() {
        let n = 11;
        let levels: Vec<(bool, u64)> = (0..500u64)
            .map(|i| (i % 3 == 0, 1 + i * 7 % 40 + ((i % 17) << (i % 34))))
            .collect();
        let layout = ContextLayout::new(n as u32);
        let mut got = vec![Trace::default(); layout.len()];
        let flags = ContextLayout::GTX..ContextLayout::GTX + 2 * n;
        for sign in 0..2 {
            let codes: Vec<u8> = levels
                .iter()
                .filter(|l| usize::from(l.0) == sign)
                .map(|l| l.1.min(n as u64 + 1) as u8)
                .collect();
            write_unary_portable(&codes, &mut got[flags.clone()], sign, 2);
        }
        let prefixes: Vec<u8> = levels
            .iter()
            .filter(|l| l.1 > n as u64)
            .map(|l| ((l.1 - n as u64).ilog2() as u8).min(MAX_PREFIX_BINS as u8) + 1)
            .collect();
        let rem = layout.rem();
        write_unary_portable(&prefixes, &mut got[rem..rem + MAX_PREFIX_BINS], 0, 1);
        same_traces(direct(&levels, n), got).expect("same traces");
    }
}
