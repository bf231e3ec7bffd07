//! The distortion-only trellis's forward pass with AVX-512 (F + DQ): the eight state costs are
//! one vector of `f64`, so a step is three permutes of the costs, three of the candidate
//! distortions, three additions, two minima and three comparisons. Also the reconstruction after
//! the traceback, eight weights at a time ([`reconstruct`]).
//!
//! The same sums and comparisons as [`super::quantize_plain`]'s lanes, in the same
//! floating-point operations (a candidate's distortion is `(org − q)²`, its level converted
//! exactly; `ds` is 1 there), so costs, ties and branch choices are identical; the tests compare
//! the two forms.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{grid, overflows, Forward, ZeroRun, BRANCHES, SPREAD, UNREACHED, ZERO};
use crate::scan::ScanSegments;
use crate::Result;

/// Whether this CPU can run [`forward`] and the environment variable `NNC_NO_AVX512` is unset
/// (it selects the portable trellis, to compare the two or to rule this one out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && std::env::var_os("NNC_NO_AVX512").is_none()
    })
}

/// The forward pass: pushes each step's branch bits onto `steps` and returns the final state
/// costs (state order), or `None` when a weight fails the overflow test. Without AVX-512 it is
/// the portable forward pass.
pub(super) fn forward(input: Forward<'_>, steps: &mut Vec<u16>) -> Result<Option<[f64; 8]>> {
    if !available() {
        return super::forward_portable(input, steps);
    }
    // SAFETY: the CPU has AVX-512 F and DQ (checked just above), all `forward_avx512` needs.
    #[allow(unsafe_code)]
    unsafe {
        forward_avx512(input, steps)
    }
}

/// A vector of eight `i64` lanes, lane `i` = `f(i)`.
#[target_feature(enable = "avx512f")]
fn lanes(f: impl Fn(usize) -> i64) -> __m512i {
    _mm512_set_epi64(f(7), f(6), f(5), f(4), f(3), f(2), f(1), f(0))
}

#[target_feature(enable = "avx512f,avx512dq")]
fn forward_avx512(input: Forward<'_>, steps: &mut Vec<u16>) -> Result<Option<[f64; 8]>> {
    // Branch k of state s: the previous state's cost and the candidate slot's distortion.
    let prev = |k: usize| lanes(|s| i64::from(BRANCHES[s][k].0));
    let slot = |k: usize| lanes(|s| i64::from(BRANCHES[s][k].1));
    let (prev0, prev1, prev2) = (prev(0), prev(1), prev(2));
    let (slot0, slot1, slot2) = (slot(0), slot(1), slot(2));
    let slot_index = lanes(|j| j as i64);
    let three = _mm512_set1_epi64(3);
    // Lanes 0..=3 are the four candidates, lane 4 the zero candidate.
    let candidates: __mmask8 = 0x0F;
    debug_assert_eq!(ZERO, 4);

    let mut cost = _mm512_mask_blend_pd(1, _mm512_set1_pd(UNREACHED), _mm512_setzero_pd());
    let mut zeros = ZeroRun::new(cost);
    let same = |a: __m512d, b: __m512d| {
        _mm512_cmpeq_epi64_mask(_mm512_castpd_si512(a), _mm512_castpd_si512(b)) == 0xFF
    };
    let mut step = |w: f32, cost: &mut __m512d, steps: &mut Vec<u16>| {
        if overflows(w, input.check) {
            return false;
        }
        let (_, org, q0) = grid(w, input.qscale);
        // Slot j: `q0 + ((j − q0) mod 4)`; the zero slot's level is 0, so its distortion
        // is `org²`.
        let q0v = _mm512_set1_epi64(q0);
        let q = _mm512_maskz_add_epi64(
            candidates,
            q0v,
            _mm512_and_si512(_mm512_sub_epi64(slot_index, q0v), three),
        );
        let diff = _mm512_sub_pd(_mm512_set1_pd(org), _mm512_cvtepi64_pd(q));
        let dist = _mm512_mul_pd(diff, diff);
        let branch = |p: __m512i, s: __m512i| {
            _mm512_add_pd(
                _mm512_permutexvar_pd(p, *cost),
                _mm512_permutexvar_pd(s, dist),
            )
        };
        let (b0, b1, b2) = (
            branch(prev0, slot0),
            branch(prev1, slot1),
            branch(prev2, slot2),
        );
        // First minimum wins: a later branch must be strictly cheaper. Branch 2 wins exactly
        // where it is cheaper than both others (costs are never NaN), and the winner's cost is
        // the minimum whichever branch a tie picks (nor are they −0): so the comparisons and
        // the minimum run side by side, off the costs' path from step to step (a fifth less
        // time than comparing with the first two's minimum and blending).
        let take1 = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(b1, b0);
        let take2 =
            _mm512_cmp_pd_mask::<_CMP_LT_OQ>(b2, b0) & _mm512_cmp_pd_mask::<_CMP_LT_OQ>(b2, b1);
        *cost = _mm512_min_pd(_mm512_min_pd(b0, b1), b2);
        steps.push(SPREAD[usize::from(take1 & !take2)] | (SPREAD[usize::from(take2)] << 1));
        true
    };
    for run in ScanSegments::new(input.shape, input.scan_order)? {
        if !zeros.forward(&input.weights[run], &mut cost, same, steps, &mut step) {
            return Ok(None);
        }
    }
    let mut out = [0f64; 8];
    for (i, o) in out.iter_mut().enumerate() {
        let lane = _mm512_permutexvar_pd(_mm512_set1_epi64(i as i64), cost);
        *o = _mm512_cvtsd_f64(lane);
    }
    Ok(Some(out))
}

