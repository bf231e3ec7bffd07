//! Unstructured, statistics-based sparsification (reference `stats_based_sparsific_v2`,
//! `achieve_target_sparsity`, `apply_unstruct_spars_v2`).
//!
//! A weight survives when `|w| >= t`; `t` is half the quantization step, or, to reach a target
//! sparsity, `max(|μ − δσ|, |μ + δσ|)` of the tensor with δ raised step by step.

use crate::numpy;
use crate::tensor::{sparsity, Tensor};

/// Iterations of the target-sparsity search (the reference's `range(501)`).
const MAX_SEARCH_ITERATIONS: usize = 501;
/// δ the target search starts from.
const START_DELTA: f64 = 0.25;

/// Step size of `qp` in `f64` (reference `get_stepsize_from_qp`).
pub fn step_size_f64(qp: i32, qp_density: u8) -> f64 {
    let qpd = qp_density.min(30);
    let k = 1i64 << qpd;
    let qp = i64::from(qp);
    let mul = k + (qp & (k - 1));
    let shift = (qp >> qpd) - i64::from(qpd);
    // 2^shift, exact like C's pow(2.0, shift) (subnormals included).
    let scale = if shift > 1023 {
        f64::INFINITY
    } else if shift >= -1022 {
        f64::from_bits(((shift + 1023) as u64) << 52)
    } else if shift >= -1074 {
        f64::from_bits(1u64 << (shift + 1074))
    } else {
        0.0
    };
    mul as f64 * scale
}

/// Mean and standard deviation of a tensor (numpy `float32` semantics).
#[derive(Clone, Copy, Debug)]
struct Stats {
    mean: f32,
    std: f32,
}

impl Stats {
    fn of(values: &[f32], scratch: &mut Vec<f32>) -> Self {
        Self {
            mean: numpy::mean(values),
            std: numpy::std(values, scratch),
        }
    }

    /// `np.max([|μ − δσ|, |μ + δσ|])` in `f64` (NaN propagates, as in numpy).
    fn threshold(&self, delta: f64) -> f64 {
        let mu = f64::from(self.mean);
        let spread = delta * f64::from(self.std);
        let (a, b) = ((mu - spread).abs(), (mu + spread).abs());
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.max(b)
        }
    }
}

/// `W * (W >= t) + W * (W <= -t)` for one element.
///
/// Reference quirk: numpy compares the `float32` array with the `float64` threshold after casting
/// the threshold to `float32`; the products keep the sign, so dropped negatives become `-0.0`
/// (and NaN stays NaN).
#[inline]
fn keep(w: f32, t: f32) -> f32 {
    w * f32::from(u8::from(w >= t)) + w * f32::from(u8::from(w <= -t))
}

/// The threshold actually used: `step/2` when forced (QP-induced pass) or when the statistics
/// give less.
fn effective_threshold(stats: &Stats, delta: f64, step: f64, qp_induced: bool) -> (f64, bool) {
    let t = stats.threshold(delta);
    if qp_induced || t < step / 2.0 {
        (step / 2.0, false)
    } else {
        (t, true)
    }
}

/// One pass of `stats_based_sparsific_v2` over every sparsifiable tensor, in place.
///
/// Returns the number of tensors whose statistical threshold exceeded `step/2`
/// (`num_sparser_params`; always 0 with `qp_induced`).
pub fn stats_based_sparsify(
    tensors: &mut [Tensor],
    delta: f64,
    step: f64,
    qp_induced: bool,
) -> usize {
    let mut scratch = Vec::new();
    let mut sparser = 0;
    for t in tensors.iter_mut() {
        let Some(values) = t.sparsifiable() else {
            continue;
        };
        let stats = Stats::of(values, &mut scratch);
        let (threshold, stat_won) = effective_threshold(&stats, delta, step, qp_induced);
        sparser += usize::from(stat_won);
        let t32 = threshold as f32;
        if let Some(values) = t.f32_mut() {
            for w in values {
                *w = keep(*w, t32);
            }
        }
    }
    sparser
}

