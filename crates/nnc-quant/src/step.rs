//! Step size Δ(qp) and its inverse (hls.md §5.1, deepcabac.md §5.1).
//!
//! With `k = 2^qp_density`: `Δ = (k + (qp mod k)) · 2^(floor(qp / k) − qp_density)`, so `k` qp steps
//! double Δ and the steps within an octave are linear.

/// Largest `qp_density` the pure step functions accept before clamping (the syntax element is `u(3)`,
/// so real streams never exceed 7; the clamp only keeps the shifts panic-free).
const MAX_SHIFTABLE_QP_DENSITY: u8 = 30;

/// `2^e` as an exact `f64` (subnormal and overflowing exponents included), like C's `pow(2.0, e)`.
pub(crate) fn exp2i(e: i64) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1u64 << (e + 1074))
    } else {
        0.0
    }
}

/// `mul · 2^(shift − qp_density)` in `f64`, the common core of both step-size functions.
fn step_size_exact(qp: i32, qp_density: u8) -> f64 {
    let qpd = qp_density.min(MAX_SHIFTABLE_QP_DENSITY);
    let k = 1i64 << qpd;
    let qp = i64::from(qp);
    let mul = k + (qp & (k - 1));
    let shift = qp >> qpd;
    mul as f64 * exp2i(shift - i64::from(qpd))
}

/// Step size as the C++ coder uses it: computed in `f64`, stored as `f32` (`qStepSize`).
///
/// This is the Δ of `quantLayer` and `dequantLayer`. `qp_density` is at most 7 in valid streams;
/// values above 30 are treated as 30.
pub fn step_size(qp: i32, qp_density: u8) -> f32 {
    step_size_exact(qp, qp_density) as f32
}

/// Step size as the Python driver computes it (`get_stepsize_from_qp`), kept in `f64`.
///
/// Used for codebook reconstruction (`codebook[index] · Δ` in `f64`).
pub fn step_size_f64(qp: i32, qp_density: u8) -> f64 {
    step_size_exact(qp, qp_density)
}

/// The qps a tensor's payload can signal at `qp_density` (an `iae_v(6 + qp_density)`) are
/// `-limit..limit`.
pub fn qp_limit(qp_density: u8) -> i64 {
    1i64 << (5 + u32::from(qp_density.min(MAX_SHIFTABLE_QP_DENSITY)))
}

/// Real-valued qp of a step size (Python `get_qp_from_stepsize`), all in `f64`:
/// `b = floor(log2 Δ)·k`, `qp = b + (Δ·k / 2^(b/k) − k)`.
///
/// Non-positive or NaN steps give NaN or −∞ exactly as numpy would.
pub fn qp_from_step_size(step: f64, qp_density: u8) -> f64 {
    let k = (1u64 << qp_density.min(MAX_SHIFTABLE_QP_DENSITY)) as f64;
    let base_qp = step.log2().floor() * k;
    base_qp + ((step * k) / 2f64.powf(base_qp / k) - k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_limit_is_half_the_iae_v_range() {
        // iae_v(6 + d) holds -2^(5 + d) ..= 2^(5 + d) - 1.
        assert_eq!(
            (0..=7).map(qp_limit).collect::<Vec<_>>(),
            [32, 64, 128, 256, 512, 1024, 2048, 4096]
        );
    }

    #[test]
    fn hls_examples() {
        assert_eq!(step_size(-32, 2), 0.003_906_25);
        assert_eq!(step_size(-75, 2), (5.0 * 2f64.powi(-21)) as f32);
        assert_eq!(step_size(-20, 2), 2f32.powi(-5));
        assert_eq!(step_size(-38, 2), (6.0 * 2f64.powi(-12)) as f32);
        // KAT-D and KAT-G step sizes.
        assert_eq!(step_size(-19, 2), 0.039_062_5);
        assert_eq!(step_size(-14, 2), 0.093_75);
        assert_eq!(step_size_f64(-20, 2), 0.03125);
        assert_eq!(step_size_f64(0, 2), 1.0);
        assert_eq!(step_size_f64(5, 0), 32.0);
        assert_eq!(step_size_f64(-3, 3), 13.0 / 16.0);
    }

    #[test]
    fn exp2i_is_exact() {
        for e in -1074..=1023 {
            assert_eq!(exp2i(e), 2f64.powf(e as f64), "e = {e}");
        }
        assert_eq!(exp2i(1024), f64::INFINITY);
        assert_eq!(exp2i(-1075), 0.0);
    }

    #[test]
    fn extreme_qps_do_not_panic() {
        assert_eq!(step_size(i32::MIN, 2), 0.0);
        assert_eq!(step_size(i32::MAX, 2), f32::INFINITY);
        assert!(step_size(-600, 2) == 0.0);
        assert!(step_size(3, 255) > 0.0);
    }

    #[test]
    fn qp_round_trip() {
        for qpd in 0..=7u8 {
            for qp in -300..300 {
                let back = qp_from_step_size(step_size_f64(qp, qpd), qpd);
                assert_eq!(back, f64::from(qp), "qp {qp} qpd {qpd}");
            }
        }
        // Between grid points the inverse interpolates linearly inside the octave.
        assert_eq!(qp_from_step_size(0.3, 2), -7.2);
        assert!(qp_from_step_size(0.0, 2).is_nan());
    }
}
