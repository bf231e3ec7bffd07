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

use super::lanes::{lanes_of, Estimators, Lanes};
use super::steps::{self, LaneOps};
use super::{CANDIDATES, SHIFT0, SHIFT1, STATES};
use crate::tables::{est_bits_table, CURVE_CONST};

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

/// `P = S1 + 16·S0` of every state (8 × i32), from a context's lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn p_of(v: __m256i) -> __m256i {
    _mm256_add_epi32(
        _mm256_srai_epi32::<16>(v),
        _mm256_srai_epi32::<12>(_mm256_slli_epi32::<16>(v)),
    )
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

/// The operations of [`steps`] on AVX-512 F, BW and VL, with the §2.3 update's constants in
/// registers. A value exists only where the CPU has those features: its constructor is a
/// `#[target_feature]` function, so reaching it proves them.
#[derive(Clone, Copy)]
struct Avx512 {
    curve_lo: __m256i,
    curve_hi: __m256i,
    pre: __m256i,
    post: __m256i,
}

impl Avx512 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn new() -> Self {
        let load = |lanes: &Estimators| Self::load_lanes(lanes);
        Self {
            curve_lo: load(&CURVE_ROTATED[0]),
            curve_hi: load(&CURVE_ROTATED[1]),
            pre: load(&PRE),
            post: load(&POST),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn load_lanes(lanes: &Estimators) -> __m256i {
        // SAFETY: `lanes` is 32 readable bytes; the load has no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_loadu_si256(lanes.as_ptr().cast())
        }
    }
}

/// Runs an expression of AVX-512 intrinsics inside an [`Avx512`] method.
macro_rules! vector {
    ($e:expr) => {{
        // SAFETY: `self` is an `Avx512`, which exists only where the CPU has AVX-512 F, BW and
        // VL (its constructor), all the intrinsics here need; pointers passed are to arrays
        // of the vector's size, and loads and stores have no alignment requirement.
        #[allow(unsafe_code)]
        let v = unsafe { $e };
        v
    }};
}

impl LaneOps for Avx512 {
    ymm_lane_ops!();

    #[inline(always)]
    fn blend(self, m: u8, a: __m256i, b: __m256i) -> __m256i {
        vector!(_mm256_mask_blend_epi32(m, a, b))
    }

    #[inline(always)]
    fn adapt(self, s: __m256i, active: u8, ones: u8) -> __m256i {
        let both = |m: u8| BOTH_HALVES[usize::from(m)];
        let zeros = both(!ones);
        vector!({
            let zero = _mm256_setzero_si256();
            let towards = _mm256_mask_sub_epi16(s, zeros, zero, s);
            let index = _mm256_srav_epi16(towards, self.pre);
            let step = _mm256_srlv_epi16(
                _mm256_permutex2var_epi16(self.curve_lo, index, self.curve_hi),
                self.post,
            );
            let signed = _mm256_mask_sub_epi16(step, zeros, zero, step);
            _mm256_mask_add_epi16(s, both(active), s, signed)
        })
    }

    #[inline(always)]
    fn beyond(self, mags: __m256i, j: u64) -> u8 {
        vector!(_mm256_cmpgt_epu32_mask(mags, _mm256_set1_epi32(j as i32)))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) fn estimate_lanes(
    rates: &Lanes,
    levels: [[i32; CANDIDATES]; 2],
) -> [[u32; STATES]; CANDIDATES] {
    steps::estimate(Avx512::new(), rates, levels)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) fn advance_lanes(
    rates: &mut Lanes,
    winners: [u8; STATES],
    levels: [i32; STATES],
    now: usize,
) {
    steps::advance(Avx512::new(), rates, winners, levels, now)
}
