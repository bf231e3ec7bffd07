//! `nnc.ClientCodec` / `nnc.ServerCodec`: the `nnc-fl` codecs (NNCodec's NNClient / NNCFedAvg
//! coding: differences, error accumulation, sparsification, TCA state per direction and sender)
//! as Python objects. Models are dicts of arrays in the layout's order (a flat float32 array is
//! accepted too), coded as float32 and given back in the dtypes of the layout's arrays; messages
//! are `bytes`; states pickle in nnc's binary form and resume from it or from their JSON.

use std::borrow::Cow;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyMapping, PySlice, PyString, PyType};

use nnc_fl::{ClientCodec, ClientMessage, ClientState, FlError, FlOptions, Layout, ServerCodec};
use nnc_fl::{ServerState, TensorSpec};

use crate::arrays::{bytes_like, host_array, HostArray};
use crate::errors::{invalid, to_py, MalformedError, NncError, StateMismatchError};

/// Converts an FL error into the Python exception of its kind.
fn fl_err(e: FlError) -> PyErr {
    match e {
        FlError::Codec(e) => to_py(&e),
        FlError::Bitstream(e) => MalformedError::new_err(e.to_string()),
        FlError::StateMismatch(_) => StateMismatchError::new_err(e.to_string()),
        FlError::Layout(_)
        | FlError::Options(_)
        | FlError::ModelSize { .. }
        | FlError::MessageLength { .. }
        | FlError::NonFinite { .. }
        | FlError::TensorSet(_) => invalid(e.to_string()),
        other => NncError::new_err(other.to_string()),
    }
}

fn json_err(e: serde_json::Error) -> PyErr {
    invalid(format!("invalid JSON state: {e}"))
}

/// Integers up to this magnitude are exact in float32, the type the codecs work in.
const EXACT_F32_INTEGERS: i64 = 1 << 24;

/// A layout with the numpy dtype of each tensor (`dtype.name`): models are coded as float32 and
/// given back in these dtypes.
#[derive(Debug)]
struct ModelLayout {
    layout: Layout,
    dtypes: Vec<String>,
}

impl ModelLayout {
    /// A layout whose tensors are all float32 (pickles of builds before the dtypes were kept).
    fn float32(layout: Layout) -> Self {
        let dtypes = vec!["float32".to_string(); layout.specs().len()];
        ModelLayout { layout, dtypes }
    }
}

