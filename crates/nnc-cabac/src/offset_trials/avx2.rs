//! Thirty-two zero-offset trials in the lanes of four AVX2 vectors: lane `l` of vector `v`
//! counts the shifts of the trial of offset `first + 8·v + l`.
//!
//! The steps of [`super::walk`] for CPUs without AVX-512 (AMD before Zen 4, Intel's client
//! cores), as [`super::avx512`] takes them: masks are vectors of all-ones lanes instead of
//! mask registers, rLPS (in its packed form, which also gives the LPS shift and renormalised
//! range) comes from a gather, and the curve from four `vpermd`.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::walk::{self, TrialOps};
use crate::context::ContextLayout;
use crate::tables::{CURVE, RLPS_PACKED};
use crate::Error;

/// Whether this CPU has AVX2 and the environment variable `NNC_NO_AVX2` is unset (it selects
/// the one-trial-at-a-time counter where AVX-512 is off too, to compare the two).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2") && std::env::var_os("NNC_NO_AVX2").is_none()
    })
}

/// Lanes per vector: one 256-bit vector of 32-bit lanes.
const LANES: usize = 8;

/// Vectors of [`LANES`] trials that step together.
const VECTORS: usize = 4;

type Lanes<const N: usize> = walk::Lanes<LANES, N>;

/// The shifts of each trial of `group` before its terminating bin (see
/// [`super::Kernel::group_shifts`]).
pub(super) fn group_shifts(trials: &walk::Trials<'_>) -> Result<Option<Vec<u64>>, Error> {
    if !available() {
        return Ok(None);
    }
    let ops = Avx2(());
    walk::count_group(trials, |lanes, range, layout| {
        // SAFETY: `available` checked AVX2.
        #[allow(unsafe_code)]
        unsafe {
            count_shifts(ops, lanes, range, trials.indices, trials.span(), layout)
        }
    })
}

/// [`walk::count_shifts`] with AVX2 enabled, for `VECTORS` vectors.
#[target_feature(enable = "avx2")]
fn count_shifts(
    ops: Avx2,
    lanes: &mut Lanes<VECTORS>,
    range: [[i32; LANES]; VECTORS],
    indices: &[i32],
    span: (u32, usize),
    layout: &ContextLayout,
) -> [[u64; LANES]; VECTORS] {
    walk::count_shifts(ops, lanes, range, indices, span, layout)
}

/// The AVX2 operations: made only where the CPU has AVX2 (`group_shifts`).
#[derive(Clone, Copy)]
struct Avx2(());

/// One vector's engine: its lanes' ranges and shifts since the last flush.
struct Engine {
    range: __m256i,
    shifts: __m256i,
    /// §2.3's curve as four registers of eight entries.
    curve: [__m256i; 4],
}

