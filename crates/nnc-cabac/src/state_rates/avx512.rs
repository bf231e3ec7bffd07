//! [`super::StateRates`] with AVX-512 (F, BW and VL): a context is one 256-bit vector of eight
//! 32-bit lanes, one per state, each holding the state's S0 (low half) and S1 (high half).
//!
//! - The step's copies are one `vpermd` per context that is not fresh.
//! - A context the states code a bin in together (sign, greater-than flags, remainder prefix)
//!   adapts in all of them at once, each lane towards its own bin, with the §2.3 formula
//!   `S += sgn·(CURVE[16 + ((sgn·S) >> k)] >> shift)` on the 16-bit halves (the curve is a
//!   two-register `vpermt2w`, stored rotated by 16 so that its index wraps modulo 32).
//! - Costs come eight at a time from one `vpgatherdq` of the §2.4 table's (bin 0, bin 1) pairs.
//!
//! The sig flag's context differs from state to state (it depends on the state itself), so
//! it adapts one lane at a time.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::lanes::{class_masks, ending_at, lanes_of, Estimators, Lanes, NONE};
use super::{exp_golomb, CANDIDATES, SHIFT0, SHIFT1, STATES};
use crate::binarization::MAX_PREFIX_BINS;
use crate::context::ContextLayout;
use crate::tables::{est_bits_table, BYPASS_BITS, CURVE_CONST};

/// Whether this CPU has AVX-512 F, BW and VL and the environment variable `NNC_NO_AVX512` is
/// unset (it selects the portable form, to compare the two or to rule this one out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && std::env::var_os("NNC_NO_AVX512").is_none()
    })
}

/// The costs of both bins in each state, from the states' `P` (8 × i32): `(bin 0, bin 1)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn costs(p: __m256i) -> (__m256i, __m256i) {
    let table = est_bits_table();
    let index = _mm256_and_si256(
        _mm256_add_epi32(_mm256_srai_epi32::<3>(p), _mm256_set1_epi32(512)),
        _mm256_set1_epi32(1023),
    );
    // SAFETY: every index is below 1024 (masked above), so each 8-byte read is one
    // `[u32; 2]` entry of the table.
    #[allow(unsafe_code)]
    let pairs = unsafe { _mm512_i32gather_epi64::<8>(index, table.as_ptr().cast()) };
    (
        _mm512_cvtepi64_epi32(pairs),
        _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(pairs)),
    )
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn load(lanes: &Estimators) -> __m256i {
    // SAFETY: `lanes` is 32 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_loadu_si256(lanes.as_ptr().cast())
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn store(lanes: &mut Estimators, v: __m256i) {
    // SAFETY: `lanes` is 32 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v)
    }
}

