//! `quantLayer`: float weights to integer levels, with the qp overflow fallback
//! (deepcabac.md §5.3–5.5, hls.md §5.3).

use nnc_cabac::{RateModel, StateRates};

use crate::error::{Error, Result};
use crate::scan::{MatrixShape, ScanSegments};
use crate::step::step_size;
use crate::{tcq, urq};

/// Largest valid `qp_density` (`u(3)` in the model parameter set).
pub const MAX_QP_DENSITY: u8 = 7;

/// Inputs of [`quantize_layer`], mirroring the reference's `quantLayer` arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantizeOptions {
    /// Dependent quantization (8-state TCQ) when `true`, uniform (URQ) otherwise.
    pub dq_flag: bool,
    /// `qp_density`: qp steps per octave of Δ are `2^qp_density`.
    pub qp_density: u8,
    /// Requested quantization parameter; see [`QuantizedLayer::qp`] for the one used.
    pub qp: i32,
    /// Rate weight of the rate-distortion quantizers; `<= 0` means distortion only (the default).
    pub lambda_scale: f32,
    /// Greater-than flag count of the rate model (only used when `lambda_scale > 0`).
    ///
    /// Reference quirk: the Python driver passes `cabac_unary_length_minus1` here, one less than
    /// the coder uses.
    pub max_num_no_rem: u32,
    /// Scan order 0..=4 (forced to 0 for 1-D and single-row tensors).
    pub scan_order: u8,
    /// `general_profile_idc` (only used by the rate model).
    pub general_profile_idc: u8,
}

impl Default for QuantizeOptions {
    /// The `nncodec.tensor` defaults: DQ on, qp −32, qp_density 2, λ = 0, 10 (= N − 1) flags,
    /// row-major scan, profile 1.
    fn default() -> Self {
        Self {
            dq_flag: true,
            qp_density: 2,
            qp: -32,
            lambda_scale: 0.0,
            max_num_no_rem: 10,
            scan_order: 0,
            general_profile_idc: 1,
        }
    }
}

/// Output of [`quantize_layer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizedLayer {
    /// Levels in reconstruction units (`ŵ = level · Δ(qp)`), row-major. With DQ these are the
    /// reconstruction indices `2k − sgn(k)·(state & 1)`, not the coded levels `k`.
    pub levels: Vec<i32>,
    /// The qp actually used: the requested one, or the raised one after the overflow fallback.
    pub qp: i32,
}

/// Quantizes `weights` (row-major, shape `dims`) like the reference's `quantLayer`.
///
/// Iterates in the tensor's scan order; URQ or TCQ by `dq_flag`; when a level would overflow the
/// 32-bit range, raises qp by the fallback rule ([`overflow_fallback_qp`]) and quantizes again.
pub fn quantize_layer(
    weights: &[f32],
    dims: &[usize],
    opts: &QuantizeOptions,
) -> Result<QuantizedLayer> {
    let mut levels: Vec<i32> = crate::buffer::zeroed(weights.len());
    let qp = quantize_layer_into(weights, dims, opts, &mut levels)?;
    Ok(QuantizedLayer { levels, qp })
}

/// [`quantize_layer`] writing into a caller-provided buffer (same length as `weights`); returns the
/// qp used.
pub fn quantize_layer_into(
    weights: &[f32],
    dims: &[usize],
    opts: &QuantizeOptions,
    levels: &mut [i32],
) -> Result<i32> {
    let shape = MatrixShape::from_dims(dims)?;
    if shape.len() != weights.len() {
        return Err(Error::ShapeMismatch {
            dims: dims.to_vec(),
            expected: shape.len(),
            actual: weights.len(),
        });
    }
    if levels.len() != weights.len() {
        return Err(Error::LengthMismatch {
            expected: weights.len(),
            actual: levels.len(),
        });
    }
    if opts.qp_density > MAX_QP_DENSITY {
        return Err(Error::InvalidQpDensity(opts.qp_density));
    }
    if opts.lambda_scale.is_nan() {
        return Err(Error::InvalidLambdaScale);
    }
    let scan_order = shape.effective_scan_order(opts.scan_order);
    // Validates the scan order before any work.
    ScanSegments::new(shape, scan_order)?;
    if let Some(position) = crate::first_non_finite(weights) {
        return Err(Error::NonFiniteWeight { position });
    }

    if quantize_at(weights, shape, scan_order, opts, opts.qp, levels)? {
        return Ok(opts.qp);
    }
    // The reference gives up when its fallback qp overflows too, which the f32 rounding in its
    // formula allows now and then; we go on one qp at a time, at most one octave further
    // (quirks.md#overflow-fallback). Where the fallback fits, the result is the reference's.
    let fallback = overflow_fallback_qp(weights, opts.qp_density);
    let last = fallback.saturating_add(1 << opts.qp_density);
    for qp in fallback..=last {
        if quantize_at(weights, shape, scan_order, opts, qp, levels)? {
            return Ok(qp);
        }
    }
    Err(Error::QuantizationOverflow { qp: last })
}

