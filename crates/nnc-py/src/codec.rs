//! `nnc.encode` / `nnc.decode`: the reference tensor pipeline's arguments as keyword arguments.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use nnc_tensor::encode::{encode_inference_optimised, quantize, IoqError, TensorSource};
use nnc_tensor::sparsify::{sparsify_tensors, SparsifyOptions};
use nnc_tensor::{
    decode_stream, decode_stream_deferred, encode, encode_incremental, encode_incremental_deferred,
    CodebookMode, DecodeOptions, EncodeInput, EncodeOptions, IncrementalState, Limits, Tensor,
};

use crate::arrays::{bytes_like, tensors_from_py, tensors_to_dict, LentInputs};
use crate::errors::{invalid, to_py};
use crate::state::{borrow_state, DecoderState, EncoderState, Side, StateChanges};

/// `qp_density` of the sparsification step size in the reference's tensor pipeline.
///
/// Reference quirk: `tensor.encode` never passes `qp_density` on (neither to sparsification nor
/// to the coder), so its sparsification threshold always uses density 2.
const SPARSIFY_QP_DENSITY: u8 = 2;

/// Maps the reference's `approx_method` to a codebook mode.
fn codebook_mode(approx_method: &str) -> PyResult<CodebookMode> {
    match approx_method {
        "uniform" => Ok(CodebookMode::Off),
        "codebook" => Ok(CodebookMode::Auto),
        other => Err(invalid(format!(
            "approx_method must be \"uniform\" or \"codebook\", not {other:?}"
        ))),
    }
}

