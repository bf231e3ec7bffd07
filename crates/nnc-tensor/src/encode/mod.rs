//! Named tensors → NNR bitstream: the encoder pipeline (hls.md §6.1), byte-identical with the
//! reference for the same input and arguments.
//!
//! Steps: working model (types, blocks) → qp per tensor → optional batch-norm folding →
//! approximation (uniform / codebook / integer) → units (STR, MPS, TPL, NDUs with CABAC payloads).

mod approx;
mod assemble;
mod block_guess;
pub mod bnf;
pub mod elements;
mod frontend;
pub mod ioq;
pub mod model;
pub mod options;
pub mod source;
mod work;

use std::borrow::Cow;

use crate::decode::{decode_stream_deferred, Approximation, DecodeOptions};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::metadata::{StreamMetadata, TensorMeta};
use crate::state::{IncrementalState, StateChanges};
use crate::tensor::DType;

pub use elements::{Elements, SharedSlice};
pub use ioq::{encode_inference_optimised, InferenceOptimised, IoqError};
pub use model::{
    BlockIdAndParamType, DecomposedWeight, EncodeInput, InputError, ModelParameter, ParameterData,
    TOPOLOGY_PYTORCH, TOPOLOGY_UNRECOGNISED,
};
pub use options::{CodebookMode, EncodeOptions, ParameterType};
pub use source::{NamedElements, TensorSource};

pub(crate) use frontend::is_batch_counter;
use work::{Method, Work, WorkModel};

use crate::threads::map_largest_first;

/// One tensor as the encoder coded it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedTensor {
    /// Name.
    pub name: String,
    /// Shape of the coded array.
    pub shape: Vec<usize>,
    /// The integers handed to the entropy coder (reconstruction units; codebook indices relative
    /// to the zero entry for codebook tensors).
    pub levels: Vec<i32>,
    /// How `levels` map to values.
    pub approximation: Approximation,
    /// The tensor was all zero in a parent-signalled stream and got no NDU.
    pub skipped: bool,
}

impl EncodedTensor {
    /// The values the decoder reconstructs from these levels: float32 for uniform tensors,
    /// float64 for codebook tensors (as the reference returns them), the levels themselves for
    /// integer tensors.
    pub fn reconstruction(&self) -> Result<crate::TensorData> {
        let failed = |e: nnc_quant::Error| Error::InvalidArgument {
            what: format!("reconstructing {:?}: {e}", self.name),
        };
        Ok(match &self.approximation {
            Approximation::Uniform { qp, qp_density, .. } => {
                let mut values: Vec<f32> = nnc_quant::buffer::zeroed(self.levels.len());
                nnc_quant::dequantize_uniform(&self.levels, *qp, *qp_density, &mut values)
                    .map_err(failed)?;
                crate::TensorData::F32(values)
            }
            Approximation::Codebook {
                qp,
                qp_density,
                codebook,
                codebook_zero_offset,
            } => {
                let mut values: Vec<f64> = nnc_quant::buffer::zeroed(self.levels.len());
                nnc_quant::dequantize_codebook(
                    &self.levels,
                    codebook,
                    *codebook_zero_offset,
                    *qp,
                    *qp_density,
                    &mut values,
                )
                .map_err(failed)?;
                crate::TensorData::F64(values)
            }
            _ => crate::TensorData::I32(self.levels.clone()),
        })
    }

    /// This tensor as the decoder reconstructs it: its name, coded shape and
    /// [`EncodedTensor::reconstruction`].
    pub fn reconstructed(&self) -> Result<crate::Tensor> {
        Ok(crate::Tensor {
            name: self.name.clone(),
            shape: self.shape.clone(),
            data: self.reconstruction()?,
        })
    }
}

/// A bitstream and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedStream {
    /// The NNR bitstream.
    pub bytes: Vec<u8>,
    /// Every coded tensor, in coding order.
    pub tensors: Vec<EncodedTensor>,
    /// Batch norms folded into their blocks ([`EncodeOptions::bnf`]): their blocks' coded
    /// scaling and bias stand for them, and a decoder that reads the stream's metadata gives
    /// them back as batch norms of the same effect.
    pub folded: Vec<crate::metadata::FoldedNorm>,
}

/// Encodes a model as a stand-alone bitstream (no base model, `put_node_depth` 0).
///
/// `input` is `&EncodeInput` (read in place) or `EncodeInput` (each tensor's owned elements are
/// freed once quantized, which lowers the peak memory; same bytes).
pub fn encode<'a, 'b: 'a>(
    input: impl Into<Cow<'a, EncodeInput<'b>>>,
    opts: &EncodeOptions,
) -> Result<EncodedStream> {
    encode_impl(input.into(), opts, None)
}

/// Encodes one update of an incremental sequence. `state` supplies the previous levels (TCA),
/// the HDSP history and the update-tree depths; when `update_state` is true the coded levels become
/// the new base (the reference's `update_base_param`). `input` is borrowed or taken as in
/// [`encode`].
///
/// A state records the updates of one device: with `update_state`, an update whose
/// [`EncodeOptions::device_id`] differs from the state's (once set) fails with
/// [`Error::EncoderState`] before anything is coded, as does TCA against a state whose tensor
/// does not continue. The state changes only when the whole update is coded: a call that fails
/// leaves it as it was.
pub fn encode_incremental<'a, 'b: 'a>(
    input: impl Into<Cow<'a, EncodeInput<'b>>>,
    opts: &EncodeOptions,
    state: &mut IncrementalState,
    update_state: bool,
) -> Result<EncodedStream> {
    let (encoded, changes) = encode_changes(input.into(), opts, state, update_state)?;
    // The levels the changes do not hold are copied from the encoded tensors into the old
    // bases' memory, which is already mapped: cheaper than holding a fresh copy.
    let coded = levels_by_name(&encoded);
    changes.apply_with(state, |name| coded.get(name).copied());
    Ok(encoded)
}

