//! Mapping of core errors and caught panics to `thrifty.errors` exceptions.
//!
//! The exception classes live in Python (`python/thrifty/errors.py`) so that they can carry
//! standard mixins (`ValueError`, `TypeError`) and be typed; this file only looks them up.

use pyo3::prelude::*;
use thrifty_core::CoreError;

/// Raise `thrifty.errors.<class_name>(message, argument=argument)`.
pub fn thrifty_error(
    py: Python<'_>,
    class_name: &str,
    message: String,
    argument: Option<&str>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("thrifty.errors")?.getattr(class_name)?;
        let instance = class.call1((message.clone(), argument))?;
        Ok(PyErr::from_value(instance))
    };
    // If thrifty.errors itself cannot be imported the package is broken; say so plainly
    // rather than losing the original message.
    build().unwrap_or_else(|e| e)
}

pub fn core_error(py: Python<'_>, error: CoreError) -> PyErr {
    let class_name = match &error {
        CoreError::InvalidValue { .. } => "InvalidArgumentError",
        CoreError::Shape { .. } => "ShapeError",
        CoreError::NonFinite { .. } => "NonFiniteError",
        CoreError::PeerLost(_) => "PeerLost",
        CoreError::Timeout(_) => "CollectiveTimeout",
        CoreError::Authentication(_) => "AuthenticationError",
        CoreError::Aborted(_) | CoreError::Mismatch(_) => "CollectiveAborted",
        CoreError::Internal(_) => "InternalError",
    };
    let argument = error.argument();
    thrifty_error(py, class_name, error.to_string(), argument)
}

pub fn dtype_error(py: Python<'_>, argument: &str, message: String) -> PyErr {
    thrifty_error(
        py,
        "DTypeError",
        format!("{argument}: {message}"),
        Some(argument),
    )
}

pub fn panic_error(py: Python<'_>, payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    thrifty_error(
        py,
        "InternalError",
        format!("internal error (a bug in thrifty, please report it): {what}"),
        None,
    )
}
