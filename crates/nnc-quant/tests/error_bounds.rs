//! Property tests: reconstruction error of the λ = 0 quantizers.
//!
//! URQ rounds to the nearest multiple of Δ, so `|w − ŵ| <= Δ/2`. The TCQ's per-element error is
//! not bounded by Δ (the trellis trades a larger error at one weight for cheaper states later;
//! errors up to about 1.7Δ are easy to find), but every branch it can take keeps it within 2Δ.
//! Weights and qps are chosen so that `|level| <= 2^24`, where `f32(level)` is exact.

#![allow(clippy::unwrap_used)]

use nnc_quant::{dequantize_uniform, quantize_layer, step_size, QuantizeOptions};
use proptest::prelude::*;

fn max_scaled_error(weights: &[f32], dims: &[usize], opts: &QuantizeOptions) -> f64 {
    let q = quantize_layer(weights, dims, opts).expect("finite weights quantize");
    let mut rec = vec![0.0f32; weights.len()];
    dequantize_uniform(&q.levels, q.qp, opts.qp_density, &mut rec).expect("lengths match");
    let step = f64::from(step_size(q.qp, opts.qp_density));
    weights
        .iter()
        .zip(&rec)
        .map(|(&w, &r)| {
            // Allow for the f32 rounding of 1/Δ, of the product and of the reconstruction.
            let slack = 4.0 * f64::from(f32::EPSILON) * f64::from(w.abs());
            ((f64::from(w) - f64::from(r)).abs() - slack).max(0.0) / step
        })
        .fold(0.0, f64::max)
}

fn tensor() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    (1usize..12, 1usize..40).prop_flat_map(|(h, w)| {
        let dims = if w == 1 { vec![h] } else { vec![h, w] };
        (Just(dims), prop::collection::vec(-100.0f32..100.0, h * w))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn urq_error_at_most_half_step(
        (dims, w) in tensor(), qp in -60i32..20, qpd in 0u8..=3, scan_order in 0u8..=4
    ) {
        let opts = QuantizeOptions { dq_flag: false, qp, qp_density: qpd, scan_order, ..QuantizeOptions::default() };
        prop_assert!(max_scaled_error(&w, &dims, &opts) <= 0.5);
    }

    #[test]
    fn tcq_error_at_most_two_steps(
        (dims, w) in tensor(), qp in -60i32..20, qpd in 0u8..=3, scan_order in 0u8..=4
    ) {
        let opts = QuantizeOptions { dq_flag: true, qp, qp_density: qpd, scan_order, ..QuantizeOptions::default() };
        prop_assert!(max_scaled_error(&w, &dims, &opts) <= 2.0);
    }

    #[test]
    fn rate_aware_quantizers_run_on_any_finite_input(
        (dims, w) in tensor(), qp in -40i32..0, dq in any::<bool>(), lambda in 0.01f32..20.0
    ) {
        let opts = QuantizeOptions { dq_flag: dq, qp, lambda_scale: lambda, ..QuantizeOptions::default() };
        let q = quantize_layer(&w, &dims, &opts).expect("finite weights quantize");
        prop_assert_eq!(q.levels.len(), w.len());
    }
}

#[test]
fn tcq_error_can_exceed_one_step() {
    // A fixed witness that the Δ bound does not hold for the trellis.
    let mut seed = 12_345u64;
    let w: Vec<f32> = (0..4000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        })
        .collect();
    let opts = QuantizeOptions {
        qp: -8,
        ..QuantizeOptions::default()
    };
    let e = max_scaled_error(&w, &[w.len()], &opts);
    assert!(e > 1.0 && e <= 2.0, "max error {e} Δ");
}
