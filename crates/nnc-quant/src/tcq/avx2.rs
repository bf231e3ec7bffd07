//! The distortion-only trellis for x86-64 CPUs with AVX2 but not AVX-512.
//!
//! The forward pass keeps the eight state costs in two vectors of four `f64`: the states that
//! feed states 0..=3 (0, 2, 4, 6) and those that feed 4..=7 (1, 3, 5, 7), each in the lane order
//! that the interleaving of the next step's results leaves (`[c0, c4, c2, c6]` and
//! `[c1, c5, c3, c7]`), so a step is six lane permutes, six additions, three comparisons and two
//! minima per half and two interleaves. The same sums and comparisons as
//! [`super::forward_portable`], in the same floating-point operations, so costs, ties and branch
//! choices are identical; the tests compare the two.
//!
//! The reconstruction after the traceback is the portable source built again with AVX2 enabled
//! (the same operations in the same order; Rust never fuses a multiply and an add on its own).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{grid, overflows, Forward, ZeroRun, SPREAD, UNREACHED};
use crate::scan::ScanSegments;
use crate::Result;

/// Whether this CPU can run [`forward`] and the environment variable `NNC_NO_AVX2` is unset
/// (it selects the portable forms, to compare them or to rule these out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2") && std::env::var_os("NNC_NO_AVX2").is_none()
    })
}

/// The forward pass: pushes each step's branch bits onto `steps` and returns the final state
/// costs (state order), or `None` when a weight fails the overflow test. Without AVX2 it is the
/// portable forward pass.
pub(super) fn forward(input: Forward<'_>, steps: &mut Vec<u16>) -> Result<Option<[f64; 8]>> {
    if !available() {
        return super::forward_portable(input, steps);
    }
    // SAFETY: the CPU has AVX2 (checked just above), all `forward_avx2` is built for.
    #[allow(unsafe_code)]
    unsafe {
        forward_avx2(input, steps)
    }
}

#[target_feature(enable = "avx2")]
fn forward_avx2(input: Forward<'_>, steps: &mut Vec<u16>) -> Result<Option<[f64; 8]>> {
    // Slot j's candidate is `q0 + ((j − q0) & 3)`, i.e. q0 plus entry j of the rotation for
    // `q0 & 3`; both terms are integers below 2^53, so their f64 sum is the exact level.
    let rotations: [__m256d; 4] = std::array::from_fn(|r| {
        let c = |j: i64| ((j - r as i64) & 3) as f64;
        _mm256_set_pd(c(3), c(2), c(1), c(0))
    });
    // `[c0, c2, c1, c3]` of the feeding states 0, 2, 4, 6 (as c0, c4, c2, c6) and likewise for
    // the odd ones; state 0 starts at cost 0.
    let mut cost = (
        _mm256_set_pd(UNREACHED, UNREACHED, UNREACHED, 0.0),
        _mm256_set1_pd(UNREACHED),
    );
    let mut zeros = ZeroRun::new(cost);
    let same = |a: (__m256d, __m256d), b: (__m256d, __m256d)| {
        let equal = |x: __m256d, y: __m256d| {
            _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(
                _mm256_castpd_si256(x),
                _mm256_castpd_si256(y),
            )))
        };
        equal(a.0, b.0) & equal(a.1, b.1) == 0xF
    };
    let mut step = |w: f32, (even, odd): &mut (__m256d, __m256d), steps: &mut Vec<u16>| {
        if overflows(w, input.check) {
            return false;
        }
        let (_, org, q0) = grid(w, input.qscale);
        let q = _mm256_add_pd(_mm256_set1_pd(q0 as f64), rotations[(q0 & 3) as usize]);
        let diff = _mm256_sub_pd(_mm256_set1_pd(org), q);
        let s = _mm256_mul_pd(diff, diff);
        let z = _mm256_set1_pd(org * org);
        let s0s2 = _mm256_movedup_pd(s); // [s0, s0, s2, s2]
        let s1s3 = _mm256_permute_pd::<0b1111>(s); // [s1, s1, s3, s3]

        // Branches k = 0, 1, 2 of states 0..=3 and of 4..=7 (`BRANCHES`, spelled out in
        // `forward_portable`): the feeding states' costs plus the candidates' distortions.
        let e0 = _mm256_add_pd(_mm256_permute4x64_pd::<0x88>(*even), s0s2);
        let e1 = _mm256_add_pd(
            _mm256_permute4x64_pd::<0xD8>(*even),
            _mm256_permute2f128_pd::<0x20>(z, s0s2),
        );
        let e2 = _mm256_add_pd(
            _mm256_permute4x64_pd::<0xDD>(*even),
            _mm256_permute2f128_pd::<0x21>(s0s2, z),
        );
        let o0 = _mm256_add_pd(_mm256_permute4x64_pd::<0x22>(*odd), s1s3);
        let o1 = _mm256_add_pd(
            _mm256_permute4x64_pd::<0x27>(*odd),
            _mm256_permute2f128_pd::<0x21>(s1s3, z),
        );
        let o2 = _mm256_add_pd(
            _mm256_permute4x64_pd::<0x77>(*odd),
            _mm256_permute2f128_pd::<0x20>(z, s1s3),
        );
        // First minimum wins: a later branch must be strictly cheaper.
        let (low, t1_low, t2_low) = cheapest(e0, e1, e2);
        let (high, t1_high, t2_high) = cheapest(o0, o1, o2);
        let take1 = t1_low | t1_high << 4;
        let take2 = t2_low | t2_high << 4;
        steps.push(SPREAD[take1 & !take2] | (SPREAD[take2] << 1));
        *even = _mm256_unpacklo_pd(low, high);
        *odd = _mm256_unpackhi_pd(low, high);
        true
    };
    for run in ScanSegments::new(input.shape, input.scan_order)? {
        if !zeros.forward(&input.weights[run], &mut cost, same, steps, &mut step) {
            return Ok(None);
        }
    }
    let (even, odd) = cost;
    let (mut e, mut o) = ([0f64; 4], [0f64; 4]);
    // SAFETY: `e` and `o` are 32 writable bytes each; the stores have no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_pd(e.as_mut_ptr(), even);
        _mm256_storeu_pd(o.as_mut_ptr(), odd);
    }
    // Lanes `[c0, c4, c2, c6]` and `[c1, c5, c3, c7]`.
    Ok(Some([e[0], o[0], e[2], o[2], e[1], o[1], e[3], o[3]]))
}

