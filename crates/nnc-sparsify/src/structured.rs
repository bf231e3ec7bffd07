//! Structured (per output channel) sparsification (reference `get_filter_percentages`,
//! `filter_sparsific_v2`, `apply_struct_spars_v2`).
//!
//! Rows (`dims[0]`, output channels) are ranked by their mean absolute value; as many of the
//! weakest rows as there are rows below `gain ×` the average row mean are zeroed.

use std::cmp::Ordering;

use crate::numpy;
use crate::tensor::Tensor;

/// `np.mean(abs(W[f]))` for every row `f`.
fn filter_means(values: &[f32], rows: usize, row_len: usize) -> Vec<f32> {
    let mut scratch = Vec::with_capacity(row_len);
    (0..rows)
        .map(|f| numpy::mean_abs(&values[f * row_len..(f + 1) * row_len], &mut scratch))
        .collect()
}

/// Share of rows whose mean is below `gain ×` the mean of the row means.
///
/// Reference quirk: `mean · gain` is a `float64` product, but numpy compares the `float32` row
/// means against it after casting it to `float32`.
fn share_below_mean(means: &[f32], gain: f64) -> f64 {
    let bound = (f64::from(numpy::mean(means)) * gain) as f32;
    let below = means.iter().filter(|&&m| m < bound).count();
    below as f64 / means.len() as f64
}

/// `get_filter_percentages`: per tensor, the share of rows to zero, or `None` for tensors that are
/// not sparsified (fewer than two dimensions, all zero, integer, or `.weight_scaling`).
pub fn filter_percentages(tensors: &[Tensor], gain: f64) -> Vec<Option<f64>> {
    tensors
        .iter()
        .map(|t| {
            let values = t.sparsifiable()?;
            let (rows, row_len) = t.rows();
            Some(share_below_mean(&filter_means(values, rows, row_len), gain))
        })
        .collect()
}

/// Indices of the `count` weakest rows: stable argsort of `means / max(means)` in `float32`.
///
/// The reference uses numpy's default (unstable) quicksort, so rows with *equal* normalised means
/// straddling the cut-off may be chosen differently there; with distinct means (or ties among
/// all-zero rows, which stay zero either way) the choice is the same.
fn weakest_rows(means: &[f32], count: usize) -> Vec<usize> {
    let max = means
        .iter()
        .map(|m| m.abs())
        .fold(f32::NEG_INFINITY, |a, b| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else if b > a {
                b
            } else {
                a
            }
        });
    let normalised: Vec<f32> = means.iter().map(|&m| m / max).collect();
    let mut order: Vec<usize> = (0..means.len()).collect();
    order.sort_by(|&a, &b| nan_last(normalised[a], normalised[b]));
    order.truncate(count);
    order
}

/// numpy's sort order for floats: NaN after everything else.
fn nan_last(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
}

/// `apply_struct_spars_v2(gain)`: zeroes, in every sparsifiable tensor, the
/// `int(share · rows)` rows with the smallest mean absolute value, where `share` comes from
/// [`filter_percentages`].
///
/// Reference quirk: the row count is `int((k / rows) · rows)`, a `float64` round trip that can
/// truncate to `k − 1`; zeroed rows are multiplied by 0, so negatives become `-0.0`.
pub fn apply_structured(tensors: &mut [Tensor], gain: f64) {
    for t in tensors.iter_mut() {
        let Some(values) = t.sparsifiable() else {
            continue;
        };
        let (rows, row_len) = t.rows();
        let means = filter_means(values, rows, row_len);
        let share = share_below_mean(&means, gain);
        let count = (share * rows as f64) as usize;
        let weakest = weakest_rows(&means, count);
        if let Some(values) = t.f32_mut() {
            for row in weakest {
                for w in &mut values[row * row_len..(row + 1) * row_len] {
                    *w *= 0.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        // Row means 1, 2, 3, 10 → mean 4 → bound 3.6 → three rows below.
        let t = Tensor::from_f32(
            "w",
            vec![4, 2],
            vec![1.0, -1.0, 2.0, 2.0, -3.0, 3.0, 10.0, 10.0],
        )
        .unwrap();
        assert_eq!(
            filter_percentages(std::slice::from_ref(&t), 0.9),
            vec![Some(0.75)]
        );
        let mut ts = vec![t];
        apply_structured(&mut ts, 0.9);
        let v = ts[0].as_f32().unwrap();
        assert_eq!(v, &[0.0, -0.0, 0.0, 0.0, -0.0, 0.0, 10.0, 10.0]);
        assert_eq!(v[1].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn share_round_trip_truncates() {
        // 15/22·22 is 14.999999999999998 in f64: int() gives 14 rows, not 15.
        assert_eq!(((15.0f64 / 22.0) * 22.0) as usize, 14);
        let mut means = vec![0.1f32; 15];
        means.extend([10.0f32; 7]);
        let share = share_below_mean(&means, 1.0);
        assert_eq!(share, 15.0 / 22.0);
        assert_eq!((share * 22.0) as usize, 14);
    }

    #[test]
    fn weakest_rows_are_stable_and_nan_last() {
        assert_eq!(weakest_rows(&[3.0, 1.0, 1.0, 0.5], 3), vec![3, 1, 2]);
        // A NaN mean makes the maximum, hence every normalised mean, NaN: index order remains.
        assert_eq!(weakest_rows(&[f32::NAN, 1.0], 1), vec![0]);
        assert_eq!(weakest_rows(&[2.0, f32::NAN, 1.0], 1), vec![0]);
        assert!(weakest_rows(&[1.0], 0).is_empty());
    }

    #[test]
    fn untouched_tensors() {
        let mut ts = vec![
            Tensor::from_f32("b", vec![3], vec![1.0, 0.0, 5.0]).unwrap(),
            Tensor::from_f32("z", vec![2, 2], vec![0.0; 4]).unwrap(),
        ];
        let before = ts.clone();
        apply_structured(&mut ts, 0.9);
        assert_eq!(ts, before);
        assert_eq!(filter_percentages(&ts, 0.9), vec![None, None]);
    }
}
