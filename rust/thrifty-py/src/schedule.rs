//! Bindings for `thrifty-schedule`: L-GreCo levels and Small-Gain Nash certificates.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use thrifty_schedule::lgreco::{lgreco, Rounding};
use thrifty_schedule::small_gain::{small_gain_certificate, Lipschitz};

use crate::arrays::{borrow, expect_ndim, shape, slice};
use crate::call::run;
use crate::errors::thrifty_error;

/// schedule_lgreco(errors, sizes, budget, buckets) -> int64 level per layer; no buckets:
/// integer errors, exact
#[pyfunction]
#[pyo3(signature = (errors, sizes, budget, buckets=None))]
fn schedule_lgreco<'py>(
    py: Python<'py>,
    errors: &Bound<'py, PyAny>,
    sizes: &Bound<'py, PyAny>,
    budget: f64,
    buckets: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let errors_array = borrow::<f64>(errors, "errors", "float64")?;
    let sizes_array = borrow::<f64>(sizes, "sizes", "float64")?;
    let dims = shape(&errors_array);
    expect_ndim(py, &dims, 2, "errors")?;
    let size_dims = shape(&sizes_array);
    if size_dims != dims {
        return Err(thrifty_error(
            py,
            "ShapeError",
            format!(
                "sizes must have the shape of errors {}, got {}",
                crate::arrays::format_shape(&dims),
                crate::arrays::format_shape(&size_dims)
            ),
            Some("sizes"),
        ));
    }
    let errors_data = slice(&errors_array, "errors")?;
    let sizes_data = slice(&sizes_array, "sizes")?;
    let rounding = buckets.map_or(Rounding::Integer, Rounding::Buckets);
    let levels = run(py, || {
        lgreco(errors_data, sizes_data, dims[0], dims[1], budget, rounding)
    })?;
    Ok(levels.into_pyarray(py))
}

type CertificateTuple<'py> = (
    Bound<'py, PyArray1<f64>>,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    bool,
    String,
);

/// schedule_small_gain_certificate(mu, L, lipschitz, per_block) -> (weights, margin,
/// lipschitz_weighted, small_gain, step, rate, max_step_euler, max_step_rk4, certified, reason)
#[pyfunction]
#[pyo3(signature = (mu, coupling, lipschitz, per_block))]
fn schedule_small_gain_certificate<'py>(
    py: Python<'py>,
    mu: &Bound<'py, PyAny>,
    coupling: &Bound<'py, PyAny>,
    lipschitz: &Bound<'py, PyAny>,
    per_block: bool,
) -> PyResult<CertificateTuple<'py>> {
    let mu_array = borrow::<f64>(mu, "mu", "float64")?;
    expect_ndim(py, &shape(&mu_array), 1, "mu")?;
    let coupling_array = borrow::<f64>(coupling, "L", "float64")?;
    expect_ndim(py, &shape(&coupling_array), 2, "L")?;
    let lipschitz_array = borrow::<f64>(lipschitz, "lipschitz", "float64")?;
    expect_ndim(py, &shape(&lipschitz_array), 1, "lipschitz")?;
    let mu_data = slice(&mu_array, "mu")?;
    let coupling_data = slice(&coupling_array, "L")?;
    let lipschitz_data = slice(&lipschitz_array, "lipschitz")?;
    let bound = if per_block {
        Lipschitz::Blocks(lipschitz_data.to_vec())
    } else {
        match lipschitz_data {
            [one] => Lipschitz::Global(*one),
            _ => {
                return Err(thrifty_error(
                    py,
                    "ShapeError",
                    format!(
                        "lipschitz must hold one value unless per_block, got {}",
                        lipschitz_data.len()
                    ),
                    Some("lipschitz"),
                ))
            }
        }
    };
    let c = run(py, || {
        small_gain_certificate(mu_data, coupling_data, &bound)
    })?;
    Ok((
        c.weights.into_pyarray(py),
        c.margin,
        c.lipschitz_weighted,
        c.small_gain,
        c.step,
        c.rate,
        c.max_step_euler,
        c.max_step_rk4,
        c.certified,
        c.reason,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(schedule_lgreco, m)?)?;
    m.add_function(wrap_pyfunction!(schedule_small_gain_certificate, m)?)?;
    Ok(())
}
