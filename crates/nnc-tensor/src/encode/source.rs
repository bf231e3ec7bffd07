//! What the [`EncodeInput`](super::EncodeInput) builders take: user tensors, lent or given, or
//! elements already in the coder's types with their name and shape (a tensor read in place from
//! a memory-mapped file, say).

use std::borrow::Cow;

use super::model::{coded_dims, InputError, ModelParameter, ParameterData};
use super::options::ParameterType;
use crate::tensor::{DType, ShapeMismatch, Tensor, TensorData};

/// A named tensor whose elements are already float32 or int32 ([`ParameterData`]): the encoder
/// reads them where they are, whoever holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedElements<'a> {
    name: String,
    shape: Vec<usize>,
    data: ParameterData<'a>,
}

impl<'a> NamedElements<'a> {
    /// Checks that the shape holds as many elements as `data`.
    pub fn try_new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: ParameterData<'a>,
    ) -> Result<Self, ShapeMismatch> {
        ShapeMismatch::check(&shape, data.len())?;
        Ok(NamedElements {
            name: name.into(),
            shape,
            data,
        })
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements, row-major.
    pub fn data(&self) -> &ParameterData<'a> {
        &self.data
    }

    /// Element type (float32 or int32).
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Renames the tensor.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// The same tensor, its elements borrowed from `self` (so that whoever holds them keeps
    /// them after an encode).
    pub fn view(&self) -> NamedElements<'_> {
        NamedElements {
            name: self.name.clone(),
            shape: self.shape.clone(),
            data: self.data.view(),
        }
    }
}

/// One tensor for [`EncodeInput::from_sources`](super::EncodeInput::from_sources) and
/// [`EncodeInput::from_state_dict_sources`](super::EncodeInput::from_state_dict_sources).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorSource<'a> {
    /// A user tensor: lent (float32 and int32 elements are borrowed) or given (they move).
    Tensor(Cow<'a, Tensor>),
    /// Elements in the coder's types, used as they are.
    Elements(NamedElements<'a>),
}

impl<'a> TensorSource<'a> {
    /// Name.
    pub fn name(&self) -> &str {
        match self {
            TensorSource::Tensor(t) => &t.name,
            TensorSource::Elements(e) => e.name(),
        }
    }

    /// Shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorSource::Tensor(t) => &t.shape,
            TensorSource::Elements(e) => e.shape(),
        }
    }

    /// Element type as the user gave it.
    pub fn dtype(&self) -> DType {
        match self {
            TensorSource::Tensor(t) => t.dtype(),
            TensorSource::Elements(e) => e.dtype(),
        }
    }

    /// The same source, borrowing from `self`: a tensor is lent, elements are borrowed. An
    /// input built from views leaves every element with `self`, for use after the encode (a
    /// report of the coding error, say).
    pub fn view(&self) -> TensorSource<'_> {
        match self {
            TensorSource::Tensor(t) => TensorSource::Tensor(Cow::Borrowed(t.as_ref())),
            TensorSource::Elements(e) => TensorSource::Elements(e.view()),
        }
    }

    /// Renames the tensor. A lent tensor is copied first (its name is the lender's).
    pub fn set_name(&mut self, name: impl Into<String>) {
        match self {
            TensorSource::Tensor(t) => t.to_mut().name = name.into(),
            TensorSource::Elements(e) => e.set_name(name),
        }
    }

    /// The tensor as a [`Tensor`]: the tensor itself when it is one, else its elements copied.
    pub fn to_tensor(&self) -> Cow<'_, Tensor> {
        match self {
            TensorSource::Tensor(t) => Cow::Borrowed(t.as_ref()),
            TensorSource::Elements(e) => Cow::Owned(TensorSource::Elements(e.view()).into_tensor()),
        }
    }

    /// The tensor as a [`Tensor`] of its own (copying lent or shared elements): what is
    /// carried verbatim instead of coded.
    pub(super) fn into_tensor(self) -> Tensor {
        match self {
            TensorSource::Tensor(t) => t.into_owned(),
            TensorSource::Elements(e) => Tensor {
                name: e.name,
                shape: e.shape,
                data: match e.data {
                    ParameterData::F32(v) => TensorData::F32(v.into_vec()),
                    ParameterData::I32(v) => TensorData::I32(v.into_vec()),
                },
            },
        }
    }

    /// The parameter this tensor becomes at enumeration `index`.
    pub(super) fn into_parameter(
        self,
        parameter_type: ParameterType,
        index: u64,
    ) -> Result<ModelParameter<'a>, InputError> {
        match self {
            TensorSource::Tensor(t) => ModelParameter::from_tensor(t, parameter_type, index),
            TensorSource::Elements(e) => {
                let original_dtype = e.dtype();
                Ok(ModelParameter {
                    dims: coded_dims(&e.shape),
                    name: e.name,
                    data: e.data,
                    parameter_type,
                    parameter_index: index,
                    original_dtype,
                    original_shape: e.shape,
                })
            }
        }
    }
}

impl<'a> From<&'a Tensor> for TensorSource<'a> {
    fn from(t: &'a Tensor) -> Self {
        TensorSource::Tensor(Cow::Borrowed(t))
    }
}

impl From<Tensor> for TensorSource<'static> {
    fn from(t: Tensor) -> Self {
        TensorSource::Tensor(Cow::Owned(t))
    }
}

