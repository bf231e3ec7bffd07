//! `nnc.EncoderState` / `nnc.DecoderState`: the incremental coding state (TCA base levels,
//! parameter update tree, HDSP history) as Python objects, picklable through their compact
//! binary form and convertible to JSON; `nnc.StateChanges`: what a deferred call would do to one.

use numpy::PyArray1;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use nnc_tensor::IncrementalState;

use crate::arrays::bytes_like;
use crate::errors::{invalid, to_py};

/// Parses a state's JSON form.
pub fn state_from_json(json: &str) -> PyResult<IncrementalState> {
    serde_json::from_str(json).map_err(|e| invalid(format!("not an incremental state: {e}")))
}

/// Serialises a state to JSON.
pub fn state_to_json(state: &IncrementalState) -> PyResult<String> {
    serde_json::to_string(state).map_err(|e| invalid(format!("state cannot be serialised: {e}")))
}

/// The state of a call that reads or updates it, held for the whole call: another thread's call
/// on the same state fails instead of seeing it half updated.
pub fn borrow_state<'py, T>(state: &Bound<'py, T>) -> PyResult<PyRefMut<'py, T>>
where
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False>,
{
    state.try_borrow_mut().map_err(|_| {
        invalid("the state is in use by another call (a state serves one call at a time)")
    })
}

macro_rules! state_class {
    ($name:ident, $pyname:literal, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "nnc", name = $pyname, eq, skip_from_py_object)]
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            /// The state proper.
            pub inner: IncrementalState,
        }

        #[pymethods]
        impl $name {
            /// The state before the first bitstream of a sequence.
            #[new]
            fn py_new() -> Self {
                Self::default()
            }

            /// The state as a JSON string (stable across processes and versions of this package
            /// that share the format).
            fn to_json(&self) -> PyResult<String> {
                state_to_json(&self.inner)
            }

            /// Rebuilds a state from [`to_json`]'s output.
            #[classmethod]
            fn from_json(_cls: &Bound<'_, PyType>, json: &str) -> PyResult<Self> {
                Ok(Self {
                    inner: state_from_json(json)?,
                })
            }

            /// The state in its compact binary form (`nnc-state`, a version byte, the fields with
            /// variable-length integers): about a third of the JSON's size, written about 9 and
            /// read 7 times faster for a large model.
            fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
                let bytes = self.inner.to_bytes().map_err(|e| to_py(&e))?;
                Ok(PyBytes::new(py, &bytes))
            }

            /// Rebuilds a state from [`to_bytes`]'s output (`bytes`, `bytearray` or
            /// `memoryview`, as read from a file or an `mmap`).
            #[classmethod]
            fn from_bytes(_cls: &Bound<'_, PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
                let data = bytes_like(data, "a saved state")?;
                let bytes = data.as_bytes();
                let inner = data
                    .py()
                    .detach(|| IncrementalState::from_bytes(bytes))
                    .map_err(|e| to_py(&e))?;
                Ok(Self { inner })
            }

            /// Names of the tensors the state holds a base for.
            #[getter]
            fn tensor_names(&self) -> Vec<String> {
                self.inner.bases.keys().cloned().collect()
            }

            /// `device_id` of the updates seen so far (0: none yet).
            #[getter]
            fn device_id(&self) -> u64 {
                self.inner.device_id
            }

            /// The base levels of tensor `name` (the last update's integers, flattened), or
            /// `None`.
            fn base_levels<'py>(
                &self,
                py: Python<'py>,
                name: &str,
            ) -> Option<Bound<'py, PyArray1<i32>>> {
                self.inner
                    .bases
                    .get(name)
                    .map(|b| PyArray1::from_slice(py, &b.levels))
            }

            /// An independent copy.
            fn copy(&self) -> Self {
                self.clone()
            }

            fn __copy__(&self) -> Self {
                self.clone()
            }

            fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
                self.clone()
            }

            fn __reduce__<'py>(
                slf: &Bound<'py, Self>,
            ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
                let bytes = slf.borrow().to_bytes(slf.py())?;
                Ok((slf.get_type().getattr("from_bytes")?, (bytes,)))
            }

            fn __repr__(&self) -> String {
                format!(
                    "{}(tensors={}, device_id={})",
                    $pyname,
                    self.inner.bases.len(),
                    self.inner.device_id
                )
            }
        }
    };
}