/// Encodes arrays into an NNR bitstream.
///
/// `data` is one array-like (coded under the name `tensor_id`, "0" by default, as NNCodec's
/// `tensor.encode` does) or a mapping of names to array-likes (coded in its order, as NNCodec's
/// `nnc.compress(dict)`). Floats are quantized, integers and bools coded losslessly; dtypes and
/// shapes come back from `decode` (`carry_dtypes=False` drops that side information, so a
/// float64 array codes byte-identically to NNCodec's float32 conversion). A tensor qp that its
/// `6 + qp_density`-bit field cannot hold raises `nnc.InvalidArgumentError`;
/// `mask_unsignalable_qp=True` writes it masked to those bits, as NNCodec does (the stream then
/// decodes with another qp).
///
/// The keyword arguments are NNCodec's tensor-pipeline arguments with its defaults;
/// `approx_method="codebook"` picks a codebook where it pays off, `bitdepth` fits levels into
/// that many bits, `sparsity`/`struct_spars_factor` sparsify before quantizing. For a sequence
/// of updates pass `state=EncoderState()` (updated in place unless `update_state=False`) with
/// `compress_differences=True` and optionally `tca=True`. `state_dict=True` treats the mapping as
/// a PyTorch state dict (parameter types from names, `num_batches_tracked` carried verbatim);
/// with it, `bnf=True` folds each BatchNorm into the block of the weight before it, the blocks
/// guessed from the names as NNCodec's model pipeline guesses them (a model whose BatchNorm
/// cannot be placed raises `nnc.InvalidArgumentError`); `decode` gives the BatchNorm tensors
/// back with the same effect unless `carry_dtypes=False`. `lsa=True` codes each trained local
/// scaling (`<layer>.weight_scaling`, as NNCodec's LSA adds them) in its layer's block, as
/// NNCodec's model pipeline with `lsa` (nnc does not train them; `decode(...,
/// apply_scaling=True)` multiplies them into the weights).
/// `ioq` (a callable) chooses the weights' QPs by inference-optimised quantization, as
/// NNCodec's `ioq=True` with a model executer: it is called with each trial's reconstructed
/// tensors (a dict of arrays) and returns a score to maximise (a number, or a dict whose first
/// value is one, as `eval_model`); its exceptions propagate. `quantize_only=True` returns the
/// quantized model instead of a stream, as NNCodec's `quantize_only`: a dict of each coded
/// tensor as the decoder would reconstruct it (coded names, shapes and dtypes: float32,
/// float64 for codebook tensors, int32), without the entropy coding.
/// `threads` sets the worker threads (default `None`: all cores); the bytes are the same for any
/// number. `attributes` (a dict of str to str, such as a safetensors file's metadata) travels in
/// the stream's metadata and comes back from `nnc.attributes`; `files` (a dict of str to bytes,
/// such as a model's `config.json`) is attached deflated and comes back from
/// `nnc.attached_files` (and from `nnc decode -o DIR/`). `deferred=True` (with a `state`)
/// leaves the state alone and returns `(bytes, changes)`: `changes.apply(state)` (an
/// `nnc.StateChanges`) advances it once the stream has reached its receiver, so a message that
/// was never delivered does not become the next one's base. Raises
/// `nnc.InvalidArgumentError` for arrays or options that cannot be coded.
#[pyfunction]
#[pyo3(signature = (
    data, *, qp=-32, qp_density=2, nonweight_qp=Some(-75), qp_per_tensor=None, use_dq=true,
    approx_method="uniform", bitdepth=None, sparsity=0.0, struct_spars_factor=0.9,
    row_skipping=true, param_opt=true, opt_qp=false, bnf=false, lsa=false, tca=false,
    compress_differences=false, pre_signalling=false, hdsp=false, scan_order=0, lambda_scale=0.0,
    cabac_unary_length_minus1=10, device_id=0, tensor_id="0", state=None, update_state=true,
    state_dict=false, carry_dtypes=true, mask_unsignalable_qp=false, threads=None,
    attributes=None, files=None, ioq=None, quantize_only=false, deferred=false
))]
// One keyword argument per reference argument; grouping them would hide the Python signature.
#[allow(clippy::too_many_arguments)]
#[pyo3(
    name = "encode",
    text_signature = "(data, *, qp=-32, qp_density=2, nonweight_qp=-75, qp_per_tensor=None, \
                      use_dq=True, approx_method='uniform', bitdepth=None, sparsity=0.0, \
                      struct_spars_factor=0.9, row_skipping=True, param_opt=True, opt_qp=False, \
                      bnf=False, lsa=False, tca=False, compress_differences=False, \
                      pre_signalling=False, hdsp=False, scan_order=0, lambda_scale=0.0, \
                      cabac_unary_length_minus1=10, device_id=0, tensor_id='0', state=None, \
                      update_state=True, state_dict=False, carry_dtypes=True, \
                      mask_unsignalable_qp=False, threads=None, attributes=None, files=None, \
                      ioq=None, quantize_only=False, deferred=False)"
)]
pub fn py_encode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    qp: i32,
    qp_density: u8,
    nonweight_qp: Option<i32>,
    qp_per_tensor: Option<BTreeMap<String, i32>>,
    use_dq: bool,
    approx_method: &str,
    bitdepth: Option<u32>,
    sparsity: f64,
    struct_spars_factor: f64,
    row_skipping: bool,
    param_opt: bool,
    opt_qp: bool,
    bnf: bool,
    lsa: bool,
    tca: bool,
    compress_differences: bool,
    pre_signalling: bool,
    hdsp: bool,
    scan_order: u8,
    lambda_scale: f32,
    cabac_unary_length_minus1: u8,
    device_id: u64,
    tensor_id: &str,
    state: Option<Bound<'py, EncoderState>>,
    update_state: bool,
    state_dict: bool,
    carry_dtypes: bool,
    mask_unsignalable_qp: bool,
    threads: Option<usize>,
    attributes: Option<BTreeMap<String, String>>,
    files: Option<BTreeMap<String, Vec<u8>>>,
    ioq: Option<Py<PyAny>>,
    quantize_only: bool,
    deferred: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut opts = EncodeOptions::default();
    opts.qp = qp;
    opts.qp_density = qp_density;
    opts.nonweight_qp = nonweight_qp;
    opts.qp_per_tensor = qp_per_tensor.unwrap_or_default();
    opts.use_dq = use_dq;
    opts.codebook_mode = codebook_mode(approx_method)?;
    opts.int_quant_bw = bitdepth;
    opts.row_skipping = row_skipping;
    opts.param_opt = param_opt;
    opts.opt_qp = opt_qp;
    opts.bnf = bnf;
    opts.tca = tca;
    opts.compress_differences = compress_differences;
    opts.pre_signalling = pre_signalling;
    opts.hdsp = hdsp;
    opts.scan_order = scan_order;
    opts.lambda_scale = lambda_scale;
    opts.cabac_unary_length_minus1 = cabac_unary_length_minus1;
    opts.device_id = device_id;
    opts.carry_dtypes = carry_dtypes;
    opts.mask_unsignalable_qp = mask_unsignalable_qp;
    opts.threads = threads;
    opts.validate().map_err(invalid)?;
    if !(0.0..1.0).contains(&sparsity) {
        return Err(invalid(format!("sparsity {sparsity} is outside [0, 1)")));
    }
    if (tca || hdsp) && state.is_none() {
        return Err(invalid(
            "tca and hdsp need an EncoderState (state=...) carried from one update to the next",
        ));
    }

    if ioq.is_some() && state.is_some() {
        return Err(invalid(
            "ioq chooses the QPs of a stand-alone model: not with an EncoderState",
        ));
    }
    if quantize_only && state.is_some() {
        return Err(invalid(
            "quantize_only quantizes a stand-alone model: not with an EncoderState",
        ));
    }
    if deferred && (state.is_none() || !update_state) {
        return Err(invalid(
            "deferred=True defers a state's update: it needs state=... and update_state=True",
        ));
    }

    // Sparsification changes the values, so it works on copies; so does IOQ, whose score
    // function may load each trial into the very arrays given (a model's own parameters).
    // Otherwise float32 and int32 arrays are lent to the encoder.
    let (mut tensors, mut lent) = if sparsity > 0.0 || ioq.is_some() {
        (tensors_from_py(data, tensor_id)?, None)
    } else {
        (Vec::new(), Some(LentInputs::from_py(data, tensor_id)?))
    };
    let sources = lent.as_mut().map(LentInputs::sources).transpose()?;
    // The codec leaves the state as it was when a call fails, so it is worked on in place.
    let mut held = state.as_ref().map(borrow_state).transpose()?;
    let base = held.as_deref_mut().map(|s| &mut s.inner);
    let out = py.detach(|| -> Result<Output, Failure> {
        if sparsity > 0.0 {
            sparsify_tensors(
                &mut tensors,
                &SparsifyOptions {
                    qp,
                    qp_density: SPARSIFY_QP_DENSITY,
                    sparsity,
                    struct_spars_factor,
                },
            )?;
        }
        let sources = match sources {
            Some(lent) => lent,
            None => tensors.into_iter().map(TensorSource::from).collect(),
        };
        let mut input = if state_dict {
            EncodeInput::from_state_dict_sources(sources)
        } else {
            EncodeInput::from_sources(sources)
        }
        .map_err(|e| nnc_tensor::Error::InvalidArgument {
            what: e.to_string(),
        })?
        .with_attributes(attributes.unwrap_or_default())
        .with_files(files.unwrap_or_default());
        if lsa {
            input.apply_local_scaling_blocks()?;
        } else if bnf {
            // Refused where NNCodec would drop the folding unseen.
            input.apply_guessed_blocks()?;
        }
        if quantize_only && ioq.is_none() {
            let tensors = quantize(input, &opts)?;
            return Ok(Output::Tensors(
                tensors.into_iter().map(|t| t.tensor).collect(),
            ));
        }
        let stream = match (base, &ioq) {
            (Some(st), _) if deferred => {
                let (stream, changes) = encode_incremental_deferred(input, &opts, st)?;
                return Ok(Output::Bytes(stream.bytes, Some(changes)));
            }
            (Some(st), _) => encode_incremental(input, &opts, st, update_state)?,
            (None, Some(score)) => {
                encode_inference_optimised(&input, &opts, |rec| evaluate(score, rec))
                    .map_err(|e| match e {
                        IoqError::Evaluation(e) => Failure::Python(e),
                        IoqError::Codec(e) => Failure::Codec(e),
                        other => Failure::Codec(nnc_tensor::Error::InvalidArgument {
                            what: other.to_string(),
                        }),
                    })?
                    .stream
            }
            (None, None) => encode(input, &opts)?,
        };
        if quantize_only {
            // The model as the QPs ioq chose quantize it.
            let tensors = stream
                .tensors
                .iter()
                .map(|t| t.reconstructed())
                .collect::<Result<_, nnc_tensor::Error>>()?;
            return Ok(Output::Tensors(tensors));
        }
        Ok(Output::Bytes(stream.bytes, None))
    });
    let out = out.map_err(|e| match e {
        Failure::Codec(e) => to_py(&e),
        Failure::Python(e) => e,
    })?;
    drop(held);
    match out {
        Output::Bytes(bytes, None) => Ok(PyBytes::new(py, &bytes).into_any()),
        Output::Bytes(bytes, Some(c)) => {
            let changes = Bound::new(py, StateChanges::new(c, Side::Encoder))?;
            let bytes = PyBytes::new(py, &bytes).into_any();
            Ok(PyTuple::new(py, [bytes, changes.into_any()])?.into_any())
        }
        Output::Tensors(tensors) => Ok(tensors_to_dict(py, tensors)?.into_any()),
    }
}