/// [`encode_incremental`] with `update_state`, leaving `state` alone: returns the changes the
/// update makes to it beside the bitstream, for the caller to [`StateChanges::apply`] once it
/// has sent (or checked) the bitstream. The changes hold a copy of the coded levels.
pub fn encode_incremental_deferred<'a, 'b: 'a>(
    input: impl Into<Cow<'a, EncodeInput<'b>>>,
    opts: &EncodeOptions,
    state: &IncrementalState,
) -> Result<(EncodedStream, StateChanges)> {
    let (encoded, mut changes) = encode_changes(input.into(), opts, state, true)?;
    let coded = levels_by_name(&encoded);
    changes.fill_levels(|name| coded.get(name).copied());
    Ok((encoded, changes))
}

/// Each encoded tensor's levels by its name.
fn levels_by_name(encoded: &EncodedStream) -> std::collections::HashMap<&str, &[i32]> {
    encoded
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.levels.as_slice()))
        .collect()
}

/// Encodes an update against `state` and collects what it changes there (nothing without
/// `update_state`); records left without levels take the encoded tensors' levels.
fn encode_changes(
    input: Cow<'_, EncodeInput<'_>>,
    opts: &EncodeOptions,
    state: &IncrementalState,
    update_state: bool,
) -> Result<(EncodedStream, StateChanges)> {
    // A state records one device's updates; refused before any work.
    if update_state && state.device_id != 0 && state.device_id != opts.device_id {
        return Err(Error::EncoderState {
            what: format!(
                "it holds updates of device_id {}, this update is of device_id {}",
                state.device_id, opts.device_id
            ),
        });
    }
    let mut inc = assemble::Incremental {
        state,
        update: update_state,
        changes: StateChanges::new(state),
    };
    let encoded = encode_impl(input, opts, Some(&mut inc))?;
    let changes = inc.changes;
    // Bit-depth clipping after dependent quantization can leave levels that are no valid DQ
    // sequence; the stream then decodes to other levels than the encoder's, as the reference's
    // does. Its encoder keeps its own levels as the next TCA base, which its decoder does not
    // have; ours keeps what the decoder will hold (quirks.md#bitdepth-dq-state): the decoder's
    // records (with its HDSP marks, when HDSP is on) stand for the encoder's.
    if update_state && opts.levels_may_decode_differently() {
        let own = DecodeOptions::new()
            .with_hdsp(opts.hdsp)
            .with_keep_levels(false)
            .with_threads(opts.threads)
            .with_limits(Limits::unlimited());
        let (_, decoded) = decode_stream_deferred(&encoded.bytes, state, &own)?;
        return Ok((encoded, changes.with_records_of(decoded)));
    }
    Ok((encoded, changes))
}

/// What decoding needs to restore the user's dtypes, shapes and uncoded tensors; `None` when the
/// stream is what the reference would write anyway.
fn metadata_of(input: &EncodeInput<'_>, model: &WorkModel<'_>) -> Result<Option<StreamMetadata>> {
    let mut meta = StreamMetadata::new();
    for p in &input.parameters {
        let method = model.params.get(&p.name).and_then(|w| w.method.as_ref());
        // What the decoder returns without metadata: codebook tensors as float64, as the
        // reference's decoder does.
        let decoded = match method {
            Some(Method::Codebook { .. }) => DType::F64,
            _ => p.data.dtype(),
        };
        if p.original_dtype != decoded || p.original_shape != p.dims {
            meta.tensors.insert(
                p.name.clone(),
                TensorMeta {
                    dtype: p.original_dtype,
                    shape: p.original_shape.clone(),
                },
            );
        }
    }
    for t in &input.extra_tensors {
        meta.extra.push(
            StreamMetadata::extra_from(t).ok_or_else(|| Error::InvalidArgument {
                what: format!(
                    "tensor {:?} cannot be carried verbatim: its values must be finite and fit \
                     a float64 exactly",
                    t.name
                ),
            })?,
        );
    }
    meta.folded = model.folded.clone();
    // The user's order, also for the batch norms an unfolding decoder makes again, and where
    // blocks code their members in another order (the scaling and bias before the weight).
    if !input.extra_tensors.is_empty() || !meta.folded.is_empty() || reorders(input, model)? {
        let mut all: Vec<(u64, &str)> = input
            .parameters
            .iter()
            .map(|p| (p.parameter_index, p.name.as_str()))
            .collect();
        all.extend(
            input
                .extra_tensors
                .iter()
                .filter_map(|t| input.extra_index(&t.name).map(|i| (i, t.name.as_str()))),
        );
        all.sort_by_key(|e| e.0);
        meta.order = all.into_iter().map(|(_, n)| n.to_string()).collect();
    }
    meta.attributes = input.attributes.clone();
    meta.files = input
        .files
        .iter()
        .map(|(name, bytes)| (name.clone(), crate::metadata::AttachedFile::pack(bytes)))
        .collect();
    Ok((!meta.is_empty()).then_some(meta))
}

