//! The two steps of [`super::StateRates`]' vector forms, pricing and advancing, written once
//! over the few operations on eight 32-bit lanes they need ([`LaneOps`]); [`super::avx512`] and
//! [`super::avx2`] supply those and call these from their `#[target_feature]` entry points, into
//! which everything here is inlined.

use super::lanes::{class_masks, ending_at, Estimators, Lanes, NONE};
use super::{exp_golomb, CANDIDATES, STATES};
use crate::binarization::MAX_PREFIX_BINS;
use crate::context::ContextLayout;
use crate::tables::BYPASS_BITS;

/// Operations on a vector of eight 32-bit lanes, lane `s` for state `s`.
pub(super) trait LaneOps: Copy {
    type V: Copy;
    /// A context's lanes.
    fn load(self, lanes: &Estimators) -> Self::V;
    fn store(self, lanes: &mut Estimators, v: Self::V);
    fn vector_of(self, a: [u32; STATES]) -> Self::V;
    fn array_of(self, v: Self::V) -> [u32; STATES];
    /// The costs of both bins, `(bin 0, bin 1)`, in each state of a context's lanes (§2.4).
    fn costs(self, lanes: Self::V) -> (Self::V, Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn splat(self, x: u32) -> Self::V;
    /// `b` in the states of `m`, `a` in the others.
    fn blend(self, m: u8, a: Self::V, b: Self::V) -> Self::V;
    /// Lane `s` of the result is lane `order[s]` of `v` (`order` from [`LaneOps::vector_of`]).
    fn permute(self, v: Self::V, order: Self::V) -> Self::V;
    /// The §2.3 update of a context's lanes in the states of `active`, each towards its bin in
    /// `ones` (the others towards 0), both estimators at once.
    fn adapt(self, lanes: Self::V, active: u8, ones: u8) -> Self::V;
    /// `|level|` of each state, up to 2^31 (as unsigned lanes).
    fn magnitudes(self, levels: [i32; STATES]) -> Self::V;
    /// The states whose magnitude (from [`LaneOps::magnitudes`]) exceeds `j`.
    fn beyond(self, mags: Self::V, j: u64) -> u8;
}

/// The [`LaneOps`] members both vector forms build from the same AVX2 instructions (AVX-512
/// implies AVX2), for an `impl LaneOps` block whose module has the intrinsics, a `vector!`
/// macro that runs them, and `costs` and `p_of` functions.
macro_rules! ymm_lane_ops {
    () => {
        type V = __m256i;

        #[inline(always)]
        fn load(self, lanes: &Estimators) -> __m256i {
            vector!(_mm256_loadu_si256(lanes.as_ptr().cast()))
        }

        #[inline(always)]
        fn store(self, lanes: &mut Estimators, v: __m256i) {
            vector!(_mm256_storeu_si256(lanes.as_mut_ptr().cast(), v))
        }

        #[inline(always)]
        fn vector_of(self, a: [u32; STATES]) -> __m256i {
            vector!(_mm256_loadu_si256(a.as_ptr().cast()))
        }

        #[inline(always)]
        fn array_of(self, v: __m256i) -> [u32; STATES] {
            let mut a = [0u32; STATES];
            vector!(_mm256_storeu_si256(a.as_mut_ptr().cast(), v));
            a
        }

        #[inline(always)]
        fn costs(self, lanes: __m256i) -> (__m256i, __m256i) {
            vector!(costs(p_of(lanes)))
        }

        #[inline(always)]
        fn add(self, a: __m256i, b: __m256i) -> __m256i {
            vector!(_mm256_add_epi32(a, b))
        }

        #[inline(always)]
        fn splat(self, x: u32) -> __m256i {
            vector!(_mm256_set1_epi32(x as i32))
        }

        #[inline(always)]
        fn permute(self, v: __m256i, order: __m256i) -> __m256i {
            vector!(_mm256_permutevar8x32_epi32(v, order))
        }

        #[inline(always)]
        fn magnitudes(self, levels: [i32; STATES]) -> __m256i {
            vector!(_mm256_abs_epi32(_mm256_loadu_si256(levels.as_ptr().cast())))
        }
    };
}

/// [`Lanes::estimate`]'s prices.
#[inline(always)]
pub(super) fn estimate<O: LaneOps>(
    ops: O,
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
    let (sig_zero, sig_one) = ops.costs(ops.vector_of(sig));
    let mut out = [sig_zero; CANDIDATES];
    let classes = class_masks(nb);
    let flags = rates.flags();
    let rem = rates.layout.rem();
    let ctx = |c: usize| ops.load(&rates.ctxs[c]);
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
        let sign = ops.blend(
            classes[2],
            ops.blend(
                classes[1],
                ctx(ContextLayout::sign(0)),
                ctx(ContextLayout::sign(1)),
            ),
            ctx(ContextLayout::sign(2)),
        );
        let (sign_zero, sign_one) = ops.costs(sign);
        let head = ops.add(sig_one, if negative { sign_one } else { sign_zero });
        let mut ones = head;
        for j in 0..largest.min(flags) {
            let (zero, one) = ops.costs(ctx(ContextLayout::gtx(j as usize, negative)));
            let end = ops.add(ones, zero);
            for (o, stop) in out.iter_mut().zip(&stop) {
                *o = ops.blend(ending_at(*stop, j), *o, end);
            }
            ones = ops.add(ones, one);
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
            let suffix = ops.splat(j as u32 * BYPASS_BITS);
            let (end, one) = if j < MAX_PREFIX_BINS {
                let (zero, one) = ops.costs(ctx(rem + j));
                (ops.add(zero, suffix), one)
            } else {
                (suffix, ops.splat(0))
            };
            let end = ops.add(sum, end);
            for (o, prefix) in out.iter_mut().zip(&prefix) {
                *o = ops.blend(ending_at(*prefix, j as u64), *o, end);
            }
            sum = ops.add(sum, one);
        }
    }
    out.map(|o| ops.array_of(o))
}