/// What an encode call returns: the stream (with `deferred` the changes to the state too), or
/// with `quantize_only` the quantized tensors.
enum Output {
    Bytes(Vec<u8>, Option<nnc_tensor::StateChanges>),
    Tensors(Vec<Tensor>),
}

/// Why an encode stopped: the codec refused, or the caller's `ioq` score raised.
enum Failure {
    Codec(nnc_tensor::Error),
    Python(PyErr),
}

impl From<nnc_tensor::Error> for Failure {
    fn from(e: nnc_tensor::Error) -> Self {
        Failure::Codec(e)
    }
}

/// The caller's score of a reconstructed model: a number, or a mapping whose first value is one
/// (as the reference's `eval_model` returns, e.g. `{"acc": ...}`).
fn evaluate(score: &Py<PyAny>, reconstruction: &[Tensor]) -> PyResult<f64> {
    Python::attach(|py| {
        let arrays = tensors_to_dict(py, reconstruction.to_vec())?;
        let out = score.bind(py).call1((arrays,))?;
        if let Ok(map) = out.cast::<PyDict>() {
            let first = map.values().get_item(0).map_err(|_| {
                invalid("the ioq score returned an empty mapping; give a number or {name: number}")
            })?;
            return first.extract::<f64>();
        }
        out.extract::<f64>()
    })
}