/// One bin in every `active` lane of vector `v` (masks are all-ones lanes): lane `l` codes
/// lane `l` of `bin` in the context `ctxs[k]` whose `sel[k]` selects it (the `sel` masks part
/// the lanes), moving its range and shifts as [`crate::encoder::RangeStep`] and adapting that
/// context as §2.3.
#[inline]
#[target_feature(enable = "avx2")]
fn step<const K: usize, const N: usize>(
    lanes: &mut Lanes<N>,
    v: usize,
    eng: &mut Engine,
    ctxs: [usize; K],
    sel: [__m256i; K],
    active: __m256i,
    bin: __m256i,
) {
    if _mm256_testz_si256(active, active) != 0 {
        return;
    }
    let blended = |a: &[[[i32; LANES]; N]]| {
        let mut x = load(&a[ctxs[0]][v]);
        for k in 1..K {
            x = _mm256_blendv_epi8(x, load(&a[ctxs[k]][v]), sel[k]);
        }
        x
    };
    let p = blended(&lanes.p);
    let s0 = blended(&lanes.s0);
    let shift0 = blended(&lanes.shift0);
    let shift1 = blended(&lanes.shift1);
    let zero = _mm256_setzero_si256();

    // The range (§1.2): rLPS, its renormalising shift and the renormalised LPS range from one
    // entry of the packed table.
    let col = _mm256_abs_epi32(_mm256_srai_epi32::<7>(p));
    let row = _mm256_and_si256(eng.range, _mm256_set1_epi32(0xE0));
    let idx = _mm256_and_si256(_mm256_add_epi32(row, col), _mm256_set1_epi32(0xFF));
    let e = gather(&RLPS_PACKED, idx);
    let rlps = _mm256_and_si256(e, _mm256_set1_epi32(0xFF));
    let rmps = _mm256_sub_epi32(eng.range, rlps);
    let mps_is_one = _mm256_cmpgt_epi32(p, _mm256_set1_epi32(-1));
    let lps = _mm256_xor_si256(bin, mps_is_one);
    let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(256), rmps);
    let r_mps = _mm256_add_epi32(rmps, _mm256_and_si256(rmps, small));
    let n_mps = _mm256_srli_epi32::<31>(small);
    let n_lps = _mm256_and_si256(_mm256_srli_epi32::<8>(e), _mm256_set1_epi32(0xF));
    let r_lps = _mm256_srli_epi32::<16>(e);
    eng.range = _mm256_blendv_epi8(
        _mm256_blendv_epi8(eng.range, r_mps, active),
        r_lps,
        _mm256_and_si256(active, lps),
    );
    let n = _mm256_blendv_epi8(n_mps, n_lps, lps);
    eng.shifts = _mm256_add_epi32(eng.shifts, _mm256_and_si256(n, active));

    // The update (§2.3): each estimator steps by CURVE[16 + ((sgn·S) >> k)] >> shift towards
    // the bin, S1 recovered from P with the old S0.
    let s1 = _mm256_sub_epi32(p, _mm256_slli_epi32::<4>(s0));
    let towards = |s: __m256i, d: __m256i| {
        _mm256_blendv_epi8(_mm256_sub_epi32(s, d), _mm256_add_epi32(s, d), bin)
    };
    let curve = |i: __m256i, shift: __m256i| {
        let i = _mm256_add_epi32(i, _mm256_set1_epi32(16));
        _mm256_srlv_epi32(curve_at(&eng.curve, i), shift)
    };
    let sgn_s0 = _mm256_blendv_epi8(_mm256_sub_epi32(zero, s0), s0, bin);
    let d0 = curve(_mm256_srai_epi32::<3>(sgn_s0), shift0);
    let sgn_s1 = _mm256_blendv_epi8(_mm256_sub_epi32(zero, s1), s1, bin);
    let d1 = curve(_mm256_srai_epi32::<7>(sgn_s1), shift1);
    let s0 = towards(s0, d0);
    let p = _mm256_add_epi32(towards(s1, d1), _mm256_slli_epi32::<4>(s0));
    for k in 0..K {
        let m = _mm256_and_si256(active, sel[k]);
        blend_store(&mut lanes.p[ctxs[k]][v], m, p);
        blend_store(&mut lanes.s0[ctxs[k]][v], m, s0);
    }
}

/// Runs an expression of AVX2 intrinsics inside an [`Avx2`] method.
macro_rules! vector {
    ($e:expr) => {{
        // SAFETY: `self` is an `Avx2`, which exists only where the CPU has AVX2
        // (`group_shifts`), all the intrinsics here need; loads and stores are of arrays of the
        // vector's size, with no alignment requirement.
        #[allow(unsafe_code)]
        let v = unsafe { $e };
        v
    }};
}

impl TrialOps<LANES> for Avx2 {
    type V = __m256i;
    /// Lanes of all ones.
    type M = __m256i;
    type Engine = Engine;

    #[inline(always)]
    fn splat(self, x: i32) -> __m256i {
        vector!(_mm256_set1_epi32(x))
    }

    #[inline(always)]
    fn vector(self, a: [i32; LANES]) -> __m256i {
        vector!(load(&a))
    }

    #[inline(always)]
    fn sub(self, a: __m256i, b: __m256i) -> __m256i {
        vector!(_mm256_sub_epi32(a, b))
    }

    #[inline(always)]
    fn abs(self, a: __m256i) -> __m256i {
        vector!(_mm256_abs_epi32(a))
    }

    #[inline(always)]
    fn floor_log2(self, r: __m256i) -> __m256i {
        vector!(floor_log2(r))
    }

