//! String options (`method="fft"`, `quantize="int8"`), parsed once into their core enums.
//!
//! Each option enum lists its values once, in its `Choice` implementation in the core; the
//! binding takes `Wrap<T>` arguments (polars' `Wrap<T>: FromPyObject`) and exports every
//! enum's names as a tuple of `_native`, which the Python layer uses instead of lists of
//! its own.

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::Borrowed;
use thrifty_core::{Choice, CoreError};

use crate::errors::ThriftyErr;

/// An option argument parsed into its enum; a name outside the enum, or a value that is not
/// a string, is an `InvalidArgumentError` naming the argument and every allowed name.
pub struct Wrap<T>(pub T);

impl<'a, 'py, T: Choice> FromPyObject<'a, 'py> for Wrap<T> {
    type Error = PyErr;

    fn extract(object: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let parsed = match object.extract::<String>() {
            Ok(name) => T::parse(&name),
            Err(_) => {
                let got = object
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "an object".to_owned());
                Err(CoreError::invalid(
                    T::ARGUMENT,
                    format!("must be one of {}, got a {got}", T::listed()),
                ))
            }
        };
        parsed.map(Wrap).map_err(|e| ThriftyErr::from(e).into())
    }
}

/// Export `T`'s names as the tuple `_native.<name>`.
pub fn export<T: Choice>(m: &Bound<'_, PyModule>, name: &str) -> PyResult<()> {
    m.add(name, PyTuple::new(m.py(), T::names())?)
}
