//! Named tensor maps ⇄ NNR bitstreams: `HashMap<String, Tensor>`, `BTreeMap`, slices and vectors
//! of `(name, Tensor)` pairs.
//!
//! Tensors are coded in name order whatever the container, so the same map always gives the same
//! bytes (a `HashMap`'s iteration order is random).

use std::borrow::Cow;
use std::collections::BTreeMap;

use candle_core::{CpuStorage, DType as CDType, Device, Storage, StorageRef, Tensor};
use nnc_tensor::encode::{Elements, NamedElements, ParameterData, TensorSource};
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
///
/// Contiguous float32 and int32 tensors on the CPU (narrowed views too) are read where they lie,
/// in candle's storage, which stays read-locked until the encode returns; other tensors are
/// converted first, one copy each.
pub fn encode_tensors<I>(tensors: I, opts: &EncodeOptions) -> Result<Vec<u8>>
where
    I: IntoIterator,
    I::Item: NamedTensor,
{
    let sorted = sort_by_unique_name::<Tensor, _>(tensors)
        .map_err(|DuplicateName(name)| Error::DuplicateName(name))?;
    encode_lent(sorted.iter().map(|e| (e.name(), e.tensor())), opts)
}

/// Encodes `(name, tensor)` pairs, already in coding order with unique names, lending every
/// tensor [`lend`] can lend and converting the others.
pub(crate) fn encode_lent<'t>(
    tensors: impl Iterator<Item = (&'t str, &'t Tensor)>,
    opts: &EncodeOptions,
) -> Result<Vec<u8>> {
    // Every storage read guard is taken before any source borrows from one.
    let held: Vec<(&str, &Tensor, Option<Lent<'t>>)> =
        tensors.map(|(name, t)| (name, t, lend(t))).collect();
    let sources = held
        .iter()
        .map(
            |(name, t, lent)| match lent.as_ref().and_then(Lent::elements) {
                Some(data) => NamedElements::try_new(*name, t.dims().to_vec(), data)
                    .map(TensorSource::Elements)
                    .map_err(|source| Error::Shape {
                        name: name.to_string(),
                        source,
                    }),
                None => to_nnc(name, t).map(|n| TensorSource::Tensor(Cow::Owned(n))),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let input = EncodeInput::from_sources(sources)?;
    Ok(nnc_tensor::encode(input, opts)?.bytes)
}

/// A tensor's elements lent from its storage: a read guard on the storage and the tensor's
/// range in it.
pub(crate) struct Lent<'t> {
    storage: StorageRef<'t>,
    start: usize,
    end: usize,
}

impl Lent<'_> {
    /// The lent elements in the coder's types (float32 or int32), borrowed from the storage.
    fn elements(&self) -> Option<ParameterData<'_>> {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => v
                .get(self.start..self.end)
                .map(|v| ParameterData::F32(Elements::Borrowed(v))),
            Storage::Cpu(CpuStorage::I32(v)) => v
                .get(self.start..self.end)
                .map(|v| ParameterData::I32(Elements::Borrowed(v))),
            _ => None,
        }
    }
}

/// Lends a tensor's elements to the encoder without copying them, when they are float32 or
/// int32, on the CPU and contiguous (row-major, any start offset): the encoder then reads them
/// in the tensor's own storage, which stays read-locked for as long as the returned value
/// lives. Other tensors (other dtypes, other devices, strided views) give `None` and are
/// converted with [`to_nnc`].
///
/// Two lent tensors that share a storage (views of one tensor) take its read lock twice on this
/// thread, as candle's own operations on such pairs do; a thread waiting to write to that
/// storage meanwhile waits for the encode.
pub(crate) fn lend(tensor: &Tensor) -> Option<Lent<'_>> {
    if !matches!(tensor.dtype(), CDType::F32 | CDType::I32) || !tensor.device().is_cpu() {
        return None;
    }
    let (storage, layout) = tensor.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    let lent = Lent {
        storage,
        start,
        end,
    };
    lent.elements().is_some().then_some(lent)
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
    use candle_core::DType;
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

    /// The elements `lend` gives, if any.
    fn lent_values(t: &Tensor) -> Option<Vec<f32>> {
        let lent = lend(t)?;
        match lent.elements()? {
            ParameterData::F32(v) => Some(v.to_vec()),
            ParameterData::I32(v) => Some(v.iter().map(|&x| x as f32).collect()),
        }
    }

    #[test]
    fn lends_contiguous_cpu_float32_and_int32_only() {
        let cpu = &Device::Cpu;
        let w = Tensor::arange(0f32, 32.0, cpu)
            .unwrap()
            .reshape((4, 8))
            .unwrap();
        assert_eq!(lent_values(&w), Some((0..32).map(|x| x as f32).collect()));
        // A narrowed view is contiguous from an offset into the same storage.
        let rows = w.narrow(0, 1, 2).unwrap();
        assert_eq!(
            lent_values(&rows),
            Some((8..24).map(|x| x as f32).collect())
        );
        // A transposed view is not contiguous; other dtypes are converted.
        assert_eq!(lent_values(&w.t().unwrap()), None);
        assert_eq!(lent_values(&w.to_dtype(DType::F16).unwrap()), None);
        assert_eq!(lent_values(&w.to_dtype(DType::I64).unwrap()), None);
        let ints = Tensor::new(&[3i32, -4, 5], cpu).unwrap();
        assert_eq!(lent_values(&ints), Some(vec![3.0, -4.0, 5.0]));
    }

    #[test]
    fn lent_tensors_give_the_bytes_of_converted_ones() {
        let cpu = &Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (24, 40), cpu).unwrap();
        let pairs = vec![
            ("conv.weight".to_string(), w.clone()),
            ("rows".to_string(), w.narrow(0, 5, 7).unwrap()),
            ("transposed".to_string(), w.t().unwrap()),
            ("half".to_string(), w.to_dtype(DType::BF16).unwrap()),
            (
                "bias".to_string(),
                Tensor::randn(0f32, 0.1, 40, cpu).unwrap(),
            ),
            ("scalar".to_string(), Tensor::new(2.5f32, cpu).unwrap()),
            (
                "steps".to_string(),
                Tensor::new(&[7i32, -9, 11], cpu).unwrap(),
            ),
            ("ids".to_string(), Tensor::new(&[1i64, 2, 3], cpu).unwrap()),
            (
                "empty".to_string(),
                Tensor::zeros((0, 3), DType::F32, cpu).unwrap(),
            ),
        ];
        let opts = EncodeOptions::default();
        let converted = EncodeInput::from_tensors_owned(to_nnc_tensors(&pairs).unwrap()).unwrap();
        let expected = nnc_tensor::encode(converted, &opts).unwrap().bytes;
        assert_eq!(encode_tensors(&pairs, &opts).unwrap(), expected);
        // And what comes back is what went in, dtype and shape.
        let back = decode_tensor_map(&expected, cpu).unwrap();
        for (name, t) in &pairs {
            assert_eq!(back[name].dims(), t.dims(), "{name}");
            assert_eq!(back[name].dtype(), t.dtype(), "{name}");
        }
    }
}
