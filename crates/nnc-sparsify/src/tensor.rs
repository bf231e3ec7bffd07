//! Named tensors as the sparsifier sees them.

use crate::error::{Error, Result};

/// Element data of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorValues {
    /// `float32` data (the only kind that is ever sparsified).
    F32(Vec<f32>),
    /// Integer data (e.g. `num_batches_tracked`): counted for the sparsity, never changed.
    Int(Vec<i64>),
}

/// One named tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Parameter name (the `.weight_scaling` rule looks at it).
    pub name: String,
    /// Dimensions (`[]` for a scalar).
    pub dims: Vec<usize>,
    values: TensorValues,
}

/// Substring that exempts a tensor from sparsification.
const WEIGHT_SCALING: &str = ".weight_scaling";

impl Tensor {
    /// A tensor; fails when `dims` do not describe `values`.
    pub fn new(name: impl Into<String>, dims: Vec<usize>, values: TensorValues) -> Result<Self> {
        let name = name.into();
        let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let actual = match &values {
            TensorValues::F32(v) => v.len(),
            TensorValues::Int(v) => v.len(),
        };
        if expected != Some(actual) {
            return Err(Error::ShapeMismatch {
                name,
                expected: expected.unwrap_or(usize::MAX),
                dims,
                actual,
            });
        }
        Ok(Self { name, dims, values })
    }

    /// A `float32` tensor.
    pub fn from_f32(name: impl Into<String>, dims: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        Self::new(name, dims, TensorValues::F32(values))
    }

    /// The element data.
    pub fn values(&self) -> &TensorValues {
        &self.values
    }

    /// The `float32` data, if this is a float tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            TensorValues::F32(v) => Some(v),
            TensorValues::Int(_) => None,
        }
    }

    /// Consumes the tensor, returning its data.
    pub fn into_values(self) -> TensorValues {
        self.values
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.values {
            TensorValues::F32(v) => v.len(),
            TensorValues::Int(v) => v.len(),
        }
    }

    /// `true` for a tensor without elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of elements equal to zero (`-0.0` included, NaN not).
    pub fn zero_count(&self) -> usize {
        match &self.values {
            TensorValues::F32(v) => v.iter().filter(|&&x| x == 0.0).count(),
            TensorValues::Int(v) => v.iter().filter(|&&x| x == 0).count(),
        }
    }

    /// The data the sparsifiers may change: float tensors with at least two dimensions, some
    /// non-zero element (`W.any()`; NaN counts as non-zero) and no `.weight_scaling` in the name.
    ///
    /// The reference would also threshold integer tensors of two or more dimensions (with
    /// `float64` statistics); they are left unchanged here.
    pub(crate) fn sparsifiable(&self) -> Option<&[f32]> {
        match &self.values {
            TensorValues::F32(v)
                if self.dims.len() >= 2
                    && !self.name.contains(WEIGHT_SCALING)
                    && v.iter().any(|&x| x != 0.0) =>
            {
                Some(v)
            }
            _ => None,
        }
    }

    /// Mutable float data (see [`Tensor::sparsifiable`] for when the sparsifiers use it).
    pub(crate) fn f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.values {
            TensorValues::F32(v) => Some(v),
            TensorValues::Int(_) => None,
        }
    }

    /// Rows (`dims[0]`) and row length (product of the other dimensions).
    pub(crate) fn rows(&self) -> (usize, usize) {
        let h = self.dims.first().copied().unwrap_or(1);
        let w = self.dims.iter().skip(1).product();
        (h, w)
    }
}

/// Fraction of zero elements over all tensors (reference `get_sparsity`); NaN without elements.
pub fn sparsity(tensors: &[Tensor]) -> f64 {
    let zeros: usize = tensors.iter().map(Tensor::zero_count).sum();
    let total: usize = tensors.iter().map(Tensor::len).sum();
    zeros as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_and_counts() {
        assert!(Tensor::from_f32("w", vec![2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::from_f32("s", vec![], vec![1.0]).is_ok());
        let t = Tensor::from_f32("w", vec![2, 2], vec![0.0, -0.0, 1.0, f32::NAN]).unwrap();
        assert_eq!(t.zero_count(), 2);
        assert_eq!(t.rows(), (2, 2));
        let i = Tensor::new("n", vec![], TensorValues::Int(vec![0])).unwrap();
        assert_eq!(sparsity(&[t, i]), 0.6);
        assert!(sparsity(&[]).is_nan());
    }

    #[test]
    fn which_tensors_are_sparsified() {
        let w =
            |name: &str, dims: Vec<usize>, v: Vec<f32>| Tensor::from_f32(name, dims, v).unwrap();
        assert!(w("a.weight", vec![1, 2], vec![0.0, 1.0])
            .sparsifiable()
            .is_some());
        assert!(w("a.bias", vec![2], vec![0.0, 1.0])
            .sparsifiable()
            .is_none());
        assert!(w("a.weight", vec![1, 2], vec![0.0, -0.0])
            .sparsifiable()
            .is_none());
        assert!(w("a.weight_scaling", vec![1, 2], vec![1.0, 1.0])
            .sparsifiable()
            .is_none());
        let i = Tensor::new("i", vec![1, 2], TensorValues::Int(vec![1, 2])).unwrap();
        assert!(i.sparsifiable().is_none());
    }
}
