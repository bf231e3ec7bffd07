//! One coded message, both ways: flat parameters → (sparsification) → NNC bitstream, and
//! bitstream → flat parameters, each against the incremental state of its direction and sender.
//!
//! Neither direction changes a state: each returns the changes its message makes, which the
//! caller applies only when its whole step has succeeded.
//! Before decoding, the NDU headers are checked against the layout and the state (sender, tensor
//! set, update depth), so a message from the wrong sender, a skipped or repeated message and a
//! foreign model are typed errors even where the entropy decoder would not notice (no TCA).

use std::ops::Range;

use nnc_bitstream::{parse_unit, NnrUnit, ParseContext, SideInfo, UnitReader};
use nnc_quant::buffer::zeroed;
use nnc_tensor::sparsify::sparsify_tensors;
use nnc_tensor::{
    encode_incremental_deferred, Approximation, DecodeOptions, DecodedTensor, EncodeInput,
    EncodedTensor, IncrementalState, Limits, StateChanges, StreamDecoder, TensorData,
};

use crate::error::{FlError, Result};
use crate::layout::Layout;
use crate::options::FlOptions;

/// A coded message and what its receiver will reconstruct from it.
#[derive(Debug)]
pub(crate) struct Coded {
    /// The NNR bitstream.
    pub bytes: Vec<u8>,
    /// Where the receiver's values come from.
    values: Reconstruction,
}

/// The receiver's values of a [`Coded`] message, made only when the caller asks for them.
#[derive(Debug)]
enum Reconstruction {
    /// Dequantized from the coded levels on demand, with the decoder's own functions.
    Levels(Vec<EncodedTensor>),
    /// Decoded from the bitstream (verification, or levels that may decode differently).
    Decoded(Decoded),
}

impl Coded {
    /// The values the receiver decodes (zeros for omitted all-zero tensors).
    pub fn into_reconstruction(self, layout: &Layout) -> Result<Decoded> {
        match self.values {
            Reconstruction::Levels(tensors) => reconstruct(layout, &tensors),
            Reconstruction::Decoded(d) => Ok(d),
        }
    }

    /// `minuend −= ` the values the receiver decodes, as [`Decoded::subtract_from`] takes it,
    /// without making them: each tensor's levels are dequantized a block at a time.
    pub fn subtract_reconstruction_from(&self, layout: &Layout, minuend: &mut [f32]) -> Result<()> {
        let tensors = match &self.values {
            Reconstruction::Levels(tensors) => tensors,
            Reconstruction::Decoded(d) => {
                d.subtract_from(layout, minuend);
                return Ok(());
            }
        };
        layout.check("minuend", minuend)?;
        for_each_dequantized(layout, tensors, |_, r, values| match values {
            Dequantized::Narrow(block) => {
                minuend[r].iter_mut().zip(block).for_each(|(a, &b)| *a -= b)
            }
            Dequantized::Wide(v) => minuend[r]
                .iter_mut()
                .zip(&v)
                .for_each(|(a, &x)| *a = (f64::from(*a) - x) as f32),
        })
    }
}

/// Values of a coded tensor as the receiver decodes them.
enum Dequantized<'b> {
    /// A block of a uniformly quantized tensor's float32 values.
    Narrow(&'b [f32]),
    /// A codebook tensor's float64 values, whole.
    Wide(Vec<f64>),
}

