//! The one error type of the bindings: a core error, a refused array, or a caught panic,
//! each raised as its class from `thrifty.errors`.
//!
//! The classes are defined in Python (`python/thrifty/errors.py`), where they carry the
//! standard mixins (`ValueError`, `TypeError`) and are typed; `import_exception!` binds each
//! one here by its place, so no call site names a class by a string. A binding returns
//! [`BindResult`], and `?` turns a [`CoreError`] or a Python error into a [`ThriftyErr`]
//! (polars' `PyPolarsErr`), which PyO3 raises through `From<ThriftyErr> for PyErr`.

use pyo3::{import_exception, PyErr};
use thrifty_core::CoreError;

import_exception!(thrifty.errors, InvalidArgumentError);
import_exception!(thrifty.errors, ShapeError);
import_exception!(thrifty.errors, NonFiniteError);
import_exception!(thrifty.errors, DTypeError);
import_exception!(thrifty.errors, InternalError);
import_exception!(thrifty.errors, PeerLost);
import_exception!(thrifty.errors, CollectiveTimeout);
import_exception!(thrifty.errors, AuthenticationError);
import_exception!(thrifty.errors, CollectiveAborted);

/// Why a binding failed.
#[derive(Debug)]
pub enum ThriftyErr {
    /// The core refused the input or failed.
    Core(CoreError),
    /// An array argument of the wrong dtype or memory layout, or not an array at all.
    DType {
        argument: &'static str,
        message: String,
    },
    /// Python raised it (a failed conversion, a signal): it goes back as it is.
    Python(PyErr),
}

/// What a binding returns.
pub type BindResult<T> = Result<T, ThriftyErr>;

impl ThriftyErr {
    pub fn dtype(argument: &'static str, message: impl Into<String>) -> Self {
        Self::DType {
            argument,
            message: message.into(),
        }
    }
}

impl From<CoreError> for ThriftyErr {
    fn from(error: CoreError) -> Self {
        Self::Core(error)
    }
}

impl From<PyErr> for ThriftyErr {
    fn from(error: PyErr) -> Self {
        Self::Python(error)
    }
}

impl From<ThriftyErr> for PyErr {
    fn from(error: ThriftyErr) -> Self {
        match error {
            ThriftyErr::Core(error) => {
                let arguments = (error.to_string(), error.argument());
                match error {
                    CoreError::InvalidValue { .. } => {
                        PyErr::new::<InvalidArgumentError, _>(arguments)
                    }
                    CoreError::Shape { .. } => PyErr::new::<ShapeError, _>(arguments),
                    CoreError::NonFinite { .. } => PyErr::new::<NonFiniteError, _>(arguments),
                    CoreError::PeerLost(_) => PyErr::new::<PeerLost, _>(arguments),
                    CoreError::Timeout(_) => PyErr::new::<CollectiveTimeout, _>(arguments),
                    CoreError::Authentication(_) => PyErr::new::<AuthenticationError, _>(arguments),
                    CoreError::Aborted(_) | CoreError::Mismatch(_) => {
                        PyErr::new::<CollectiveAborted, _>(arguments)
                    }
                    CoreError::Internal(_) => PyErr::new::<InternalError, _>(arguments),
                }
            }
            ThriftyErr::DType { argument, message } => {
                PyErr::new::<DTypeError, _>((format!("{argument}: {message}"), Some(argument)))
            }
            ThriftyErr::Python(error) => error,
        }
    }
}
