//! [`super::StateRates`] with AVX2, for CPUs without AVX-512: the store and the steps of
//! [`super::avx512`], with what AVX2 lacks built from what it has.
//!
//! - Lane masks are vectors (`vpblendvb`), not mask registers.
//! - The 16-bit shifts are by constants, S0's and S1's computed apart and interleaved.
//! - The curve lookup is two `vpshufb` over the curve divided by 16 (every entry is a multiple
//!   of 16 below 4096, so the quotients fit bytes), then a shift back.
//! - Costs come from two 4-lane gathers of the §2.4 table's (bin 0, bin 1) pairs.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::lanes::{class_masks, ending_at, Estimators, Lanes, NONE};
use super::{exp_golomb, CANDIDATES, SHIFT0, SHIFT1, STATES};
use crate::binarization::MAX_PREFIX_BINS;
use crate::context::ContextLayout;
use crate::tables::{est_bits_table, BYPASS_BITS, CURVE_CONST};

/// Whether this CPU has AVX2 and the environment variable `NNC_NO_AVX2` is unset (it selects
/// the portable form where AVX-512 is absent or ruled out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2") && std::env::var_os("NNC_NO_AVX2").is_none()
    })
}

/// The 32-bit lanes of the states in `m`, all ones, as a blend mask.
#[target_feature(enable = "avx2")]
fn lanes32(m: u8) -> __m256i {
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(i32::from(m)), bits),
        bits,
    )
}

/// `b` in the states of `m`, `a` in the others.
#[target_feature(enable = "avx2")]
fn blend(m: u8, a: __m256i, b: __m256i) -> __m256i {
    _mm256_blendv_epi8(a, b, lanes32(m))
}

/// The costs of both bins in each state, from the states' `P` (8 × i32): `(bin 0, bin 1)`.
#[target_feature(enable = "avx2")]
fn costs(p: __m256i) -> (__m256i, __m256i) {
    let table = est_bits_table();
    let index = _mm256_and_si256(
        _mm256_add_epi32(_mm256_srai_epi32::<3>(p), _mm256_set1_epi32(512)),
        _mm256_set1_epi32(1023),
    );
    // SAFETY: every index is below 1024 (masked above), so each 8-byte read is one
    // `[u32; 2]` entry of the table.
    #[allow(unsafe_code)]
    let (low, high) = unsafe {
        let base: *const i64 = table.as_ptr().cast();
        (
            _mm256_i32gather_epi64::<8>(base, _mm256_castsi256_si128(index)),
            _mm256_i32gather_epi64::<8>(base, _mm256_extracti128_si256::<1>(index)),
        )
    };
    // Pairs (bin 0, bin 1) of states 0–3 and 4–7, each turned into four bin-0 then four bin-1.
    let split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let low = _mm256_permutevar8x32_epi32(low, split);
    let high = _mm256_permutevar8x32_epi32(high, split);
    (
        _mm256_permute2x128_si256::<0x20>(low, high),
        _mm256_permute2x128_si256::<0x31>(low, high),
    )
}

#[target_feature(enable = "avx2")]
fn load(lanes: &Estimators) -> __m256i {
    // SAFETY: `lanes` is 32 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_loadu_si256(lanes.as_ptr().cast())
    }
}

#[target_feature(enable = "avx2")]
fn store(lanes: &mut Estimators, v: __m256i) {
    // SAFETY: `lanes` is 32 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v)
    }
}

/// `P = S1 + 16·S0` of every state (8 × i32), from a context's lanes.
#[target_feature(enable = "avx2")]
fn p_of(v: __m256i) -> __m256i {
    _mm256_add_epi32(
        _mm256_srai_epi32::<16>(v),
        _mm256_srai_epi32::<12>(_mm256_slli_epi32::<16>(v)),
    )
}