/// `P = S1 + 16·S0` of every state (8 × i32), from a context's lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn p_of(v: __m256i) -> __m256i {
    _mm256_add_epi32(
        _mm256_srai_epi32::<16>(v),
        _mm256_srai_epi32::<12>(_mm256_slli_epi32::<16>(v)),
    )
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) fn estimate_lanes(
    rates: &Lanes,
    levels: [[i32; CANDIDATES]; 2],
) -> [[u32; STATES]; CANDIDATES] {
    let nb = &rates.nb[rates.latest];
    // Each state's sig context is its own: lane `s` of the context for state `s`.
    let mut sig = _mm256_setzero_si256();
    for (lane, &n) in nb.iter().enumerate() {
        let lanes = load(&rates.ctxs[ContextLayout::sig(lane, ContextLayout::nb_class(n))]);
        sig = _mm256_mask_blend_epi32(1 << lane, sig, lanes);
    }
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
        let sign = _mm256_mask_blend_epi32(
            classes[2],
            _mm256_mask_blend_epi32(
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
                *o = _mm256_mask_blend_epi32(ending_at(*stop, j), *o, end);
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
                *o = _mm256_mask_blend_epi32(ending_at(*prefix, j as u64), *o, end);
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

/// `CURVE[(i + 16) % 32]` as two vectors of sixteen: the curve indexed by `x mod 32` for
/// `CURVE[16 + x]`.
const CURVE_ROTATED: [Estimators; 2] = {
    let mut t = [[0i16; 2 * STATES]; 2];
    let mut i = 0;
    while i < 32 {
        t[i / 16][i % 16] = CURVE_CONST[(i + 16) % 32] as i16;
        i += 1;
    }
    t
};

/// Per lane, the shift before the curve lookup (3 for S0, 7 for S1) and the adaptation shift.
const PRE: Estimators = lanes_of(3, 7);
const POST: Estimators = lanes_of(SHIFT0 as i16, SHIFT1 as i16);

/// The 16-bit lane mask of the states of an 8-bit one: bit `s` becomes bits `2s` and `2s + 1`.
const BOTH_HALVES: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut m = 0;
    while m < 256 {
        let mut s = 0;
        while s < STATES {
            if m >> s & 1 != 0 {
                t[m] |= 3 << (2 * s);
            }
            s += 1;
        }
        m += 1;
    }
    t
};

/// The §2.3 update, applied in the states of `active` towards their bins in `ones` (the
/// others towards 0), both estimators at once.
struct Adapt {
    curve_lo: __m256i,
    curve_hi: __m256i,
    pre: __m256i,
    post: __m256i,
}

impl Adapt {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn new() -> Self {
        Self {
            curve_lo: load(&CURVE_ROTATED[0]),
            curve_hi: load(&CURVE_ROTATED[1]),
            pre: load(&PRE),
            post: load(&POST),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn apply(&self, s: __m256i, active: u8, ones: u8) -> __m256i {
        let both = |m: u8| BOTH_HALVES[usize::from(m)];
        let zeros = both(!ones);
        let zero = _mm256_setzero_si256();
        let towards = _mm256_mask_sub_epi16(s, zeros, zero, s);
        let index = _mm256_srav_epi16(towards, self.pre);
        let step = _mm256_srlv_epi16(
            _mm256_permutex2var_epi16(self.curve_lo, index, self.curve_hi),
            self.post,
        );
        let signed = _mm256_mask_sub_epi16(step, zeros, zero, step);
        _mm256_mask_add_epi16(s, both(active), s, signed)
    }
}

/// Adapts context `ctx` in the states of `active`, each towards its bin in `ones`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn adapt_ctx(rates: &mut Lanes, adapt: &Adapt, ctx: usize, active: u8, ones: u8) {
    if let Some(lanes) = rates.ctxs.get_mut(ctx) {
        store(lanes, adapt.apply(load(lanes), active, ones));
    }
    rates.touch(ctx);
}

/// The step's bins go to the contexts in the order each state codes them: sig flag, sign flag,
/// greater-than flags, remainder prefix. A state codes at most one bin in a context between
/// those of another context, except where contexts coincide (N = 0: the first flag's and the
/// first prefix bins'), and there too the order is each state's own.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
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
        adapt_ctx(
            rates,
            &adapt,
            ContextLayout::sig(lane, ContextLayout::nb_class(n)),
            1 << lane,
            ones,
        );
    }
    if nonzero == 0 {
        return;
    }
    for (class, lanes) in class_masks(&nb).into_iter().enumerate() {
        if lanes & nonzero != 0 {
            adapt_ctx(
                rates,
                &adapt,
                ContextLayout::sign(class),
                lanes & nonzero,
                negative,
            );
        }
    }
    let flags = rates.flags();
    // SAFETY: `levels` is 32 readable bytes.
    #[allow(unsafe_code)]
    let mags = _mm256_abs_epi32(unsafe { _mm256_loadu_si256(levels.as_ptr().cast()) });
    let beyond = |j: u64| _mm256_cmpgt_epu32_mask(mags, _mm256_set1_epi32(j as i32));
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