/// Zero count of a tensor after [`keep`] with threshold `t`, without writing it.
///
/// The target search counts every tensor once per δ it tries, often twenty times or more. For
/// `t > 0` (+∞ included) [`keep`] gives zero exactly when `|w| < t`: below it both products
/// are `±0`; at or above it one factor is 1 and the sum is `w` (or NaN for an infinite `w`);
/// NaN compares false either way. That form vectorizes, in counts of `u32` per chunk.
/// `t <= 0` and NaN, where zeros survive and the two forms part, keep the literal form.
fn zeros_after(values: &[f32], t: f32) -> usize {
    if t > 0.0 {
        values
            .chunks(1 << 16)
            .map(|c| c.iter().map(|&w| u32::from(w.abs() < t)).sum::<u32>() as usize)
            .sum()
    } else {
        values.iter().filter(|&&w| keep(w, t) == 0.0).count()
    }
}

/// `achieve_target_sparsity`: raises δ from 0.25 (by 0.2, then 0.1 / 0.05 / 0.01 as the gap to
/// the target shrinks below 0.3 / 0.1 / 0.05) until the sparsity of all tensors reaches
/// `target_sparsity` or 501 iterations pass, re-thresholding `tensors` (the QP-sparsified input)
/// each time. Returns the final δ (`None` when no pass was needed).
///
/// Reference quirk: the increment only ever changes when the gap crosses one of those bounds, so
/// a gap above 0.3 after a smaller increment keeps the smaller one.
pub fn achieve_target_sparsity(
    tensors: &mut [Tensor],
    target_sparsity: f64,
    step: f64,
) -> Option<f64> {
    let mut scratch = Vec::new();
    let stats: Vec<Option<Stats>> = tensors
        .iter()
        .map(|t| t.sparsifiable().map(|v| Stats::of(v, &mut scratch)))
        .collect();
    let total: usize = tensors.iter().map(Tensor::len).sum();
    // The tensors the search does not threshold keep their zeros throughout.
    let fixed_zeros: usize = tensors
        .iter()
        .zip(&stats)
        .filter(|(t, s)| t.as_f32().is_none() || s.is_none())
        .map(|(t, _)| t.zero_count())
        .sum();
    let sparsity_at = |delta: f64| -> f64 {
        let zeros: usize = tensors
            .iter()
            .zip(&stats)
            .filter_map(|(t, s)| match (t.as_f32(), s) {
                (Some(v), Some(s)) => Some(zeros_after(
                    v,
                    effective_threshold(s, delta, step, false).0 as f32,
                )),
                _ => None,
            })
            .sum();
        (fixed_zeros + zeros) as f64 / total as f64
    };

    let mut delta = START_DELTA;
    let mut applied: Option<f64> = None;
    let mut increment = 0.2;
    for _ in 0..MAX_SEARCH_ITERATIONS {
        let current = match applied {
            None => sparsity(tensors),
            Some(d) => sparsity_at(d),
        };
        if current >= target_sparsity {
            break;
        }
        let gap = target_sparsity - current;
        if gap < 0.05 {
            increment = 0.01;
        } else if gap < 0.10 {
            increment = 0.05;
        } else if gap < 0.30 {
            increment = 0.10;
        }
        delta += increment;
        applied = Some(delta);
    }

    let delta = applied?;
    for (t, s) in tensors.iter_mut().zip(&stats) {
        if let (Some(s), Some(values)) = (s, t.f32_mut()) {
            let t32 = effective_threshold(s, delta, step, false).0 as f32;
            for w in values {
                *w = keep(*w, t32);
            }
        }
    }
    Some(delta)
}