/// One quantization attempt at `qp`; `Ok(false)` when a level would overflow.
fn quantize_at(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    opts: &QuantizeOptions,
    qp: i32,
    levels: &mut [i32],
) -> Result<bool> {
    let step = step_size(qp, opts.qp_density);
    if !(step > 0.0 && step.is_finite()) {
        return Err(Error::InvalidStepSize {
            qp,
            qp_density: opts.qp_density,
        });
    }
    // The reference widens the f32 λ to f64; URQ tests λ itself, TCQ its λ factor, for `<= 0`.
    if !opts.dq_flag {
        if f64::from(opts.lambda_scale) <= 0.0 {
            return Ok(urq::quantize_plain(weights, step, levels));
        }
        let mut rate = rate_model(opts.max_num_no_rem)?;
        urq::quantize_rate_aware(
            weights,
            shape,
            scan_order,
            step,
            opts.lambda_scale,
            &mut rate,
            levels,
        )
    } else {
        if tcq::lambda_factor(opts.lambda_scale) <= 0.0 {
            return tcq::quantize_plain(weights, shape, scan_order, step, levels);
        }
        let rates = StateRates::new(opts.max_num_no_rem)
            .map_err(|_| Error::InvalidMaxNumNoRem(opts.max_num_no_rem))?;
        tcq::quantize_rate_aware(
            weights,
            shape,
            scan_order,
            step,
            opts.lambda_scale,
            rates,
            levels,
        )
    }
}

/// A fresh rate model: all contexts in set 0, neighbour 0, `max_num_no_rem` greater-than flags.
fn rate_model(max_num_no_rem: u32) -> Result<RateModel> {
    RateModel::new(max_num_no_rem).map_err(|_| Error::InvalidMaxNumNoRem(max_num_no_rem))
}

