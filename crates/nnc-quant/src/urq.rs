//! Uniform reconstruction quantizer (URQ, `dq_flag = 0`), deepcabac.md §5.4.

/// URQ with `lambda_scale <= 0`: `level = round_half_away(f32(f32(1/Δ) · w))`.
///
/// Returns `false` (the reference's "failure", which triggers the qp fallback) as soon as a rounded
/// value leaves the `i32` range. Order does not matter here, so memory order is used.
///
/// Reference quirk: the reciprocal and the product are `f32` operations, only the rounding result is
/// compared in `f64`.
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

    #[test]
    fn overflow_bounds() {
        let mut out = [0; 1];
        // 2^31 − 128 is the largest f32 below 2^31: accepted.
        assert!(quantize_plain(&[2_147_483_520.0], 1.0, &mut out));
        assert_eq!(out[0], 2_147_483_520);
        assert!(!quantize_plain(&[2_147_483_648.0], 1.0, &mut out));
        assert!(quantize_plain(&[-2_147_483_648.0], 1.0, &mut out));
        assert_eq!(out[0], i32::MIN);
        assert!(!quantize_plain(&[-2_147_483_904.0], 1.0, &mut out));
    }
}