/// Reads a layout: a mapping of names to shapes or to arrays (a state dict: its shapes and
/// dtypes are taken; shapes alone mean float32), or a sequence of `(name, shape)` pairs.
fn layout_from_py(obj: &Bound<'_, PyAny>) -> PyResult<ModelLayout> {
    let spec_of = |name: String, v: &Bound<'_, PyAny>| -> PyResult<(TensorSpec, String)> {
        if v.hasattr("shape")? && v.hasattr("dtype")? {
            let host = host_array(&name, v)?;
            let kind = host.kind()?;
            let dtype_name = host.dtype_name()?;
            if !"fiub".contains(kind.as_str()) || kind.len() != 1 {
                return Err(invalid(format!(
                    "tensor {name:?} is {dtype_name}: the FL codecs take float, integer or bool \
                     tensors"
                )));
            }
            Ok((TensorSpec::new(name, host.shape()?), dtype_name))
        } else {
            Ok((TensorSpec::new(name, v.extract()?), "float32".to_string()))
        }
    };
    let mut specs = Vec::new();
    let mut dtypes = Vec::new();
    let mut push = |(spec, dtype): (TensorSpec, String)| {
        specs.push(spec);
        dtypes.push(dtype);
    };
    if let Ok(map) = obj.cast::<PyMapping>() {
        for item in map.items()?.iter() {
            let (name, value): (String, Bound<'_, PyAny>) = item.extract()?;
            push(spec_of(name, &value)?);
        }
    } else {
        for item in obj.try_iter()? {
            let (name, value): (String, Bound<'_, PyAny>) = item?.extract()?;
            push(spec_of(name, &value)?);
        }
    }
    Ok(ModelLayout {
        layout: Layout::new(specs).map_err(fl_err)?,
        dtypes,
    })
}

/// The `FlOptions` fields, for checking keyword names.
fn option_names() -> Vec<String> {
    match serde_json::to_value(FlOptions::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Builds `FlOptions` from keyword arguments named as its fields. `compressed=True` turns on the
/// reference's four FL flags (both directions, differences, error accumulation) unless they are
/// given explicitly.
fn options_from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<FlOptions> {
    let mut map = serde_json::Map::new();
    let names = option_names();
    let mut compressed = false;
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let key: String = k.extract()?;
            if key == "compressed" {
                compressed = v.extract()?;
                continue;
            }
            if !names.contains(&key) {
                return Err(PyTypeError::new_err(format!(
                    "unknown FL option {key:?}; known: compressed, {}",
                    names.join(", ")
                )));
            }
            let value = if v.is_none() {
                serde_json::Value::Null
            } else if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
                serde_json::Value::Bool(b.is_true())
            } else if let Ok(i) = v.extract::<i64>() {
                serde_json::Value::from(i)
            } else if let Ok(f) = v.extract::<f64>() {
                serde_json::Value::from(f)
            } else if let Ok(s) = v.extract::<String>() {
                serde_json::Value::from(s)
            } else {
                return Err(PyTypeError::new_err(format!(
                    "FL option {key:?} must be a bool, a number, a string or None"
                )));
            };
            map.insert(key, value);
        }
    }
    if compressed {
        for flag in [
            "compress_upstream",
            "compress_downstream",
            "compress_differences",
            "err_accumulation",
        ] {
            map.entry(flag.to_string())
                .or_insert(serde_json::Value::Bool(true));
        }
    }
    let opts: FlOptions = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| invalid(format!("FL options: {e}")))?;
    opts.validate().map_err(fl_err)?;
    Ok(opts)
}

/// Reads a model: a mapping with every layout tensor (arrays of the layout's shapes; integers
/// must be exact in float32), or a flat array of `layout.num_values()` values.
fn model_from_py(layout: &Layout, obj: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let flat = |host: &HostArray<'_>| -> PyResult<Vec<f32>> {
        let kind = host.kind()?;
        let given = host.as_f32()?;
        if kind == "i" || kind == "u" {
            // Compared both ways rather than through `abs`, which wraps the type's minimum.
            let beyond = |op: &str, bound: i64| -> PyResult<bool> {
                np.call_method1(op, (&given, bound))?
                    .call_method0("any")?
                    .is_truthy()
            };
            if beyond("greater", EXACT_F32_INTEGERS)? || beyond("less", -EXACT_F32_INTEGERS)? {
                return Err(invalid(format!(
                    "integers beyond ±{EXACT_F32_INTEGERS}, which float32 (the FL codecs' type) \
                     cannot hold exactly"
                )));
            }
        }
        let arr = np
            .call_method1("ascontiguousarray", (given, "float32"))?
            .call_method0("ravel")?;
        let arr = arr.cast::<PyArray1<f32>>()?;
        Ok(arr.readonly().as_slice()?.to_vec())
    };
    if let Ok(map) = obj.cast::<PyMapping>() {
        let mut out = Vec::with_capacity(layout.num_values());
        for spec in layout.specs() {
            let value = map
                .get_item(&spec.name)
                .map_err(|_| invalid(format!("the model has no tensor {:?}", spec.name)))?;
            let host = host_array(&spec.name, &value)?;
            let shape = host.shape()?;
            if shape != spec.shape {
                return Err(invalid(format!(
                    "tensor {:?} has shape {shape:?}, the layout {:?}",
                    spec.name, spec.shape
                )));
            }
            out.extend(
                flat(&host)
                    .map_err(|e| invalid(format!("tensor {:?}: {}", spec.name, e.value(py))))?,
            );
        }
        if map.len()? != layout.specs().len() {
            return Err(invalid(format!(
                "the model has {} tensors, the layout {}",
                map.len()?,
                layout.specs().len()
            )));
        }
        Ok(out)
    } else {
        let values = flat(&host_array("model", obj)?)?;
        layout.check("model", &values).map_err(fl_err)?;
        Ok(values)
    }
}

