//! The one way a binding calls into a pure core: without the GIL, with panics caught, and
//! with the core's error mapped to an exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use thrifty_core::{CoreError, CoreResult};

use crate::errors::BindResult;

/// Run `work` with the GIL released. A `CoreError` becomes the matching `thrifty` exception,
/// and a panic becomes `thrifty.InternalError` instead of crossing the FFI boundary.
pub fn run<T, F>(py: Python<'_>, work: F) -> BindResult<T>
where
    T: Send,
    F: FnOnce() -> CoreResult<T> + Send,
{
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .unwrap_or_else(|payload| Err(CoreError::panicked(&*payload)))
        .map_err(Into::into)
}
