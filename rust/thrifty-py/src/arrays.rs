//! Zero-copy borrows of NumPy arrays with dtype and contiguity checks that name the argument.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::dtype_error;

/// A read-only, C-contiguous borrow of `object` as an array of `T`.
pub fn borrow<'py, T: Element>(
    object: &Bound<'py, PyAny>,
    argument: &str,
    dtype_name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let py = object.py();
    let array = object.cast::<PyArrayDyn<T>>().map_err(|_| {
        let got = describe(object);
        dtype_error(
            py,
            argument,
            format!("expected a numpy array of {dtype_name}, got {got}"),
        )
    })?;
    if !array.is_c_contiguous() {
        return Err(dtype_error(
            py,
            argument,
            "expected a C-contiguous array, got a strided view (use numpy.ascontiguousarray)"
                .to_owned(),
        ));
    }
    Ok(array.readonly())
}

/// The shape of a borrowed array.
pub fn shape<T: Element>(array: &PyReadonlyArrayDyn<'_, T>) -> Vec<usize> {
    array.shape().to_vec()
}

/// The contiguous data of a borrowed array.
pub fn slice<'a, T: Element>(
    array: &'a PyReadonlyArrayDyn<'_, T>,
    argument: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| {
        dtype_error(
            array.py(),
            argument,
            "expected a C-contiguous array".to_owned(),
        )
    })
}

/// Check the number of dimensions, naming the argument and the shape received.
pub fn expect_ndim(py: Python<'_>, shape: &[usize], ndim: usize, argument: &str) -> PyResult<()> {
    if shape.len() == ndim {
        return Ok(());
    }
    Err(crate::errors::thrifty_error(
        py,
        "ShapeError",
        format!(
            "{argument} must be {ndim}-D, got shape {}",
            format_shape(shape)
        ),
        Some(argument),
    ))
}

/// `(3, 4)`, the way NumPy prints a shape.
pub fn format_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe(object: &Bound<'_, PyAny>) -> String {
    match object.getattr("dtype") {
        Ok(dtype) => format!("{} of dtype {}", type_name(object), dtype),
        Err(_) => type_name(object),
    }
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".to_owned())
}
