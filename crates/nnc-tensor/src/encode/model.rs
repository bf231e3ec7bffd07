//! What the encoder is given: named parameters with their types, indices and block structure
//! (the reference's `model_info`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::elements::Elements;
use super::options::ParameterType;
use super::source::TensorSource;
use crate::tensor::{Tensor, TensorData};

/// `topology_storage_format` of a generic tensor dictionary.
pub const TOPOLOGY_UNRECOGNISED: u8 = 0;
/// `topology_storage_format` of a PyTorch model.
pub const TOPOLOGY_PYTORCH: u8 = 3;

/// Element data the coder accepts: float32 (quantized) or int32 (coded losslessly), borrowed
/// from the caller's tensors, owned, or held by a shared owner ([`Elements`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ParameterData<'a> {
    /// Float values, quantized.
    F32(Elements<'a, f32>),
    /// Integer values, coded as they are.
    I32(Elements<'a, i32>),
}

impl ParameterData<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ParameterData::F32(v) => v.len(),
            ParameterData::I32(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type: float32 or int32.
    pub fn dtype(&self) -> crate::tensor::DType {
        match self {
            ParameterData::F32(_) => crate::tensor::DType::F32,
            ParameterData::I32(_) => crate::tensor::DType::I32,
        }
    }

    /// The same elements, borrowed from `self`.
    pub fn view(&self) -> ParameterData<'_> {
        match self {
            ParameterData::F32(v) => ParameterData::F32(Elements::Borrowed(v)),
            ParameterData::I32(v) => ParameterData::I32(Elements::Borrowed(v)),
        }
    }

    /// The elements borrowing nothing: copied only if they were borrowed (shared elements
    /// keep their owner).
    pub fn into_owned(self) -> ParameterData<'static> {
        match self {
            ParameterData::F32(v) => ParameterData::F32(v.into_static()),
            ParameterData::I32(v) => ParameterData::I32(v.into_static()),
        }
    }

    /// No elements, same element type (what is left when the encoder takes the elements).
    pub(crate) fn empty_like(&self) -> ParameterData<'static> {
        match self {
            ParameterData::F32(_) => ParameterData::F32(Elements::Owned(Vec::new())),
            ParameterData::I32(_) => ParameterData::I32(Elements::Owned(Vec::new())),
        }
    }
}

impl From<Vec<f32>> for ParameterData<'static> {
    fn from(v: Vec<f32>) -> Self {
        ParameterData::F32(Elements::Owned(v))
    }
}

impl From<Vec<i32>> for ParameterData<'static> {
    fn from(v: Vec<i32>) -> Self {
        ParameterData::I32(Elements::Owned(v))
    }
}

impl<'a> From<&'a [f32]> for ParameterData<'a> {
    fn from(v: &'a [f32]) -> Self {
        ParameterData::F32(Elements::Borrowed(v))
    }
}

impl<'a> From<&'a [i32]> for ParameterData<'a> {
    fn from(v: &'a [i32]) -> Self {
        ParameterData::I32(Elements::Borrowed(v))
    }
}

/// One parameter tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelParameter<'a> {
    /// Name (`topology_elem_id`).
    pub name: String,
    /// Shape, outermost first (a scalar becomes `[1]`).
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: ParameterData<'a>,
    /// Type, which selects the qp rule.
    pub parameter_type: ParameterType,
    /// Index in the model's parameter enumeration (`parameter_id`).
    pub parameter_index: u64,
    /// The element type the user gave (the coder sees float32 or int32).
    pub original_dtype: crate::tensor::DType,
    /// The shape the user gave (a scalar is coded as `[1]`).
    pub original_shape: Vec<usize>,
}

/// The reference's `block_id_and_param_type`: which tensors form a layer block, and their types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockIdAndParamType {
    /// Block identifier per tensor name (`None`: not in a block).
    pub block_identifier: BTreeMap<String, Option<String>>,
    /// Parameter type per tensor name (`"weight"`, `"bias"`, `"bn.gamma"`, ...).
    pub parameter_type: BTreeMap<String, String>,
}

