//! The greater-than flags of the param_opt pseudo pass, held back and written into their
//! contexts' traces in bulk.
//!
//! A non-zero level of magnitude `a` and sign `s` gives flag `j` (`j < n`, in context
//! `GTX + 2j + s`) exactly when `a ≥ j + 1`, and the flag is `a ≥ j + 2`. So the flags of a run
//! of levels follow from their magnitudes alone: the recorder keeps one byte per level,
//! `min(a, n + 1)`, per sign, and later writes context `j`'s bits for 64 levels at a time, two
//! comparisons and a bit extraction (AVX-512 BW and BMI2), instead of one trace append per flag
//! and level. Every context still receives its bins in order; the caller writes the held-back
//! flags before anything reads or resets the traces ([`DeferredFlags::settle`]).

use super::Trace;
use crate::context::ContextLayout;

/// Levels held back per sign before they are written (a few KiB, so they stay in the L1 cache
/// while every context reads them).
const CAPACITY: usize = if cfg!(test) { 100 } else { 4096 };

/// Greater-than flags held back, per sign, as one magnitude code per level.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeferredFlags {
    /// `min(|level|, n + 1)` of each held-back level, positive levels first, negative second.
    codes: [Vec<u8>; 2],
    /// Flags per level, `n` (known from the first level held back).
    n: usize,
}

impl DeferredFlags {
    /// Whether the flags of levels with `n` flags can be held back (the codes, up to `n + 1`,
    /// must fit a byte); otherwise the recorder appends them one by one.
    #[inline(always)]
    pub(crate) fn holds(n: usize) -> bool {
        n < usize::from(u8::MAX)
    }

    /// Hold back the flags of one level of magnitude `abs` (at least 1): `gtx` holds the `2n`
    /// flag contexts, and receives the held-back flags of this sign when there are
    /// [`CAPACITY`] of them. Returns whether all `n` flags are 1 (the remainder follows).
    #[inline(always)]
    pub(crate) fn push(&mut self, gtx: &mut [Trace], negative: bool, abs: u64) -> bool {
        let n = gtx.len() / 2;
        self.n = n;
        let codes = &mut self.codes[usize::from(negative)];
        if codes.len() >= CAPACITY {
            write_flags(codes, gtx, usize::from(negative));
            codes.clear();
        }
        codes.push(abs.min(n as u64 + 1) as u8);
        abs > n as u64
    }

    /// Write every held-back flag into its context (`ctxs`: all contexts of the tensor).
    pub(crate) fn settle(&mut self, ctxs: &mut [Trace]) {
        let flags = ContextLayout::GTX..ContextLayout::GTX + 2 * self.n;
        let Some(gtx) = ctxs.get_mut(flags) else {
            return;
        };
        for (sign, codes) in self.codes.iter_mut().enumerate() {
            if !codes.is_empty() {
                write_flags(codes, gtx, sign);
                codes.clear();
            }
        }
    }
}

/// Append the flags of `codes` (levels of sign `sign`) to their contexts in `gtx`.
fn write_flags(codes: &[u8], gtx: &mut [Trace], sign: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512 F and BW and BMI2 (checked by `available`).
        #[allow(unsafe_code)]
        unsafe {
            avx512::write_flags(codes, gtx, sign)
        };
        return;
    }
    write_flags_portable(codes, gtx, sign);
}

/// [`write_flags`] one flag at a time.
fn write_flags_portable(codes: &[u8], gtx: &mut [Trace], sign: usize) {
    let n = gtx.len() / 2;
    for &code in codes {
        for j in 0..usize::from(code).min(n) {
            if let Some(t) = gtx.get_mut(2 * j + sign) {
                t.push(usize::from(code) >= j + 2);
            }
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

    /// [`super::write_flags`], 64 levels per step: per context, two byte comparisons give
    /// which levels have the flag and which of those have it set, and `pext` packs the latter
    /// into consecutive bits.
    #[target_feature(enable = "avx512f,avx512bw,bmi2,popcnt")]
    pub(super) fn write_flags(codes: &[u8], gtx: &mut [Trace], sign: usize) {
        let n = gtx.len() / 2;
        let top = codes.iter().copied().max().map_or(0, usize::from).min(n);
        let (blocks, tail) = codes.as_chunks::<64>();
        let mut last = [0u8; 64];
        last[..tail.len()].copy_from_slice(tail);
        for (j, t) in gtx.iter_mut().skip(sign).step_by(2).take(top).enumerate() {
            let has = _mm512_set1_epi8((j + 1) as i8);
            let set = _mm512_set1_epi8((j + 2) as i8);
            for block in blocks.iter().chain((!tail.is_empty()).then_some(&last)) {
                let v = load(block);
                let present = _mm512_cmpge_epu8_mask(v, has);
                let one = _mm512_cmpge_epu8_mask(v, set);
                t.append_bits(_pext_u64(one, present), present.count_ones());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The traces one flag at a time, as the recorder wrote them before.
    fn direct(levels: &[(bool, u64)], n: usize) -> Vec<Trace> {
        let mut gtx = vec![Trace::default(); 2 * n];
        for &(negative, abs) in levels {
            for j in 0..n {
                let flag = abs > j as u64 + 1;
                gtx[2 * j + usize::from(negative)].push(flag);
                if !flag {
                    break;
                }
            }
        }
        gtx
    }

    fn deferred(levels: &[(bool, u64)], n: usize) -> Vec<Trace> {
        let layout = ContextLayout::new(n as u32);
        let mut ctxs = vec![Trace::default(); layout.len()];
        let flags = ContextLayout::GTX..ContextLayout::GTX + 2 * n;
        let mut held = DeferredFlags::default();
        for &(negative, abs) in levels {
            let all_ones = held.push(&mut ctxs[flags.clone()], negative, abs);
            assert_eq!(all_ones, abs > n as u64);
        }
        held.settle(&mut ctxs);
        ctxs.drain(flags).collect()
    }

    proptest! {
        /// Held back and written in bulk (on AVX-512 where the CPU has it), every context gets
        /// the same bits as one flag at a time, across the buffer's capacity.
        #[test]
        fn same_traces_as_one_flag_at_a_time(
            levels in prop::collection::vec((any::<bool>(), 1u64..40), 0..700),
            n in 1usize..20,
        ) {
            let mut want = direct(&levels, n);
            let mut got = deferred(&levels, n);
            for (w, g) in want.iter_mut().zip(got.iter_mut()) {
                prop_assert_eq!(w.len, g.len);
                prop_assert_eq!(w.all_words(), g.all_words());
            }
        }
    }

    #[test]
    fn the_portable_form_matches_too() {
        let levels: Vec<(bool, u64)> = (0..500u64).map(|i| (i % 3 == 0, 1 + i * 7 % 13)).collect();
        let n = 11;
        let mut want = direct(&levels, n);
        let mut got = vec![Trace::default(); 2 * n];
        for sign in 0..2 {
            let codes: Vec<u8> = levels
                .iter()
                .filter(|l| usize::from(l.0) == sign)
                .map(|l| l.1.min(n as u64 + 1) as u8)
                .collect();
            write_flags_portable(&codes, &mut got, sign);
        }
        for (w, g) in want.iter_mut().zip(got.iter_mut()) {
            assert_eq!(w.all_words(), g.all_words());
        }
    }
}
