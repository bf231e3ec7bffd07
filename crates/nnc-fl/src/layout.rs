//! The model's parameter layout (names, shapes, order) and flat parameter vectors over it.
//!
//! A model, an update and a residual are all one `Vec<f32>` holding the tensors back to back in
//! layout order (the reference's `mdl_info["parameter_index"]` order), so the FL arithmetic is a
//! plain loop over one slice.

use std::ops::Range;

use nnc_quant::buffer::with_capacity;
use nnc_tensor::encode::{Elements, NamedElements, ParameterData, TensorSource};
use nnc_tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{FlError, Result};

/// Largest number of parameters a layout may hold (2^31).
pub const MAX_LAYOUT_VALUES: usize = 1 << 31;

/// One tensor of the layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Name (NNR `topology_elem_id`).
    pub name: String,
    /// Dimensions, outermost first; none may be 0.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// A tensor spec.
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        TensorSpec {
            name: name.into(),
            shape,
        }
    }
}

/// The ordered tensors of a model. Their order is the coding order and the `parameter_id` of
/// each tensor in the bitstreams.
///
/// A scalar (shape `[]`) is one value, coded as a tensor of shape `[1]`. An empty tensor (a zero
/// dimension) has no values and is in no message; the `parameter_id`s count only the tensors
/// that are coded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<TensorSpec>", into = "Vec<TensorSpec>")]
pub struct Layout {
    specs: Vec<TensorSpec>,
    offsets: Vec<usize>,
    total: usize,
    /// Per tensor, its index among the coded (non-empty) tensors.
    coded: Vec<Option<usize>>,
}