/// Dequantizes the coded `tensors` (all [`dequantizable`]; skipped ones have no values) as the
/// decoder does and hands `f` each piece with its tensor's layout index and where it lies in
/// the flat vector: a uniform tensor in blocks of 1 024 (no tensor-sized buffer), a codebook
/// tensor whole. Fails on a value that is not finite in float32.
fn for_each_dequantized(
    layout: &Layout,
    tensors: &[EncodedTensor],
    mut f: impl FnMut(usize, Range<usize>, Dequantized<'_>),
) -> Result<()> {
    const BLOCK: usize = 1024;
    let mut block = [0f32; BLOCK];
    for t in tensors.iter().filter(|t| !t.skipped) {
        let (i, range) = coded_range(layout, t)?;
        let non_finite = || FlError::NonFinite {
            what: "reconstruction",
            tensor: layout.specs()[i].name.clone(),
        };
        match &t.approximation {
            Approximation::Uniform { qp, qp_density, .. } => {
                for (k, levels) in t.levels.chunks(BLOCK).enumerate() {
                    let b = &mut block[..levels.len()];
                    nnc_quant::dequantize_uniform(levels, *qp, *qp_density, b)
                        .map_err(|e| FlError::Internal(e.to_string()))?;
                    if nnc_quant::first_non_finite(b).is_some() {
                        return Err(non_finite());
                    }
                    let at = range.start + k * BLOCK;
                    f(i, at..at + b.len(), Dequantized::Narrow(b));
                }
            }
            Approximation::Codebook { .. } => {
                let TensorData::F64(v) = t.reconstruction()? else {
                    return Err(not_dequantizable(t));
                };
                if v.iter().any(|&x| !(x as f32).is_finite()) {
                    return Err(non_finite());
                }
                f(i, range, Dequantized::Wide(v));
            }
            _ => return Err(not_dequantizable(t)),
        }
    }
    Ok(())
}

fn not_dequantizable(t: &EncodedTensor) -> FlError {
    FlError::Internal(format!(
        "coded tensor {:?} is neither uniformly nor codebook quantized",
        t.name
    ))
}

/// Whether the receiver's values of every coded tensor follow from its levels alone.
fn dequantizable(tensors: &[EncodedTensor]) -> bool {
    tensors.iter().filter(|t| !t.skipped).all(|t| {
        matches!(
            t.approximation,
            Approximation::Uniform { .. } | Approximation::Codebook { .. }
        )
    })
}

/// The layout index of coded tensor `t` and where its values lie in the flat vector.
fn coded_range(layout: &Layout, t: &EncodedTensor) -> Result<(usize, Range<usize>)> {
    let i = layout
        .index_of(&t.name)
        .ok_or_else(|| FlError::Internal(format!("coded an unknown tensor {:?}", t.name)))?;
    let range = layout.range(i);
    if range.len() != t.levels.len() {
        return Err(FlError::Internal(format!(
            "coded {} levels of tensor {:?}, which has {} values",
            t.levels.len(),
            t.name,
            range.len()
        )));
    }
    Ok((i, range))
}

/// A decoded message over a layout: every value in float32, and the float64 values of the
/// tensors the stream reconstructs in float64 (codebook tensors, which the reference's decoder
/// returns as float64 arrays, so that its sums with them are taken in float64).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decoded {
    /// All values, rounded to float32.
    pub values: Vec<f32>,
    /// Per float64 tensor: its layout index and its values.
    pub wide: Vec<(usize, Vec<f64>)>,
}

impl Decoded {
    /// The same values, bit for bit, and the same float64 tensors in any order.
    pub fn same_values(&self, other: &Decoded) -> bool {
        fn same<T: bytemuck::Pod>(a: &[T], b: &[T]) -> bool {
            bytemuck::cast_slice::<T, u8>(a) == bytemuck::cast_slice::<T, u8>(b)
        }
        same(&self.values, &other.values)
            && self.wide.len() == other.wide.len()
            && self
                .wide
                .iter()
                .all(|(i, v)| other.wide_of(*i).is_some_and(|w| same(v, w)))
    }