/// A flat model as a dict of arrays in the layout's order and `dtypes`: integers rounded to the
/// nearest and kept within their type's range, bools true from 0.5 up.
///
/// The float32 tensors are views of one flat array: the model's own memory when it is given
/// (`Cow::Owned`, as `receive` gives the decoded model), else one copy of it.
fn model_to_py<'py>(
    py: Python<'py>,
    layout: &Layout,
    dtypes: &[String],
    values: Cow<'_, [f32]>,
) -> PyResult<Bound<'py, PyDict>> {
    if values.len() < layout.num_values() {
        return Err(invalid("model shorter than its layout"));
    }
    let flat = match values {
        Cow::Owned(v) => PyArray1::from_vec(py, v),
        Cow::Borrowed(v) => PyArray1::from_slice(py, v),
    };
    let np = py.import("numpy")?;
    let out = PyDict::new(py);
    for ((i, spec), dtype) in layout.specs().iter().enumerate().zip(dtypes) {
        let r = layout.range(i);
        let part = flat.get_item(PySlice::new(py, r.start as isize, r.end as isize, 1))?;
        let mut arr = part.call_method1("reshape", (spec.shape.clone(),))?;
        if dtype == "bfloat16" {
            // As `decode` does: float32 (exactly) when `ml_dtypes` is not installed.
            if let Ok(ml) = py.import("ml_dtypes") {
                arr = arr.call_method1("astype", (ml.getattr("bfloat16")?,))?;
            }
        } else if dtype != "float32" {
            let dt = np.call_method1("dtype", (dtype.as_str(),))?;
            let kind: String = dt.getattr("kind")?.extract()?;
            arr = match kind.as_str() {
                "i" | "u" => {
                    let info = np.call_method1("iinfo", (&dt,))?;
                    let rounded = np.call_method1("rint", (&arr,))?;
                    np.call_method1(
                        "clip",
                        (rounded, info.getattr("min")?, info.getattr("max")?),
                    )?
                    .call_method1("astype", (&dt,))?
                }
                "b" => np.call_method1("greater_equal", (&arr, 0.5))?,
                _ => arr.call_method1("astype", (&dt,))?,
            };
        }
        out.set_item(&spec.name, arr)?;
    }
    Ok(out)
}

/// A codec's state, which Python holds as JSON (`state_json()`) or in nnc's binary form
/// (`state_bytes()`, and pickles).
trait SavedState: serde::de::DeserializeOwned + Send + Sync {
    fn to_binary(&self) -> nnc_fl::Result<Vec<u8>>;
    fn from_binary(bytes: &[u8]) -> nnc_fl::Result<Self>;

    /// From `bytes`, `bytearray` or `memoryview` (the binary form) or `str` (JSON).
    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(json) = obj.cast::<PyString>() {
            return serde_json::from_str(&json.to_cow()?).map_err(json_err);
        }
        let Ok(bytes) = bytes_like(obj, "a saved state") else {
            return Err(PyTypeError::new_err(format!(
                "a saved state is bytes, bytearray or memoryview (from state_bytes()) or str \
                 (from state_json()), not {}",
                obj.get_type().name()?
            )));
        };
        let data = bytes.as_bytes();
        obj.py().detach(|| Self::from_binary(data)).map_err(fl_err)
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.to_binary()).map_err(fl_err)?;
        Ok(PyBytes::new(py, &bytes))
    }
}

impl SavedState for ClientState {
    fn to_binary(&self) -> nnc_fl::Result<Vec<u8>> {
        self.to_bytes()
    }
    fn from_binary(bytes: &[u8]) -> nnc_fl::Result<Self> {
        Self::from_bytes(bytes)
    }
}