/// Why a tensor cannot be given to the coder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// An integer element does not fit int32 (the reference would wrap it silently).
    #[error("tensor {name:?}: element {index} ({value}) does not fit int32")]
    IntegerOutOfRange {
        /// Tensor name.
        name: String,
        /// Element index.
        index: usize,
        /// The value.
        value: i128,
    },
    /// Two tensors share a name.
    #[error("tensor name {0:?} appears twice")]
    DuplicateName(String),
    /// The tensor's element type cannot be coded.
    #[error("tensor {0:?} has an element type the coder does not support")]
    UnsupportedDType(String),
}

/// A weight given only as its low-rank factors `<name>_G` (rows × rank) and `<name>_H`
/// (rank × columns), which must be among the parameters; W = G·H reshaped to `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecomposedWeight {
    /// Name of the (un-decomposed) weight.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<usize>,
    /// Its index in the model enumeration.
    pub parameter_index: u64,
}

/// The model to encode: parameters in enumeration order, block structure, topology format.
///
/// The lifetime is that of the caller's tensors when [`EncodeInput::from_tensors`] borrows
/// their elements; an input that owns everything is an `EncodeInput<'static>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodeInput<'a> {
    /// Parameters in coding order. Low-rank factors of a [`DecomposedWeight`] have no index of
    /// their own (their `parameter_index` is ignored).
    pub parameters: Vec<ModelParameter<'a>>,
    /// Weights coded as low-rank factors (`NNR_CPT_DC`); they must be in a block.
    pub decomposed_weights: Vec<DecomposedWeight>,
    /// Tensors that are not coded but carried verbatim in the stream's metadata (e.g. PyTorch's
    /// `num_batches_tracked`), when [`EncodeOptions::carry_dtypes`](super::EncodeOptions) is on.
    pub extra_tensors: Vec<Tensor>,
    /// Block identifier per parameter name, only for blocks of two or more members.
    pub block_identifier: BTreeMap<String, String>,
    /// `topology_storage_format` written in the TPL unit.
    pub topology_storage_format: u8,
    /// Free-form string pairs describing the model as a whole (a safetensors file's
    /// `__metadata__`, such as `{"format": "pt"}`). Carried in the stream's metadata when
    /// [`EncodeOptions::carry_dtypes`](super::EncodeOptions) is on, and handed back by the
    /// decoder as [`StreamPlan::attributes`](crate::StreamPlan::attributes). The reference has
    /// no such data: a stream with attributes is not byte-identical with its stream.
    pub attributes: BTreeMap<String, String>,
    /// Files attached to the model, by name (a Hugging Face directory's `config.json`,
    /// tokenizer, ...): carried deflated in the stream's metadata when
    /// [`EncodeOptions::carry_dtypes`](super::EncodeOptions) is on, and handed back as
    /// [`StreamPlan::files`](crate::StreamPlan::files). The reference ignores them.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// [`encode`](super::encode) borrows an input given by reference (`&input`) and reads it in
/// place.
impl<'a, 'b> From<&'a EncodeInput<'b>> for Cow<'a, EncodeInput<'b>> {
    fn from(input: &'a EncodeInput<'b>) -> Self {
        Cow::Borrowed(input)
    }
}

/// [`encode`](super::encode) given the input itself takes each tensor's elements and frees those
/// it owns as soon as they are quantized: an owned float copy of the model is gone by the time
/// its levels exist, which about halves the encoder's peak memory.
impl<'b> From<EncodeInput<'b>> for Cow<'_, EncodeInput<'b>> {
    fn from(input: EncodeInput<'b>) -> Self {
        Cow::Owned(input)
    }
}