/// Adapts context `ctx` in the states of `active`, each towards its bin in `ones`.
#[inline(always)]
fn adapt_ctx<O: LaneOps>(ops: O, rates: &mut Lanes, ctx: usize, active: u8, ones: u8) {
    if let Some(lanes) = rates.ctxs.get_mut(ctx) {
        ops.store(lanes, ops.adapt(ops.load(lanes), active, ones));
    }
    rates.touch(ctx);
}

/// [`Lanes::advance`]'s copies and adaptations, with the neighbours of generation `now`.
///
/// The step's bins go to the contexts in the order each state codes them: sig flag, sign flag,
/// greater-than flags, remainder prefix. A state codes at most one bin in a context between
/// those of another context, except where contexts coincide (N = 0: the first flag's and the
/// first prefix bins'), and there too the order is each state's own.
#[inline(always)]
pub(super) fn advance<O: LaneOps>(
    ops: O,
    rates: &mut Lanes,
    winners: [u8; STATES],
    levels: [i32; STATES],
    now: usize,
) {
    // Every state takes its winner's lanes (fresh contexts are the same in every lane).
    let order = ops.vector_of(winners.map(|w| u32::from(w & 7)));
    for (word, &bits) in rates.touched.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let c = 64 * word + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(lanes) = rates.ctxs.get_mut(c) {
                ops.store(lanes, ops.permute(ops.load(lanes), order));
            }
        }
    }

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
        adapt_ctx(ops, rates, c, 1 << lane, ones);
    }
    if nonzero == 0 {
        return;
    }
    for (class, lanes) in class_masks(&nb).into_iter().enumerate() {
        if lanes & nonzero != 0 {
            let c = ContextLayout::sign(class);
            adapt_ctx(ops, rates, c, lanes & nonzero, negative);
        }
    }
    let flags = rates.flags();
    let mags = ops.magnitudes(levels);
    let mut largest = [0u64; 2];
    for &k in &levels {
        let m = &mut largest[usize::from(k < 0)];
        *m = (*m).max(u64::from(k.unsigned_abs()));
    }
    for (neg, largest) in [false, true].into_iter().zip(largest) {
        let lanes = nonzero & if neg { negative } else { !negative };
        for j in 0..largest.min(flags) {
            let c = ContextLayout::gtx(j as usize, neg);
            let (active, ones) = (ops.beyond(mags, j) & lanes, ops.beyond(mags, j + 1));
            adapt_ctx(ops, rates, c, active, ones);
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
        adapt_ctx(ops, rates, rem + j, active & with_remainder, ones);
    }
}