    /// The float64 values of tensor `index`, if the stream reconstructs it in float64.
    pub fn wide_of(&self, index: usize) -> Option<&[f64]> {
        self.wide
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, v)| v.as_slice())
    }

    /// `base + self`, as the reference's `model_add` of a float32 model and this message gives
    /// it back in float32: float32 sums, and float64 sums rounded once where the message is
    /// float64. Taken in this message's own memory (float32 sums are the same in either order).
    pub fn added_to(self, layout: &Layout, base: &[f32]) -> Vec<f32> {
        let Decoded { mut values, wide } = self;
        values.iter_mut().zip(base).for_each(|(x, &b)| *x += b);
        for (i, w) in &wide {
            let r = layout.range(*i);
            for ((x, &b), &v) in values[r.clone()].iter_mut().zip(&base[r]).zip(w) {
                *x = (f64::from(b) + v) as f32;
            }
        }
        values
    }

    /// `minuend −= self` in float32 (in float64 rounded once where the message is float64):
    /// what the coding left out of `minuend`, in its own memory.
    pub fn subtract_from(&self, layout: &Layout, minuend: &mut [f32]) {
        let narrow = |m: &mut [f32], v: &[f32]| m.iter_mut().zip(v).for_each(|(a, &b)| *a -= b);
        // Each value is taken from the minuend once: a float64 tensor's are not first
        // diminished by their float32 roundings.
        let mut wide: Vec<_> = self
            .wide
            .iter()
            .map(|(i, w)| (layout.range(*i), w))
            .collect();
        wide.sort_by_key(|(r, _)| r.start);
        let mut start = 0;
        for (r, w) in wide {
            narrow(&mut minuend[start..r.start], &self.values[start..r.start]);
            for (a, &x) in minuend[r.clone()].iter_mut().zip(w) {
                *a = (f64::from(*a) - x) as f32;
            }
            start = r.end;
        }
        narrow(&mut minuend[start..], &self.values[start..]);
    }
}

/// Sparsifies (if configured) and encodes `values` as the message of `sender` (0: the server)
/// against `state` (the sender's encoder state of this direction). Returns the message with the
/// changes that advance `state` to what the receiver's decoder state will be after decoding it,
/// for the caller to apply once the rest of its step succeeds.
///
/// The receiver's values are dequantized from the coded levels when the caller asks for them
/// ([`Coded::into_reconstruction`], [`Coded::subtract_reconstruction_from`]): that is what the
/// receiver decodes. The message is decoded here instead where its levels may decode
/// differently (bit depth with DQ) and, as a check that both sides agree, with
/// [`FlOptions::verify_messages`].
pub(crate) fn compress(
    layout: &Layout,
    opts: &FlOptions,
    sender: u64,
    values: &[f32],
    state: &IncrementalState,
) -> Result<(Coded, StateChanges)> {
    layout.check_finite("message input", values)?;
    // Sparsification changes the values, so it works on a copy; otherwise they are lent.
    let input = if opts.sparsity > 0.0 {
        let mut tensors = layout.coded_tensors(values)?;
        sparsify_tensors(&mut tensors, &opts.sparsify_options())?;
        EncodeInput::from_tensors_owned(tensors)
    } else {
        EncodeInput::from_sources(layout.coded_sources(values)?)
    }
    .map_err(|e| FlError::Internal(e.to_string()))?;
    let encode_opts = opts.encode_options(sender);
    let (encoded, changes) = encode_incremental_deferred(input, &encode_opts, state)?;
    let own = !encode_opts.levels_may_decode_differently() && dequantizable(&encoded.tensors);
    if own && !opts.verify_messages {
        let coded = Coded {
            bytes: encoded.bytes,
            values: Reconstruction::Levels(encoded.tensors),
        };
        return Ok((coded, changes));
    }
    // Decode our own bitstream from the state the receiver holds now.
    let (decoded, receiver) = decompress(
        layout,
        &encoded.bytes,
        sender,
        opts.compress_differences,
        state,
        opts.threads,
    )?;
    if receiver != changes {
        return Err(FlError::Internal(
            "the encoder's state changes differ from those decoding its bitstream makes".into(),
        ));
    }
    if own && !reconstruct(layout, &encoded.tensors)?.same_values(&decoded) {
        return Err(FlError::Internal(
            "the encoder's reconstruction differs from decoding its bitstream".into(),
        ));
    }
    let coded = Coded {
        bytes: encoded.bytes,
        values: Reconstruction::Decoded(decoded),
    };
    Ok((coded, changes))
}