impl Layout {
    /// Checks the specs: at least one tensor, unique non-empty names, at least one and at most
    /// [`MAX_LAYOUT_VALUES`] values in all.
    pub fn new(specs: Vec<TensorSpec>) -> Result<Self> {
        if specs.is_empty() {
            return Err(FlError::Layout("no tensors".into()));
        }
        let mut offsets = Vec::with_capacity(specs.len());
        let mut coded = Vec::with_capacity(specs.len());
        let mut num_coded = 0usize;
        let mut total = 0usize;
        for (i, s) in specs.iter().enumerate() {
            if s.name.is_empty() {
                return Err(FlError::Layout(format!("tensor {i} has an empty name")));
            }
            if specs[..i].iter().any(|t| t.name == s.name) {
                return Err(FlError::Layout(format!("tensor name {:?} repeats", s.name)));
            }
            let n = s
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_LAYOUT_VALUES);
            offsets.push(total);
            total = n
                .and_then(|n| total.checked_add(n))
                .filter(|&t| t <= MAX_LAYOUT_VALUES)
                .ok_or_else(|| FlError::Layout(format!("more than {MAX_LAYOUT_VALUES} values")))?;
            if s.shape.contains(&0) {
                coded.push(None);
            } else {
                coded.push(Some(num_coded));
                num_coded += 1;
            }
        }
        if total == 0 {
            return Err(FlError::Layout("no values: every tensor is empty".into()));
        }
        Ok(Layout {
            specs,
            offsets,
            total,
            coded,
        })
    }

    /// Tensor `index`'s `parameter_id` and shape in a message: `None` for an empty tensor,
    /// `[1]` for a scalar.
    pub(crate) fn coded(&self, index: usize) -> Option<(usize, &[usize])> {
        let id = self.coded[index]?;
        let shape = self.specs[index].shape.as_slice();
        Some((id, if shape.is_empty() { &[1] } else { shape }))
    }

    /// The tensors a message codes, as [`Layout::coded`] shapes them (copies).
    pub(crate) fn coded_tensors(&self, values: &[f32]) -> Result<Vec<Tensor>> {
        self.check("parameters", values)?;
        Ok((0..self.specs.len())
            .filter_map(|i| {
                let (_, shape) = self.coded(i)?;
                Some(Tensor {
                    name: self.specs[i].name.clone(),
                    shape: shape.to_vec(),
                    data: TensorData::F32(values[self.range(i)].to_vec()),
                })
            })
            .collect())
    }

    /// [`Layout::coded_tensors`] lent to the encoder: each tensor's elements are borrowed
    /// from `values`, not copied.
    pub(crate) fn coded_sources<'v>(&self, values: &'v [f32]) -> Result<Vec<TensorSource<'v>>> {
        self.check("parameters", values)?;
        (0..self.specs.len())
            .filter_map(|i| {
                let (_, shape) = self.coded(i)?;
                let data = ParameterData::F32(Elements::Borrowed(&values[self.range(i)]));
                Some(
                    NamedElements::try_new(self.specs[i].name.clone(), shape.to_vec(), data)
                        .map(TensorSource::Elements)
                        .map_err(|e| FlError::Internal(e.to_string())),
                )
            })
            .collect()
    }

    /// The tensors in order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Total number of parameters.
    pub fn num_values(&self) -> usize {
        self.total
    }

    /// Where tensor `index` lies in a flat parameter vector.
    pub fn range(&self, index: usize) -> Range<usize> {
        let start = self.offsets[index];
        let end = self.offsets.get(index + 1).copied().unwrap_or(self.total);
        start..end
    }

    /// Index of the tensor called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    /// Length of an uncompressed message: 4 bytes per parameter.
    pub fn raw_message_len(&self) -> usize {
        4 * self.total
    }

    /// Checks that `values` fits the layout.
    pub fn check(&self, what: &'static str, values: &[f32]) -> Result<()> {
        if values.len() != self.total {
            return Err(FlError::ModelSize {
                what,
                expected: self.total,
                actual: values.len(),
            });
        }
        Ok(())
    }

    /// Checks that every value is finite.
    pub fn check_finite(&self, what: &'static str, values: &[f32]) -> Result<()> {
        self.check(what, values)?;
        for (i, s) in self.specs.iter().enumerate() {
            if nnc_quant::first_non_finite(&values[self.range(i)]).is_some() {
                return Err(FlError::NonFinite {
                    what,
                    tensor: s.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The flat vector as named float32 tensors (copies).
    pub fn to_tensors(&self, values: &[f32]) -> Result<Vec<Tensor>> {
        self.check("parameters", values)?;
        Ok(self
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor {
                name: s.name.clone(),
                shape: s.shape.clone(),
                data: TensorData::F32(values[self.range(i)].to_vec()),
            })
            .collect())
    }

    /// Collects named float32 tensors in layout order into a flat vector; names, shapes and the
    /// tensor set must match exactly.
    pub fn from_tensors(&self, tensors: &[Tensor]) -> Result<Vec<f32>> {
        if tensors.len() != self.specs.len() {
            return Err(FlError::TensorSet(format!(
                "{} tensors given, the layout has {}",
                tensors.len(),
                self.specs.len()
            )));
        }
        let mut out = with_capacity(self.total);
        for (s, t) in self.specs.iter().zip(tensors) {
            if t.name != s.name || t.shape != s.shape {
                return Err(FlError::TensorSet(format!(
                    "tensor {:?} {:?} where the layout has {:?} {:?}",
                    t.name, t.shape, s.name, s.shape
                )));
            }
            match &t.data {
                TensorData::F32(v) => out.extend_from_slice(v),
                other => {
                    return Err(FlError::TensorSet(format!(
                        "tensor {:?} is {}, not float32",
                        t.name,
                        other.dtype().numpy_name()
                    )))
                }
            }
        }
        Ok(out)
    }
}

impl TryFrom<Vec<TensorSpec>> for Layout {
    type Error = FlError;
    fn try_from(specs: Vec<TensorSpec>) -> Result<Self> {
        Layout::new(specs)
    }
}

impl From<Layout> for Vec<TensorSpec> {
    fn from(layout: Layout) -> Self {
        layout.specs
    }
}

/// An uncompressed message: every parameter as little-endian float32, in layout order (the
/// 4 bytes per parameter the reference counts for uncompressed traffic).
pub fn encode_raw(values: &[f32]) -> Vec<u8> {
    let mut out = with_capacity(4 * values.len());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads an uncompressed message; its length must be exactly [`Layout::raw_message_len`].
pub fn decode_raw(layout: &Layout, bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.len() != layout.raw_message_len() {
        return Err(FlError::MessageLength {
            expected: layout.raw_message_len(),
            actual: bytes.len(),
        });
    }
    let mut out = with_capacity(bytes.len() / 4);
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(out)
}

/// `a += b`, element-wise (the reference's `model_add` on one flat vector).
pub(crate) fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// `a - b`, element-wise (the reference's `model_diff(new, old)`).
pub(crate) fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = with_capacity(a.len().min(b.len()));
    out.extend(a.iter().zip(b).map(|(x, y)| x - y));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> Layout {
        Layout::new(vec![
            TensorSpec::new("fc1.weight", vec![3, 2]),
            TensorSpec::new("fc1.bias", vec![3]),
        ])
        .unwrap()
    }

    #[test]
    fn offsets_and_ranges() {
        let l = mlp();
        assert_eq!(l.num_values(), 9);
        assert_eq!(l.range(0), 0..6);
        assert_eq!(l.range(1), 6..9);
        assert_eq!(l.index_of("fc1.bias"), Some(1));
        assert_eq!(l.raw_message_len(), 36);
    }

    #[test]
    fn rejects_bad_layouts() {
        assert!(matches!(Layout::new(vec![]), Err(FlError::Layout(_))));
        let dup = vec![TensorSpec::new("a", vec![1]), TensorSpec::new("a", vec![2])];
        assert!(matches!(Layout::new(dup), Err(FlError::Layout(_))));
        assert!(Layout::new(vec![TensorSpec::new("a", vec![2, 0])]).is_err());
        assert!(Layout::new(vec![
            TensorSpec::new("a", vec![0]),
            TensorSpec::new("b", vec![3, 0])
        ])
        .is_err());
        assert!(Layout::new(vec![TensorSpec::new("a", vec![usize::MAX, 2])]).is_err());
        assert!(Layout::new(vec![TensorSpec::new("", vec![1])]).is_err());
    }

    #[test]
    fn raw_round_trip_and_length_check() {
        let l = mlp();
        let v: Vec<f32> = (0..9).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = encode_raw(&v);
        assert_eq!(decode_raw(&l, &bytes).unwrap(), v);
        assert!(matches!(
            decode_raw(&l, &bytes[..35]),
            Err(FlError::MessageLength {
                expected: 36,
                actual: 35
            })
        ));
    }

    #[test]
    fn tensors_round_trip_and_mismatch() {
        let l = mlp();
        let v: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let t = l.to_tensors(&v).unwrap();
        assert_eq!(t[1].shape, vec![3]);
        assert_eq!(l.from_tensors(&t).unwrap(), v);
        let mut swapped = t.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            l.from_tensors(&swapped),
            Err(FlError::TensorSet(_))
        ));
        assert!(matches!(
            l.to_tensors(&v[..8]),
            Err(FlError::ModelSize { .. })
        ));
    }

    #[test]
    fn scalars_and_empty_tensors() {
        let l = Layout::new(vec![
            TensorSpec::new("scale", vec![]),
            TensorSpec::new("buf", vec![0, 4]),
            TensorSpec::new("fc.weight", vec![2, 2]),
        ])
        .unwrap();
        assert_eq!(l.num_values(), 5);
        assert_eq!(l.range(1), 1..1);
        assert_eq!(l.coded(0), Some((0, &[1][..])));
        assert_eq!(l.coded(1), None);
        assert_eq!(l.coded(2), Some((1, &[2, 2][..])));
        let v = [0.5, 1.0, 2.0, 3.0, 4.0];
        let coded = l.coded_tensors(&v).unwrap();
        let names: Vec<&str> = coded.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["scale", "fc.weight"]);
        assert_eq!(coded[0].shape, vec![1]);
        // The user's view keeps every tensor with its own shape.
        let all = l.to_tensors(&v).unwrap();
        assert_eq!(all[0].shape, Vec::<usize>::new());
        assert_eq!(all[1].shape, vec![0, 4]);
        assert_eq!(l.from_tensors(&all).unwrap(), v);
    }

    #[test]
    fn non_finite_is_reported_with_the_tensor() {
        let l = mlp();
        let mut v = vec![0.0f32; 9];
        v[7] = f32::NAN;
        match l.check_finite("update", &v) {
            Err(FlError::NonFinite { tensor, .. }) => assert_eq!(tensor, "fc1.bias"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn layout_serde_validates() {
        let l = mlp();
        let json = serde_json::to_string(&l).unwrap();
        let back: Layout = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        assert!(serde_json::from_str::<Layout>(r#"[{"name":"a","shape":[0]}]"#).is_err());
    }
}