/// Decodes an NNR bitstream into a `dict` of NumPy arrays, in the stream's order.
///
/// Reads any NNR bitstream (NNCodec's and ours); arrays keep the dtypes and shapes the encoder
/// carried, otherwise they are float32 (float64 for codebook tensors) or int32, as NNCodec
/// returns them. For the updates of a sequence pass the receiver's `state=DecoderState()`
/// (updated on success unless `update_state=False`; unchanged on error) and `hdsp=True` if the
/// encoder used it. `tensor_dimensions` supplies shapes a parent-signalled stream leaves out;
/// `max_tensor_elements` / `max_total_elements` bound what a stream may make the decoder allocate;
/// `threads` sets the worker threads (default `None`: all cores; the values are the same for any
/// number). `apply_scaling=True` multiplies each block's weight by its local scaling (what
/// NNCodec's LSA trains) and leaves the scaling out, as NNCodec's `reconstruct_lsa=True`.
/// `deferred=True` leaves `state` alone and returns `(arrays, changes)`: `changes.apply(state)`
/// (an `nnc.StateChanges`) updates the state once the caller has checked the arrays, with no
/// copy of the state to fall back on. Raises `nnc.MalformedError`, `nnc.UnsupportedError`, `nnc.LimitExceededError` or
/// `nnc.StateMismatchError` (all `nnc.NncError`, a `ValueError`).
#[pyfunction]
#[pyo3(signature = (
    bitstream, *, state=None, update_state=true, hdsp=false, tensor_dimensions=None,
    max_tensor_elements=None, max_total_elements=None, threads=None, apply_scaling=false,
    deferred=false
))]
#[allow(clippy::too_many_arguments)]
#[pyo3(name = "decode")]
pub fn py_decode<'py>(
    py: Python<'py>,
    bitstream: &Bound<'py, PyAny>,
    state: Option<Bound<'py, DecoderState>>,
    update_state: bool,
    hdsp: bool,
    tensor_dimensions: Option<BTreeMap<String, Vec<u64>>>,
    max_tensor_elements: Option<u64>,
    max_total_elements: Option<u64>,
    threads: Option<usize>,
    apply_scaling: bool,
    deferred: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if deferred && (state.is_none() || !update_state) {
        return Err(invalid(
            "deferred=True defers a state's update: it needs state=... and update_state=True",
        ));
    }
    let bitstream = bytes_like(bitstream, "bitstream")?;
    let bytes = bitstream.as_bytes();
    let mut limits = Limits::default();
    if let Some(n) = max_tensor_elements {
        limits.max_tensor_elements = n;
    }
    if let Some(n) = max_total_elements {
        limits.max_total_elements = n;
    }
    // Levels are never returned, and a state that will not be written back need not be recorded
    // into: without both, each tensor's levels become its values in place.
    let mut opts = DecodeOptions::new()
        .with_limits(limits)
        .with_hdsp(hdsp)
        .with_keep_levels(false)
        .with_update_state(state.is_some() && update_state)
        .with_threads(threads)
        .with_apply_local_scaling(apply_scaling);
    for (name, dims) in tensor_dimensions.unwrap_or_default() {
        opts = opts.with_tensor_dimensions(name, dims);
    }
    // The codec leaves the state as it was when a call fails (and without `update_state`), so it
    // is worked on in place.
    let mut held = state.as_ref().map(borrow_state).transpose()?;
    let mut fresh = IncrementalState::default();
    let work = match held.as_deref_mut() {
        Some(s) => &mut s.inner,
        None => &mut fresh,
    };
    let (decoded, changes) = if deferred {
        let (decoded, changes) = py
            .detach(|| decode_stream_deferred(bytes, work, &opts))
            .map_err(|e| to_py(&e))?;
        (decoded, Some(changes))
    } else {
        let decoded = py
            .detach(|| decode_stream(bytes, work, &opts))
            .map_err(|e| to_py(&e))?;
        (decoded, None)
    };
    drop(held);
    let tensors: Vec<Tensor> = decoded.tensors.into_iter().map(|t| t.tensor).collect();
    let arrays = tensors_to_dict(py, tensors)?.into_any();
    match changes {
        Some(c) => {
            let changes = Bound::new(py, StateChanges::new(c, Side::Decoder))?;
            Ok(PyTuple::new(py, [arrays, changes.into_any()])?.into_any())
        }
        None => Ok(arrays),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::TensorData;

    #[test]
    fn approx_methods_are_the_reference_names() {
        assert_eq!(codebook_mode("uniform").ok(), Some(CodebookMode::Off));
        assert_eq!(codebook_mode("codebook").ok(), Some(CodebookMode::Auto));
    }

    #[test]
    fn sparsify_keeps_dtypes_and_zeroes_small_values() {
        let mut t = vec![Tensor::try_new(
            "w",
            vec![4, 8],
            TensorData::F64(
                (0..32)
                    .map(|i| if i % 4 == 0 { 1e-7 } else { 1.0 + i as f64 })
                    .collect(),
            ),
        )
        .unwrap()];
        sparsify_tensors(
            &mut t,
            &SparsifyOptions {
                qp: -32,
                qp_density: 2,
                sparsity: 0.2,
                struct_spars_factor: 0.0,
            },
        )
        .unwrap();
        let TensorData::F64(v) = &t[0].data else {
            panic!("dtype changed to {:?}", t[0].dtype());
        };
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], 2.0);
    }
}