/// What the receiver decodes from the coded `tensors` (all [`dequantizable`]), dequantized from
/// their levels as the decoder dequantizes them: zeros for tensors without an NDU, float64
/// values beside the float32 ones for codebook tensors.
fn reconstruct(layout: &Layout, tensors: &[EncodedTensor]) -> Result<Decoded> {
    let mut values: Vec<f32> = zeroed(layout.num_values());
    let mut wide = Vec::new();
    for_each_dequantized(layout, tensors, |i, r, piece| match piece {
        Dequantized::Narrow(block) => values[r].copy_from_slice(block),
        Dequantized::Wide(v) => {
            values[r]
                .iter_mut()
                .zip(&v)
                .for_each(|(d, &x)| *d = x as f32);
            wide.push((i, v));
        }
    })?;
    Ok(Decoded { values, wide })
}

/// Decodes a message of `sender` against `state` (the receiver's decoder state for this
/// direction and sender) and returns the values with the changes the message makes to the
/// state, for the caller to apply once it accepts them. With `differences` the stream must be
/// parent-signalled and omitted tensors are zero; without, every tensor must be present.
pub(crate) fn decompress(
    layout: &Layout,
    bytes: &[u8],
    sender: u64,
    differences: bool,
    state: &IncrementalState,
    threads: Option<usize>,
) -> Result<(Decoded, StateChanges)> {
    check_headers(layout, bytes, sender, differences, state)?;
    let n = layout.num_values() as u64;
    // The levels move into the changes, with no copy for the tensors.
    let opts = DecodeOptions::new()
        .with_limits(
            Limits::default()
                .with_max_tensor_elements(n)
                .with_max_total_elements(n),
        )
        .with_keep_levels(false)
        .with_threads(threads);
    let mut out: Vec<f32> = zeroed(layout.num_values());
    let mut wide = Vec::new();
    let mut present = vec![false; layout.specs().len()];
    // Each tensor goes into its place in `out` as soon as it is decoded and is dropped there, so
    // the message's values are never held twice.
    let place = |t: DecodedTensor| -> Result<()> {
        let name = &t.tensor.name;
        let i = layout
            .index_of(name)
            .ok_or_else(|| FlError::TensorSet(format!("unknown tensor {name:?}")))?;
        if present[i] {
            return Err(FlError::TensorSet(format!("tensor {name:?} appears twice")));
        }
        present[i] = true;
        if layout.coded(i).map(|(_, shape)| shape) != Some(t.tensor.shape.as_slice()) {
            return Err(FlError::TensorSet(format!(
                "tensor {name:?} has shape {:?}, the layout {:?}",
                t.tensor.shape,
                layout.specs()[i].shape
            )));
        }
        let dst = &mut out[layout.range(i)];
        match t.tensor.data {
            TensorData::F32(v) => dst.copy_from_slice(&v),
            TensorData::F64(v) => {
                for (d, s) in dst.iter_mut().zip(&v) {
                    *d = *s as f32;
                }
                wide.push((i, v));
            }
            other => {
                return Err(FlError::TensorSet(format!(
                    "tensor {name:?} decodes to {}, not floats",
                    other.dtype().numpy_name()
                )))
            }
        }
        Ok(())
    };
    let (_, changes) = StreamDecoder::new(bytes, &opts)?.run_deferred(state, place)?;
    if !differences {
        if let Some(i) = (0..present.len()).find(|&i| !present[i] && layout.coded(i).is_some()) {
            return Err(FlError::TensorSet(format!(
                "the message lacks tensor {:?}",
                layout.specs()[i].name
            )));
        }
    }
    layout.check_finite("decoded message", &out)?;
    Ok((Decoded { values: out, wide }, changes))
}

