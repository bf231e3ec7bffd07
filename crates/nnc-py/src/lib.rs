//! Python bindings of the nnc codec: the extension module `nnc._nnc`, imported as `import nnc`.
//!
//! Job: turn NumPy arrays and Python keyword arguments into `nnc_tensor` calls and back, and give
//! the incremental coding state Python object semantics (copy, pickle, equality). Errors become
//! Python exceptions carrying the Rust message (see [`errors`]).
//!
//! Does not know about: how bitstreams are coded (all of that is `nnc_tensor`), how FL messages
//! are formed (`nnc_fl`), Flower or any other transport, model file formats.
//!
//! Main items: [`codec::py_encode`] (`nnc.encode`), [`codec::py_decode`] (`nnc.decode`),
//! [`state::EncoderState`] / [`state::DecoderState`] (`nnc.EncoderState` / `nnc.DecoderState`),
//! [`fl::PyClientCodec`] / [`fl::PyServerCodec`] (`nnc.ClientCodec` / `nnc.ServerCodec`, the
//! `nnc_fl` codecs), the exception classes of [`errors`].
//!
//! Built with maturin (`pip install ./crates/nnc-py`); from Python:
//!
//! ```python
//! import numpy as np, nnc
//! w = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
//! bits = nnc.encode(w, qp=-32)            # coded under the name "0", as the reference does
//! back = nnc.decode(bits)["0"]
//! ```
//!
//! The Rust side is an ordinary library too; its conversions are plain functions:
//!
//! ```
//! let state = nnc_tensor::IncrementalState::default();
//! let json = nnc_py::state::state_to_json(&state).map_err(|e| e.to_string())?;
//! assert_eq!(nnc_py::state::state_from_json(&json).map_err(|e| e.to_string())?, state);
//! # Ok::<(), String>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arrays;
pub mod codec;
pub mod errors;
pub mod fl;
pub mod state;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
#[pyo3(name = "_nnc")]
fn nnc_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(codec::py_encode, m)?)?;
    m.add_function(wrap_pyfunction!(codec::py_decode, m)?)?;
    m.add_function(wrap_pyfunction!(codec::py_attributes, m)?)?;
    m.add_function(wrap_pyfunction!(codec::py_attached_files, m)?)?;
    m.add_function(wrap_pyfunction!(codec::py_summary, m)?)?;
    m.add_class::<state::EncoderState>()?;
    m.add_class::<state::DecoderState>()?;
    m.add_class::<state::StateChanges>()?;
    m.add_class::<fl::PyClientCodec>()?;
    m.add_class::<fl::PyServerCodec>()?;
    errors::register(m)?;
    Ok(())
}