/// Whether the stream's coding order differs from the user's (blocks code their members in
/// their own order).
/// Low-rank models are left as they are: their order names the factors, not the weight the
/// decoder recomposes.
fn reorders(input: &EncodeInput<'_>, model: &WorkModel<'_>) -> Result<bool> {
    if input.block_identifier.is_empty() || !input.decomposed_weights.is_empty() {
        return Ok(false);
    }
    let mut given: Vec<(u64, &str)> = input
        .parameters
        .iter()
        .map(|p| (p.parameter_index, p.name.as_str()))
        .collect();
    given.sort_by_key(|e| e.0);
    let coded = model.coding_order()?;
    Ok(!given
        .iter()
        .map(|e| e.1)
        .eq(coded.iter().map(String::as_str)))
}

/// Runs [`encode_on_workers`] on the threads [`EncodeOptions::threads`] asks for.
fn encode_impl(
    input: Cow<'_, EncodeInput<'_>>,
    opts: &EncodeOptions,
    inc: Option<&mut assemble::Incremental<'_>>,
) -> Result<EncodedStream> {
    workers_for(&input, opts)?.install(|| encode_on_workers(input, opts, inc))
}

/// The workers an encode (or quantization) of `input` runs on.
fn workers_for(input: &EncodeInput<'_>, opts: &EncodeOptions) -> Result<crate::threads::Workers> {
    let elements = input
        .parameters
        .iter()
        .map(|p| p.data.len() as u64)
        .sum::<u64>();
    // Pieces that could run in parallel: the tensors, or the codebook search's trials, which
    // split even one tensor.
    let parts = match opts.codebook_mode {
        CodebookMode::Off => input.parameters.len(),
        _ => usize::MAX,
    };
    crate::threads::Workers::for_call(opts.threads, elements, parts)
}

fn encode_on_workers(
    input: Cow<'_, EncodeInput<'_>>,
    opts: &EncodeOptions,
    inc: Option<&mut assemble::Incremental<'_>>,
) -> Result<EncodedStream> {
    with_approximated(input, opts, |input, model| {
        let topology_data = if opts.carry_dtypes {
            metadata_of(input, model)?
                .map(|m| m.to_topology_data())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let (bytes, skipped) = assemble::write_stream(model, opts, topology_data, inc)?;
        let tensors = take_coded(model, opts, |name| skipped.iter().any(|s| s == name))?;
        Ok(EncodedStream {
            bytes,
            tensors,
            folded: std::mem::take(&mut model.folded),
        })
    })
}

/// Quantizes a model as [`encode`] would, without coding it: the reference's `quantize_only`.
/// Each tensor the stream would carry comes back as the decoder reconstructs it from the levels
/// the encoder chose (float32 uniform, float64 codebook, int32 integer tensors), with those
/// levels, in coding order and under its coded name and shape (folded by
/// [`EncodeOptions::bnf`] where asked; no metadata is applied). The context-initialisation
/// search and the arithmetic coding are skipped, so this is faster than an encode.
///
/// ```
/// use nnc_tensor::encode::{encode, quantize};
/// use nnc_tensor::{decode_stream, DecodeOptions, DecoderState, EncodeInput, EncodeOptions};
/// use nnc_tensor::{Tensor, TensorData};
///
/// let w = Tensor::try_new("w", vec![2, 3], TensorData::F32(vec![0.1, -0.2, 0.3, 0.0, 1.5, -1.0]))
///     .unwrap();
/// let model = vec![w];
/// let input = EncodeInput::from_tensors(&model).unwrap();
/// let q = quantize(&input, &EncodeOptions::default()).unwrap();
/// // What a decoder makes of the stream, without making the stream.
/// let bytes = encode(&input, &EncodeOptions::default()).unwrap().bytes;
/// let decoded = decode_stream(&bytes, &mut DecoderState::default(), &DecodeOptions::new()).unwrap();
/// assert_eq!(q[0].tensor, decoded.tensors[0].tensor);
/// ```
pub fn quantize<'a, 'b: 'a>(
    input: impl Into<Cow<'a, EncodeInput<'b>>>,
    opts: &EncodeOptions,
) -> Result<Vec<crate::DecodedTensor>> {
    let input = input.into();
    workers_for(&input, opts)?.install(|| {
        with_approximated(input, opts, |_, model| {
            take_coded(model, opts, |_| false)?
                .into_iter()
                .map(|t| {
                    Ok(crate::DecodedTensor {
                        tensor: t.reconstructed()?,
                        levels: Some(t.levels),
                        approximation: t.approximation,
                    })
                })
                .collect()
        })
    })
}

