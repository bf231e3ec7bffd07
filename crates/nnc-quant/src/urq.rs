//! Uniform reconstruction quantizer (URQ, `dq_flag = 0`), deepcabac.md §5.4.

use std::f64::consts::LN_2;

use nnc_cabac::RateModel;

use crate::scan::{MatrixShape, ScanSegments};
use crate::Result;

/// URQ with `lambda_scale <= 0`: `level = round_half_away(f32(f32(1/Δ) · w))`.
///
/// Returns `false` (the reference's "failure", which triggers the qp fallback) as soon as a rounded
/// value leaves the `i32` range. Order does not matter here, so memory order is used.
///
/// Reference quirk: the reciprocal and the product are `f32` operations, only the rounding result is
/// compared in `f64`. −2^31 is accepted, as the reference does: the level coder codes it with the
/// bins of magnitude 2^31 (quirks.md#int-min-level).
pub(crate) fn quantize_plain(weights: &[f32], step: f32, levels: &mut [i32]) -> bool {
    let scale = 1.0f32 / step;
    for (level, &w) in levels.iter_mut().zip(weights) {
        let rounded = f64::from((scale * w).round());
        if !(-2_147_483_648.0..=2_147_483_647.0).contains(&rounded) {
            return false;
        }
        *level = rounded as i32;
    }
    true
}

