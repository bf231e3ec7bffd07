//! Thirty-two zero-offset trials in the lanes of two AVX-512 vectors: lane `l` of vector `v`
//! counts the shifts of the trial of offset `first + 16·v + l`.
//!
//! Every lane runs [`crate::payload_size()`]'s counter on its own levels: the same bins in the
//! same order, with its own range and its own copy of every context. Lanes code different
//! contexts only where their levels' classes differ (the neighbour class of the sig and sign
//! flags, the sign of the greater-than flags), so each step loads its two or three candidate
//! contexts and blends them per lane, and a lane that codes no bin in a step (the greater-than
//! flags and remainder bins beyond its level) sits it out under a mask.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::FLUSH_VALUES;
use crate::binarization::MAX_PREFIX_BINS;
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

type Lanes = super::Lanes<LANES, VECTORS>;

/// The shifts of each trial of `group` before its terminating bin (see
/// [`super::Kernel::group_shifts`]).
pub(super) fn group_shifts(trials: &super::Trials<'_>) -> Result<Option<Vec<u64>>, Error> {
    super::count_group(trials, |lanes, range, layout| {
        // SAFETY: `available` checked AVX-512 F, CD and BW (the kernel is chosen only then).
        #[allow(unsafe_code)]
        unsafe {
            count_shifts(lanes, range, trials.indices, trials.span(), layout)
        }
    })
}

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
fn step<const K: usize>(
    lanes: &mut Lanes,
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
    let blended = |a: &[[[i32; LANES]; VECTORS]]| {
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

/// Every lane's shifts over the levels `indices[i] − (first + 16·v + l)`, in index order (a
/// counted tensor is scanned row-major in one block row), for the first `trials` lanes (the
/// others count nothing).
///
/// The vectors step together, bin for bin, so that their range chains overlap.
#[target_feature(enable = "avx512f,avx512cd,avx512bw")]
fn count_shifts(
    lanes: &mut Lanes,
    range: [[i32; LANES]; VECTORS],
    indices: &[i32],
    (first, trials): (u32, usize),
    layout: &ContextLayout,
) -> [[u64; LANES]; VECTORS] {
    let n = layout.num_gtx_flags() as usize;
    let rem = layout.rem();
    let zero = _mm512_setzero_si512();
    let all: __mmask16 = 0xFFFF;
    // Lanes past the last trial code nothing: their levels would add steps of their own.
    let live: [__mmask16; VECTORS] = std::array::from_fn(|v| {
        let count = trials.saturating_sub(v * LANES).min(LANES);
        ((1u32 << count) - 1) as __mmask16
    });
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let lane_offsets: [__m512i; VECTORS] =
        std::array::from_fn(|v| _mm512_add_epi32(iota, _mm512_set1_epi32((v * LANES) as i32)));
    let table = |k: usize| {
        let words: [u16; 32] = std::array::from_fn(|i| u16::from(RLPS_TABLE[32 * k + i]));
        // SAFETY: `words` is 64 readable bytes; the load has no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_loadu_si512(words.as_ptr().cast())
        }
    };
    let tables = Tables {
        curve: [
            load(CURVE[..16].try_into().expect("CURVE has 32 entries")),
            load(CURVE[16..].try_into().expect("CURVE has 32 entries")),
        ],
        rlps: std::array::from_fn(table),
    };
    let mut engines: [Engine; VECTORS] = std::array::from_fn(|v| Engine {
        range: load(&range[v]),
        shifts: zero,
        tables,
    });
    let mut totals = [[0u64; LANES]; VECTORS];
    let flush = |engines: &mut [Engine; VECTORS], totals: &mut [[u64; LANES]; VECTORS]| {
        for (eng, total) in engines.iter_mut().zip(totals.iter_mut()) {
            for (t, s) in total.iter_mut().zip(to_array(eng.shifts)) {
                *t += u64::from(s as u32);
            }
            eng.shifts = _mm512_setzero_si512();
        }
    };
    let sig = [
        ContextLayout::sig(0, 0),
        ContextLayout::sig(0, 1),
        ContextLayout::sig(0, 2),
    ];
    let sign = [
        ContextLayout::sign(0),
        ContextLayout::sign(1),
        ContextLayout::sign(2),
    ];
    let mut prev = [zero; VECTORS];
    let mut since_flush = 0;
    for &x in indices {
        let base = _mm512_set1_epi32(x.wrapping_sub(first as i32));
        let level: [__m512i; VECTORS] =
            std::array::from_fn(|v| _mm512_sub_epi32(base, lane_offsets[v]));
        // Neighbour classes of the previous level: zero, negative, positive.
        let classes: [[__mmask16; 3]; VECTORS] = std::array::from_fn(|v| {
            [
                _mm512_cmpeq_epi32_mask(prev[v], zero),
                _mm512_cmplt_epi32_mask(prev[v], zero),
                _mm512_cmpgt_epi32_mask(prev[v], zero),
            ]
        });
        let nonzero: [__mmask16; VECTORS] =
            std::array::from_fn(|v| live[v] & _mm512_cmpneq_epi32_mask(level[v], zero));
        for (v, eng) in engines.iter_mut().enumerate() {
            step(lanes, v, eng, sig, classes[v], live[v], nonzero[v]);
        }
        if nonzero.iter().any(|&m| m != 0) {
            let negative: [__mmask16; VECTORS] =
                std::array::from_fn(|v| _mm512_cmplt_epi32_mask(level[v], zero));
            for (v, eng) in engines.iter_mut().enumerate() {
                step(lanes, v, eng, sign, classes[v], nonzero[v], negative[v]);
            }
            // Magnitudes as unsigned 32-bit values (|i32::MIN| is 2^31).
            let abs: [__m512i; VECTORS] = std::array::from_fn(|v| _mm512_abs_epi32(level[v]));
            for j in 0..n {
                let above = |v: usize, t: usize| {
                    _mm512_cmpgt_epu32_mask(abs[v], _mm512_set1_epi32(t as i32))
                };
                let coded: [__mmask16; VECTORS] = std::array::from_fn(|v| nonzero[v] & above(v, j));
                if coded.iter().all(|&m| m == 0) {
                    break;
                }
                let gtx = ContextLayout::GTX + 2 * j;
                for (v, eng) in engines.iter_mut().enumerate() {
                    let neg = negative[v];
                    let one = above(v, j + 1);
                    step(lanes, v, eng, [gtx, gtx + 1], [!neg, neg], coded[v], one);
                }
            }
            let remainder: [__mmask16; VECTORS] = std::array::from_fn(|v| {
                nonzero[v] & _mm512_cmpgt_epu32_mask(abs[v], _mm512_set1_epi32(n as i32))
            });
            if remainder.iter().any(|&m| m != 0) {
                // The Exp-Golomb prefix has ⌊log2(r + 1)⌋ ones, r = |level| − N − 1,
                // then a zero unless it is full; as many suffix bins follow, bypass.
                let ones: [__m512i; VECTORS] = std::array::from_fn(|v| {
                    let r1 = _mm512_sub_epi32(abs[v], _mm512_set1_epi32(n as i32));
                    _mm512_sub_epi32(_mm512_set1_epi32(31), _mm512_lzcnt_epi32(r1))
                });
                for k in 0..MAX_PREFIX_BINS {
                    let kv = _mm512_set1_epi32(k as i32);
                    let coded: [__mmask16; VECTORS] = std::array::from_fn(|v| {
                        remainder[v] & _mm512_cmple_epi32_mask(kv, ones[v])
                    });
                    if coded.iter().all(|&m| m == 0) {
                        break;
                    }
                    for (v, eng) in engines.iter_mut().enumerate() {
                        let one = _mm512_cmplt_epi32_mask(kv, ones[v]);
                        step(lanes, v, eng, [rem + k], [all], coded[v], one);
                    }
                }
                for (v, eng) in engines.iter_mut().enumerate() {
                    eng.shifts =
                        _mm512_mask_add_epi32(eng.shifts, remainder[v], eng.shifts, ones[v]);
                }
            }
        }
        prev = level;
        since_flush += 1;
        if since_flush == FLUSH_VALUES {
            flush(&mut engines, &mut totals);
            since_flush = 0;
        }
    }
    flush(&mut engines, &mut totals);
    totals
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
