//! Thirty-two zero-offset trials in the lanes of two AVX-512 vectors: lane `l` of vector `v`
//! counts the shifts of the trial of offset `first + 16·v + l`.
//!
//! The steps of [`super::walk`] with AVX-512 F, CD and BW: lane masks are mask registers, the
//! rLPS table lives in eight registers (four `vpermt2w` word lookups), the LPS shift comes from
//! `vplzcnt`, and the §2.3 curve is a `vpermt2d` over two registers.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::walk::{self, TrialOps};
use crate::context::ContextLayout;
use crate::tables::{CURVE, RLPS_TABLE};
use crate::Error;

/// Whether this CPU has AVX-512 F, CD and BW (Intel since Skylake-SP, AMD since Zen 4) and the
/// environment variable `NNC_NO_AVX512` is unset (it selects the one-trial-at-a-time counter,
/// to compare the two).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512cd")
            && is_x86_feature_detected!("avx512bw")
            && std::env::var_os("NNC_NO_AVX512").is_none()
    })
}

/// Lanes per vector: one 512-bit vector of 32-bit lanes.
const LANES: usize = 16;

/// Vectors of [`LANES`] trials that step together.
const VECTORS: usize = 2;

type Lanes<const N: usize> = walk::Lanes<LANES, N>;

/// The shifts of each trial of `group` before its terminating bin (see
/// [`super::Kernel::group_shifts`]).
pub(super) fn group_shifts(trials: &walk::Trials<'_>) -> Result<Option<Vec<u64>>, Error> {
    if !available() {
        return Ok(None);
    }
    let ops = Avx512(());
    walk::count_group(trials, |lanes, range, layout| {
        // SAFETY: `available` checked AVX-512 F, CD and BW.
        #[allow(unsafe_code)]
        unsafe {
            count_shifts(ops, lanes, range, trials.indices, trials.span(), layout)
        }
    })
}

/// [`walk::count_shifts`] with AVX-512 F, CD and BW enabled, for `VECTORS` vectors.
#[target_feature(enable = "avx512f,avx512cd,avx512bw")]
fn count_shifts(
    ops: Avx512,
    lanes: &mut Lanes<VECTORS>,
    range: [[i32; LANES]; VECTORS],
    indices: &[i32],
    span: (u32, usize),
    layout: &ContextLayout,
) -> [[u64; LANES]; VECTORS] {
    walk::count_shifts(ops, lanes, range, indices, span, layout)
}

/// The AVX-512 operations: made only where the CPU has AVX-512 F, CD and BW (`group_shifts`).
#[derive(Clone, Copy)]
struct Avx512(());

/// One vector's engine: its lanes' ranges and shifts, and the tables.
struct Engine {
    range: __m512i,
    /// Shifts since the last flush, per lane.
    shifts: __m512i,
    tables: Tables,
}

/// The tables a step reads, in registers.
#[derive(Clone, Copy)]
struct Tables {
    /// §2.3's curve, entries 0..16 and 16..32, for `vpermt2d`.
    curve: [__m512i; 2],
    /// `RLPS_TABLE` as 16-bit entries in eight registers of 32, for `vpermt2w`.
    rlps: [__m512i; 8],
}