/// [`super::reconstruct_portable`] eight weights at a time: the same integer arithmetic as
/// `chosen_reconstruction(signed_q0(w, qscale), slot, parity)`, lane by lane, for weights that
/// passed the forward pass's overflow test (finite, their levels within 32 bits). Without
/// AVX-512 it is the portable loop.
pub(super) fn reconstruct(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    if !available() {
        return super::reconstruct_portable(weights, chosen, qscale, out);
    }
    // SAFETY: the CPU has AVX-512 F and DQ (checked just above), all `reconstruct_avx512` needs.
    #[allow(unsafe_code)]
    unsafe {
        reconstruct_avx512(weights, chosen, qscale, out)
    }
}

#[target_feature(enable = "avx512f,avx512dq")]
fn reconstruct_avx512(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    let n = weights.len().min(chosen.len()).min(out.len());
    let full = n - n % 8;
    let scale = _mm512_set1_pd(qscale);
    let one = _mm512_set1_epi64(1);
    let max_q0 = _mm512_set1_epi64(i64::from(i32::MAX) - 3);
    let three = _mm512_set1_epi64(3);
    let seven = _mm512_set1_epi64(7);
    let zero_slot = _mm512_set1_epi64(i64::from(ZERO));
    let zero = _mm512_setzero_si512();
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 <= full <= n`, within all three slices; unaligned loads and stores.
        #[allow(unsafe_code)]
        let (w, c) = unsafe {
            (
                _mm256_loadu_ps(weights.as_ptr().add(i)),
                _mm_loadu_si128(chosen.as_ptr().add(i).cast()),
            )
        };
        let value = _mm512_cvtps_pd(w);
        let negative = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(value, _mm512_setzero_pd());
        let org = _mm512_mul_pd(scale, _mm512_abs_pd(value));
        // `((org as i64) − 1).clamp(1, 2^31 − 4)`: org is finite and below 2^31 here.
        let q0 = _mm512_min_epi64(
            _mm512_max_epi64(_mm512_sub_epi64(_mm512_cvttpd_epi64(org), one), one),
            max_q0,
        );
        let c = _mm512_cvtepu16_epi64(c);
        let slot = _mm512_and_si512(c, seven);
        let odd = _mm512_and_si512(_mm512_srli_epi64::<3>(c), one);
        // q = q0 + ((slot − q0) mod 4); a nonzero slot codes (q + 1) >> 1.
        let q = _mm512_add_epi64(q0, _mm512_and_si512(_mm512_sub_epi64(slot, q0), three));
        let nonzero = _mm512_cmpneq_epi64_mask(slot, zero_slot);
        let magnitude = _mm512_maskz_srli_epi64::<1>(nonzero, _mm512_add_epi64(q, one));
        let index = _mm512_sub_epi64(
            _mm512_slli_epi64::<1>(magnitude),
            _mm512_maskz_mov_epi64(nonzero, odd),
        );
        let signed = _mm512_mask_sub_epi64(index, negative, zero, index);
        // SAFETY: as the loads above.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_si256(
                out.as_mut_ptr().add(i).cast(),
                _mm512_cvtepi64_epi32(signed),
            )
        };
    }
    super::reconstruct_portable(
        &weights[full..n],
        &chosen[full..n],
        qscale,
        &mut out[full..n],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Lane for lane the portable reconstruction, for any slot and parity, signed zeros,
        /// weights on and between the grid's points and up to the overflow test's limit, and
        /// lengths that leave a scalar tail.
        #[test]
        fn same_reconstruction_as_the_portable_one(
            seed in any::<u64>(),
            len in 0usize..100,
            step in prop::sample::select(vec![1e-6f32, 0.01, 0.125, 1.0 / 3.0, 2.5]),
        ) {
            if !available() {
                return Ok(());
            }
            let mut x = seed | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let qscale = 1.0 / f64::from(step);
            let (mut weights, mut chosen) = (Vec::new(), Vec::new());
            for i in 0..len {
                let r = next();
                let u = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                weights.push(match i % 5 {
                    0 => u * 0.2,
                    1 => u * 4.0e4 * step,
                    2 => (u * 16.0).round() * step * 0.5,
                    3 => if r & 1 == 0 { 0.0 } else { -0.0 },
                    _ => u * 2.0 * step * 2.0e9,
                });
                chosen.push(((r >> 8) % 5) as u16 | (((r >> 16) & 1) as u16) << 3);
            }
            let weights: Vec<f32> = weights
                .into_iter()
                .map(|w| if super::super::overflows(w, super::super::check_scale(step)) { 0.5 } else { w })
                .collect();
            let (mut simd, mut portable) = (vec![0; len], vec![0; len]);
            reconstruct(&weights, &chosen, qscale, &mut simd);
            super::super::reconstruct_portable(&weights, &chosen, qscale, &mut portable);
            prop_assert_eq!(simd, portable);
        }

        /// Bit for bit the portable forward pass: every step's branch bits and the final costs,
        /// on random weights of mixed scales (ties between candidates included: weights on the
        /// grid), any scan order.
        #[test]
        fn same_steps_and_costs_as_the_portable_pass(
            seed in any::<u64>(),
            h in 1usize..40,
            w in 1usize..70,
            scan_order in 0u8..4,
            step in prop::sample::select(vec![0.01f32, 0.125, 1.0 / 3.0, 2.5]),
        ) {
            if !available() {
                return Ok(());
            }
            super::super::forward_matches_portable(forward, seed, (h, w), scan_order, step)?;
        }
    }
}
