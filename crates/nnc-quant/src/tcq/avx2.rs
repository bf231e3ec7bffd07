//! The portable forward pass compiled for AVX2, for x86-64 CPUs without AVX-512: its lanes of
//! four `f64` (the even and the odd states) then fit one register each, and the compiler's
//! vector code replaces the SSE2 pairs. The same source, so the same floating-point operations
//! in the same order (Rust never fuses a multiply and an add on its own), hence the same costs,
//! ties and levels; the tests compare the two builds.

use std::sync::OnceLock;

use super::Forward;
use crate::Result;

/// Whether this CPU can run [`forward`] and the environment variable `NNC_NO_AVX2` is unset
/// (it selects the baseline build, to compare the two or to rule this one out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2") && std::env::var_os("NNC_NO_AVX2").is_none()
    })
}

/// [`super::forward_portable`], built for AVX2 where the CPU has it.
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
    super::forward_lanes(input, steps)
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
    use crate::scan::MatrixShape;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Bit for bit the baseline build: every step's branch bits, the final costs and the
        /// reconstruction, on weights of mixed scales (ties included: weights on the grid).
        #[test]
        fn same_steps_costs_and_levels_as_the_baseline_build(
            seed in any::<u64>(),
            h in 1usize..40,
            w in 1usize..70,
            scan_order in 0u8..4,
            step in prop::sample::select(vec![0.01f32, 0.125, 1.0 / 3.0, 2.5]),
        ) {
            if !available() {
                return Ok(());
            }
            let mut x = seed | 1;
            let weights: Vec<f32> = (0..h * w)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let u = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    match i % 4 {
                        0 => u * 0.2,
                        1 => u * 40.0 * step,
                        2 => (u * 16.0).round() * step * 0.5,
                        _ => 0.0,
                    }
                })
                .collect();
            let input = Forward {
                weights: &weights,
                shape: MatrixShape::from_dims(&[h, w]).expect("shape"),
                scan_order,
                qscale: 1.0 / f64::from(step),
                check: super::super::check_scale(step),
            };
            let (mut simd, mut baseline) = (Vec::new(), Vec::new());
            let a = forward(input, &mut simd).expect("avx2");
            let b = super::super::forward_portable(input, &mut baseline).expect("baseline");
            prop_assert_eq!(&simd, &baseline);
            let bits = |c: Option<[f64; 8]>| c.map(|c| c.map(f64::to_bits));
            prop_assert_eq!(bits(a), bits(b));
            let chosen: Vec<u16> = simd.iter().map(|&s| (s % 5) | (((s >> 8) & 1) << 3)).collect();
            let (mut levels, mut expected) = (vec![0; h * w], vec![0; h * w]);
            reconstruct(&weights, &chosen, input.qscale, &mut levels);
            super::super::reconstruct_portable(&weights, &chosen, input.qscale, &mut expected);
            prop_assert_eq!(levels, expected);
        }
    }
}