/// Builds the working model of `input` (qps, folding), approximates every tensor and hands the
/// model to `finish`.
fn with_approximated<T>(
    mut input: Cow<'_, EncodeInput<'_>>,
    opts: &EncodeOptions,
    finish: impl FnOnce(&EncodeInput<'_>, &mut WorkModel<'_>) -> Result<T>,
) -> Result<T> {
    opts.validate()
        .map_err(|what| Error::InvalidArgument { what })?;
    if input.parameters.is_empty() {
        let what = match input.extra_tensors.first() {
            Some(t) => format!(
                "nothing to encode: every tensor is empty or carried verbatim (such as {:?})",
                t.name
            ),
            None => "nothing to encode".into(),
        };
        return Err(Error::InvalidArgument { what });
    }
    if !opts.carry_dtypes {
        // Uncoded step counters are dropped as the reference drops them, but an empty tensor
        // the reference cannot code at all would be lost without a word.
        if let Some(t) = input.extra_tensors.iter().find(|t| t.is_empty()) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "tensor {:?} (shape {:?}) is empty with rows of no width, which only the \
                     stream's metadata can carry, and carry_dtypes = false (the CLI's \
                     --no-metadata) leaves it out",
                    t.name, t.shape
                ),
            });
        }
    }
    for p in &input.parameters {
        work::check_dims(p)?;
    }
    // An input given by value gives up its elements: the working model owns them, and
    // approximation drops each tensor's as soon as its levels exist.
    let taken: Option<Vec<ParameterData<'_>>> = match &mut input {
        Cow::Owned(owned) => Some(
            owned
                .parameters
                .iter_mut()
                .map(|p| {
                    let empty = p.data.empty_like();
                    std::mem::replace(&mut p.data, empty)
                })
                .collect(),
        ),
        Cow::Borrowed(_) => None,
    };
    let input: &EncodeInput<'_> = &input;
    let mut model = WorkModel::new(input, opts.scan_order)?;
    if let Some(values) = taken {
        model.adopt_values(input, values);
    }
    approx::assign_qps(&mut model, opts)?;
    if opts.bnf {
        // The reference folds nothing then, silently; a request to fold is not dropped unseen.
        if input.block_identifier.is_empty() {
            return Err(Error::InvalidArgument {
                what: "bnf needs the model's blocks to fold batch norm into (EncodeInput::\
                       apply_blocks, or apply_guessed_blocks for a PyTorch state dict)"
                    .into(),
            });
        }
        bnf::fold_batch_norm(&mut model, opts)?;
    }
    // Every parameter reached through the model's items is approximated once; tensors are
    // independent, so in parallel.
    let reached: std::collections::BTreeSet<String> = model.coding_order()?.into_iter().collect();
    for name in &reached {
        model.get(name)?;
    }
    // Reference quirk: a block member the NDU has no place for (a local scaling not named
    // `<weight>_scaling`, a second bias, any member of a block without a weight) is left out
    // of the stream without a word. Refused here, so that no tensor is lost.
    let folded: std::collections::BTreeSet<&str> = model
        .folded
        .iter()
        .flat_map(|f| [&f.gamma, &f.beta, &f.mean, &f.var])
        .map(String::as_str)
        .collect();
    if let Some(p) = input
        .parameters
        .iter()
        .find(|p| !reached.contains(&p.name) && !folded.contains(p.name.as_str()))
    {
        let block = input
            .block_identifier
            .get(&p.name)
            .cloned()
            .unwrap_or_default();
        return Err(Error::InvalidArgument {
            what: format!(
                "tensor {:?} ({}) is in block {block:?} but has no place in its NDU, which \
                 carries one weight, its local scaling named <weight>_scaling, one bias and one \
                 batch norm (the reference would drop it)",
                p.name,
                p.parameter_type.as_str()
            ),
        });
    }
    // Largest first and one tensor per rayon task: rayon would otherwise give each thread a
    // contiguous run of tensors (in name order), split further only when stolen from.
    let pending: Vec<&mut Work<'_>> = model
        .params
        .iter_mut()
        .filter(|(name, w)| reached.contains(*name) && w.method.is_none())
        .map(|(_, w)| w)
        .collect();
    map_largest_first(
        pending,
        |w| w.values.len() as u64,
        |w| approx::approximate(w, opts),
    )
    .into_iter()
    .collect::<Result<Vec<()>>>()?;
    finish(input, &mut model)
}