impl SavedState for ServerState {
    fn to_binary(&self) -> nnc_fl::Result<Vec<u8>> {
        self.to_bytes()
    }
    fn from_binary(bytes: &[u8]) -> nnc_fl::Result<Self> {
        Self::from_bytes(bytes)
    }
}

/// What both codecs pickle and resume from: the layout, the options and the state.
struct Saved<S> {
    layout: ModelLayout,
    opts: FlOptions,
    state: S,
}

impl<S: SavedState> Saved<S> {
    /// From `resume(layout, state, **options)`'s arguments.
    fn from_resume_args(
        layout: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(Self {
            layout: layout_from_py(layout)?,
            opts: options_from_kwargs(options)?,
            state: S::from_py(state)?,
        })
    }

    /// From a pickle's arguments ([`pickle_args`]; pickles of earlier builds carry the state
    /// as JSON and no dtypes).
    fn from_pickle(
        layout: &str,
        options: &str,
        state: &Bound<'_, PyAny>,
        dtypes: Option<&str>,
    ) -> PyResult<Self> {
        let layout = ModelLayout::float32(serde_json::from_str(layout).map_err(json_err)?);
        let layout = match dtypes {
            None => layout,
            Some(json) => {
                let dtypes: Vec<String> = serde_json::from_str(json).map_err(json_err)?;
                if dtypes.len() != layout.dtypes.len() {
                    return Err(invalid(format!(
                        "a pickle with {} dtypes for {} tensors",
                        dtypes.len(),
                        layout.dtypes.len()
                    )));
                }
                ModelLayout { dtypes, ..layout }
            }
        };
        Ok(Self {
            layout,
            opts: serde_json::from_str(options).map_err(json_err)?,
            state: S::from_py(state)?,
        })
    }
}

/// `__reduce__` of a codec: its class's `_restore` with the JSON of layout and options, the
/// state in the binary form and the JSON of the dtypes.
fn pickle_args<'py>(
    class: &Bound<'py, PyType>,
    layout: &Layout,
    dtypes: &[String],
    opts: &FlOptions,
    state: &impl SavedState,
) -> PyResult<ReduceArgs<'py>> {
    let layout = serde_json::to_string(layout).map_err(json_err)?;
    let opts = serde_json::to_string(opts).map_err(json_err)?;
    let state = state.to_py(class.py())?;
    let dtypes = serde_json::to_string(dtypes).map_err(json_err)?;
    Ok((class.getattr("_restore")?, (layout, opts, state, dtypes)))
}

/// What `__reduce__` returns.
type ReduceArgs<'py> = (
    Bound<'py, PyAny>,
    (String, String, Bound<'py, PyBytes>, String),
);

/// Client side of an NNC-coded FL session (the reference's NNClient coding). Construct with
/// the model layout, the client's `device_id` (1 or more) and FL options as keywords
/// (`compressed=True`, `qp`, `diff_qp`, `nonweight_qp`, `qp_density`, `use_dq`, `opt_qp`,
/// `sparsity`, `struct_spars_factor`, `row_skipping`, `tca`, `bitdepth`, `param_opt`, `approx_method`, `bnf`,
/// `compress_upstream`, `compress_downstream`, `compress_differences`, `err_accumulation`;
/// `threads` sets this side's worker threads and `verify_messages` decodes every sent message
/// as a check; neither changes the messages).
#[pyclass(module = "nnc", name = "ClientCodec")]
pub struct PyClientCodec {
    inner: ClientCodec,
    opts: FlOptions,
    /// The dtype each tensor of `inner`'s layout is given back in.
    dtypes: Vec<String>,
}

impl PyClientCodec {
    fn from_saved(saved: Saved<ClientState>) -> PyResult<Self> {
        let ModelLayout { layout, dtypes } = saved.layout;
        Ok(Self {
            inner: ClientCodec::resume(layout, saved.opts.clone(), saved.state).map_err(fl_err)?,
            opts: saved.opts,
            dtypes,
        })
    }
}