/// One bin in every `active` lane of vector `v`: lane `l` codes bit `l` of `bin` in the
/// context `ctxs[k]` whose `sel[k]` has bit `l` (the `sel` masks part the lanes), moving its
/// range and shifts as [`crate::encoder::RangeStep`] and adapting that context as §2.3.
#[inline]
#[target_feature(enable = "avx512f,avx512cd,avx512bw")]
fn step<const K: usize, const N: usize>(
    lanes: &mut Lanes<N>,
    v: usize,
    eng: &mut Engine,
    ctxs: [usize; K],
    sel: [__mmask16; K],
    active: __mmask16,
    bin: __mmask16,
) {
    if active == 0 {
        return;
    }
    let blended = |a: &[[[i32; LANES]; N]]| {
        let mut x = load(&a[ctxs[0]][v]);
        for k in 1..K {
            x = _mm512_mask_blend_epi32(sel[k], x, load(&a[ctxs[k]][v]));
        }
        x
    };
    let p = blended(&lanes.p);
    let s0 = blended(&lanes.s0);
    let shift0 = blended(&lanes.shift0);
    let shift1 = blended(&lanes.shift1);
    let zero = _mm512_setzero_si512();

    // The range (§1.2): rLPS from the table, the LPS shift from its leading zeros.
    let col = _mm512_abs_epi32(_mm512_srai_epi32::<7>(p));
    let row = _mm512_and_si512(eng.range, _mm512_set1_epi32(0xE0));
    let idx = _mm512_and_si512(_mm512_add_epi32(row, col), _mm512_set1_epi32(0xFF));
    // rLPS from the table in registers: word lookups in its four quarters (the index's low six
    // bits), picked by bits 6 and 7.
    let t = &eng.tables.rlps;
    let quarters = [
        _mm512_permutex2var_epi16(t[0], idx, t[1]),
        _mm512_permutex2var_epi16(t[2], idx, t[3]),
        _mm512_permutex2var_epi16(t[4], idx, t[5]),
        _mm512_permutex2var_epi16(t[6], idx, t[7]),
    ];
    let bit6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(0x40));
    let bit7 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(0x80));
    let rlps = _mm512_and_si512(
        _mm512_mask_blend_epi32(
            bit7,
            _mm512_mask_blend_epi32(bit6, quarters[0], quarters[1]),
            _mm512_mask_blend_epi32(bit6, quarters[2], quarters[3]),
        ),
        _mm512_set1_epi32(0xFF),
    );
    let rmps = _mm512_sub_epi32(eng.range, rlps);
    let mps_is_one = _mm512_cmpge_epi32_mask(p, zero);
    let lps = bin ^ mps_is_one;
    let small = _mm512_cmplt_epi32_mask(rmps, _mm512_set1_epi32(256));
    let r_mps = _mm512_mask_slli_epi32(rmps, small, rmps, 1);
    let n_mps = _mm512_maskz_mov_epi32(small, _mm512_set1_epi32(1));
    let n_lps = _mm512_sub_epi32(_mm512_lzcnt_epi32(rlps), _mm512_set1_epi32(23));
    let r_lps = _mm512_sllv_epi32(rlps, n_lps);
    eng.range = _mm512_mask_blend_epi32(
        active & lps,
        _mm512_mask_mov_epi32(eng.range, active, r_mps),
        r_lps,
    );
    let n = _mm512_mask_blend_epi32(lps, n_mps, n_lps);
    eng.shifts = _mm512_mask_add_epi32(eng.shifts, active, eng.shifts, n);

    // The update (§2.3): each estimator steps by CURVE[16 + ((sgn·S) >> k)] >> shift towards
    // the bin, S1 recovered from P with the old S0.
    let s1 = _mm512_sub_epi32(p, _mm512_slli_epi32::<4>(s0));
    let towards = |s: __m512i, d: __m512i| {
        _mm512_mask_blend_epi32(bin, _mm512_sub_epi32(s, d), _mm512_add_epi32(s, d))
    };
    let sgn_s0 = _mm512_mask_blend_epi32(bin, _mm512_sub_epi32(zero, s0), s0);
    let i0 = _mm512_add_epi32(_mm512_srai_epi32::<3>(sgn_s0), _mm512_set1_epi32(16));
    let d0 = _mm512_srlv_epi32(
        _mm512_permutex2var_epi32(eng.tables.curve[0], i0, eng.tables.curve[1]),
        shift0,
    );
    let sgn_s1 = _mm512_mask_blend_epi32(bin, _mm512_sub_epi32(zero, s1), s1);
    let i1 = _mm512_add_epi32(_mm512_srai_epi32::<7>(sgn_s1), _mm512_set1_epi32(16));
    let d1 = _mm512_srlv_epi32(
        _mm512_permutex2var_epi32(eng.tables.curve[0], i1, eng.tables.curve[1]),
        shift1,
    );
    let s0 = towards(s0, d0);
    let p = _mm512_add_epi32(towards(s1, d1), _mm512_slli_epi32::<4>(s0));
    for k in 0..K {
        let m = active & sel[k];
        mask_store(&mut lanes.p[ctxs[k]][v], m, p);
        mask_store(&mut lanes.s0[ctxs[k]][v], m, s0);
    }
}

/// Runs an expression of AVX-512 intrinsics inside an [`Avx512`] method.
macro_rules! vector {
    ($e:expr) => {{
        // SAFETY: `self` is an `Avx512`, which exists only where the CPU has AVX-512 F, CD and
        // BW (`group_shifts`), all the intrinsics here need; loads and stores are of arrays of
        // the vector's size, with no alignment requirement.
        #[allow(unsafe_code)]
        let v = unsafe { $e };
        v
    }};
}

impl TrialOps<LANES> for Avx512 {
    type V = __m512i;
    type M = __mmask16;
    type Engine = Engine;

    #[inline(always)]
    fn splat(self, x: i32) -> __m512i {
        vector!(_mm512_set1_epi32(x))
    }

    #[inline(always)]
    fn vector(self, a: [i32; LANES]) -> __m512i {
        vector!(load(&a))
    }

