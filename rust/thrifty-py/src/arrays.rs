//! Zero-copy borrows of NumPy arrays with dtype, layout and shape checks that name the
//! argument.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use thrifty_core::CoreError;

use crate::errors::{BindResult, ThriftyErr};

/// A read-only, C-contiguous borrow of `object` as an array of `T`, with its shape.
pub fn borrow<'py, T: Element>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
    dtype_name: &str,
) -> BindResult<(PyReadonlyArrayDyn<'py, T>, Vec<usize>)> {
    let array = object.cast::<PyArrayDyn<T>>().map_err(|_| {
        ThriftyErr::dtype(
            argument,
            format!(
                "expected a numpy array of {dtype_name}, got {}",
                describe(object)
            ),
        )
    })?;
    if !array.is_c_contiguous() {
        return Err(ThriftyErr::dtype(
            argument,
            "expected a C-contiguous array, got a strided view (use numpy.ascontiguousarray)",
        ));
    }
    let shape = array.shape().to_vec();
    Ok((array.readonly(), shape))
}

/// [`borrow`], for an array that must have `ndim` dimensions.
pub fn borrow_nd<'py, T: Element>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
    dtype_name: &str,
    ndim: usize,
) -> BindResult<(PyReadonlyArrayDyn<'py, T>, Vec<usize>)> {
    let (array, shape) = borrow(object, argument, dtype_name)?;
    if shape.len() != ndim {
        return Err(CoreError::shape(
            argument,
            format!("must be {ndim}-D, got shape {}", format_shape(&shape)),
        )
        .into());
    }
    Ok((array, shape))
}

/// The contiguous data of a borrowed array.
pub fn slice<'a, T: Element>(
    array: &'a PyReadonlyArrayDyn<'_, T>,
    argument: &'static str,
) -> BindResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| ThriftyErr::dtype(argument, "expected a C-contiguous array"))
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

/// The name of `object`'s type, for messages about what was received.
pub fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".to_owned())
}

fn describe(object: &Bound<'_, PyAny>) -> String {
    match object.getattr("dtype") {
        Ok(dtype) => format!("{} of dtype {}", type_name(object), dtype),
        Err(_) => type_name(object),
    }
}