#[target_feature(enable = "avx2")]
pub(super) fn estimate_lanes(
    rates: &Lanes,
    levels: [[i32; CANDIDATES]; 2],
) -> [[u32; STATES]; CANDIDATES] {
    let nb = &rates.nb[rates.latest];
    // Each state's sig context is its own: lane `s` of the context for state `s`.
    let mut sig = [0u32; STATES];
    for (lane, (&n, sig)) in nb.iter().zip(&mut sig).enumerate() {
        let c = &rates.ctxs[ContextLayout::sig(lane, ContextLayout::nb_class(n))];
        *sig = u32::from(c[2 * lane] as u16) | (u32::from(c[2 * lane + 1] as u16) << 16);
    }
    // SAFETY: `sig` is 32 readable bytes.
    #[allow(unsafe_code)]
    let sig = unsafe { _mm256_loadu_si256(sig.as_ptr().cast()) };
    let (sig_zero, sig_one) = costs(p_of(sig));
    let mut out = [sig_zero; CANDIDATES];
    let classes = class_masks(nb);
    let flags = rates.flags();
    let rem = rates.layout.rem();
    let ctx = |c: usize| load(&rates.ctxs[c]);
    for negative in [false, true] {
        // Per candidate and quantizer: the magnitude of this sign (0: none), where its flags
        // stop with a 0 (`NONE`: no such flag), and the length of its remainder's prefix.
        let mut mags = [[0u64; 2]; CANDIDATES];
        let mut largest = 0;
        for (k, m) in mags.iter_mut().enumerate() {
            for (q, m) in m.iter_mut().enumerate() {
                let level = levels[q][k];
                if level != 0 && (level < 0) == negative {
                    *m = u64::from(level.unsigned_abs());
                    largest = largest.max(*m);
                }
            }
        }
        if largest == 0 {
            continue;
        }
        let stop = mags.map(|m| m.map(|m| if m == 0 || m > flags { NONE } else { m - 1 }));
        let sign = blend(
            classes[2],
            blend(
                classes[1],
                ctx(ContextLayout::sign(0)),
                ctx(ContextLayout::sign(1)),
            ),
            ctx(ContextLayout::sign(2)),
        );
        let (sign_zero, sign_one) = costs(p_of(sign));
        let head = _mm256_add_epi32(sig_one, if negative { sign_one } else { sign_zero });
        let mut ones = head;
        for j in 0..largest.min(flags) {
            let (zero, one) = costs(p_of(ctx(ContextLayout::gtx(j as usize, negative))));
            let end = _mm256_add_epi32(ones, zero);
            for (o, stop) in out.iter_mut().zip(&stop) {
                *o = blend(ending_at(*stop, j), *o, end);
            }
            ones = _mm256_add_epi32(ones, one);
        }
        if largest <= flags {
            continue;
        }
        // Candidates with a remainder: the ones of their prefix, then a 0-bin unless it is full.
        let prefix = mags.map(|m| {
            m.map(|m| {
                if m > flags {
                    exp_golomb(m - flags - 1).0 as u64
                } else {
                    NONE
                }
            })
        });
        let longest = exp_golomb(largest - flags - 1).0;
        let mut sum = ones;
        for j in 0..=longest {
            let suffix = _mm256_set1_epi32((j as u32 * BYPASS_BITS) as i32);
            let (end, one) = if j < MAX_PREFIX_BINS {
                let (zero, one) = costs(p_of(ctx(rem + j)));
                (_mm256_add_epi32(zero, suffix), one)
            } else {
                (suffix, _mm256_setzero_si256())
            };
            let end = _mm256_add_epi32(sum, end);
            for (o, prefix) in out.iter_mut().zip(&prefix) {
                *o = blend(ending_at(*prefix, j as u64), *o, end);
            }
            sum = _mm256_add_epi32(sum, one);
        }
    }
    let mut rates_out = [[0u32; STATES]; CANDIDATES];
    for (r, o) in rates_out.iter_mut().zip(out) {
        // SAFETY: `r` is 32 writable bytes; the store has no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_si256(r.as_mut_ptr().cast(), o)
        };
    }
    rates_out
}

