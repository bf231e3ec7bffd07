//! Federated averaging: the weighted mean of the clients' vectors.

use crate::error::{FlError, Result};

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
    let mut acc = vec![0f32; n];
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
}
