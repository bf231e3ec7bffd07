//! Named tensor maps ⇄ NNR bitstreams: `HashMap<String, Tensor>`, `BTreeMap`, slices and vectors
//! of `(name, Tensor)` pairs.
//!
//! Tensors are coded in name order whatever the container, so the same map always gives the same
//! bytes (a `HashMap`'s iteration order is random).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use nnc_tensor::named::{sort_by_unique_name, DuplicateName, Named};
use nnc_tensor::{decode_standalone_with, DecodeOptions, EncodeInput, EncodeOptions};

use crate::convert::{from_nnc_owned, to_nnc};
use crate::error::{Error, Result};

/// One entry of a named candle tensor container: `(&String, &Tensor)` from iterating a map,
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

/// Converts named candle tensors to NNC tensors sorted by name, for callers who build their own
/// [`EncodeInput`] (for example [`EncodeInput::from_state_dict`] for PyTorch-style parameter
/// types). Fails on a repeated name or a dtype without NNC counterpart.
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

/// Encodes named candle tensors as one NNR bitstream, in name order, as a plain tensor
/// dictionary (tensors of two or more dimensions are weights; see [`EncodeInput::from_tensors`]).
///
/// With [`EncodeOptions::carry_dtypes`] on (the default) decoding restores every dtype and shape.
/// Float tensors are quantized (lossy, step set by `opts.qp`); integer tensors are coded exactly
/// but must fit `int32` ([`Error::Input`] otherwise).
pub fn encode_tensors<I>(tensors: I, opts: &EncodeOptions) -> Result<Vec<u8>>
where
    I: IntoIterator,
    I::Item: NamedTensor,
{
    let nnc = to_nnc_tensors(tensors)?;
    let input = EncodeInput::from_tensors_owned(nnc)?;
    Ok(nnc_tensor::encode(input, opts)?.bytes)
}

/// Decodes a stand-alone NNR bitstream into candle tensors on `device`, in stream order (name
/// order for streams made by [`encode_tensors`]), with the default [`DecodeOptions`] (and their
/// resource limits).
pub fn decode_tensors(bytes: &[u8], device: &Device) -> Result<Vec<(String, Tensor)>> {
    decode_tensors_with(bytes, device, &DecodeOptions::new())
}

/// [`decode_tensors`] with explicit decoder options (limits, out-of-band tensor dimensions,
/// threads). Tensors are converted one by one as they are decoded, so besides the result only
/// the decoder's window is held; levels are not kept and no decoder state is recorded, whatever
/// `opts` says (the state of a stand-alone decode would be dropped anyway).
pub fn decode_tensors_with(
    bytes: &[u8],
    device: &Device,
    opts: &DecodeOptions,
) -> Result<Vec<(String, Tensor)>> {
    decode_standalone_with(bytes, opts, |t| {
        let name = t.name.clone();
        Ok((name, from_nnc_owned(t, device)?))
    })
}

/// [`decode_tensors`] into a map keyed by name.
pub fn decode_tensor_map(bytes: &[u8], device: &Device) -> Result<BTreeMap<String, Tensor>> {
    Ok(decode_tensors(bytes, device)?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn containers_give_identical_bytes() {
        let pairs = vec![
            ("b".to_string(), t(&[1.0, 2.0, 3.0])),
            ("a".to_string(), t(&[-1.0, 0.5])),
        ];
        let map: HashMap<String, Tensor> = pairs.iter().cloned().collect();
        let opts = EncodeOptions::default();
        let from_slice = encode_tensors(pairs.as_slice(), &opts).unwrap();
        let from_map = encode_tensors(&map, &opts).unwrap();
        let from_owned = encode_tensors(pairs.clone(), &opts).unwrap();
        assert_eq!(from_slice, from_map);
        assert_eq!(from_slice, from_owned);
        let names: Vec<_> = decode_tensors(&from_map, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    /// Code written against the old stand-alone trait: a `NamedTensor` bound gives `name` and
    /// `tensor` without importing `Named`.
    mod old_api {
        use crate::NamedTensor;

        pub fn describe<N: NamedTensor>(entry: N) -> (String, usize) {
            (entry.name().to_string(), entry.tensor().elem_count())
        }
    }

    #[test]
    fn named_tensor_bound_still_gives_name_and_tensor() {
        let pairs = [("w".to_string(), t(&[1.0, 2.0]))];
        let map: HashMap<&str, Tensor> = [("m", t(&[3.0]))].into();
        assert_eq!(old_api::describe(&pairs[0]), ("w".to_string(), 2));
        assert_eq!(
            old_api::describe(map.iter().next().unwrap()),
            ("m".to_string(), 1)
        );
        assert_eq!(old_api::describe(("o", t(&[0.0; 3]))), ("o".to_string(), 3));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let pairs = [("w", t(&[1.0])), ("w", t(&[2.0]))];
        assert!(matches!(
            encode_tensors(pairs.iter(), &EncodeOptions::default()),
            Err(Error::DuplicateName(n)) if n == "w"
        ));
    }

    #[test]
    fn empty_tensors_round_trip_and_garbage_is_a_typed_error() {
        let cpu = &Device::Cpu;
        let pairs = [
            ("a", t(&[1.0, 2.0])),
            (
                "b",
                Tensor::zeros((0, 3), candle_core::DType::F16, cpu).unwrap(),
            ),
            (
                "c",
                Tensor::zeros((3, 0), candle_core::DType::F32, cpu).unwrap(),
            ),
        ];
        let bytes = encode_tensors(pairs.iter(), &EncodeOptions::default()).unwrap();
        let back = decode_tensors(&bytes, cpu).unwrap();
        let shapes: Vec<_> = back
            .iter()
            .map(|(n, t)| (n.as_str(), t.dims().to_vec(), t.dtype()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("a", vec![2], candle_core::DType::F32),
                ("b", vec![0, 3], candle_core::DType::F16),
                ("c", vec![3, 0], candle_core::DType::F32),
            ]
        );
        assert!(matches!(
            decode_tensors(&[0xff, 0x00, 0x13], &Device::Cpu),
            Err(Error::Codec(_))
        ));
    }
}
