//! Python exceptions for the codec's errors. Every exception carries the Rust error's message
//! (which names the NNR unit, its byte offset and the tensor where one applies).

use nnc_tensor::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    nnc,
    NncError,
    PyValueError,
    "Base class of every error the codec raises (a ValueError)."
);
create_exception!(nnc, MalformedError, NncError, "The bitstream is invalid.");
create_exception!(
    nnc,
    UnsupportedError,
    NncError,
    "The bitstream or the options use something the codec does not implement."
);
create_exception!(
    nnc,
    LimitExceededError,
    NncError,
    "Decoding would exceed a resource limit (elements per tensor, per stream, units)."
);
create_exception!(
    nnc,
    StateMismatchError,
    NncError,
    "The incremental state does not fit the bitstream (wrong base, skipped or repeated update)."
);
create_exception!(
    nnc,
    InvalidArgumentError,
    NncError,
    "The arguments are inconsistent or cannot be coded."
);

/// Converts a codec error into the Python exception of its kind.
pub fn to_py(err: &Error) -> PyErr {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::Malformed => MalformedError::new_err(msg),
        ErrorKind::Unsupported => UnsupportedError::new_err(msg),
        ErrorKind::LimitExceeded => LimitExceededError::new_err(msg),
        ErrorKind::StateMismatch => StateMismatchError::new_err(msg),
        _ => InvalidArgumentError::new_err(msg),
    }
}

/// An [`InvalidArgumentError`] with `msg`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidArgumentError::new_err(msg.into())
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NncError", py.get_type::<NncError>())?;
    m.add("MalformedError", py.get_type::<MalformedError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add("LimitExceededError", py.get_type::<LimitExceededError>())?;
    m.add("StateMismatchError", py.get_type::<StateMismatchError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    Ok(())
}