state_class!(
    EncoderState,
    "EncoderState",
    "Incremental encoder state: what the encoder remembers between the bitstreams of a sequence \
     (TCA base levels, update-tree depths, HDSP choices). Pickles in its binary form."
);
state_class!(
    DecoderState,
    "DecoderState",
    "Incremental decoder state: what the decoder remembers between the bitstreams of a sequence \
     (TCA base levels, update-tree depths, HDSP history). Pickles in its binary form."
);

/// Which state a [`StateChanges`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// An [`EncoderState`] (`encode(..., deferred=True)`).
    Encoder,
    /// A [`DecoderState`] (`decode(..., deferred=True)`).
    Decoder,
}

/// The changes a deferred `encode` or `decode` makes to its state, not yet made: `apply(state)`
/// makes them once the caller accepts the call's output (the message was sent, the decoded
/// values passed its checks); dropping them leaves the state as it was. A `StateChanges` is
/// spent by `apply`, whether it succeeds or not.
#[pyclass(module = "nnc", name = "StateChanges")]
#[derive(Debug)]
pub struct StateChanges {
    changes: Option<nnc_tensor::StateChanges>,
    side: Side,
}

impl StateChanges {
    /// Changes made by a deferred call on the `side` state.
    pub fn new(changes: nnc_tensor::StateChanges, side: Side) -> Self {
        Self {
            changes: Some(changes),
            side,
        }
    }

    fn spent() -> PyErr {
        invalid("these state changes were applied already (a StateChanges applies once)")
    }

    /// Spends the changes on `state`.
    fn apply_to(&mut self, state: &mut IncrementalState) -> PyResult<()> {
        let changes = self.changes.take().ok_or_else(Self::spent)?;
        changes.apply(state).map_err(|e| to_py(&e))
    }
}

#[pymethods]
impl StateChanges {
    /// Makes the changes in `state`, which must be the state the deferred call was given, as it
    /// was then (an `EncoderState` for `encode`'s changes, a `DecoderState` for `decode`'s).
    /// Changes applied to another state, or to the same state after other changes, raise
    /// `nnc.StateMismatchError` and change nothing.
    fn apply(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let wrong = |want: &str| {
            PyTypeError::new_err(format!(
                "these changes apply to a {want}, not to {}",
                state
                    .get_type()
                    .name()
                    .map_or_else(|_| "this object".to_string(), |n| n.to_string())
            ))
        };
        match self.side {
            Side::Encoder => {
                let st = state.cast::<EncoderState>();
                self.apply_to(&mut borrow_state(st.map_err(|_| wrong("EncoderState"))?)?.inner)
            }
            Side::Decoder => {
                let st = state.cast::<DecoderState>();
                self.apply_to(&mut borrow_state(st.map_err(|_| wrong("DecoderState"))?)?.inner)
            }
        }
    }

    /// The tensors whose base the changes set, in coding order (empty once applied).
    #[getter]
    fn tensor_names(&self) -> Vec<String> {
        self.changes
            .as_ref()
            .map(|c| c.tensor_names().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether `apply` was called.
    #[getter]
    fn applied(&self) -> bool {
        self.changes.is_none()
    }

    fn __repr__(&self) -> String {
        let side = match self.side {
            Side::Encoder => "EncoderState",
            Side::Decoder => "DecoderState",
        };
        match &self.changes {
            Some(c) => format!(
                "StateChanges(for={side}, tensors={})",
                c.tensor_names().count()
            ),
            None => format!("StateChanges(for={side}, applied)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::TensorBase;

    #[test]
    fn json_round_trips_and_rejects_garbage() {
        let mut s = IncrementalState {
            device_id: 3,
            ..Default::default()
        };
        s.bases.insert(
            "w".into(),
            TensorBase {
                levels: vec![1, -2, 0],
                put_node_depth: 2,
                parameter_id: 0,
            },
        );
        let json = state_to_json(&s).unwrap();
        assert_eq!(state_from_json(&json).unwrap(), s);
        assert!(serde_json::from_str::<IncrementalState>("{\"bases\": 3}").is_err());
    }
}