/// Converts a tensor to the coder's element types: floats to float32, integers to int32 (checked),
/// booleans to 0/1; float32 and int32 elements are borrowed, not copied. Scalars become shape
/// `[1]`.
pub fn to_parameter_data(t: &Tensor) -> Result<(Vec<usize>, ParameterData<'_>), InputError> {
    fn ints<T: Copy + Into<i128>>(name: &str, v: &[T]) -> Result<Vec<i32>, InputError> {
        v.iter()
            .enumerate()
            .map(|(index, &x)| {
                let value: i128 = x.into();
                i32::try_from(value).map_err(|_| InputError::IntegerOutOfRange {
                    name: name.to_string(),
                    index,
                    value,
                })
            })
            .collect()
    }
    let name = t.name.as_str();
    let data = match &t.data {
        TensorData::F32(v) => ParameterData::from(v.as_slice()),
        TensorData::F64(v) => ParameterData::from(v.iter().map(|&x| x as f32).collect::<Vec<_>>()),
        TensorData::I64(v) => ParameterData::from(ints(name, v)?),
        TensorData::I32(v) => ParameterData::from(v.as_slice()),
        TensorData::I16(v) => ParameterData::from(ints(name, v)?),
        TensorData::I8(v) => ParameterData::from(ints(name, v)?),
        TensorData::U64(v) => ParameterData::from(ints(name, v)?),
        TensorData::U32(v) => ParameterData::from(ints(name, v)?),
        TensorData::U16(v) => ParameterData::from(ints(name, v)?),
        TensorData::U8(v) => ParameterData::from(ints(name, v)?),
        TensorData::Bool(v) => {
            ParameterData::from(v.iter().map(|&b| i32::from(b)).collect::<Vec<_>>())
        }
        other => match other.as_f32_lossless() {
            Some(v) => ParameterData::F32(v.into()),
            None => return Err(InputError::UnsupportedDType(name.to_string())),
        },
    };
    Ok((coded_dims(&t.shape), data))
}

/// As [`to_parameter_data`], taking the tensor: float32 and int32 elements move into the
/// result, which borrows nothing.
pub fn into_parameter_data(t: Tensor) -> Result<(Vec<usize>, ParameterData<'static>), InputError> {
    let dims = coded_dims(&t.shape);
    match t.data {
        TensorData::F32(v) if !v.is_empty() => Ok((dims, ParameterData::from(v))),
        TensorData::I32(v) if !v.is_empty() => Ok((dims, ParameterData::from(v))),
        _ => to_parameter_data(&t).map(|(dims, data)| (dims, data.into_owned())),
    }
}

impl<'t> ModelParameter<'t> {
    /// The parameter a user tensor becomes at enumeration `index`, its elements converted by
    /// [`to_parameter_data`] (borrowed) or [`into_parameter_data`] (owned).
    pub(super) fn from_tensor(
        t: Cow<'t, Tensor>,
        parameter_type: ParameterType,
        index: u64,
    ) -> Result<Self, InputError> {
        let (name, original_dtype, original_shape) = (t.name.clone(), t.dtype(), t.shape.clone());
        let (dims, data) = match t {
            Cow::Borrowed(t) => to_parameter_data(t)?,
            Cow::Owned(t) => into_parameter_data(t)?,
        };
        Ok(ModelParameter {
            name,
            dims,
            data,
            parameter_type,
            parameter_index: index,
            original_dtype,
            original_shape,
        })
    }
}

/// Whether a tensor of this shape has rows of no width (a zero among the dimensions after the
/// first): the reference's scan divides by that width, so such a tensor is carried, not coded.
pub(super) fn has_zero_width(shape: &[usize]) -> bool {
    shape.len() > 1 && shape[1..].contains(&0)
}

/// The coded shape: the reference codes every scalar as a float32 of shape [1]; an integer
/// scalar stays an integer here so it is coded losslessly (quirks.md#integer-scalars).
pub(super) fn coded_dims(shape: &[usize]) -> Vec<usize> {
    if shape.is_empty() {
        vec![1]
    } else {
        shape.to_vec()
    }
}