/// Greedy rate-distortion URQ (`lambda_scale > 0`), in scan order.
///
/// For each weight, with `absw = σ·w·(1/Δ)` in `f64`, the candidates are 0 and
/// `max(1, round(absw) − 1) ..= round(absw)`; cost `ds·(absw − q)² + rate(q)` with
/// `ds = 32768 / (λ·ln2/6)`; the first minimum wins. One rate model (all contexts in set 0,
/// dq state 0, `max_num_no_rem` greater-than flags) follows the chosen levels.
///
/// Reference quirk: the rate is evaluated for the positive candidate `q` but the model is updated
/// with the signed level; the overflow test here uses the `f64` product (not the `f32` one of the
/// λ = 0 path).
pub(crate) fn quantize_rate_aware(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    step: f32,
    lambda_scale: f32,
    rate: &mut RateModel,
    levels: &mut [i32],
) -> Result<bool> {
    let lambda = f64::from(lambda_scale) * (LN_2 / 6.0);
    let ds = 32768.0 / lambda;
    let qscale = 1.0 / f64::from(step);
    for run in ScanSegments::new(shape, scan_order)? {
        let start = run.start;
        for (i, &w) in weights[run].iter().enumerate() {
            let scaled = (f64::from(w) * qscale).round();
            if !(-2_147_483_648.0..=2_147_483_647.0).contains(&scaled) {
                return Ok(false);
            }
            let sign: i32 = if w < 0.0 { -1 } else { 1 };
            let absw = f64::from(sign) * f64::from(w) * qscale;
            let rounded = absw.round();
            if rounded >= 2_147_483_648.0 {
                // Reference quirk: only −2^31 gets here (+2^31 failed the range test). Its
                // `(int32_t)round(absw)` is INT_MIN, so the candidate loop runs from INT_MAX
                // (INT_MIN − 1 wrapped) to INT_MIN, never, and the level is 0
                // (quirks.md#rdoq-int-min).
                levels[start + i] = 0;
                rate.update(0, 0);
                continue;
            }
            let mut best = 0i32;
            let max_q = rounded as i32;
            let low = (max_q - 1).max(1);
            let [zero_bits, low_bits, max_bits] = rate.estimate_levels([0, low, max_q], 0);
            let mut min_cost = ds * (absw * absw) + f64::from(zero_bits);
            for q in low..=max_q {
                let diff = absw - f64::from(q);
                let bits = if q == low { low_bits } else { max_bits };
                let cost = ds * (diff * diff) + f64::from(bits);
                if cost < min_cost {
                    best = q;
                    min_cost = cost;
                }
            }
            let level = best * sign;
            levels[start + i] = level;
            rate.update(level, 0);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_in_f32() {
        let mut out = [0; 6];
        assert!(quantize_plain(
            &[0.5, -0.5, 1.5, -2.5, 0.499_999_97, 3.0],
            1.0,
            &mut out
        ));
        assert_eq!(out, [1, -1, 2, -3, 0, 3]);
    }

    /// The rate-aware URQ pricing each candidate with its own `estimate_bits` call (the form
    /// before candidates shared one walk over the flags).
    fn one_by_one(weights: &[f32], step: f32, lambda_scale: f32, flags: u32) -> Vec<i32> {
        let ds = 32768.0 / (f64::from(lambda_scale) * (LN_2 / 6.0));
        let qscale = 1.0 / f64::from(step);
        let mut rate = RateModel::new(flags).unwrap();
        let mut out = Vec::new();
        for &w in weights {
            let sign: i32 = if w < 0.0 { -1 } else { 1 };
            let absw = f64::from(sign) * f64::from(w) * qscale;
            let mut best = 0i32;
            let mut min_cost = ds * (absw * absw) + f64::from(rate.estimate_bits(0, 0));
            let max_q = absw.round() as i32;
            for q in (max_q - 1).max(1)..=max_q {
                let diff = absw - f64::from(q);
                let cost = ds * (diff * diff) + f64::from(rate.estimate_bits(q, 0));
                if cost < min_cost {
                    best = q;
                    min_cost = cost;
                }
            }
            out.push(best * sign);
            rate.update(best * sign, 0);
        }
        out
    }

    /// A weight at exactly −2^31 steps becomes level 0 with λ > 0, as in the reference's
    /// `quantizeURQ` (held-out combo set, seed 19, `combo_077` and `combo_145`); its neighbours
    /// are quantized as usual and +2^31 steps still fails.
    #[test]
    fn minus_two_to_the_31_steps_becomes_zero() {
        let step = (-30f32).exp2();
        let weights = [-2.0f32, 0.25, -0.25, 0.125, 0.0];
        let shape = MatrixShape::from_dims(&[weights.len()]).unwrap();
        let mut rate = RateModel::new(10).unwrap();
        let mut levels = vec![7; weights.len()];
        let ok =
            quantize_rate_aware(&weights, shape, 0, step, 0.5, &mut rate, &mut levels).unwrap();
        assert!(ok);
        assert_eq!(levels, [0, 1 << 28, -(1 << 28), 1 << 27, 0]);
        let mut rate = RateModel::new(10).unwrap();
        let ok = quantize_rate_aware(
            &[2.0],
            MatrixShape::from_dims(&[1]).unwrap(),
            0,
            step,
            0.5,
            &mut rate,
            &mut [0],
        )
        .unwrap();
        assert!(!ok);
    }

    proptest::proptest! {
        #[test]
        fn rate_aware_levels_equal_one_by_one_pricing(
            weights in proptest::collection::vec(-60.0f32..60.0, 1..400),
            lambda_scale in 0.05f32..4.0,
            flags in 0u32..=12,
        ) {
            let shape = MatrixShape::from_dims(&[weights.len()]).unwrap();
            let mut rate = RateModel::new(flags).unwrap();
            let mut levels = vec![0; weights.len()];
            let ok = quantize_rate_aware(&weights, shape, 0, 1.0, lambda_scale, &mut rate, &mut levels)
                .unwrap();
            proptest::prop_assert!(ok);
            proptest::prop_assert_eq!(levels, one_by_one(&weights, 1.0, lambda_scale, flags));
        }
    }

    #[test]
    fn overflow_bounds() {
        let mut out = [0; 1];
        // 2^31 − 128 is the largest f32 below 2^31: accepted.
        assert!(quantize_plain(&[2_147_483_520.0], 1.0, &mut out));
        assert_eq!(out[0], 2_147_483_520);
        assert!(!quantize_plain(&[2_147_483_648.0], 1.0, &mut out));
        // −2^31 is a level (the reference's bound).
        assert!(quantize_plain(&[-2_147_483_648.0], 1.0, &mut out));
        assert_eq!(out[0], i32::MIN);
        assert!(quantize_plain(&[-2_147_483_520.0], 1.0, &mut out));
        assert_eq!(out[0], -2_147_483_520);
        assert!(!quantize_plain(&[-2_147_483_904.0], 1.0, &mut out));
    }
}