/// `apply_unstruct_spars_v2`: zero every weight below half the step of `qp` (QP-induced sparsity),
/// then, if that is below `target_sparsity`, search the statistical threshold
/// ([`achieve_target_sparsity`]).
pub fn apply_unstructured(tensors: &mut [Tensor], qp: i32, qp_density: u8, target_sparsity: f64) {
    let step = step_size_f64(qp, qp_density);
    stats_based_sparsify(tensors, 1.0, step, true);
    let qp_sparsity = sparsity(tensors);
    if target_sparsity > 0.0 && qp_sparsity < target_sparsity {
        achieve_target_sparsity(tensors, target_sparsity, step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_count_matches_keep_on_every_kind_of_value() {
        let tiny = f32::from_bits(1);
        let values = [
            0.0,
            -0.0,
            tiny,
            -tiny,
            f32::MIN_POSITIVE,
            0.1,
            -0.1,
            0.5,
            -0.5,
            0.5f32.next_up(),
            (-0.5f32).next_down(),
            0.5f32.next_down(),
            1.0e30,
            -1.0e30,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        let thresholds = [
            0.5,
            0.5f32.next_up(),
            tiny,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
            0.0,
            -0.0,
            -0.5,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for t in thresholds {
            let literal = values.iter().filter(|&&w| keep(w, t) == 0.0).count();
            assert_eq!(zeros_after(&values, t), literal, "threshold {t}");
        }
        // Each threshold above parts some values from others.
        assert_eq!(zeros_after(&values, 0.5), 8);
        assert_eq!(zeros_after(&values, f32::INFINITY), 15);
        assert_eq!(zeros_after(&values, 0.0), 2);
    }

    fn weight(values: Vec<f32>, dims: Vec<usize>) -> Tensor {
        Tensor::from_f32("w", dims, values).unwrap()
    }

    #[test]
    fn step_sizes() {
        assert_eq!(step_size_f64(-32, 2), 2f64.powi(-8));
        assert_eq!(step_size_f64(-38, 2), 6.0 * 2f64.powi(-12));
        assert_eq!(step_size_f64(0, 0), 1.0);
    }

    #[test]
    fn keep_semantics() {
        assert_eq!(keep(0.5, 0.25), 0.5);
        assert_eq!(keep(-0.5, 0.25), -0.5);
        assert_eq!(keep(0.1, 0.25).to_bits(), 0.0f32.to_bits());
        assert_eq!(keep(-0.1, 0.25).to_bits(), (-0.0f32).to_bits());
        assert!(keep(f32::NAN, 0.25).is_nan());
        // Exactly at the threshold survives.
        assert_eq!(keep(0.25, 0.25), 0.25);
    }

    #[test]
    fn threshold_is_compared_in_f32() {
        // f32(0.1) lies below 0.1 + 1e-12 in f64 but equals its f32 rounding: it survives.
        let x = 0.1f32;
        let t = f64::from(x) + 1e-12;
        assert_eq!(keep(x, t as f32), x);
    }

    #[test]
    fn qp_induced_pass() {
        // Δ(−32) = 1/256, threshold 1/512.
        let mut t = vec![
            weight(vec![0.001, -0.001, 0.002, -0.003, 0.5, 0.0], vec![2, 3]),
            weight(vec![0.001, 0.002], vec![2]),
        ];
        assert_eq!(
            stats_based_sparsify(&mut t, 1.0, step_size_f64(-32, 2), true),
            0
        );
        assert_eq!(
            t[0].as_f32().unwrap(),
            &[0.0, -0.0, 0.002, -0.003, 0.5, 0.0]
        );
        // 1-D tensors are left alone.
        assert_eq!(t[1].as_f32().unwrap(), &[0.001, 0.002]);
    }

    #[test]
    fn target_search_reaches_target() {
        let values: Vec<f32> = (0..400)
            .map(|i| ((i * 37) % 101) as f32 / 100.0 - 0.5)
            .collect();
        let mut t = vec![weight(values, vec![20, 20])];
        let step = step_size_f64(-32, 2);
        let d = achieve_target_sparsity(&mut t, 0.5, step).unwrap();
        assert!(d > START_DELTA);
        assert!(sparsity(&t) >= 0.5);
        // Already sparse enough: nothing changes.
        let before = t.clone();
        assert_eq!(achieve_target_sparsity(&mut t, 0.1, step), None);
        assert_eq!(t, before);
    }
}