/// `CURVE[(i + 16) % 32] / 16` for `i` in 0..32, as two 16-byte tables repeated in both halves
/// of a vector: the curve indexed by `x mod 32` for `CURVE[16 + x]`, a byte per entry.
const CURVE_BYTES: [[u8; 32]; 2] = {
    let mut t = [[0u8; 32]; 2];
    let mut i = 0;
    while i < 32 {
        let v = CURVE_CONST[(i + 16) % 32];
        assert!(v % 16 == 0 && v / 16 < 256);
        t[i / 16][i % 16] = (v / 16) as u8;
        t[i / 16][16 + i % 16] = (v / 16) as u8;
        i += 1;
    }
    t
};

/// The §2.3 update, applied in the states of `active` towards their bins in `ones` (the
/// others towards 0), both estimators at once.
struct Adapt {
    curve_lo: __m256i,
    curve_hi: __m256i,
}

/// The 16-bit lanes of S1 (odd lanes), for `vpblendw`.
const S1_LANES: i32 = 0b1010_1010;

impl Adapt {
    #[target_feature(enable = "avx2")]
    fn new() -> Self {
        let table = |t: &[u8; 32]| {
            // SAFETY: `t` is 32 readable bytes; the load has no alignment requirement.
            #[allow(unsafe_code)]
            unsafe {
                _mm256_loadu_si256(t.as_ptr().cast())
            }
        };
        Self {
            curve_lo: table(&CURVE_BYTES[0]),
            curve_hi: table(&CURVE_BYTES[1]),
        }
    }

    /// `CURVE[16 + x]` for the 16-bit lanes `x` (taken modulo 32).
    #[target_feature(enable = "avx2")]
    fn curve(&self, x: __m256i) -> __m256i {
        // The byte index in the low byte of each lane, 0x80 (a zero byte) in the high one.
        let control = _mm256_or_si256(
            _mm256_and_si256(x, _mm256_set1_epi16(15)),
            _mm256_set1_epi16(0x80 << 8),
        );
        let second = _mm256_set1_epi16(16);
        let upper = _mm256_cmpeq_epi16(_mm256_and_si256(x, second), second);
        let bytes = _mm256_blendv_epi8(
            _mm256_shuffle_epi8(self.curve_lo, control),
            _mm256_shuffle_epi8(self.curve_hi, control),
            upper,
        );
        _mm256_slli_epi16::<4>(bytes)
    }

    #[target_feature(enable = "avx2")]
    fn apply(&self, s: __m256i, active: u8, ones: u8) -> __m256i {
        let zeros = lanes32(!ones);
        let zero = _mm256_setzero_si256();
        let towards = _mm256_blendv_epi8(s, _mm256_sub_epi16(zero, s), zeros);
        let index = _mm256_blend_epi16::<S1_LANES>(
            _mm256_srai_epi16::<3>(towards),
            _mm256_srai_epi16::<7>(towards),
        );
        let looked = self.curve(index);
        let step = _mm256_blend_epi16::<S1_LANES>(
            _mm256_srli_epi16::<{ SHIFT0 as i32 }>(looked),
            _mm256_srli_epi16::<{ SHIFT1 as i32 }>(looked),
        );
        let signed = _mm256_blendv_epi8(step, _mm256_sub_epi16(zero, step), zeros);
        _mm256_blendv_epi8(s, _mm256_add_epi16(s, signed), lanes32(active))
    }
}

/// Adapts context `ctx` in the states of `active`, each towards its bin in `ones`.
#[target_feature(enable = "avx2")]
fn adapt_ctx(rates: &mut Lanes, adapt: &Adapt, ctx: usize, active: u8, ones: u8) {
    if let Some(lanes) = rates.ctxs.get_mut(ctx) {
        store(lanes, adapt.apply(load(lanes), active, ones));
    }
    rates.touch(ctx);
}