/// The qp `quantLayer` retries with after an overflow (deepcabac.md §5.5):
/// `minStep = max|w| / (2^31 − 3)`, `qp = ceil(f32(b + (minStep·k / 2^(b/k) − k)))` with
/// `b = f32(floor(log2 minStep)·k)`.
///
/// Reference quirk: `b` and the sum are rounded to `f32`, `b/k` is an `f32` division, the rest is
/// `f64`, exactly as the C++ mixes them.
pub fn overflow_fallback_qp(weights: &[f32], qp_density: u8) -> i32 {
    let max_abs = weights
        .iter()
        .fold(0.0f32, |m, &w| if w.abs() > m { w.abs() } else { m });
    let min_step = f64::from(max_abs) / 2_147_483_645.0;
    let k = 1i32 << qp_density.min(MAX_QP_DENSITY);
    let k_f64 = f64::from(k);
    let base_qp = (min_step.log2().floor() * k_f64) as f32;
    let octave = f64::from(base_qp / k as f32);
    let new_qp = (f64::from(base_qp) + ((min_step * k_f64) / 2f64.powf(octave) - k_f64)) as f32;
    new_qp.ceil() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KAT-G weights: `w[r][c] = ((11r + 7c) mod 23 − 11) / 37`, rounded from f64.
    fn kat_g_weights() -> Vec<f32> {
        let mut w = Vec::new();
        for r in 0..4i32 {
            for c in 0..8i32 {
                w.push((f64::from((11 * r + 7 * c) % 23 - 11) / 37.0) as f32);
            }
        }
        w
    }

    fn kat_g(dq_flag: bool, lambda_scale: f32) -> Result<QuantizedLayer> {
        let opts = QuantizeOptions {
            dq_flag,
            qp_density: 2,
            qp: -14,
            lambda_scale,
            max_num_no_rem: 10,
            scan_order: 0,
            general_profile_idc: 0,
        };
        quantize_layer(&kat_g_weights(), &[4, 8], &opts)
    }

    #[test]
    fn fallback_goes_on_where_the_reference_formula_falls_short() {
        // f32 rounding leaves the fallback qp 18 a hair too fine for 2.449e9 at qp_density 7:
        // the reference gives up there; the next qp fits.
        let m = 2.449_473_5e9f32;
        let w: Vec<f32> = (0..16)
            .map(|i| match i {
                3 => m,
                5 => -m * 0.999,
                _ => (i as f32 - 8.0) * 0.01,
            })
            .collect();
        let opts = QuantizeOptions {
            dq_flag: false,
            qp_density: 7,
            qp: -14,
            lambda_scale: 1.0,
            max_num_no_rem: 10,
            scan_order: 0,
            general_profile_idc: 1,
        };
        assert_eq!(overflow_fallback_qp(&w, 7), 18);
        let q = quantize_layer(&w, &[4, 4], &opts).unwrap();
        assert!(q.qp > 18 && q.qp <= 18 + 128, "qp {}", q.qp);
        assert!(q.levels.iter().all(|&l| l != i32::MIN));

        // A level of exactly −2^31 fits, as in the reference (the level coder codes it with the
        // bins of magnitude 2^31, which the reference's decoder wraps back to −2^31); +2^31 does
        // not.
        let opts = QuantizeOptions {
            qp: 0,
            qp_density: 0,
            lambda_scale: 0.0,
            ..opts
        };
        let q = quantize_layer(&[-2_147_483_648.0, 1.0], &[2], &opts).unwrap();
        assert_eq!((q.qp, q.levels[0]), (0, i32::MIN));
        let q = quantize_layer(&[2_147_483_648.0, 1.0], &[2], &opts).unwrap();
        assert!(q.qp > 0);
    }

    #[test]
    fn kat_g_urq() {
        let q = kat_g(false, 0.0).unwrap();
        assert_eq!(q.qp, -14);
        assert_eq!(
            q.levels,
            [
                -3, -1, 1, 3, -2, 0, 2, -2, 0, 2, -3, -1, 1, -3, -1, 1, 3, -1, 1, 3, -2, 0, 2, -3,
                0, 2, -3, -1, 1, 3, -1, 1
            ]
        );
    }

    #[test]
    fn kat_g_urq_rdoq() {
        let q = kat_g(false, 1.0).unwrap();
        assert_eq!(
            q.levels,
            [
                -3, -1, 1, 3, -2, 0, 2, -2, 0, 2, -3, 0, 1, -3, -1, 1, 3, -1, 0, 3, -2, 0, 2, -3,
                0, 2, -3, -1, 1, 3, -1, 0
            ]
        );
    }

    #[test]
    fn kat_g_tcq_rate_aware() {
        let q = kat_g(true, 1.0).unwrap();
        assert_eq!(
            q.levels,
            [
                -2, 0, 0, 3, -2, 0, 2, -2, 0, 2, -3, -1, 2, -3, -1, 0, 3, -2, 0, 3, -2, 0, 2, -2,
                0, 2, -3, -1, 2, 3, -1, 0
            ]
        );
    }

    #[test]
    fn kat_g_tcq() {
        let q = kat_g(true, 0.0).unwrap();
        assert_eq!(q.qp, -14);
        assert_eq!(
            q.levels,
            [
                -4, -2, 2, 3, -2, 0, 3, -2, 0, 2, -2, 0, 2, -3, -1, 0, 3, -2, 0, 3, -2, 0, 2, -2,
                0, 2, -3, -1, 2, 3, -1, 0
            ]
        );
    }

    /// KAT-D: `w[r][c] = 0` if `r % 5 == 2`, else `((7r + 3c) mod 17 − 8) / 64`, shape (20, 12).
    #[test]
    fn kat_d_block_scan_tcq() {
        let mut w = Vec::new();
        for r in 0..20i32 {
            for c in 0..12i32 {
                w.push(if r % 5 == 2 {
                    0.0
                } else {
                    ((7 * r + 3 * c) % 17 - 8) as f32 / 64.0
                });
            }
        }
        let opts = QuantizeOptions {
            dq_flag: true,
            qp_density: 2,
            qp: -19,
            lambda_scale: 0.0,
            max_num_no_rem: 10,
            scan_order: 1,
            general_profile_idc: 1,
        };
        let q = quantize_layer(&w, &[20, 12], &opts).unwrap();
        assert_eq!(q.qp, -19);
        #[rustfmt::skip]
        let expected: [[i32; 12]; 20] = [
            [-2, -2, -1, 0, 2, 3, -2, -1, 0, 1, 2, 2],
            [-1, 1, 2, 3, -3, -2, 0, 2, 2, -3, -2, -1],
            [0; 12],
            [-2, -1, 0, 2, 3, -2, -1, 0, 1, 3, -4, -2],
            [1, 3, -4, -2, -1, 0, 2, 3, -3, -2, 0, 1],
            [-2, -1, -1, 1, 2, 3, -3, -2, 0, 0, 2, -3],
            [0, 2, 2, -3, -2, -1, 1, 1, 3, -2, -2, 0],
            [0; 12],
            [-1, 0, 1, 3, -4, -2, -1, 0, 2, 2, -3, -2],
            [2, 3, -2, -1, -1, 1, 2, 3, -3, -1, 0, 1],
            [-3, -2, 0, 2, 2, -3, -2, -1, 0, 2, 3, -2],
            [1, 1, 2, -3, -1, 0, 1, 2, 3, -3, -2, 0],
            [0; 12],
            [0, 0, 2, 2, -3, -2, 0, 1, 2, 4, -3, -1],
            [2, 3, -3, -2, 0, 2, 2, -3, -2, -1, 0, 1],
            [-2, 0, 1, 2, 3, -3, -2, 0, 1, 2, 3, -3],
            [0, 2, 3, -2, -1, 1, 1, 2, -4, -2, -1, 0],
            [0; 12],
            [0, 1, 2, 3, -3, -2, 0, 2, 2, -3, -2, 0],
            [2, -3, -2, 0, 1, 2, 3, -3, -1, 0, 1, 2],
        ];
        assert_eq!(q.levels, expected.concat());
        // The same weights in row-major order give a different trellis path.
        let row_major = quantize_layer(
            &w,
            &[20, 12],
            &QuantizeOptions {
                scan_order: 0,
                ..opts
            },
        )
        .unwrap();
        assert_ne!(row_major.levels, q.levels);
    }

    #[test]
    fn overflow_fallback_raises_qp() {
        let w = [1.0e6f32, -3.0, 0.5, 7.0e5];
        for dq_flag in [false, true] {
            let opts = QuantizeOptions {
                dq_flag,
                qp: -100,
                ..QuantizeOptions::default()
            };
            let q = quantize_layer(&w, &[2, 2], &opts).unwrap();
            assert_eq!(q.qp, overflow_fallback_qp(&w, 2));
            assert!(q.qp > -100);
            let step = f64::from(step_size(q.qp, 2));
            assert!((f64::from(q.levels[0]) * step - 1.0e6).abs() <= step);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let opts = QuantizeOptions::default();
        assert!(matches!(
            quantize_layer(&[0.0; 5], &[2, 2], &opts),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(
            quantize_layer(&[0.0, f32::NAN], &[2], &opts),
            Err(Error::NonFiniteWeight { position: 1 })
        );
        assert_eq!(
            quantize_layer(&[f32::INFINITY], &[1], &opts),
            Err(Error::NonFiniteWeight { position: 0 })
        );
        let bad_qpd = QuantizeOptions {
            qp_density: 8,
            ..opts
        };
        assert_eq!(
            quantize_layer(&[0.0], &[1], &bad_qpd),
            Err(Error::InvalidQpDensity(8))
        );
        let bad_scan = QuantizeOptions {
            scan_order: 5,
            ..opts
        };
        assert_eq!(
            quantize_layer(&[0.0; 4], &[2, 2], &bad_scan),
            Err(Error::InvalidScanOrder(5))
        );
        let tiny_step = QuantizeOptions { qp: -700, ..opts };
        assert!(matches!(
            quantize_layer(&[0.0], &[1], &tiny_step),
            Err(Error::InvalidStepSize { .. })
        ));
        let nan_lambda = QuantizeOptions {
            lambda_scale: f32::NAN,
            ..opts
        };
        assert_eq!(
            quantize_layer(&[0.0], &[1], &nan_lambda),
            Err(Error::InvalidLambdaScale)
        );
    }

    #[test]
    fn empty_tensor() {
        let q = quantize_layer(&[], &[0, 4], &QuantizeOptions::default()).unwrap();
        assert!(q.levels.is_empty());
    }
}