/// Checks unit order, parent signalling and every NDU's tensor, sender, `parameter_id` and
/// `put_node_depth` against the layout and `state`, without entropy decoding.
fn check_headers(
    layout: &Layout,
    bytes: &[u8],
    sender: u64,
    differences: bool,
    state: &IncrementalState,
) -> Result<()> {
    let mut reader = UnitReader::new(bytes);
    let mut ctx = ParseContext::default();
    let side = SideInfo::default();
    let mut seen = vec![false; layout.specs().len()];
    // STR, MPS, TPL and one NDU per tensor; anything longer is not one of our messages.
    let max_units = layout.specs().len() + 3;
    let mut units = 0usize;
    while let Some(raw) = reader.next()? {
        units += 1;
        if units > max_units {
            return Err(FlError::TensorSet(format!(
                "more than {max_units} NNR units for {} tensors",
                layout.specs().len()
            )));
        }
        let parsed = parse_unit(raw, &mut ctx, &side)?;
        match &parsed.unit {
            NnrUnit::Mps(_) if ctx.mps_parent_signalling_enabled_flag != differences => {
                let (sent, session) = if differences {
                    ("whole tensors", "differences")
                } else {
                    ("differences", "whole tensors")
                };
                return Err(FlError::StateMismatch(format!(
                    "the message codes {sent}, the session {session}"
                )));
            }
            NnrUnit::Ndu { header, .. } => {
                let name = header.topology_elem_id.as_deref().ok_or_else(|| {
                    FlError::TensorSet("an NDU without a single topology_elem_id".into())
                })?;
                let i = layout
                    .index_of(name)
                    .ok_or_else(|| FlError::TensorSet(format!("unknown tensor {name:?}")))?;
                if std::mem::replace(&mut seen[i], true) {
                    return Err(FlError::TensorSet(format!("tensor {name:?} appears twice")));
                }
                let shape = &layout.specs()[i].shape;
                let Some((id, coded_shape)) = layout.coded(i) else {
                    return Err(FlError::TensorSet(format!(
                        "tensor {name:?} is empty in the layout ({shape:?}), so no message codes it"
                    )));
                };
                if header.tensor_dimensions.len() != coded_shape.len()
                    || header
                        .tensor_dimensions
                        .iter()
                        .zip(coded_shape)
                        .any(|(&a, &b)| a != b as u64)
                {
                    return Err(FlError::TensorSet(format!(
                        "tensor {name:?} has dimensions {:?}, the layout {shape:?}",
                        header.tensor_dimensions
                    )));
                }
                let device = header.device_id.unwrap_or(0);
                if device != sender {
                    return Err(FlError::StateMismatch(format!(
                        "tensor {name:?} comes from device {device}, expected {sender}"
                    )));
                }
                if let Some(pid) = header.parameter_id {
                    if pid != id as u64 {
                        return Err(FlError::TensorSet(format!(
                            "tensor {name:?} has parameter_id {pid}, its coded index is {id}"
                        )));
                    }
                }
                let expected = state.bases.get(name).map_or(1, |b| b.put_node_depth + 1);
                if header.put_node_depth != Some(expected) {
                    return Err(FlError::StateMismatch(format!(
                        "tensor {name:?} has put_node_depth {:?}, the state expects {expected} \
                         (a skipped, repeated or foreign message?)",
                        header.put_node_depth
                    )));
                }
            }
            _ => {}
        }
    }
    if units == 0 {
        return Err(FlError::TensorSet("empty message".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TensorSpec;
    use crate::options::ApproxMethod;

    /// [`super::compress`] advancing `state` in place on success.
    fn compress(
        layout: &Layout,
        opts: &FlOptions,
        sender: u64,
        values: &[f32],
        state: &mut IncrementalState,
    ) -> Result<Coded> {
        let (coded, changes) = super::compress(layout, opts, sender, values, state)?;
        changes.apply(state)?;
        Ok(coded)
    }

    /// [`super::decompress`] advancing `state` in place on success.
    fn decompress(
        layout: &Layout,
        bytes: &[u8],
        sender: u64,
        differences: bool,
        state: &mut IncrementalState,
        threads: Option<usize>,
    ) -> Result<Vec<f32>> {
        let (out, changes) = super::decompress(layout, bytes, sender, differences, state, threads)?;
        changes.apply(state)?;
        Ok(out.values)
    }

    fn layout() -> Layout {
        Layout::new(vec![
            TensorSpec::new("w", vec![8, 16]),
            TensorSpec::new("b", vec![8]),
        ])
        .unwrap()
    }

    fn update(seed: u32) -> Vec<f32> {
        (0..136u32)
            .map(|i| {
                let x = (i.wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000) as f32;
                (x / 1000.0 - 0.5) * 0.1
            })
            .collect()
    }

    /// The worker threads change nothing a receiver sees: the same bitstreams, the same states.
    #[test]
    fn messages_are_the_same_for_any_number_of_threads() {
        let l = layout();
        let run = |threads| {
            let o = FlOptions {
                tca: true,
                threads,
                ..FlOptions::compressed(-32)
            };
            let (mut enc, mut dec) = (IncrementalState::default(), IncrementalState::default());
            let mut out = vec![];
            for round in 0..3 {
                let c = compress(&l, &o, 2, &update(round), &mut enc).unwrap();
                let d = decompress(&l, &c.bytes, 2, true, &mut dec, o.threads).unwrap();
                out.push((c.bytes, d));
            }
            (out, enc, dec)
        };
        let one = run(Some(1));
        assert_eq!(one, run(Some(2)));
        assert_eq!(one, run(None));
    }

    #[test]
    fn round_trip_reconstruction_is_close_and_states_agree() {
        let l = layout();
        let o = FlOptions::compressed(-32);
        let mut enc = IncrementalState::default();
        let mut dec = IncrementalState::default();
        for round in 0..3 {
            let u = update(round);
            let c = compress(&l, &o, 2, &u, &mut enc).unwrap();
            let d = decompress(&l, &c.bytes, 2, true, &mut dec, None).unwrap();
            assert_eq!(d, c.into_reconstruction(&l).unwrap().values);
            assert_eq!(enc.bases, dec.bases);
            let step = 2f32.powf(-32.0 / 4.0);
            for (a, b) in u[..128].iter().zip(&d) {
                assert!((a - b).abs() <= step, "{a} vs {b}");
            }
            assert_eq!(dec.bases["w"].put_node_depth, u64::from(round) + 1);
        }
    }

    /// The sender's reconstruction, taken from its levels or (with `verify_messages`, or with
    /// bit depth and DQ) from a decode, is bit for bit what the receiver decodes, in every
    /// kind of message.
    #[test]
    fn the_senders_reconstruction_is_what_the_receiver_decodes() {
        let l = Layout::new(vec![
            TensorSpec::new("w", vec![32, 64]),
            TensorSpec::new("b", vec![32]),
        ])
        .unwrap();
        // Clustered values (four distinct ones, far apart) make codebooks pay.
        let values = |round: u32, clustered: bool| -> Vec<f32> {
            (0..l.num_values() as u32)
                .map(|i| {
                    let h = i.wrapping_mul(2654435761).wrapping_add(round * 7919) >> 7;
                    if clustered {
                        [-0.61f32, 0.0, 0.37, 0.93][(h % 4) as usize]
                    } else {
                        ((h % 2001) as f32 / 1000.0 - 1.0) * 0.2
                    }
                })
                .collect()
        };
        let c = FlOptions::compressed(-32);
        let configs = [
            (c.clone(), false),
            (
                FlOptions {
                    use_dq: true,
                    tca: true,
                    ..c.clone()
                },
                false,
            ),
            (
                FlOptions {
                    sparsity: 0.5,
                    struct_spars_factor: 0.9,
                    row_skipping: true,
                    tca: true,
                    ..c.clone()
                },
                false,
            ),
            (
                FlOptions {
                    approx_method: ApproxMethod::Codebook,
                    ..c.clone()
                },
                true,
            ),
            (
                FlOptions {
                    bitdepth: Some(6),
                    ..c.clone()
                },
                false,
            ),
            (
                FlOptions {
                    bitdepth: Some(4),
                    use_dq: true,
                    tca: true,
                    ..c.clone()
                },
                false,
            ),
            (
                FlOptions {
                    compress_differences: false,
                    param_opt: false,
                    opt_qp: true,
                    ..c.clone()
                },
                false,
            ),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut codebooks = 0;
        for (o, clustered) in configs {
            let checked = FlOptions {
                verify_messages: true,
                ..o.clone()
            };
            let mut fast_state = IncrementalState::default();
            let mut checked_state = IncrementalState::default();
            let mut receiver = IncrementalState::default();
            for round in 0..3 {
                let u = values(round, clustered);
                let fast = compress(&l, &o, 2, &u, &mut fast_state).unwrap();
                let slow = compress(&l, &checked, 2, &u, &mut checked_state).unwrap();
                assert_eq!(fast.bytes, slow.bytes, "{o:?}, round {round}");
                let (decoded, changes) =
                    super::decompress(&l, &fast.bytes, 2, o.compress_differences, &receiver, None)
                        .unwrap();
                changes.apply(&mut receiver).unwrap();
                // What a residual is taken from: the update itself, and values of every
                // magnitude around it (float64 differences round differently from float32).
                let minuends = [u.clone(), values(round + 11, !clustered)];
                for m in minuends {
                    let mut expected = m.clone();
                    decoded.subtract_from(&l, &mut expected);
                    for sent in [&fast, &slow] {
                        let mut got = m.clone();
                        sent.subtract_reconstruction_from(&l, &mut got).unwrap();
                        assert_eq!(bits(&got), bits(&expected), "{o:?}, round {round}");
                    }
                }
                let (fast, slow) = (fast.into_reconstruction(&l), slow.into_reconstruction(&l));
                assert!(decoded.same_values(&fast.unwrap()), "{o:?}, round {round}");
                assert!(decoded.same_values(&slow.unwrap()), "{o:?}, round {round}");
                assert_eq!(fast_state, receiver, "{o:?}, round {round}");
                codebooks += decoded.wide.len();
            }
        }
        assert!(codebooks > 0, "no message coded a codebook tensor");
    }

    #[test]
    fn skipped_message_is_a_state_mismatch_even_without_tca() {
        let l = layout();
        let o = FlOptions::compressed(-32);
        let mut enc = IncrementalState::default();
        let first = compress(&l, &o, 1, &update(0), &mut enc).unwrap();
        let second = compress(&l, &o, 1, &update(1), &mut enc).unwrap();
        let mut dec = IncrementalState::default();
        let before = dec.clone();
        let err = decompress(&l, &second.bytes, 1, true, &mut dec, None).unwrap_err();
        assert!(matches!(err, FlError::StateMismatch(_)), "{err}");
        assert_eq!(dec, before, "state untouched on error");
        decompress(&l, &first.bytes, 1, true, &mut dec, None).unwrap();
        // Repeating the first message is caught too.
        let err = decompress(&l, &first.bytes, 1, true, &mut dec, None).unwrap_err();
        assert!(matches!(err, FlError::StateMismatch(_)), "{err}");
    }

    #[test]
    fn wrong_sender_and_wrong_mode_are_rejected() {
        let l = layout();
        let o = FlOptions::compressed(-32);
        let mut enc = IncrementalState::default();
        let c = compress(&l, &o, 3, &update(0), &mut enc).unwrap();
        let mut dec = IncrementalState::default();
        assert!(matches!(
            decompress(&l, &c.bytes, 4, true, &mut dec, None),
            Err(FlError::StateMismatch(_))
        ));
        assert!(matches!(
            decompress(&l, &c.bytes, 3, false, &mut dec, None),
            Err(FlError::StateMismatch(_))
        ));
        assert_eq!(dec, IncrementalState::default());
    }

    #[test]
    fn foreign_layout_is_a_tensor_set_error() {
        let l = layout();
        let o = FlOptions::compressed(-32);
        let mut enc = IncrementalState::default();
        let c = compress(&l, &o, 1, &update(0), &mut enc).unwrap();
        let other = Layout::new(vec![
            TensorSpec::new("w", vec![16, 8]),
            TensorSpec::new("b", vec![8]),
        ])
        .unwrap();
        let renamed = Layout::new(vec![
            TensorSpec::new("v", vec![8, 16]),
            TensorSpec::new("b", vec![8]),
        ])
        .unwrap();
        for l2 in [other, renamed] {
            let mut dec = IncrementalState::default();
            assert!(matches!(
                decompress(&l2, &c.bytes, 1, true, &mut dec, None),
                Err(FlError::TensorSet(_))
            ));
        }
    }

    #[test]
    fn all_zero_tensors_are_omitted_and_decode_as_zero() {
        let l = layout();
        let o = FlOptions::compressed(-32);
        let mut u = update(0);
        u[128..].fill(0.0);
        let mut enc = IncrementalState::default();
        let c = compress(&l, &o, 1, &u, &mut enc).unwrap();
        assert!(!enc.bases.contains_key("b"));
        assert!(c.into_reconstruction(&l).unwrap().values[128..]
            .iter()
            .all(|&v| v == 0.0));
        // A whole-model session needs every tensor.
        let full = FlOptions {
            compress_differences: false,
            ..o
        };
        let mut enc = IncrementalState::default();
        compress(&l, &full, 1, &u, &mut enc).unwrap();
        assert!(enc.bases.contains_key("b"));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let l = layout();
        let o = FlOptions {
            tca: true,
            ..FlOptions::compressed(-32)
        };
        let mut enc = IncrementalState::default();
        let c = compress(&l, &o, 1, &update(0), &mut enc).unwrap();
        for cut in [0, 1, 5, c.bytes.len() / 2, c.bytes.len() - 1] {
            let mut dec = IncrementalState::default();
            assert!(decompress(&l, &c.bytes[..cut], 1, true, &mut dec, None).is_err());
            assert_eq!(dec, IncrementalState::default());
        }
        let mut flipped = c.bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x5a;
        let mut dec = IncrementalState::default();
        let _ = decompress(&l, &flipped, 1, true, &mut dec, None);
    }

    /// numpy's `float32(prev + float64 value)` (numpy 1.26): one rounding, where adding the
    /// value rounded to float32 first gives the next float32 up.
    #[test]
    fn a_float64_tensor_is_added_in_float64() {
        let l = Layout::new(vec![TensorSpec::new("t", vec![1])]).unwrap();
        let d = -0.5227484414807474f64;
        let msg = Decoded {
            values: vec![d as f32],
            wide: vec![(0, vec![d])],
        };
        let base = msg.added_to(&l, &[f32::from_bits(0x3e41_9736)]);
        assert_eq!(base[0].to_bits(), 3198867988);
        let narrow = Decoded {
            values: vec![d as f32],
            wide: Vec::new(),
        };
        let base = narrow.added_to(&l, &[f32::from_bits(0x3e41_9736)]);
        assert_eq!(base[0].to_bits(), 3198867989);
    }

    /// A float64 tensor's residual is its value minus the float64 reconstruction, rounded once;
    /// the float32 tensors beside it are taken in float32 (session 58 subtracted both from a
    /// float64 tensor's values).
    #[test]
    fn a_float64_tensor_is_subtracted_in_float64() {
        let l = Layout::new(vec![
            TensorSpec::new("a", vec![1]),
            TensorSpec::new("t", vec![1]),
            TensorSpec::new("b", vec![1]),
        ])
        .unwrap();
        let d = -0.5227484414807474f64;
        let x = f32::from_bits(0x3e41_9736);
        let msg = Decoded {
            values: vec![0.25, d as f32, -0.125],
            wide: vec![(1, vec![d])],
        };
        let mut m = [1.0f32, x, 1.0];
        msg.subtract_from(&l, &mut m);
        assert_eq!(m[1].to_bits(), ((f64::from(x) - d) as f32).to_bits());
        assert_ne!(
            m[1].to_bits(),
            (x - d as f32).to_bits(),
            "a value where the two differ"
        );
        assert_eq!([m[0], m[2]], [0.75, 1.125]);
    }

    #[test]
    fn non_finite_input_is_rejected() {
        let l = layout();
        let mut u = update(0);
        u[3] = f32::INFINITY;
        let mut enc = IncrementalState::default();
        assert!(matches!(
            compress(&l, &FlOptions::compressed(-32), 1, &u, &mut enc),
            Err(FlError::NonFinite { .. })
        ));
    }
}
