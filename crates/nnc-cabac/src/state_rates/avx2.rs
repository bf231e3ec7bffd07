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

use super::lanes::{Estimators, Lanes};
use super::steps::{self, LaneOps};
use super::{CANDIDATES, SHIFT0, SHIFT1, STATES};
use crate::tables::{est_bits_table, CURVE_CONST};

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

/// `P = S1 + 16·S0` of every state (8 × i32), from a context's lanes.
#[target_feature(enable = "avx2")]
fn p_of(v: __m256i) -> __m256i {
    _mm256_add_epi32(
        _mm256_srai_epi32::<16>(v),
        _mm256_srai_epi32::<12>(_mm256_slli_epi32::<16>(v)),
    )
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

/// The 16-bit lanes of S1 (odd lanes), for `vpblendw`.
const S1_LANES: i32 = 0b1010_1010;

/// The operations of [`steps`] on AVX2, with the curve's byte tables in registers. A value
/// exists only where the CPU has AVX2: its constructor is a `#[target_feature]` function, so
/// reaching it proves it.
#[derive(Clone, Copy)]
struct Avx2 {
    curve_lo: __m256i,
    curve_hi: __m256i,
}

impl Avx2 {
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
}

/// Runs an expression of AVX2 intrinsics inside an [`Avx2`] method.
macro_rules! vector {
    ($e:expr) => {{
        // SAFETY: `self` is an `Avx2`, which exists only where the CPU has AVX2 (its
        // constructor), all the intrinsics here need; pointers passed are to arrays of the
        // vector's size, and loads and stores have no alignment requirement; the gathers'
        // indices are checked where they are made (`costs`).
        #[allow(unsafe_code)]
        let v = unsafe { $e };
        v
    }};
}

impl LaneOps for Avx2 {
    ymm_lane_ops!();

    #[inline(always)]
    fn blend(self, m: u8, a: __m256i, b: __m256i) -> __m256i {
        vector!(blend(m, a, b))
    }

    #[inline(always)]
    fn adapt(self, s: __m256i, active: u8, ones: u8) -> __m256i {
        vector!({
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
        })
    }

    #[inline(always)]
    fn beyond(self, mags: __m256i, j: u64) -> u8 {
        // Magnitudes go up to 2^31 (`i32::MIN`): compared unsigned, by flipping the top bit.
        vector!({
            let top = _mm256_set1_epi32(i32::MIN);
            let bound = _mm256_xor_si256(_mm256_set1_epi32(j as i32), top);
            let above = _mm256_cmpgt_epi32(_mm256_xor_si256(mags, top), bound);
            _mm256_movemask_ps(_mm256_castsi256_ps(above)) as u8
        })
    }
}

#[target_feature(enable = "avx2")]
pub(super) fn estimate_lanes(
    rates: &Lanes,
    levels: [[i32; CANDIDATES]; 2],
) -> [[u32; STATES]; CANDIDATES] {
    steps::estimate(Avx2::new(), rates, levels)
}

#[target_feature(enable = "avx2")]
pub(super) fn advance_lanes(
    rates: &mut Lanes,
    winners: [u8; STATES],
    levels: [i32; STATES],
    now: usize,
) {
    steps::advance(Avx2::new(), rates, winners, levels, now)
}