/// The cheaper of three branch vectors lane by lane, the first minimum winning, and the lanes
/// where the second and the third branch won (as bit masks).
///
/// The third branch wins exactly where it is cheaper than both others (costs are never NaN),
/// and the cheapest cost is the minimum whichever branch a tie picks (nor are they −0), so the
/// comparisons and the minimum all run side by side, off the costs' path from step to step.
#[target_feature(enable = "avx2")]
fn cheapest(b0: __m256d, b1: __m256d, b2: __m256d) -> (__m256d, usize, usize) {
    let take1 = _mm256_cmp_pd::<_CMP_LT_OQ>(b1, b0);
    let take2 = _mm256_and_pd(
        _mm256_cmp_pd::<_CMP_LT_OQ>(b2, b0),
        _mm256_cmp_pd::<_CMP_LT_OQ>(b2, b1),
    );
    let next = _mm256_min_pd(_mm256_min_pd(b0, b1), b2);
    (
        next,
        _mm256_movemask_pd(take1) as usize,
        _mm256_movemask_pd(take2) as usize,
    )
}

/// [`super::reconstruct_portable`], built for AVX2 where the CPU has it.
pub(super) fn reconstruct(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    if !available() {
        return super::reconstruct_portable(weights, chosen, qscale, out);
    }
    // SAFETY: the CPU has AVX2 (checked just above), all `reconstruct_avx2` is built for.
    #[allow(unsafe_code)]
    unsafe {
        reconstruct_avx2(weights, chosen, qscale, out)
    }
}

#[target_feature(enable = "avx2")]
fn reconstruct_avx2(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    super::reconstruct_lanes(weights, chosen, qscale, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Bit for bit the portable forms: every step's branch bits, the final costs and the
        /// reconstruction, on weights of mixed scales (ties included: weights on the grid).
        #[test]
        fn same_steps_costs_and_levels_as_the_portable_forms(
            seed in any::<u64>(),
            h in 1usize..40,
            w in 1usize..70,
            scan_order in 0u8..4,
            step in prop::sample::select(vec![0.01f32, 0.125, 1.0 / 3.0, 2.5]),
        ) {
            if !available() {
                return Ok(());
            }
            let (weights, steps) =
                super::super::forward_matches_portable(forward, seed, (h, w), scan_order, step)?;
            let chosen: Vec<u16> = steps.iter().map(|&s| (s % 5) | (((s >> 8) & 1) << 3)).collect();
            let qscale = 1.0 / f64::from(step);
            let (mut levels, mut expected) = (vec![0; h * w], vec![0; h * w]);
            reconstruct(&weights, &chosen, qscale, &mut levels);
            super::super::reconstruct_portable(&weights, &chosen, qscale, &mut expected);
            prop_assert_eq!(levels, expected);
        }
    }
}
