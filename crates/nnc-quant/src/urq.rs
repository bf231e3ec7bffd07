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
    // In blocks without an exit, so the loop runs in vector lanes; a block with a level out of
    // range fails the whole call (its levels are then not used).
    const BLOCK: usize = 256;
    for (out, w) in levels.chunks_mut(BLOCK).zip(weights.chunks(BLOCK)) {
        let mut in_range = true;
        for (level, &w) in out.iter_mut().zip(w) {
            let (q, ok) = round_half_away(scale * w);
            *level = q;
            in_range &= ok;
        }
        if !in_range {
            return false;
        }
    }
    true
}

/// `y.round() as i32` (half away from zero) without a call to libm's `roundf`, and whether the
/// rounded value fits `i32` (false for NaN). Exact: for `|y| < 2^31` the truncation `t` is
/// exact, and so is `y − t` (at most 2^24 apart from `y` below 2^24, zero above, where every
/// `f32` is an integer).
#[inline(always)]
fn round_half_away(y: f32) -> (i32, bool) {
    // The f32 range whose rounding fits i32: no f32 lies in (2^31 − 1, 2^31), and −2^31 fits.
    let ok = (-2_147_483_648.0f32..2_147_483_648.0f32).contains(&y);
    let t = y as i32;
    let frac = y - t as f32;
    // Wrapping: out of range (`ok` false) `t` saturates and the sum is not used.
    let q = t
        .wrapping_add(i32::from(frac >= 0.5))
        .wrapping_sub(i32::from(frac <= -0.5));
    (q, ok)
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

    /// The literal form: `f32::round`, the range compared in `f64`, an exit on the first
    /// level out of range.
    fn by_round(weights: &[f32], step: f32) -> Option<Vec<i32>> {
        let scale = 1.0f32 / step;
        weights
            .iter()
            .map(|&w| {
                let r = f64::from((scale * w).round());
                (-2_147_483_648.0..=2_147_483_647.0)
                    .contains(&r)
                    .then_some(r as i32)
            })
            .collect()
    }

    #[test]
    fn branch_free_rounding_is_f32_round() {
        // Ties, their neighbours, the i32 bounds, the f32 integers above 2^23, non-finite.
        let mut edge = vec![0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for k in 0..40 {
            let t = k as f32 - 20.0 + 0.5;
            edge.extend([t, t.next_up(), t.next_down()]);
        }
        for b in [2f32.powi(23), 2f32.powi(24), 2f32.powi(31), -2f32.powi(31)] {
            edge.extend([b, b.next_up(), b.next_down(), -b]);
        }
        edge.extend([
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            f32::MIN,
        ]);
        for &y in &edge {
            let want = by_round(&[y], 1.0);
            let (q, ok) = round_half_away(y);
            assert_eq!(ok, want.is_some(), "{y:e}");
            if let Some(w) = want {
                assert_eq!(q, w[0], "{y:e}");
            }
        }
        // Random values and steps, in blocks with and without a value out of range.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let n = (next() % 700) as usize;
            let mut w: Vec<f32> = (0..n)
                .map(|_| f32::from_bits(next() as u32 & 0xbfff_ffff) % 1e6)
                .collect();
            if round % 3 == 0 && n > 0 {
                let at = (next() as usize) % n;
                w[at] = [f32::NAN, 3e9, -3e9][(round / 3) % 3];
            }
            let step = [1.0f32, 0.001, 0.37, 1e-6][round % 4];
            let mut out = vec![0; n];
            let ok = quantize_plain(&w, step, &mut out);
            match by_round(&w, step) {
                Some(want) => {
                    assert!(ok);
                    assert_eq!(out, want);
                }
                None => assert!(!ok),
            }
        }
    }

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
