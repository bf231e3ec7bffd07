//! How the reference's front ends turn user tensors into an [`EncodeInput`]: the tensor pipeline
//! (one tensor), plain dictionaries, and PyTorch state dicts.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{has_zero_width, EncodeInput, InputError, TOPOLOGY_PYTORCH};
use super::options::ParameterType;
use super::source::TensorSource;
use crate::tensor::Tensor;

/// Whether `name` is one of the batch-norm step counters PyTorch keeps in its state dicts
/// (`….num_batches_tracked`).
pub(crate) fn is_batch_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Whether `name` is a layer's local scaling as PyTorch names it (`….weight_scaling`, the
/// parameter NNCodec's LSA adds to each convolution and linear layer).
pub(crate) fn is_local_scaling(name: &str) -> bool {
    name.contains(".weight_scaling")
}

impl<'a> EncodeInput<'a> {
    /// A PyTorch state dict, as the reference's model pipeline sees a `torch.nn.Module`: tensors
    /// ending in `num_batches_tracked` are not coded but keep their place in the enumeration
    /// (so `parameter_id`s match the reference), as do empty tensors the reference cannot code
    /// (see [`EncodeInput::from_tensors`]), and parameter types follow PyTorch's names
    /// (`.bias`, `.running_mean`, `.running_var`, `.weight_scaling`, `gamma`, `.weight`; every tensor
    /// with two or more dimensions is a weight, except a `.weight_scaling`, which is coded
    /// flattened as the reference does). The TPL unit says `NNR_TPL_PYT`.
    ///
    /// Float32 and int32 elements are borrowed, as in [`EncodeInput::from_tensors`].
    pub fn from_state_dict(tensors: &'a [Tensor]) -> Result<Self, InputError> {
        Self::from_state_dict_sources(tensors.iter().map(TensorSource::from))
    }

