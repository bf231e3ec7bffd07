//! Named tensor lists ⇄ NNR bitstreams: `Vec<(String, Tensor)>` (what
//! `tch::Tensor::load_multi` returns), `HashMap<String, Tensor>` (what `VarStore::variables`
//! returns), `BTreeMap`s and slices.
//!
//! Tensors are coded in name order whatever the container, so the same map always gives the same
//! bytes (a `HashMap`'s iteration order is random).

use std::collections::BTreeMap;

use nnc_tensor::named::{sort_by_unique_name, DuplicateName, Named};
use nnc_tensor::{decode_standalone_with, DecodeOptions, EncodeInput, EncodeOptions};
use tch::Tensor;

use crate::convert::{from_nnc, to_nnc};
use crate::error::{Error, Result};

/// One entry of a named tch tensor container: `(&String, &Tensor)` from iterating a map,
/// `&(String, Tensor)` from iterating a slice, or an owned `(name, Tensor)` pair.
///
/// Every [`Named<Tensor>`] is one (the shapes and the name ordering live in
/// [`nnc_tensor::named`]); the name comes from [`Named::name`].
pub trait NamedTensor: Named<Tensor> {
    /// The tensor (the same as [`Named::value`]).
    fn tensor(&self) -> &Tensor {
        self.value()
    }
}

impl<N: Named<Tensor> + ?Sized> NamedTensor for N {}

/// Converts named tch tensors to NNC tensors sorted by name, for callers who build their own
/// [`EncodeInput`] (for example [`EncodeInput::from_state_dict`] for PyTorch's parameter-type
/// rules). Fails on a repeated name, a kind without NNC counterpart or a non-CPU tensor.
pub fn to_nnc_tensors<I>(tensors: I) -> Result<Vec<nnc_tensor::Tensor>>
where
    I: IntoIterator,
    I::Item: NamedTensor,
{
    sort_by_unique_name::<Tensor, _>(tensors)
        .map_err(|DuplicateName(name)| Error::DuplicateName(name))?
        .iter()
        .map(|e| to_nnc(e.name(), e.tensor()))
        .collect()
}

/// Encodes named tch tensors as one NNR bitstream, in name order, as a plain tensor dictionary
/// (tensors of two or more dimensions are weights; see [`EncodeInput::from_tensors`]).
///
/// With [`EncodeOptions::carry_dtypes`] on (the default) decoding restores every kind and shape.
/// Float tensors are quantized (lossy, step set by `opts.qp`); integer and bool tensors are coded
/// exactly but must fit `int32` ([`Error::Input`] otherwise).
pub fn encode_tensors<I>(tensors: I, opts: &EncodeOptions) -> Result<Vec<u8>>
where
    I: IntoIterator,
    I::Item: NamedTensor,
{
    let nnc = to_nnc_tensors(tensors)?;
    let input = EncodeInput::from_tensors_owned(nnc)?;
    Ok(nnc_tensor::encode(input, opts)?.bytes)
}

/// Decodes a stand-alone NNR bitstream into CPU tch tensors, in stream order (name order for
/// streams made by [`encode_tensors`]), with the default [`DecodeOptions`] (and their resource
/// limits). Move the results with `Tensor::to_device` if they are needed elsewhere.
pub fn decode_tensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    decode_tensors_with(bytes, &DecodeOptions::new())
}

/// [`decode_tensors`] with explicit decoder options (limits, out-of-band tensor dimensions,
/// threads). Tensors are converted one by one as they are decoded, so besides the result only
/// the decoder's window is held; levels are not kept and no decoder state is recorded, whatever
/// `opts` says (the state of a stand-alone decode would be dropped anyway).
pub fn decode_tensors_with(bytes: &[u8], opts: &DecodeOptions) -> Result<Vec<(String, Tensor)>> {
    decode_standalone_with(bytes, opts, |t| Ok((t.name.clone(), from_nnc(&t)?)))
}

/// [`decode_tensors`] into a map keyed by name.
pub fn decode_tensor_map(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    Ok(decode_tensors(bytes)?.into_iter().collect())
}