impl<'a> EncodeInput<'a> {
    /// A plain dictionary of tensors (the reference's `nnc.compress(dict)`): parameters in the
    /// given order, weights = tensors with more than one dimension, no blocks.
    ///
    /// Empty tensors are coded as the reference codes them when their first dimension is the
    /// zero one (no rows). One with a zero among its other dimensions (rows of no width) the
    /// reference cannot code (it crashes); it goes to [`EncodeInput::extra_tensors`] and is
    /// carried in the stream's metadata instead (quirks.md#empty-tensors).
    ///
    /// Float32 and int32 elements are borrowed, not copied: the input lives as long as
    /// `tensors`. Other element types are converted into owned float32 or int32.
    pub fn from_tensors(tensors: &'a [Tensor]) -> Result<Self, InputError> {
        Self::from_sources(tensors.iter().map(TensorSource::from))
    }

    /// As [`EncodeInput::from_tensors`], taking the tensors: float32 and int32 elements move
    /// into the input, which then borrows nothing. With [`encode`](super::encode) given the
    /// input itself (not a reference), each tensor's elements are freed as soon as they are
    /// quantized.
    pub fn from_tensors_owned(tensors: Vec<Tensor>) -> Result<EncodeInput<'static>, InputError> {
        EncodeInput::from_sources(tensors.into_iter().map(TensorSource::from))
    }

    /// The same input owning all its elements (copying those it borrows).
    pub fn into_owned(self) -> EncodeInput<'static> {
        EncodeInput {
            parameters: self
                .parameters
                .into_iter()
                .map(|p| ModelParameter {
                    data: p.data.into_owned(),
                    name: p.name,
                    dims: p.dims,
                    parameter_type: p.parameter_type,
                    parameter_index: p.parameter_index,
                    original_dtype: p.original_dtype,
                    original_shape: p.original_shape,
                })
                .collect(),
            decomposed_weights: self.decomposed_weights,
            extra_tensors: self.extra_tensors,
            block_identifier: self.block_identifier,
            topology_storage_format: self.topology_storage_format,
            attributes: self.attributes,
            files: self.files,
        }
    }

    /// As [`EncodeInput::from_tensors`], from any mix of lent tensors, given tensors and
    /// [`NamedElements`](super::NamedElements) (elements the encoder reads where they are, such
    /// as a tensor of a memory-mapped file).
    pub fn from_sources(
        tensors: impl IntoIterator<Item = TensorSource<'a>>,
    ) -> Result<Self, InputError> {
        let tensors = tensors.into_iter();
        let mut parameters = Vec::with_capacity(tensors.size_hint().0);
        let mut extra_tensors = Vec::new();
        let mut names = BTreeSet::new();
        for (i, t) in tensors.enumerate() {
            if !names.insert(t.name().to_string()) {
                return Err(InputError::DuplicateName(t.name().to_string()));
            }
            if has_zero_width(t.shape()) {
                extra_tensors.push(t.into_tensor());
                continue;
            }
            let parameter_type = ParameterType::for_dict_tensor(t.shape().len());
            parameters.push(t.into_parameter(parameter_type, i as u64)?);
        }
        Ok(EncodeInput {
            parameters,
            decomposed_weights: Vec::new(),
            extra_tensors,
            block_identifier: BTreeMap::new(),
            topology_storage_format: TOPOLOGY_UNRECOGNISED,
            attributes: BTreeMap::new(),
            files: BTreeMap::new(),
        })
    }

    /// Sets [`EncodeInput::attributes`].
    pub fn with_attributes(mut self, attributes: BTreeMap<String, String>) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets [`EncodeInput::files`].
    pub fn with_files(mut self, files: BTreeMap<String, Vec<u8>>) -> Self {
        self.files = files;
        self
    }

    /// Enumeration index of a verbatim tensor: the gap its position left in the parameter
    /// indices (PyTorch state dicts), or after the last parameter.
    pub fn extra_index(&self, name: &str) -> Option<u64> {
        let pos = self.extra_tensors.iter().position(|t| t.name == name)? as u64;
        let mut taken: Vec<u64> = self.parameters.iter().map(|p| p.parameter_index).collect();
        taken.sort_unstable();
        // The k-th verbatim tensor takes the k-th index not used by a coded parameter.
        (0u64..)
            .filter(|i| taken.binary_search(i).is_err())
            .nth(pos as usize)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&ModelParameter<'a>> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Applies a block description as the reference does: if it passes the reference's sanity
    /// check, parameter types are overridden and blocks of two or more members are formed, and
    /// `true` is returned; otherwise nothing changes and `false` is returned (the reference then
    /// also disables BN folding).
    pub fn apply_blocks(&mut self, spec: &BlockIdAndParamType) -> bool {
        if !self.blocks_sane(spec) {
            return false;
        }
        let ids: Vec<&String> = spec.block_identifier.values().flatten().collect();
        self.block_identifier.clear();
        for d in &self.decomposed_weights {
            if let Some(Some(id)) = spec.block_identifier.get(&d.name) {
                if ids.iter().filter(|&&x| x == id).count() > 1 {
                    self.block_identifier.insert(d.name.clone(), id.clone());
                }
            }
        }
        for p in &mut self.parameters {
            if let Some(t) = spec
                .parameter_type
                .get(&p.name)
                .and_then(|s| ParameterType::from_reference_str(s))
            {
                p.parameter_type = t;
            }
            if let Some(Some(id)) = spec.block_identifier.get(&p.name) {
                if ids.iter().filter(|&&x| x == id).count() > 1 {
                    self.block_identifier.insert(p.name.clone(), id.clone());
                }
            }
        }
        true
    }

    /// The reference's `sanity_check_block_id_and_param_type` on this input's dimensions.
    fn blocks_sane(&self, spec: &BlockIdAndParamType) -> bool {
        spec.passes_reference_check(|name| {
            self.get(name).map(|p| p.dims.as_slice()).or_else(|| {
                self.decomposed_weights
                    .iter()
                    .find(|d| d.name == name)
                    .map(|d| d.dims.as_slice())
            })
        })
    }
}