    /// As [`EncodeInput::from_state_dict`], taking the tensors: float32 and int32 elements move
    /// into the input (see [`EncodeInput::from_tensors_owned`]).
    pub fn from_state_dict_owned(tensors: Vec<Tensor>) -> Result<EncodeInput<'static>, InputError> {
        EncodeInput::from_state_dict_sources(tensors.into_iter().map(TensorSource::from))
    }

    /// As [`EncodeInput::from_state_dict`], from any mix of lent tensors, given tensors and
    /// [`NamedElements`](super::NamedElements) (see [`EncodeInput::from_sources`]).
    pub fn from_state_dict_sources(
        tensors: impl IntoIterator<Item = TensorSource<'a>>,
    ) -> Result<Self, InputError> {
        let mut parameters = Vec::new();
        let mut extra_tensors = Vec::new();
        let mut names = BTreeSet::new();
        for (i, t) in tensors.into_iter().enumerate() {
            if !names.insert(t.name().to_string()) {
                return Err(InputError::DuplicateName(t.name().to_string()));
            }
            if is_batch_counter(t.name()) || has_zero_width(t.shape()) {
                extra_tensors.push(t.into_tensor());
                continue;
            }
            // The reference flattens a local scaling (`ScaledConv2d`'s `weight_scaling` is
            // `[out, 1, 1, 1]`), so it is a 1-D `weight.ls` like any block's scaling; the
            // metadata gives its shape back.
            let scaling = is_local_scaling(t.name());
            let rank = if scaling { 1 } else { t.shape().len() };
            let parameter_type = ParameterType::for_pytorch_tensor(t.name(), rank);
            let mut parameter = t.into_parameter(parameter_type, i as u64)?;
            if scaling {
                parameter.dims = vec![parameter.data.len()];
            }
            parameters.push(parameter);
        }
        Ok(EncodeInput {
            parameters,
            decomposed_weights: Vec::new(),
            extra_tensors,
            block_identifier: BTreeMap::new(),
            topology_storage_format: TOPOLOGY_PYTORCH,
            attributes: BTreeMap::new(),
            files: BTreeMap::new(),
        })
    }

    /// Whether the tensor names look like a PyTorch state dict (some name ends in `.weight`,
    /// `.bias` or `num_batches_tracked`).
    pub fn looks_like_state_dict(tensors: &[Tensor]) -> bool {
        Self::names_look_like_state_dict(tensors.iter().map(|t| t.name.as_str()))
    }

    /// [`EncodeInput::looks_like_state_dict`] from the names alone.
    pub fn names_look_like_state_dict<'n>(names: impl IntoIterator<Item = &'n str>) -> bool {
        names.into_iter().any(|name| {
            name.ends_with(".weight") || name.ends_with(".bias") || is_batch_counter(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Elements, ParameterData};
    use crate::tensor::TensorData;

    #[test]
    fn owned_builders_refuse_what_lent_ones_refuse() {
        let f = |name: &str, v: Vec<f32>| {
            Tensor::try_new(name, vec![v.len()], TensorData::F32(v)).unwrap()
        };
        let cases = [
            vec![f("a.weight", vec![1.0]), f("a.weight", vec![2.0])],
            vec![
                f("a.weight", vec![1.0]),
                Tensor::try_new("e.bias", vec![1], TensorData::U64(vec![u64::MAX])).unwrap(),
            ],
            vec![Tensor::try_new("big", vec![1], TensorData::I64(vec![1 << 40])).unwrap()],
        ];
        for tensors in cases {
            let lent = EncodeInput::from_state_dict(&tensors).unwrap_err();
            let taken = EncodeInput::from_state_dict_owned(tensors.clone()).unwrap_err();
            assert_eq!(lent, taken);
            let lent = EncodeInput::from_tensors(&tensors).unwrap_err();
            let taken = EncodeInput::from_tensors_owned(tensors).unwrap_err();
            assert_eq!(lent, taken);
        }
    }

    #[test]
    fn lent_builders_borrow_float32_and_int32_elements() {
        let tensors = vec![
            Tensor::try_new(
                "w.weight",
                vec![2, 2],
                TensorData::F32(vec![0.5, 1.0, -2.0, 3.0]),
            )
            .unwrap(),
            Tensor::try_new("ids", vec![3], TensorData::I32(vec![1, -2, 3])).unwrap(),
            Tensor::try_new("w.bias", vec![2], TensorData::F64(vec![0.25, 0.5])).unwrap(),
        ];
        for input in [
            EncodeInput::from_tensors(&tensors).unwrap(),
            EncodeInput::from_state_dict(&tensors).unwrap(),
        ] {
            match (&input.parameters[0].data, &tensors[0].data) {
                (ParameterData::F32(Elements::Borrowed(v)), TensorData::F32(t)) => {
                    assert!(std::ptr::eq(v.as_ptr(), t.as_ptr()))
                }
                other => panic!("float32 elements not borrowed: {other:?}"),
            }
            match (&input.parameters[1].data, &tensors[1].data) {
                (ParameterData::I32(Elements::Borrowed(v)), TensorData::I32(t)) => {
                    assert!(std::ptr::eq(v.as_ptr(), t.as_ptr()))
                }
                other => panic!("int32 elements not borrowed: {other:?}"),
            }
            // Other element types are converted, so they cannot be borrowed.
            assert_eq!(
                input.parameters[2].data,
                ParameterData::F32(Elements::Owned(vec![0.25, 0.5]))
            );
            // Copying the borrowed elements gives the same input.
            assert_eq!(input.clone().into_owned(), input);
        }
    }

    #[test]
    fn empty_tensors_are_coded_unless_their_rows_have_no_width() {
        let f = |name: &str, shape: Vec<usize>| {
            let n = shape.iter().product();
            Tensor::try_new(name, shape, TensorData::F32(vec![0.5; n])).unwrap()
        };
        let no_width = Tensor::try_new("mask.bias", vec![4, 0], TensorData::F16(vec![])).unwrap();
        let tensors = vec![
            f("a.weight", vec![2, 2]),
            no_width.clone(),
            f("no_rows.weight", vec![0, 3, 3]),
            f("b.bias", vec![0]),
        ];
        for input in [
            EncodeInput::from_tensors(&tensors).unwrap(),
            EncodeInput::from_tensors_owned(tensors.clone()).unwrap(),
            EncodeInput::from_state_dict(&tensors).unwrap(),
            EncodeInput::from_state_dict_owned(tensors.clone()).unwrap(),
        ] {
            let coded: Vec<_> = input
                .parameters
                .iter()
                .map(|p| (p.name.as_str(), p.parameter_index, p.dims.clone()))
                .collect();
            assert_eq!(
                coded,
                vec![
                    ("a.weight", 0, vec![2, 2]),
                    ("no_rows.weight", 2, vec![0, 3, 3]),
                    ("b.bias", 3, vec![0])
                ]
            );
            assert_eq!(input.extra_tensors, vec![no_width.clone()]);
            assert_eq!(input.extra_index("mask.bias"), Some(1));
        }
    }

    #[test]
    fn state_dict_drops_counters_but_keeps_indices() {
        let t = |name: &str, shape: Vec<usize>| {
            let n = shape.iter().product();
            Tensor::try_new(name, shape, TensorData::F32(vec![0.5; n])).unwrap()
        };
        let counter =
            Tensor::try_new("bn.num_batches_tracked", vec![], TensorData::I64(vec![7])).unwrap();
        let tensors = vec![
            t("conv.weight", vec![4, 2, 3, 3]),
            t("bn.weight", vec![4]),
            counter,
            t("fc.bias", vec![4]),
        ];
        let input = EncodeInput::from_state_dict(&tensors).unwrap();
        let names: Vec<_> = input
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.parameter_index, p.parameter_type))
            .collect();
        assert_eq!(
            names,
            vec![
                ("conv.weight", 0, ParameterType::Weight),
                ("bn.weight", 1, ParameterType::Weight),
                ("fc.bias", 3, ParameterType::Bias),
            ]
        );
        assert_eq!(input.topology_storage_format, TOPOLOGY_PYTORCH);
    }
}