/// Every coded tensor of an approximated model in coding order, its levels moved out.
fn take_coded(
    model: &mut WorkModel<'_>,
    opts: &EncodeOptions,
    skipped: impl Fn(&str) -> bool,
) -> Result<Vec<EncodedTensor>> {
    let mut tensors = Vec::new();
    let names = model.coding_order()?;
    for name in names {
        {
            // The stream is written: the levels move to the result instead of being copied.
            let w = model.get_mut(&name)?;
            let approximation = match &w.method {
                Some(Method::Uniform) => Approximation::Uniform {
                    qp: w.qp,
                    qp_density: opts.qp_density,
                    dq_flag: w.dq_flag,
                },
                Some(Method::Codebook {
                    values,
                    zero_offset,
                    ..
                }) => Approximation::Codebook {
                    qp: w.qp,
                    qp_density: opts.qp_density,
                    codebook: values.clone(),
                    codebook_zero_offset: *zero_offset,
                },
                _ => Approximation::Integer,
            };
            tensors.push(EncodedTensor {
                shape: w.dims.clone(),
                levels: std::mem::take(&mut w.levels),
                approximation,
                skipped: skipped(&name),
                name,
            });
        }
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_stream;
    use crate::state::IncrementalState;
    use crate::tensor::{Tensor, TensorData};
    use proptest::prelude::*;

    /// `bytes` decoded from a fresh decoder state with the default options.
    fn decode_fresh(bytes: &[u8]) -> crate::DecodedStream {
        decode_stream(
            bytes,
            &mut crate::DecoderState::default(),
            &DecodeOptions::new(),
        )
        .unwrap()
    }

    /// A tensor with 1 to 4 dimensions, up to ~5000 elements, some rows zeroed.
    fn tensor_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
        prop::collection::vec(1usize..24, 1..=4)
            .prop_filter("at most 5000 elements", |d| {
                d.iter().product::<usize>() <= 5000
            })
            .prop_flat_map(|dims| {
                let n: usize = dims.iter().product();
                let rows = dims[0];
                (
                    Just(dims),
                    prop::collection::vec(-4.0f32..4.0, n),
                    prop::collection::vec(any::<bool>(), rows),
                )
            })
            .prop_map(|(dims, mut values, zero_rows)| {
                let row_len = values.len() / dims[0];
                for (r, z) in zero_rows.iter().enumerate() {
                    if *z && r % 3 == 0 {
                        values[r * row_len..(r + 1) * row_len].fill(0.0);
                    }
                }
                (dims, values)
            })
    }

    fn options_strategy() -> impl Strategy<Value = EncodeOptions> {
        (
            -48i32..-8,
            0u8..=4,
            any::<bool>(),
            0u8..=4,
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(CodebookMode::Off),
                Just(CodebookMode::Always),
                Just(CodebookMode::Auto)
            ],
            0u8..=12,
        )
            .prop_map(
                |(
                    qp,
                    qp_density,
                    use_dq,
                    scan_order,
                    row_skipping,
                    param_opt,
                    codebook_mode,
                    cul,
                )| {
                    EncodeOptions {
                        qp,
                        qp_density,
                        use_dq,
                        scan_order,
                        row_skipping,
                        param_opt,
                        codebook_mode,
                        cabac_unary_length_minus1: cul,
                        ..Default::default()
                    }
                },
            )
    }

    /// A block-scanned tensor large enough for the real pass to code its block rows on several
    /// threads: the same stream as one thread, and its entry points decode it.
    #[test]
    fn block_rows_on_threads_write_the_one_thread_stream() {
        let (h, w) = (700, 260);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut values: Vec<f32> = (0..h * w)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        values[w * 10..w * 30].fill(0.0);
        let tensors = vec![Tensor::try_new("w", vec![h, w], TensorData::F32(values)).unwrap()];
        let input = EncodeInput::from_tensors(&tensors).unwrap();
        for scan_order in [1, 3] {
            let opts = |threads| {
                EncodeOptions {
                    scan_order,
                    row_skipping: true,
                    ..Default::default()
                }
                .with_threads(Some(threads))
            };
            let one = encode(&input, &opts(1)).unwrap();
            let three = encode(&input, &opts(3)).unwrap();
            assert_eq!(one.bytes, three.bytes, "scan_order {scan_order}");
            let decoded = decode_stream(
                &three.bytes,
                &mut crate::DecoderState::default(),
                &DecodeOptions::new().with_threads(Some(3)),
            )
            .unwrap();
            assert_eq!(
                decoded.tensors[0].levels,
                decode_fresh(&one.bytes).tensors[0].levels
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decode_gives_the_encoders_levels((dims, values) in tensor_strategy(), opts in options_strategy()) {
            let mut opts = opts;
            // The codebook offset search encodes once per codebook entry: keep those cases small.
            if values.len() > 300 {
                opts.codebook_mode = CodebookMode::Off;
            }
            let tensors = vec![
                Tensor::try_new("w", dims.clone(), TensorData::F32(values.clone())).unwrap(),
                Tensor::try_new("b", vec![dims[0]], TensorData::F32(values[..dims[0]].to_vec())).unwrap(),
            ];
            let input = EncodeInput::from_tensors(&tensors).unwrap();
            let encoded = match encode(&input, &opts) {
                Ok(e) => e,
                Err(e) => {
                    // Only a qp the stream cannot signal may be refused.
                    prop_assert!(e.to_string().contains("the range qp_density"), "{e}");
                    return Ok(());
                }
            };
            let decoded = decode_stream(&encoded.bytes, &mut IncrementalState::default(), &DecodeOptions::new()).unwrap();
            prop_assert_eq!(decoded.tensors.len(), encoded.tensors.len());
            // Reference quirk (quirks.md): with DQ, a row skipped inside a block scan advances the
            // DQ state by a whole row, so the stream can reconstruct other indices than the
            // encoder chose; only there the bitstream, not the encoder's levels, is the truth.
            let dq_skip_in_block_scan = opts.use_dq && opts.row_skipping && opts.scan_order > 0;
            for e in &encoded.tensors {
                let d = decoded.get(&e.name).unwrap();
                if !dq_skip_in_block_scan {
                    prop_assert_eq!(d.levels.as_ref().unwrap(), &e.levels);
                }
                prop_assert_eq!(&d.approximation, &e.approximation);
                prop_assert_eq!(&d.tensor.shape, &e.shape);
            }
        }

        /// An input given by value (its elements taken and freed tensor by tensor) codes exactly
        /// as the same input lent, for both front ends, every element type the owned builders
        /// move or convert, and the metadata that restores them.
        #[test]
        fn taken_input_codes_as_lent_input(
            (dims, values) in tensor_strategy(),
            opts in options_strategy(),
            state_dict in any::<bool>(),
            incremental in any::<bool>(),
        ) {
            let mut opts = opts;
            if values.len() > 300 {
                opts.codebook_mode = CodebookMode::Off;
            }
            opts.carry_dtypes = true;
            let rows = dims[0];
            let ints: Vec<i32> = values[..rows].iter().map(|v| (v * 10.0) as i32).collect();
            let halves: Vec<u16> = values[..rows].iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
            let tensors = vec![
                Tensor::try_new("l.weight", dims.clone(), TensorData::F32(values.clone())).unwrap(),
                Tensor::try_new("l.bias", vec![rows], TensorData::F32(values[..rows].to_vec())).unwrap(),
                Tensor::try_new("bn.num_batches_tracked", vec![], TensorData::I64(vec![3])).unwrap(),
                Tensor::try_new("counts", vec![rows], TensorData::I32(ints)).unwrap(),
                Tensor::try_new("h.weight", vec![rows, 1], TensorData::F16(halves)).unwrap(),
            ];
            let lent_tensors = tensors.clone();
            let (lent, taken) = if state_dict {
                (EncodeInput::from_state_dict(&lent_tensors), EncodeInput::from_state_dict_owned(tensors))
            } else {
                (EncodeInput::from_tensors(&lent_tensors), EncodeInput::from_tensors_owned(tensors))
            };
            let (lent, taken) = (lent.unwrap(), taken.unwrap());
            prop_assert_eq!(&lent, &taken);
            let (a, b) = if incremental {
                opts.compress_differences = true;
                let mut sa = IncrementalState::default();
                let mut sb = IncrementalState::default();
                let a = encode_incremental(&lent, &opts, &mut sa, true);
                let b = encode_incremental(taken, &opts, &mut sb, true);
                prop_assert_eq!(sa, sb);
                (a, b)
            } else {
                (encode(&lent, &opts), encode(taken, &opts))
            };
            match (a, b) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "lent: {:?}, taken: {:?}", a.is_ok(), b.is_ok()),
            }
        }

        #[test]
        fn incremental_tca_round_trip((dims, values) in tensor_strategy(), qp in -40i32..-20) {
            let opts = EncodeOptions {
                qp,
                compress_differences: true,
                tca: true,
                ..Default::default()
            };
            let mut enc_state = IncrementalState::default();
            let mut dec_state = IncrementalState::default();
            for step in 0..3 {
                let scaled: Vec<f32> = values.iter().map(|v| v * (1.0 + step as f32 * 0.3)).collect();
                let t = Tensor::try_new("w", dims.clone(), TensorData::F32(scaled)).unwrap();
                let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
                let encoded = encode_incremental(&input, &opts, &mut enc_state, true).unwrap();
                let decoded = decode_stream(&encoded.bytes, &mut dec_state, &DecodeOptions::new()).unwrap();
                for e in encoded.tensors.iter().filter(|e| !e.skipped) {
                    prop_assert_eq!(decoded.get(&e.name).unwrap().levels.as_ref().unwrap(), &e.levels);
                }
                prop_assert_eq!(&enc_state.bases, &dec_state.bases);
            }
        }
    }

    #[test]
    fn qp_per_tensor_names_must_match_a_tensor() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.01).collect();
        let t = Tensor::try_new("w", vec![8, 8], TensorData::F32(v)).unwrap();
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        let mut opts = EncodeOptions::default();
        opts.qp_per_tensor.insert("w".into(), -20);
        encode(&input, &opts).unwrap();
        opts.qp_per_tensor.insert("v".into(), -20);
        let e = encode(&input, &opts).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("qp_per_tensor names \"v\""), "{e}");
    }

    /// One block "m" of the given members and types.
    fn one_block(members: &[(&str, &str)]) -> BlockIdAndParamType {
        let mut blocks = BlockIdAndParamType::default();
        for &(name, kind) in members {
            blocks
                .block_identifier
                .insert(name.into(), Some("m".into()));
            blocks.parameter_type.insert(name.into(), kind.into());
        }
        blocks
    }

    #[test]
    fn a_block_decodes_in_the_given_order_with_the_metadata() {
        // A block codes its bias before its weight; the reference's decoder returns that
        // order, ours the user's while the stream carries nnc's metadata.
        let tensors = vec![
            Tensor::try_new("m.w", vec![4, 3], TensorData::F32(vec![0.25; 12])).unwrap(),
            Tensor::try_new("m.b", vec![4], TensorData::F32(vec![0.5; 4])).unwrap(),
        ];
        let mut input = EncodeInput::from_tensors(&tensors).unwrap();
        assert!(input.apply_blocks(&one_block(&[("m.w", "weight"), ("m.b", "bias")])));
        let names = |opts: &EncodeOptions| -> Vec<String> {
            let bytes = encode(&input, opts).unwrap().bytes;
            decode_fresh(&bytes)
                .tensors
                .into_iter()
                .map(|t| t.tensor.name)
                .collect()
        };
        assert_eq!(names(&EncodeOptions::default()), ["m.w", "m.b"]);
        let bare = EncodeOptions {
            carry_dtypes: false,
            ..Default::default()
        };
        assert_eq!(names(&bare), ["m.b", "m.w"]);
    }

    #[test]
    fn a_block_member_without_a_place_in_the_ndu_is_refused_not_dropped() {
        // The reference drops a local scaling not named <weight>_scaling silently (checked
        // with NNCodec 2.1.3). Two biases, or no weight, fail the block check instead.
        let t = |name: &str, n: usize| {
            Tensor::try_new(name, vec![n], TensorData::F32(vec![0.5; n])).unwrap()
        };
        let w = Tensor::try_new("m.w", vec![4, 3], TensorData::F32(vec![0.25; 12])).unwrap();
        let tensors = vec![w.clone(), t("m.weight_scaling", 4), t("m.b", 4)];
        let mut input = EncodeInput::from_tensors(&tensors).unwrap();
        let members = [
            ("m.w", "weight"),
            ("m.weight_scaling", "weight.ls"),
            ("m.b", "bias"),
        ];
        assert!(input.apply_blocks(&one_block(&members)));
        let err = encode(&input, &EncodeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no place in its NDU"), "{err}");
        // Named as the reference names it, the scaling is coded in the block.
        let tensors = vec![w, t("m.w_scaling", 4), t("m.b", 4)];
        let mut input = EncodeInput::from_tensors(&tensors).unwrap();
        let members = [
            ("m.w", "weight"),
            ("m.w_scaling", "weight.ls"),
            ("m.b", "bias"),
        ];
        assert!(input.apply_blocks(&one_block(&members)));
        let coded = encode(&input, &EncodeOptions::default()).unwrap();
        assert_eq!(coded.tensors.len(), 3);
    }

    #[test]
    fn an_unsignalable_qp_is_refused_or_masked_as_the_reference_does() {
        // A non-weight qp near −75 needs 8 bits; qp_density 1 gives its field 7 (quirks.md
        // #qp-offset-range). Masked, it is written as its low 7 bits, and reads back as the
        // qp in [−64, 63] that agrees with it modulo 128.
        let v: Vec<f32> = (0..23).map(|i| (i as f32 - 11.0) * 0.01).collect();
        let t = Tensor::try_new("m0.bias", vec![23], TensorData::F32(v)).unwrap();
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        let mut opts = EncodeOptions {
            qp_density: 1,
            nonweight_qp: Some(-75),
            ..Default::default()
        };
        let e = encode(&input, &opts).unwrap_err().to_string();
        assert!(e.contains("is outside [-64, 63]"), "{e}");
        let refused: i32 = e
            .split("qp ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|q| q.parse().ok())
            .expect("the refused qp is named");
        assert!(refused < -64, "{e}");
        opts.mask_unsignalable_qp = true;
        let bytes = encode(&input, &opts).unwrap().bytes;
        let out = decode_fresh(&bytes);
        let Approximation::Uniform { qp, .. } = out.tensors[0].approximation else {
            panic!("uniform expected")
        };
        assert_eq!(qp, refused + 128);
    }

    #[test]
    fn codebook_tensors_come_back_in_their_own_dtype() {
        let book = [-0.5f32, -0.125, 0.0, 0.25, 1.0];
        let v: Vec<f32> = (0..480).map(|i| book[(i * 7 + i / 5) % 5]).collect();
        let t = Tensor::try_new("w", vec![24, 20], TensorData::F32(v)).unwrap();
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        for (carry_dtypes, want) in [(true, DType::F32), (false, DType::F64)] {
            let opts = EncodeOptions {
                codebook_mode: CodebookMode::Always,
                carry_dtypes,
                ..Default::default()
            };
            let bytes = encode(&input, &opts).unwrap().bytes;
            let out = decode_fresh(&bytes);
            let w = &out.tensors[0];
            assert!(matches!(w.approximation, Approximation::Codebook { .. }));
            // Without metadata the decoder returns float64, as the reference's does.
            assert_eq!(w.tensor.dtype(), want, "carry_dtypes {carry_dtypes}");
        }
    }

    #[test]
    fn a_level_of_minus_2_pow_31_keeps_the_asked_qp() {
        // Integers −4..3 at qp −29, qp_density 0 (Δ = 2^−29): −4 quantizes to exactly −2^31,
        // which the reference keeps, as a codebook entry (held-out combo set, seed 11,
        // combo_136) or as a coded level (seed 15, combo_203; quirks.md#int-min-level).
        let v: Vec<f32> = (0..96)
            .map(|i| ((i * 5 + i / 7) % 8) as f32 - 4.0)
            .collect();
        let t = Tensor::try_new("w", vec![8, 12], TensorData::F32(v.clone())).unwrap();
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        for mode in [CodebookMode::Always, CodebookMode::Off] {
            let opts = EncodeOptions {
                qp: -29,
                qp_density: 0,
                use_dq: false,
                codebook_mode: mode,
                ..Default::default()
            };
            let bytes = encode(&input, &opts).unwrap().bytes;
            let out = decode_fresh(&bytes);
            let w = &out.tensors[0];
            let qp = match &w.approximation {
                Approximation::Codebook { qp, codebook, .. } => {
                    assert!(codebook.contains(&i64::from(i32::MIN)), "{codebook:?}");
                    *qp
                }
                Approximation::Uniform { qp, .. } => *qp,
                other => panic!("{other:?}"),
            };
            assert_eq!(qp, -29, "{mode:?}");
            let back = w.tensor.data.as_f32_lossless().unwrap();
            assert_eq!(back.as_ref(), v.as_slice(), "{mode:?}");
        }
    }

    #[test]
    fn attributes_travel_in_the_metadata_and_only_there() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.01).collect();
        let t = Tensor::try_new("w", vec![8, 8], TensorData::F32(v)).unwrap();
        let plain = EncodeInput::from_tensors(std::slice::from_ref(&t)).unwrap();
        let attributes: std::collections::BTreeMap<String, String> =
            [("format", "pt"), ("ünï", "{\"json\": [1]}")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let with = plain.clone().with_attributes(attributes.clone());
        let opts = EncodeOptions::default();
        let base = encode(&plain, &opts).unwrap().bytes;
        let carried = encode(&with, &opts).unwrap().bytes;
        assert!(carried.len() > base.len());
        let out = decode_fresh(&carried);
        assert_eq!(out.attributes, attributes);
        assert_eq!(out.tensors[0].tensor, decode_fresh(&base).tensors[0].tensor);
        assert!(decode_fresh(&base).attributes.is_empty());
        let plan = crate::plan_stream(&carried, &DecodeOptions::new()).unwrap();
        assert_eq!(plan.attributes, attributes);
        // Without metadata the stream is the reference's, attributes or not.
        let off = EncodeOptions {
            carry_dtypes: false,
            ..Default::default()
        };
        assert_eq!(encode(&with, &off).unwrap().bytes, base);
    }

    #[test]
    fn attached_files_travel_packed_and_unpack_within_a_limit() {
        use crate::metadata::AttachedFile;
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.01).collect();
        let t = Tensor::try_new("w", vec![8, 8], TensorData::F32(v)).unwrap();
        let plain = EncodeInput::from_tensors(std::slice::from_ref(&t)).unwrap();
        let config = br#"{"model_type": "bert", "hidden_size": 384}"#.repeat(50);
        let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let files: std::collections::BTreeMap<String, Vec<u8>> = [
            ("config.json".to_string(), config.clone()),
            ("tokenizer.model".to_string(), binary.clone()),
            ("empty".to_string(), Vec::new()),
        ]
        .into();
        let with = plain.clone().with_files(files.clone());
        let opts = EncodeOptions::default();
        let bytes = encode(&with, &opts).unwrap().bytes;
        let plan = crate::plan_stream(&bytes, &DecodeOptions::new()).unwrap();
        assert_eq!(plan.files.len(), 3);
        for (name, want) in &files {
            assert_eq!(&plan.files[name].unpack(1 << 20).unwrap(), want, "{name}");
        }
        // Deflated: the repeated config costs far less than its size.
        assert!(plan.files["config.json"].packed_len() < config.len() / 4);
        let e = plan.files["config.json"].unpack(100).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        let out = decode_fresh(&bytes);
        assert_eq!(out.files, plan.files);
        // Without metadata nothing is attached: the reference's stream.
        let off = EncodeOptions {
            carry_dtypes: false,
            ..Default::default()
        };
        assert_eq!(
            encode(&with, &off).unwrap().bytes,
            encode(&plain, &off).unwrap().bytes
        );
        // A bomb: 64 MiB of zeros deflate to kilobytes, and unpack refuses past its limit
        // without inflating it all.
        let bomb = AttachedFile::pack(&vec![0u8; 64 << 20]);
        assert!(bomb.packed_len() < 200_000);
        assert_eq!(
            bomb.unpack(1 << 20).unwrap_err().kind(),
            crate::ErrorKind::LimitExceeded
        );
        let garbage: AttachedFile = serde_json::from_str("\"not base64!\"").unwrap();
        assert_eq!(
            garbage.unpack(1 << 20).unwrap_err().kind(),
            crate::ErrorKind::Malformed
        );
    }

    #[test]
    fn weights_too_large_for_any_signalable_qp_are_named_as_such() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 1e28).collect();
        let t = Tensor::try_new("w", vec![8, 8], TensorData::F32(v)).unwrap();
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        for (use_dq, codebook_mode) in [
            (true, CodebookMode::Off),
            (false, CodebookMode::Off),
            (true, CodebookMode::Auto),
            (false, CodebookMode::Always),
        ] {
            let opts = EncodeOptions {
                use_dq,
                codebook_mode,
                ..Default::default()
            };
            let e = encode(&input, &opts).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(
                e.to_string().contains(
                    "\"w\": its weights are too large to code (largest magnitude 3.150e29)"
                ),
                "{e}"
            );
        }
        // A qp asked for out of range is still named as such.
        let mut t = Tensor::try_new("w", vec![2], TensorData::F32(vec![0.5, -0.5])).unwrap();
        t.shape = vec![1, 2];
        let input = EncodeInput::from_tensors_owned(vec![t]).unwrap();
        let e = encode(&input, &EncodeOptions::default().with_qp(200)).unwrap_err();
        assert!(e.to_string().contains("qp 200 is outside"), "{e}");
    }

    /// Bit-depth clipping after dependent quantization can leave levels that are no valid DQ
    /// sequence, so the stream decodes to other levels than the encoder quantized to (as the
    /// reference's does). The encoder's state must hold what the decoder's will, or the next
    /// TCA update is coded against a base the decoder does not have.
    #[test]
    fn clipped_dq_levels_leave_both_sides_in_the_same_state() {
        let mut opts = EncodeOptions {
            compress_differences: true,
            tca: true,
            int_quant_bw: Some(1),
            ..Default::default()
        };
        opts.qp = 32;
        let model = |v: Vec<f32>| {
            EncodeInput::from_tensors_owned(vec![Tensor::try_new(
                "w",
                vec![2, 16],
                TensorData::F32(v),
            )
            .unwrap()])
            .unwrap()
        };
        let steps = [
            model(vec![3.5e8; 32]),
            model((0..32).map(|i| (i % 5) as f32 * 1e8).collect()),
            model((0..32).map(|i| (i % 3) as f32 * 2e8).collect()),
        ];
        let mut enc_state = IncrementalState::default();
        let mut dec_state = IncrementalState::default();
        let mut diverged = false;
        for (i, step) in steps.iter().enumerate() {
            let encoded = encode_incremental(step, &opts, &mut enc_state, true).unwrap();
            let decoded = decode_stream(&encoded.bytes, &mut dec_state, &DecodeOptions::new())
                .unwrap_or_else(|e| panic!("step {i}: {e}"));
            diverged |=
                decoded.tensors[0].levels.as_deref() != Some(&encoded.tensors[0].levels[..]);
            assert_eq!(enc_state.bases, dec_state.bases, "step {i}");
        }
        // The case is the one meant: the decoder's levels are not the encoder's.
        assert!(diverged);
    }

    #[test]
    fn decoding_with_a_skipped_step_is_a_state_error() {
        let opts = EncodeOptions {
            compress_differences: true,
            tca: true,
            ..Default::default()
        };
        let t = |k: f32| {
            let v: Vec<f32> = (0..64)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01 * k)
                .collect();
            EncodeInput::from_tensors_owned(vec![Tensor::try_new(
                "w",
                vec![8, 8],
                TensorData::F32(v),
            )
            .unwrap()])
            .unwrap()
        };
        let mut enc_state = IncrementalState::default();
        let first = encode_incremental(t(1.0), &opts, &mut enc_state, true).unwrap();
        let _second = encode_incremental(t(2.0), &opts, &mut enc_state, true).unwrap();
        let third = encode_incremental(t(3.0), &opts, &mut enc_state, true).unwrap();
        let mut dec_state = IncrementalState::default();
        decode_stream(&first.bytes, &mut dec_state, &DecodeOptions::new()).unwrap();
        let err = decode_stream(&third.bytes, &mut dec_state, &DecodeOptions::new()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::StateMismatch, "{err}");
    }
}