impl<'a> From<NamedElements<'a>> for TensorSource<'a> {
    fn from(e: NamedElements<'a>) -> Self {
        TensorSource::Elements(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode, Elements, EncodeInput, EncodeOptions, SharedSlice};
    use std::sync::Arc;

    fn tensor(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::try_new(name, shape, data).unwrap()
    }

    #[test]
    fn shapes_must_hold_the_elements() {
        let data = || ParameterData::from(vec![1.0f32, 2.0, 3.0]);
        assert!(NamedElements::try_new("a", vec![3], data()).is_ok());
        assert!(NamedElements::try_new("a", vec![1, 3], data()).is_ok());
        let err = NamedElements::try_new("a", vec![2, 2], data()).unwrap_err();
        assert_eq!((err.expected, err.actual), (4, 3));
        let err = NamedElements::try_new("a", vec![usize::MAX, 2], data()).unwrap_err();
        assert_eq!(err.expected, usize::MAX);
    }

    #[test]
    fn shared_elements_build_the_input_tensors_build_and_are_let_go_by_the_encoder() {
        let w: Vec<f32> = (0..64).map(|i| (i as f32 * 0.7).cos()).collect();
        let ids = vec![3, -1, 4, 1];
        let tensors = vec![
            tensor("l.weight", vec![8, 8], TensorData::F32(w.clone())),
            tensor("ids", vec![4], TensorData::I32(ids.clone())),
            tensor("bn.num_batches_tracked", vec![], TensorData::I64(vec![5])),
            tensor("s", vec![], TensorData::F32(vec![0.5])),
        ];
        let w_owner: SharedSlice<f32> = Arc::new(w);
        let ids_owner: SharedSlice<i32> = Arc::new(ids);
        let sources = || {
            vec![
                TensorSource::from(
                    NamedElements::try_new(
                        "l.weight",
                        vec![8, 8],
                        ParameterData::F32(Elements::shared(w_owner.clone())),
                    )
                    .unwrap(),
                ),
                NamedElements::try_new(
                    "ids",
                    vec![4],
                    ParameterData::I32(Elements::shared(ids_owner.clone())),
                )
                .unwrap()
                .into(),
                TensorSource::from(&tensors[2]),
                TensorSource::from(tensors[3].clone()),
            ]
        };
        let opts = EncodeOptions::default();
        for state_dict in [false, true] {
            let (from_tensors, from_sources) = if state_dict {
                (
                    EncodeInput::from_state_dict(&tensors).unwrap(),
                    EncodeInput::from_state_dict_sources(sources()).unwrap(),
                )
            } else {
                (
                    EncodeInput::from_tensors(&tensors).unwrap(),
                    EncodeInput::from_sources(sources()).unwrap(),
                )
            };
            assert_eq!(from_sources, from_tensors);
            let expected = encode(&from_tensors, &opts).unwrap().bytes;
            // Lent to the encoder, the input keeps its owners; given, it lets them go.
            assert_eq!(encode(&from_sources, &opts).unwrap().bytes, expected);
            assert_eq!(Arc::strong_count(&w_owner), 2);
            assert_eq!(encode(from_sources, &opts).unwrap().bytes, expected);
            assert_eq!(Arc::strong_count(&w_owner), 1);
            assert_eq!(Arc::strong_count(&ids_owner), 1);
        }
    }

    #[test]
    fn views_borrow_and_an_input_of_views_leaves_the_owners_alone() {
        let owner: SharedSlice<f32> = Arc::new((0..48).map(|i| i as f32 / 7.0).collect::<Vec<_>>());
        let given = tensor("b", vec![3], TensorData::F32(vec![0.25, -1.0, 2.0]));
        let sources = vec![
            TensorSource::from(
                NamedElements::try_new(
                    "w",
                    vec![6, 8],
                    ParameterData::F32(Elements::shared(owner.clone())),
                )
                .unwrap(),
            ),
            TensorSource::from(given.clone()),
        ];
        let views: Vec<TensorSource<'_>> = sources.iter().map(TensorSource::view).collect();
        assert_eq!(views, sources);
        match (&views[0], &views[1]) {
            (TensorSource::Elements(e), TensorSource::Tensor(Cow::Borrowed(t))) => {
                assert!(
                    matches!(e.data(), ParameterData::F32(Elements::Borrowed(v)) if v.as_ptr() == owner.as_ref().as_ref().as_ptr())
                );
                assert!(std::ptr::eq(
                    *t,
                    match &sources[1] {
                        TensorSource::Tensor(t) => t.as_ref(),
                        _ => unreachable!(),
                    }
                ));
            }
            other => panic!("not views: {other:?}"),
        }
        let opts = EncodeOptions::default();
        let from_views = encode(EncodeInput::from_sources(views).unwrap(), &opts).unwrap();
        assert_eq!(Arc::strong_count(&owner), 2);
        let given_up = encode(EncodeInput::from_sources(sources).unwrap(), &opts).unwrap();
        assert_eq!(Arc::strong_count(&owner), 1);
        assert_eq!(from_views.bytes, given_up.bytes);
    }

    #[test]
    fn renaming_a_lent_tensor_leaves_the_lender_alone() {
        let t = tensor("a", vec![1], TensorData::F32(vec![1.0]));
        let mut s = TensorSource::from(&t);
        s.set_name("b");
        assert_eq!((s.name(), t.name.as_str()), ("b", "a"));
        let mut e =
            TensorSource::from(NamedElements::try_new("c", vec![], vec![2.0f32].into()).unwrap());
        e.set_name("d");
        assert_eq!(e.name(), "d");
    }
}
