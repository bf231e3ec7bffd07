//! Federated averaging: the weighted mean of the clients' vectors.

use crate::error::{FlError, Result};
use crate::layout::Layout;
use crate::message::Decoded;

/// Weighted mean of `vectors` (all the same length) with integer weights, computed in float32
/// in the order the reference's Flower `aggregate` uses: Σ (vᵢ · wᵢ), then ÷ Σ wᵢ.
pub fn weighted_average(vectors: &[(&[f32], u64)]) -> Result<Vec<f32>> {
    let (first, _) = vectors
        .first()
        .ok_or_else(|| FlError::Aggregation("no client results".into()))?;
    let n = first.len();
    let mut total: u64 = 0;
    for (v, w) in vectors {
        if v.len() != n {
            return Err(FlError::Aggregation(format!(
                "vectors of {} and {n} values",
                v.len()
            )));
        }
        total = total
            .checked_add(*w)
            .ok_or_else(|| FlError::Aggregation("total weight overflows".into()))?;
    }
    if total == 0 {
        return Err(FlError::Aggregation("total weight is zero".into()));
    }
    let mut acc: Vec<f32> = nnc_quant::buffer::zeroed(n);
    for (k, (v, w)) in vectors.iter().enumerate() {
        let w = *w as f32;
        if k == 0 {
            for (a, x) in acc.iter_mut().zip(v.iter()) {
                *a = x * w;
            }
        } else {
            for (a, x) in acc.iter_mut().zip(v.iter()) {
                *a += x * w;
            }
        }
    }
    let total = total as f32;
    for a in &mut acc {
        *a /= total;
    }
    Ok(acc)
}

/// [`weighted_average`] of decoded messages over `layout`, with the reference's dtypes: a tensor
/// that some message holds in float64 (a codebook tensor) is summed as numpy sums it, in float32
/// until the first float64 term and in float64 from there on, then divided and rounded to
/// float32 once.
pub(crate) fn weighted_average_decoded(
    layout: &Layout,
    messages: &[(&Decoded, u64)],
) -> Result<Vec<f32>> {
    let flat: Vec<(&[f32], u64)> = messages
        .iter()
        .map(|(d, w)| (d.values.as_slice(), *w))
        .collect();
    let mut avg = weighted_average(&flat)?;
    let total: u64 = messages.iter().map(|(_, w)| w).sum();
    for i in 0..layout.specs().len() {
        if messages.iter().all(|(d, _)| d.wide_of(i).is_none()) {
            continue;
        }
        let r = layout.range(i);
        let mut acc32: Option<Vec<f32>> = None;
        let mut acc64: Option<Vec<f64>> = None;
        for (d, w) in messages {
            match (d.wide_of(i), acc64.as_mut()) {
                (Some(x), _) => {
                    let term = x.iter().map(|&x| x * *w as f64);
                    acc64 = Some(match (acc64.take(), acc32.take()) {
                        (Some(a), _) => a.iter().zip(term).map(|(a, t)| a + t).collect(),
                        (None, Some(a)) => {
                            a.iter().zip(term).map(|(&a, t)| f64::from(a) + t).collect()
                        }
                        (None, None) => term.collect(),
                    });
                }
                (None, Some(a)) => {
                    let x = &d.values[r.clone()];
                    a.iter_mut()
                        .zip(x)
                        .for_each(|(a, &x)| *a += f64::from(x * *w as f32));
                }
                (None, None) => {
                    let x = &d.values[r.clone()];
                    let term = x.iter().map(|&x| x * *w as f32);
                    acc32 = Some(match acc32.take() {
                        Some(a) => a.iter().zip(term).map(|(a, t)| a + t).collect(),
                        None => term.collect(),
                    });
                }
            }
        }
        if let Some(a) = acc64 {
            for (o, a) in avg[r].iter_mut().zip(a) {
                *o = (a / total as f64) as f32;
            }
        }
    }
    Ok(avg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_count() {
        let a = [1.0f32, 0.0, -2.0];
        let b = [4.0f32, 3.0, 1.0];
        let m = weighted_average(&[(&a, 1), (&b, 2)]).unwrap();
        assert_eq!(m, vec![3.0, 2.0, 0.0]);
    }

    #[test]
    fn float32_order_of_operations() {
        // (0.1·3 + 0.2·7) / 10 in float32, step by step.
        let m = weighted_average(&[(&[0.1f32], 3), (&[0.2f32], 7)]).unwrap();
        let expected = (0.1f32 * 3.0 + 0.2f32 * 7.0) / 10.0;
        assert_eq!(m[0].to_bits(), expected.to_bits());
    }

    #[test]
    fn errors() {
        assert!(weighted_average(&[]).is_err());
        assert!(weighted_average(&[(&[1.0f32], 0)]).is_err());
        assert!(weighted_average(&[(&[1.0f32], 1), (&[1.0f32, 2.0], 1)]).is_err());
        assert!(weighted_average(&[(&[1.0f32], u64::MAX), (&[1.0f32], 1)]).is_err());
    }

    /// numpy's results for the same sums (Flower's `aggregate`: `reduce(np.add, [l * n ...]) /
    /// total`), computed with numpy 1.26: x·3, z·7, y·5 with z float64 promotes from the second
    /// term, x·3, y·5, z·7 from the third, and all float32 never.
    #[test]
    fn float64_tensors_promote_the_sum_where_numpy_does() {
        let layout = Layout::new(vec![crate::TensorSpec::new("t", vec![1])]).unwrap();
        let (x, y, z) = (
            f32::from_bits(0x3e71_2862),
            f32::from_bits(0x3f42_6fdf),
            -1.6487873663509485f64,
        );
        let narrow = |v: f32| Decoded {
            values: vec![v],
            wide: Vec::new(),
        };
        let wide = Decoded {
            values: vec![z as f32],
            wide: vec![(0, vec![z])],
        };
        let bits =
            |m: &[(&Decoded, u64)]| weighted_average_decoded(&layout, m).unwrap()[0].to_bits();
        let (dx, dy, dz32) = (narrow(x), narrow(y), narrow(z as f32));
        assert_eq!(bits(&[(&dx, 3), (&wide, 7), (&dy, 5)]), 3203413431);
        assert_eq!(bits(&[(&dx, 3), (&dy, 5), (&wide, 7)]), 3203413430);
        assert_eq!(bits(&[(&dx, 3), (&dz32, 7), (&dy, 5)]), 3203413429);
    }
}