#[pymethods]
impl PyClientCodec {
    #[new]
    #[pyo3(signature = (layout, device_id, **options))]
    fn py_new(
        layout: &Bound<'_, PyAny>,
        device_id: u64,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let ModelLayout { layout, dtypes } = layout_from_py(layout)?;
        let opts = options_from_kwargs(options)?;
        Ok(Self {
            inner: ClientCodec::new(layout, opts.clone(), device_id).map_err(fl_err)?,
            opts,
            dtypes,
        })
    }

    /// A client continuing from `state` (`state_bytes()`'s bytes or `state_json()`'s str),
    /// with the same layout and options as before.
    #[classmethod]
    #[pyo3(signature = (layout, state, **options))]
    fn resume(
        _cls: &Bound<'_, PyType>,
        layout: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Self::from_saved(Saved::from_resume_args(layout, state, options)?)
    }

    #[classmethod]
    #[pyo3(signature = (layout, options, state, dtypes=None))]
    fn _restore(
        _cls: &Bound<'_, PyType>,
        layout: &str,
        options: &str,
        state: &Bound<'_, PyAny>,
        dtypes: Option<&str>,
    ) -> PyResult<Self> {
        Self::from_saved(Saved::from_pickle(layout, options, state, dtypes)?)
    }

    /// Decodes a downstream message; returns the new global model (dict of arrays in the
    /// layout's dtypes).
    /// The first message is the uncompressed initial model (`ServerCodec.initial_message()`).
    fn receive<'py>(
        &mut self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let message = bytes_like(message, "message")?;
        let message = message.as_bytes();
        let inner = &mut self.inner;
        let global = py.detach(|| inner.receive(message)).map_err(fl_err)?;
        model_to_py(py, self.inner.layout(), &self.dtypes, Cow::Owned(global))
    }

    /// Codes the locally trained model as this round's upstream message.
    fn send<'py>(
        &mut self,
        py: Python<'py>,
        local: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let values = model_from_py(self.inner.layout(), local)?;
        let inner = &mut self.inner;
        let bytes = py.detach(|| inner.send(&values)).map_err(fl_err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The last global model received, or `None`.
    #[getter]
    fn global_model<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .global_model()
            .map(|g| model_to_py(py, self.inner.layout(), &self.dtypes, Cow::Borrowed(g)))
            .transpose()
    }

    /// Updates sent so far.
    #[getter]
    fn comm_round(&self) -> u64 {
        self.inner.state().comm_round
    }

    /// The client's `device_id`.
    #[getter]
    fn device_id(&self) -> u64 {
        self.inner.state().device_id
    }

    /// Everything the client keeps between rounds, as JSON (for `resume`).
    fn state_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.state()).map_err(json_err)
    }

    /// Everything the client keeps between rounds, in nnc's binary form (for `resume`; smaller
    /// and faster than the JSON).
    fn state_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.inner.state().to_py(py)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<ReduceArgs<'py>> {
        let this = slf.borrow();
        pickle_args(
            &slf.get_type(),
            this.inner.layout(),
            &this.dtypes,
            &this.opts,
            this.inner.state(),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "ClientCodec(device_id={}, comm_round={}, values={})",
            self.inner.state().device_id,
            self.inner.state().comm_round,
            self.inner.layout().num_values()
        )
    }
}

/// Server side of an NNC-coded FL session (the reference's NNCFedAvg coding): decodes each
/// client's message with that client's decoder state, averages them weighted, codes the
/// downstream message. Construct with the layout, the initial model and the same FL options as
/// the clients.
#[pyclass(module = "nnc", name = "ServerCodec")]
pub struct PyServerCodec {
    inner: ServerCodec,
    opts: FlOptions,
    /// The dtype each tensor of `inner`'s layout is given back in.
    dtypes: Vec<String>,
}