    #[inline(always)]
    fn first_lanes(self, count: usize) -> __m256i {
        let count = count.min(LANES) as i32;
        vector!(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(count),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
        ))
    }

    #[inline(always)]
    fn all(self) -> __m256i {
        vector!(_mm256_set1_epi32(-1))
    }

    #[inline(always)]
    fn classes(self, a: __m256i) -> [__m256i; 3] {
        vector!({
            let zero = _mm256_setzero_si256();
            [
                _mm256_cmpeq_epi32(a, zero),
                _mm256_cmpgt_epi32(zero, a),
                _mm256_cmpgt_epi32(a, zero),
            ]
        })
    }

    #[inline(always)]
    fn nonzero(self, a: __m256i) -> __m256i {
        self.not(vector!(_mm256_cmpeq_epi32(a, _mm256_setzero_si256())))
    }

    #[inline(always)]
    fn negative(self, a: __m256i) -> __m256i {
        vector!(_mm256_cmpgt_epi32(_mm256_setzero_si256(), a))
    }

    #[inline(always)]
    fn above(self, a: __m256i, t: usize) -> __m256i {
        // Unsigned a > t is max(a, t + 1) == a.
        vector!({
            let t1 = _mm256_set1_epi32(t as i32 + 1);
            _mm256_cmpeq_epi32(_mm256_max_epu32(a, t1), a)
        })
    }

    #[inline(always)]
    fn greater(self, a: __m256i, b: __m256i) -> __m256i {
        vector!(_mm256_cmpgt_epi32(a, b))
    }

    #[inline(always)]
    fn and(self, a: __m256i, b: __m256i) -> __m256i {
        vector!(_mm256_and_si256(a, b))
    }

    #[inline(always)]
    fn or(self, a: __m256i, b: __m256i) -> __m256i {
        vector!(_mm256_or_si256(a, b))
    }

    #[inline(always)]
    fn not(self, a: __m256i) -> __m256i {
        vector!(_mm256_xor_si256(a, _mm256_set1_epi32(-1)))
    }

    #[inline(always)]
    fn none(self, a: __m256i) -> bool {
        vector!(_mm256_testz_si256(a, a)) != 0
    }

    #[inline(always)]
    fn engine(self, range: &[i32; LANES]) -> Engine {
        vector!(Engine {
            range: load(range),
            shifts: _mm256_setzero_si256(),
            curve: std::array::from_fn(|q| {
                load(CURVE[8 * q..][..8].try_into().expect("32 entries"))
            }),
        })
    }

    #[inline(always)]
    fn add_shifts(self, eng: &mut Engine, m: __m256i, v: __m256i) {
        eng.shifts = vector!(_mm256_add_epi32(eng.shifts, _mm256_and_si256(v, m)));
    }

    #[inline(always)]
    fn take_shifts(self, eng: &mut Engine) -> [u32; LANES] {
        let shifts = vector!(to_array(eng.shifts));
        eng.shifts = vector!(_mm256_setzero_si256());
        shifts.map(|s| s as u32)
    }

    #[inline(always)]
    fn step<const K: usize, const N: usize>(
        self,
        lanes: &mut Lanes<N>,
        v: usize,
        eng: &mut Engine,
        ctxs: [usize; K],
        sel: [__m256i; K],
        active: __m256i,
        bin: __m256i,
    ) {
        vector!(step(lanes, v, eng, ctxs, sel, active, bin))
    }
}

/// `⌊log2 r⌋` in the lanes where `1 ≤ r < 2^31` (others are left to the caller's masks): the
/// bit below the leading one is cleared first, so converting to `f32` cannot round up into
/// the next power of two, and the exponent is the answer.
#[inline]
#[target_feature(enable = "avx2")]
fn floor_log2(r: __m256i) -> __m256i {
    let x = _mm256_andnot_si256(_mm256_srli_epi32::<1>(r), r);
    let bits = _mm256_castps_si256(_mm256_cvtepi32_ps(x));
    _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127))
}

/// `CURVE[i & 31]` in every lane, from its four registers: `vpermd` looks up the low three
/// bits in each quarter, and bits 3 and 4 (moved to the sign bit) pick the quarter.
#[inline]
#[target_feature(enable = "avx2")]
fn curve_at(curve: &[__m256i; 4], i: __m256i) -> __m256i {
    let q: [__m256; 4] =
        std::array::from_fn(|k| _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(curve[k], i)));
    let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(i));
    let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(i));
    _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_blendv_ps(q[0], q[1], bit3),
        _mm256_blendv_ps(q[2], q[3], bit3),
        bit4,
    ))
}

/// `table[i]` in every lane, each index masked into the table first.
#[inline]
#[target_feature(enable = "avx2")]
fn gather<T: Copy, const N: usize>(table: &[T; N], i: __m256i) -> __m256i {
    const { assert!(std::mem::size_of::<T>() == 4 && N.is_power_of_two()) };
    let i = _mm256_and_si256(i, _mm256_set1_epi32(N as i32 - 1));
    // SAFETY: every index is below N after the mask, and `table` holds N 4-byte entries.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_i32gather_epi32::<4>(table.as_ptr().cast(), i)
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load(a: &[i32; LANES]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_loadu_si256(a.as_ptr().cast())
    }
}

/// Stores the lanes of `v` that `m` selects into `a`, leaving the others.
#[inline]
#[target_feature(enable = "avx2")]
fn blend_store(a: &mut [i32; LANES], m: __m256i, v: __m256i) {
    let old = load(a);
    // SAFETY: `a` is 32 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_si256(a.as_mut_ptr().cast(), _mm256_blendv_epi8(old, v, m))
    }
}

#[target_feature(enable = "avx2")]
fn to_array(v: __m256i) -> [i32; LANES] {
    let mut out = [0i32; LANES];
    // SAFETY: `out` is 32 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), v)
    };
    out
}
