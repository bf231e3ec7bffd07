//! The numpy 1.26 `float32` reductions the reference's sparsification relies on.

/// Elements per buffered chunk of a numpy reduction (default buffer size).
const NUMPY_BUFSIZE: usize = 8192;
/// Block size up to which numpy's pairwise summation uses 8 accumulators.
const PAIRWISE_BLOCK: usize = 128;

/// numpy's pairwise summation of one contiguous run, in `f32`.
fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0f32, |acc, &x| acc + x)
    } else if n <= PAIRWISE_BLOCK {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// `np.sum` of a contiguous `float32` array over all axes: pairwise inside 8192-element chunks,
/// chunks added left to right.
pub(crate) fn sum(a: &[f32]) -> f32 {
    a.chunks(NUMPY_BUFSIZE)
        .fold(0.0f32, |acc, chunk| acc + pairwise_sum(chunk))
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