/// The model attributes a bitstream carries (the `attributes` given to `encode`, or a
/// safetensors file's metadata carried by `nnc encode`): a `dict` of str to str, empty when
/// there are none. Reads the unit headers only; raises as `decode` does for a malformed stream.
#[pyfunction]
#[pyo3(name = "attributes", signature = (bitstream))]
pub fn py_attributes(bitstream: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, String>> {
    let bitstream = bytes_like(bitstream, "bitstream")?;
    let plan = nnc_tensor::plan_stream(bitstream.as_bytes(), &DecodeOptions::new())
        .map_err(|e| to_py(&e))?;
    Ok(plan.attributes)
}

/// Each output tensor of a bitstream, in `decode`'s order, as a `dict`: `name`, `shape` (a
/// tuple), `dtype` (NumPy's name), `qp` (`None` for integers, raw floats, tensors carried in the
/// metadata and weights recomposed from low-rank factors), `coded_values` and `bytes` (its share
/// of the units carrying it). Reads the unit headers and each tensor's QP only, so it takes
/// milliseconds on a whole model and needs no state for an update. `tensor_dimensions` supplies
/// shapes the stream leaves out, as for `decode`.
#[pyfunction]
#[pyo3(name = "summary", signature = (bitstream, *, tensor_dimensions=None))]
pub fn py_summary<'py>(
    py: Python<'py>,
    bitstream: &Bound<'py, PyAny>,
    tensor_dimensions: Option<BTreeMap<String, Vec<u64>>>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let bitstream = bytes_like(bitstream, "bitstream")?;
    let bytes = bitstream.as_bytes();
    let mut opts = DecodeOptions::new();
    for (name, dims) in tensor_dimensions.unwrap_or_default() {
        opts = opts.with_tensor_dimensions(name, dims);
    }
    let summary = py
        .detach(|| nnc_tensor::summarise_stream(bytes, &nnc_tensor::DecoderState::default(), &opts))
        .map_err(|e| to_py(&e))?;
    summary
        .iter()
        .map(|t| {
            let d = PyDict::new(py);
            d.set_item("name", &t.spec.name)?;
            d.set_item("shape", pyo3::types::PyTuple::new(py, &t.spec.shape)?)?;
            d.set_item("dtype", t.spec.dtype.numpy_name())?;
            d.set_item("qp", t.qp)?;
            d.set_item("coded_values", t.coded_values)?;
            d.set_item("bytes", t.bytes)?;
            Ok(d)
        })
        .collect()
}

/// The files a bitstream attaches to its model (a Hugging Face directory's `config.json` and
/// tokenizer, attached by `nnc encode DIR`): a `dict` of name to `bytes`, empty when there are
/// none. Unpacking is bounded (64 MiB a file, 256 MiB in all: `nnc.LimitExceededError` past
/// that); the names are as the stream gives them, so check them before using one as a path.
#[pyfunction]
#[pyo3(name = "attached_files", signature = (bitstream))]
pub fn py_attached_files<'py>(
    py: Python<'py>,
    bitstream: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let bitstream = bytes_like(bitstream, "bitstream")?;
    let plan = nnc_tensor::plan_stream(bitstream.as_bytes(), &DecodeOptions::new())
        .map_err(|e| to_py(&e))?;
    let out = PyDict::new(py);
    for (name, bytes) in nnc_tensor::metadata::unpack_each(&plan.files) {
        let bytes = bytes.map_err(|e| to_py(&e))?;
        out.set_item(name, PyBytes::new(py, &bytes))?;
    }
    Ok(out)
}
