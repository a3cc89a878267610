//! The one way a binding calls into a pure core: without the GIL, with panics caught, and
//! with the core's error mapped to an exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use thrifty_core::CoreResult;

use crate::errors::{core_error, panic_error};

/// Run `work` with the GIL released. A `CoreError` becomes the matching `thrifty` exception,
/// and a panic becomes `thrifty.InternalError` instead of crossing the FFI boundary.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> CoreResult<T> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(core_error(py, error)),
        Err(payload) => Err(panic_error(py, payload)),
    }
}
