//! The few numpy 1.26 float semantics the encoder's qp choices depend on, reproduced bit for bit.

/// Elements per buffered chunk of a numpy reduction (`np.getbufsize()` default).
const NUMPY_BUFSIZE: usize = 8192;
/// Block size below which numpy's pairwise summation sums with 8 accumulators.
const PAIRWISE_BLOCK: usize = 128;

/// numpy's pairwise summation of one contiguous run, in `f32`.
fn pairwise_sum_f32(a: &[f32]) -> f32 {
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
        pairwise_sum_f32(&a[..half]) + pairwise_sum_f32(&a[half..])
    }
}

/// `np.sum` of a contiguous `float32` array (any shape, all axes): pairwise summation inside
/// chunks of 8192 elements, chunks accumulated left to right, all in `f32`.
pub fn sum_f32(a: &[f32]) -> f32 {
    a.chunks(NUMPY_BUFSIZE)
        .fold(0.0f32, |acc, chunk| acc + pairwise_sum_f32(chunk))
}

/// `np.std` (population, `ddof = 0`) of a contiguous `float32` array, computed in `f32` as numpy
/// does: `mean = sum/n`, `sqrt(sum((x − mean)²)/n)`. An empty array gives NaN.
pub fn std_f32(a: &[f32]) -> f32 {
    let n = a.len() as f32;
    let mean = sum_f32(a) / n;
    let mut squares = Vec::with_capacity(a.len());
    squares.extend(a.iter().map(|&x| {
        let d = x - mean;
        d * d
    }));
    (sum_f32(&squares) / n).sqrt()
}

/// `np.percentile(abs(a), p)` with the default linear method, for `float32` data; returns the
/// `float64` numpy returns. `None` for an empty slice.
///
/// Reference quirk: the neighbour difference is an `f32` subtraction, the interpolation `f64`, and
/// numpy interpolates from the upper neighbour when the fraction is `>= 0.5`.
pub fn percentile_abs_f32(a: &[f32], p: f64) -> Option<f64> {
    if a.is_empty() {
        return None;
    }
    let mut v: Vec<f32> = a.iter().map(|x| x.abs()).collect();
    let n = v.len();
    let q = p / 100.0;
    let virtual_index = (n - 1) as f64 * q;
    let (prev, next, gamma) = if virtual_index >= (n - 1) as f64 {
        (n - 1, n - 1, 1.0)
    } else if virtual_index < 0.0 {
        (0, 0, 0.0)
    } else {
        let prev = virtual_index.floor() as usize;
        (prev, prev + 1, virtual_index - prev as f64)
    };
    v.select_nth_unstable_by(next, f32::total_cmp);
    let b = v[next];
    // After the selection, the `prev` (= next − 1) order statistic is the largest element before `next`.
    let a_val = if prev == next { b } else { max_below(&v, next) };
    let diff = f64::from(b - a_val);
    Some(if gamma >= 0.5 {
        f64::from(b) - diff * (1.0 - gamma)
    } else {
        f64::from(a_val) + diff * gamma
    })
}

/// Largest element of `v[..idx]` (after a selection that placed the `idx`-th order statistic at `idx`).
fn max_below(v: &[f32], idx: usize) -> f32 {
    v[..idx]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// numpy's `round` (`rint`): to nearest, ties to even.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sums_are_sequential() {
        assert_eq!(sum_f32(&[]), 0.0);
        assert_eq!(sum_f32(&[1.0, 2.0, 3.5]), 6.5);
        // 1e8 + 1 + 1 ... in f32: sequential addition drops the ones.
        let mut v = vec![1.0e8f32];
        v.extend([1.0f32; 6]);
        assert_eq!(sum_f32(&v), 1.0e8);
    }

    #[test]
    fn eight_accumulators() {
        // With 8 lanes the ones are summed separately before meeting 1e8.
        let mut v = vec![1.0e8f32];
        v.extend([1.0f32; 15]);
        assert_eq!(sum_f32(&v), 1.0e8 + 8.0);
    }

    #[test]
    fn std_matches_definition_for_exact_data() {
        assert_eq!(std_f32(&[1.0, 3.0]), 1.0);
        assert_eq!(std_f32(&[2.0; 9]), 0.0);
        assert!(std_f32(&[]).is_nan());
    }

    #[test]
    fn percentile_linear() {
        let a = [0.0f32, -0.0, 0.0, 1.5, -2.25];
        // Checked with numpy 1.26: np.percentile(abs(a), 99.95) == 2.2485.
        assert_eq!(percentile_abs_f32(&a, 99.95), Some(2.2485));
        assert_eq!(percentile_abs_f32(&[3.0], 99.95), Some(3.0));
        assert_eq!(percentile_abs_f32(&[1.0, 2.0], 50.0), Some(1.5));
        assert_eq!(percentile_abs_f32(&[4.0, -1.0, 2.0], 100.0), Some(4.0));
        assert_eq!(percentile_abs_f32(&[], 50.0), None);
    }

    #[test]
    fn half_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(-3.5), -4.0);
        assert_eq!(round_half_even(-26.5), -26.0);
        assert_eq!(round_half_even(1.2), 1.0);
    }
}
