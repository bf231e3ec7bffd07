//! The numpy 1.26 `float32` reductions the reference's sparsification relies on.

/// `np.sum` of a contiguous `float32` array over all axes: pairwise inside 8192-element chunks,
/// chunks added left to right.
pub(crate) fn sum(a: &[f32]) -> f32 {
    nnc_quant::numpy::sum_f32(a)
}

/// `np.mean` of a contiguous `float32` array (`f32` result; NaN when empty).
pub(crate) fn mean(a: &[f32]) -> f32 {
    sum(a) / a.len() as f32
}

/// `np.mean(abs(a))` without allocating when the data is small enough for one chunk.
pub(crate) fn mean_abs(a: &[f32], scratch: &mut Vec<f32>) -> f32 {
    scratch.clear();
    scratch.extend(a.iter().map(|x| x.abs()));
    mean(scratch)
}

/// `np.std` (population) of a contiguous `float32` array, all in `f32`.
pub(crate) fn std(a: &[f32], scratch: &mut Vec<f32>) -> f32 {
    let n = a.len() as f32;
    let m = sum(a) / n;
    scratch.clear();
    scratch.extend(a.iter().map(|&x| {
        let d = x - m;
        d * d
    }));
    (sum(scratch) / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums() {
        assert_eq!(sum(&[]), 0.0);
        let mut v = vec![1.0e8f32];
        v.extend([1.0f32; 6]);
        assert_eq!(sum(&v), 1.0e8);
        let mut v = vec![1.0e8f32];
        v.extend([1.0f32; 15]);
        assert_eq!(sum(&v), 1.0e8 + 8.0);
        assert_eq!(mean(&[1.0, 2.0]), 1.5);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn std_and_mean_abs() {
        let mut s = Vec::new();
        assert_eq!(std(&[1.0, 3.0], &mut s), 1.0);
        assert_eq!(mean_abs(&[-1.0, 3.0], &mut s), 2.0);
    }
}