impl PyServerCodec {
    fn from_saved(saved: Saved<ServerState>) -> PyResult<Self> {
        let ModelLayout { layout, dtypes } = saved.layout;
        Ok(Self {
            inner: ServerCodec::resume(layout, saved.opts.clone(), saved.state).map_err(fl_err)?,
            opts: saved.opts,
            dtypes,
        })
    }
}

#[pymethods]
impl PyServerCodec {
    #[new]
    #[pyo3(signature = (layout, initial, **options))]
    fn py_new(
        layout: &Bound<'_, PyAny>,
        initial: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let ModelLayout { layout, dtypes } = layout_from_py(layout)?;
        let opts = options_from_kwargs(options)?;
        let initial = model_from_py(&layout, initial)?;
        Ok(Self {
            inner: ServerCodec::new(layout, opts.clone(), initial).map_err(fl_err)?,
            opts,
            dtypes,
        })
    }

    /// A server continuing from `state` (`state_bytes()`'s bytes or `state_json()`'s str),
    /// with the same layout and options as before.
    #[classmethod]
    #[pyo3(signature = (layout, state, **options))]
    fn resume(
        _cls: &Bound<'_, PyType>,
        layout: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Self::from_saved(Saved::from_resume_args(layout, state, options)?)
    }

    #[classmethod]
    #[pyo3(signature = (layout, options, state, dtypes=None))]
    fn _restore(
        _cls: &Bound<'_, PyType>,
        layout: &str,
        options: &str,
        state: &Bound<'_, PyAny>,
        dtypes: Option<&str>,
    ) -> PyResult<Self> {
        Self::from_saved(Saved::from_pickle(layout, options, state, dtypes)?)
    }

    /// The first message every client receives: the uncompressed initial model.
    fn initial_message<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.initial_message())
    }

    /// Decodes the clients' messages, given as `(device_id, weight, message)` tuples, averages
    /// them weighted and returns the downstream message for every client. Nothing changes unless
    /// every message decodes.
    fn aggregate<'py>(
        &mut self,
        py: Python<'py>,
        messages: Vec<(u64, u64, Vec<u8>)>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        let bytes = py
            .detach(|| {
                let msgs: Vec<ClientMessage<'_>> = messages
                    .iter()
                    .map(|(device_id, weight, bytes)| ClientMessage {
                        device_id: *device_id,
                        weight: *weight,
                        bytes,
                    })
                    .collect();
                inner.aggregate(&msgs)
            })
            .map_err(fl_err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The global model every client holds after the last downstream message.
    #[getter]
    fn global_model<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        model_to_py(
            py,
            self.inner.layout(),
            &self.dtypes,
            Cow::Borrowed(self.inner.global_model()),
        )
    }

    /// Rounds aggregated so far.
    #[getter]
    fn round(&self) -> u64 {
        self.inner.state().round
    }

    /// Everything the server keeps between rounds, as JSON (for `resume`).
    fn state_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.state()).map_err(json_err)
    }

    /// Everything the server keeps between rounds, in nnc's binary form (for `resume`; smaller
    /// and faster than the JSON).
    fn state_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.inner.state().to_py(py)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<ReduceArgs<'py>> {
        let this = slf.borrow();
        pickle_args(
            &slf.get_type(),
            this.inner.layout(),
            &this.dtypes,
            &this.opts,
            this.inner.state(),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "ServerCodec(round={}, clients={}, values={})",
            self.inner.state().round,
            self.inner.state().upstream.len(),
            self.inner.layout().num_values()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_the_fl_options_fields() {
        let names = option_names();
        for k in [
            "compress_upstream",
            "compress_downstream",
            "compress_differences",
            "err_accumulation",
            "qp",
            "diff_qp",
            "sparsity",
            "tca",
            "bitdepth",
            "bnf",
            "approx_method",
        ] {
            assert!(names.iter().any(|n| n == k), "{k} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n == "compressed"));
    }
}