impl BlockIdAndParamType {
    /// The reference's `sanity_check_block_id_and_param_type`, with `dims_of` giving each
    /// named tensor's dimensions (`None` for a name the model lacks): every block has one
    /// weight and at most one member of each other type, its non-weight members are
    /// one-dimensional, and all members agree in their first dimension.
    pub(crate) fn passes_reference_check<'d>(
        &self,
        dims_of: impl Fn(&str) -> Option<&'d [usize]>,
    ) -> bool {
        let mut blocks: BTreeMap<&str, Vec<(&str, Option<usize>)>> = BTreeMap::new();
        for (name, id) in &self.block_identifier {
            let Some(id) = id else { continue };
            let Some(ptype) = self.parameter_type.get(name) else {
                return false;
            };
            let dims = dims_of(name);
            if let Some(dims) = dims {
                if ptype != "weight" && dims.len() != 1 {
                    return false;
                }
            }
            blocks
                .entry(id.as_str())
                .or_default()
                .push((ptype.as_str(), dims.and_then(|d| d.first().copied())));
        }
        for members in blocks.values() {
            let mut available = vec![
                "weight",
                "weight.ls",
                "bias",
                "bn.mean",
                "bn.var",
                "bn.gamma",
                "bn.beta",
            ];
            let mut last: Option<Option<usize>> = None;
            for &(ptype, first_dim) in members {
                if ptype != "unspecified" {
                    match available.iter().position(|&a| a == ptype) {
                        Some(i) => {
                            available.remove(i);
                        }
                        None => return false,
                    }
                }
                if let Some(prev) = last {
                    if prev != first_dim {
                        return false;
                    }
                }
                last = Some(first_dim);
            }
            if available.contains(&"weight") {
                return false;
            }
        }
        true
    }
}