    #[inline(always)]
    fn sub(self, a: __m512i, b: __m512i) -> __m512i {
        vector!(_mm512_sub_epi32(a, b))
    }

    #[inline(always)]
    fn abs(self, a: __m512i) -> __m512i {
        vector!(_mm512_abs_epi32(a))
    }

    #[inline(always)]
    fn floor_log2(self, r: __m512i) -> __m512i {
        vector!(_mm512_sub_epi32(
            _mm512_set1_epi32(31),
            _mm512_lzcnt_epi32(r)
        ))
    }

    #[inline(always)]
    fn first_lanes(self, count: usize) -> __mmask16 {
        ((1u32 << count.min(LANES)) - 1) as __mmask16
    }

    #[inline(always)]
    fn all(self) -> __mmask16 {
        0xFFFF
    }

    #[inline(always)]
    fn classes(self, a: __m512i) -> [__mmask16; 3] {
        vector!({
            let zero = _mm512_setzero_si512();
            [
                _mm512_cmpeq_epi32_mask(a, zero),
                _mm512_cmplt_epi32_mask(a, zero),
                _mm512_cmpgt_epi32_mask(a, zero),
            ]
        })
    }

    #[inline(always)]
    fn nonzero(self, a: __m512i) -> __mmask16 {
        vector!(_mm512_cmpneq_epi32_mask(a, _mm512_setzero_si512()))
    }

    #[inline(always)]
    fn negative(self, a: __m512i) -> __mmask16 {
        vector!(_mm512_cmplt_epi32_mask(a, _mm512_setzero_si512()))
    }

    #[inline(always)]
    fn above(self, a: __m512i, t: usize) -> __mmask16 {
        vector!(_mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(t as i32)))
    }

    #[inline(always)]
    fn greater(self, a: __m512i, b: __m512i) -> __mmask16 {
        vector!(_mm512_cmpgt_epi32_mask(a, b))
    }

    #[inline(always)]
    fn and(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }

    #[inline(always)]
    fn or(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a | b
    }

    #[inline(always)]
    fn not(self, a: __mmask16) -> __mmask16 {
        !a
    }

    #[inline(always)]
    fn none(self, a: __mmask16) -> bool {
        a == 0
    }

    #[inline(always)]
    fn engine(self, range: &[i32; LANES]) -> Engine {
        vector!({
            let table = |k: usize| {
                let words: [u16; 32] = std::array::from_fn(|i| u16::from(RLPS_TABLE[32 * k + i]));
                _mm512_loadu_si512(words.as_ptr().cast())
            };
            Engine {
                range: load(range),
                shifts: _mm512_setzero_si512(),
                tables: Tables {
                    curve: [
                        load(CURVE[..16].try_into().expect("CURVE has 32 entries")),
                        load(CURVE[16..].try_into().expect("CURVE has 32 entries")),
                    ],
                    rlps: std::array::from_fn(table),
                },
            }
        })
    }

    #[inline(always)]
    fn add_shifts(self, eng: &mut Engine, m: __mmask16, v: __m512i) {
        eng.shifts = vector!(_mm512_mask_add_epi32(eng.shifts, m, eng.shifts, v));
    }

    #[inline(always)]
    fn take_shifts(self, eng: &mut Engine) -> [u32; LANES] {
        let shifts = vector!(to_array(eng.shifts));
        eng.shifts = vector!(_mm512_setzero_si512());
        shifts.map(|s| s as u32)
    }

    #[inline(always)]
    fn step<const K: usize, const N: usize>(
        self,
        lanes: &mut Lanes<N>,
        v: usize,
        eng: &mut Engine,
        ctxs: [usize; K],
        sel: [__mmask16; K],
        active: __mmask16,
        bin: __mmask16,
    ) {
        vector!(step(lanes, v, eng, ctxs, sel, active, bin))
    }
}

#[target_feature(enable = "avx512f")]
fn load(a: &[i32; LANES]) -> __m512i {
    // SAFETY: `a` is 64 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_loadu_si512(a.as_ptr().cast())
    }
}

/// Stores the lanes of `v` that `m` selects into `a`.
#[target_feature(enable = "avx512f")]
fn mask_store(a: &mut [i32; LANES], m: __mmask16, v: __m512i) {
    // SAFETY: `a` is 64 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_mask_storeu_epi32(a.as_mut_ptr(), m, v)
    }
}

#[target_feature(enable = "avx512f")]
fn to_array(v: __m512i) -> [i32; LANES] {
    let mut out = [0i32; LANES];
    // SAFETY: `out` is 64 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_storeu_si512(out.as_mut_ptr().cast(), v)
    };
    out
}
