//! Integer-aligned bit-depth mode (`int_quant_bw`, hls.md §5.6).
//!
//! Nothing is signalled: the mode only picks each tensor's qp so that roughly `b`-bit levels cover
//! the 99.95th percentile of `|w|`, and clips the levels to `b` bits after quantization.

use crate::error::{Error, Result};
use crate::numpy::{percentile_abs_f32, round_half_even};
use crate::step::qp_from_step_size;

/// Percentile of `|w|` the step size is fitted to.
const BITDEPTH_PERCENTILE: f64 = 99.95;

/// The bit depth a tensor really gets: `int_quant_bw` for weights or when it exceeds 7, otherwise 8
/// (non-weights are never quantized below 8 bits).
pub fn bitdepth_bits(is_weight: bool, int_quant_bw: u32) -> u32 {
    if int_quant_bw > 7 || is_weight {
        int_quant_bw
    } else {
        8
    }
}

/// `true` when no weight is negative (−0.0 counts as non-negative): the levels may then use the
/// unsigned range `0 ..= 2^b − 1`.
pub fn is_unsigned(weights: &[f32]) -> bool {
    !weights.iter().any(|&w| w < 0.0)
}

/// The qp of a tensor in bit-depth mode (reference `_get_intaligned_qp`).
///
/// All-zero (or empty) tensors get qp 0. Otherwise `Δ = percentile(|w|, 99.95) / den` (numpy linear
/// interpolation; `max|w| / den` if that is 0) with `den = 2^b − 1` for unsigned data and
/// `2^(b−1) − 1` otherwise, `qp = get_qp_from_stepsize(Δ)` clipped to
/// `[−2^(5+qp_density), 2^(5+qp_density) − 1]` and rounded half to even.
///
/// Errors for non-finite weights and for bit depths that give `den = 0` or exceed 63 bits (the
/// reference divides by zero there).
pub fn bitdepth_qp(
    weights: &[f32],
    is_weight: bool,
    int_quant_bw: u32,
    qp_density: u8,
) -> Result<i32> {
    if let Some(position) = crate::first_non_finite(weights) {
        return Err(Error::NonFiniteWeight { position });
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Ok(0);
    }
    if qp_density > crate::MAX_QP_DENSITY {
        return Err(Error::InvalidQpDensity(qp_density));
    }
    let bits = bitdepth_bits(is_weight, int_quant_bw);
    if bits == 0 || bits > 63 {
        return Err(Error::InvalidBitDepth(bits));
    }
    let magnitude_bits = if is_unsigned(weights) { bits } else { bits - 1 };
    let den = ((1u64 << magnitude_bits) - 1) as f64;
    if den == 0.0 {
        return Err(Error::InvalidBitDepth(bits));
    }
    let pct = percentile_abs_f32(weights, BITDEPTH_PERCENTILE).unwrap_or(0.0);
    let mut step = pct / den;
    if step == 0.0 {
        let max_abs = weights.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
        step = f64::from(max_abs) / den;
    }
    let qp = qp_from_step_size(step, qp_density);
    let max_qp = crate::qp_limit(qp_density) as f64;
    let qp = qp.clamp(-max_qp, max_qp - 1.0);
    Ok(round_half_even(qp) as i32)
}

/// Clips levels to `b` bits: `[0, 2^b − 1]` when `unsigned`, else `[−2^(b−1), 2^(b−1) − 1]`
/// (numpy `clip` on the level array).
///
/// Reference quirk: with DQ this clips reconstruction indices, which can break the parity the DQ
/// coder expects; the reference codes whatever results, so this does not try to repair it.
pub fn clip_levels_bitdepth(levels: &mut [i32], unsigned: bool, bits: u32) {
    let bits = bits.min(63);
    let (lo, hi) = if unsigned {
        (0i64, (1i64 << bits) - 1)
    } else if bits == 0 {
        // Never used (int_quant_bw = 0 disables the mode); keeps the shift below in range.
        (0, 0)
    } else {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    };
    for l in levels {
        *l = i64::from(*l).clamp(lo, hi) as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_rule() {
        assert_eq!(bitdepth_bits(true, 4), 4);
        assert_eq!(bitdepth_bits(false, 4), 8);
        assert_eq!(bitdepth_bits(false, 16), 16);
    }

    #[test]
    fn qp_examples() {
        // Signed 8 bit: den 127; percentile of a 1-element tensor is the element.
        // Δ = 127/127 = 1 → qp 0.
        assert_eq!(bitdepth_qp(&[-127.0], true, 8, 2).unwrap(), 0);
        // Unsigned 8 bit: den 255, Δ = 2 → qp 4 (one octave at qp_density 2).
        // Interpolated percentile 509.745 → Δ ≈ 1.999 → qp 3.996 → 4.
        assert_eq!(bitdepth_qp(&[510.0, 0.0], true, 8, 2).unwrap(), 4);
        assert_eq!(bitdepth_qp(&[510.0], true, 8, 2).unwrap(), 4);
        assert_eq!(bitdepth_qp(&[0.0, -0.0], true, 8, 2).unwrap(), 0);
        assert_eq!(bitdepth_qp(&[], true, 8, 2).unwrap(), 0);
        // Huge steps clip to 2^(5+qpd) − 1.
        assert_eq!(bitdepth_qp(&[1.0e30], true, 2, 2).unwrap(), 127);
        assert_eq!(bitdepth_qp(&[1.0e-30], true, 2, 2).unwrap(), -128);
    }

    #[test]
    fn qp_errors() {
        assert!(bitdepth_qp(&[f32::NAN], true, 8, 2).is_err());
        assert_eq!(
            bitdepth_qp(&[-1.0], true, 1, 2),
            Err(Error::InvalidBitDepth(1))
        );
        assert_eq!(bitdepth_qp(&[1.0], true, 1, 2).unwrap(), 0);
        assert!(bitdepth_qp(&[1.0], true, 64, 2).is_err());
    }

    #[test]
    fn clipping() {
        let mut l = [-300, -128, 0, 127, 300];
        clip_levels_bitdepth(&mut l, false, 8);
        assert_eq!(l, [-128, -128, 0, 127, 127]);
        let mut l = [-3, 0, 255, 256];
        clip_levels_bitdepth(&mut l, true, 8);
        assert_eq!(l, [0, 0, 255, 255]);
        let mut l = [i32::MIN, i32::MAX];
        clip_levels_bitdepth(&mut l, false, 40);
        assert_eq!(l, [i32::MIN, i32::MAX]);
    }
}