/// As [`super::avx512`]'s: the step's bins go to the contexts in the order each state codes
/// them.
#[target_feature(enable = "avx2")]
pub(super) fn advance_lanes(
    rates: &mut Lanes,
    winners: [u8; STATES],
    levels: [i32; STATES],
    now: usize,
) {
    // Every state takes its winner's lanes (fresh contexts are the same in every lane).
    let order = winners.map(|w| i32::from(w & 7));
    // SAFETY: `order` is 32 readable bytes.
    #[allow(unsafe_code)]
    let order = unsafe { _mm256_loadu_si256(order.as_ptr().cast()) };
    for (word, &bits) in rates.touched.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let c = 64 * word + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(lanes) = rates.ctxs.get_mut(c) {
                store(lanes, _mm256_permutevar8x32_epi32(load(lanes), order));
            }
        }
    }

    let adapt = Adapt::new();
    let nb = rates.nb[now];
    let mut nonzero = 0u8;
    let mut negative = 0u8;
    for (lane, &k) in levels.iter().enumerate() {
        nonzero |= u8::from(k != 0) << lane;
        negative |= u8::from(k < 0) << lane;
    }
    for (lane, &n) in nb.iter().enumerate() {
        let ones = nonzero & (1 << lane);
        let c = ContextLayout::sig(lane, ContextLayout::nb_class(n));
        adapt_ctx(rates, &adapt, c, 1 << lane, ones);
    }
    if nonzero == 0 {
        return;
    }
    for (class, lanes) in class_masks(&nb).into_iter().enumerate() {
        if lanes & nonzero != 0 {
            let c = ContextLayout::sign(class);
            adapt_ctx(rates, &adapt, c, lanes & nonzero, negative);
        }
    }
    let flags = rates.flags();
    // SAFETY: `levels` is 32 readable bytes.
    #[allow(unsafe_code)]
    let mags = _mm256_abs_epi32(unsafe { _mm256_loadu_si256(levels.as_ptr().cast()) });
    // Magnitudes go up to 2^31 (`i32::MIN`): compared unsigned, by flipping the top bit.
    let top = _mm256_set1_epi32(i32::MIN);
    let flipped = _mm256_xor_si256(mags, top);
    let beyond = |j: u64| -> u8 {
        let bound = _mm256_xor_si256(_mm256_set1_epi32(j as i32), top);
        _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(flipped, bound))) as u8
    };
    let mut largest = [0u64; 2];
    for &k in &levels {
        let m = &mut largest[usize::from(k < 0)];
        *m = (*m).max(u64::from(k.unsigned_abs()));
    }
    for (neg, largest) in [false, true].into_iter().zip(largest) {
        let lanes = nonzero & if neg { negative } else { !negative };
        for j in 0..largest.min(flags) {
            let c = ContextLayout::gtx(j as usize, neg);
            adapt_ctx(rates, &adapt, c, beyond(j) & lanes, beyond(j + 1));
        }
    }
    let mut prefix = [0usize; STATES];
    let mut with_remainder = 0u8;
    for (lane, &k) in levels.iter().enumerate() {
        let m = u64::from(k.unsigned_abs());
        if m > flags {
            prefix[lane] = exp_golomb(m - flags - 1).0;
            with_remainder |= 1 << lane;
        }
    }
    if with_remainder == 0 {
        return;
    }
    let longest = prefix.iter().copied().max().unwrap_or(0);
    let rem = rates.layout.rem();
    for j in 0..=longest.min(MAX_PREFIX_BINS - 1) {
        let (mut active, mut ones) = (0u8, 0u8);
        for (lane, &n) in prefix.iter().enumerate() {
            active |= u8::from(n >= j) << lane;
            ones |= u8::from(n > j) << lane;
        }
        adapt_ctx(rates, &adapt, rem + j, active & with_remainder, ones);
    }
}
