//! Bindings for `thrifty-schedule`: L-GreCo levels and Small-Gain Nash certificates.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use thrifty_core::CoreError;
use thrifty_schedule::lgreco::{lgreco, Rounding};
use thrifty_schedule::small_gain::{small_gain_certificate, Lipschitz};

use crate::arrays::{borrow, borrow_nd, format_shape, slice};
use crate::call::run;
use crate::errors::BindResult;

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
) -> BindResult<Bound<'py, PyArray1<i64>>> {
    let (errors_array, dims) = borrow_nd::<f64>(errors, "errors", "float64", 2)?;
    let (sizes_array, size_dims) = borrow::<f64>(sizes, "sizes", "float64")?;
    if size_dims != dims {
        return Err(CoreError::shape(
            "sizes",
            format!(
                "must have the shape of errors {}, got {}",
                format_shape(&dims),
                format_shape(&size_dims)
            ),
        )
        .into());
    }
    let errors_data = slice(&errors_array, "errors")?;
    let sizes_data = slice(&sizes_array, "sizes")?;
    let rounding = buckets.map_or(Rounding::Integer, Rounding::Buckets);
    let levels = run(py, || {
        lgreco(errors_data, sizes_data, dims[0], dims[1], budget, rounding)
    })?;
    Ok(levels.into_pyarray(py))
}

/// A Small-Gain Nash certificate: block weights, the margin and Lipschitz constant in the
/// weighted norm, the small gain, and the step sizes that contract (see the core's docs).
#[pyclass(
    module = "thrifty._native",
    name = "SmallGainCertificate",
    frozen,
    get_all
)]
struct SmallGainCertificate {
    weights: Py<PyArray1<f64>>,
    margin: f64,
    lipschitz_weighted: f64,
    small_gain: f64,
    step: f64,
    rate: f64,
    max_step_euler: f64,
    max_step_rk4: f64,
    certified: bool,
    reason: String,
}

/// schedule_small_gain_certificate(mu, L, lipschitz, per_block) -> SmallGainCertificate
#[pyfunction]
#[pyo3(signature = (mu, coupling, lipschitz, per_block))]
fn schedule_small_gain_certificate(
    py: Python<'_>,
    mu: &Bound<'_, PyAny>,
    coupling: &Bound<'_, PyAny>,
    lipschitz: &Bound<'_, PyAny>,
    per_block: bool,
) -> BindResult<SmallGainCertificate> {
    let (mu_array, mu_dims) = borrow_nd::<f64>(mu, "mu", "float64", 1)?;
    let (coupling_array, coupling_dims) = borrow_nd::<f64>(coupling, "L", "float64", 2)?;
    if coupling_dims != [mu_dims[0], mu_dims[0]] {
        return Err(CoreError::shape(
            "L",
            format!(
                "must be n x n for the n = {} blocks of mu, got shape {}",
                mu_dims[0],
                format_shape(&coupling_dims)
            ),
        )
        .into());
    }
    let (lipschitz_array, _) = borrow_nd::<f64>(lipschitz, "lipschitz", "float64", 1)?;
    let mu_data = slice(&mu_array, "mu")?;
    let coupling_data = slice(&coupling_array, "L")?;
    let lipschitz_data = slice(&lipschitz_array, "lipschitz")?;
    let bound = match (per_block, lipschitz_data) {
        (true, _) => Lipschitz::Blocks(lipschitz_data.to_vec()),
        (false, [one]) => Lipschitz::Global(*one),
        (false, _) => {
            return Err(CoreError::shape(
                "lipschitz",
                format!(
                    "must hold one value unless per_block, got {}",
                    lipschitz_data.len()
                ),
            )
            .into())
        }
    };
    let c = run(py, || {
        small_gain_certificate(mu_data, coupling_data, &bound)
    })?;
    Ok(SmallGainCertificate {
        weights: c.weights.into_pyarray(py).unbind(),
        margin: c.margin,
        lipschitz_weighted: c.lipschitz_weighted,
        small_gain: c.small_gain,
        step: c.step,
        rate: c.rate,
        max_step_euler: c.max_step_euler,
        max_step_rk4: c.max_step_rk4,
        certified: c.certified,
        reason: c.reason,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SmallGainCertificate>()?;
    m.add_function(wrap_pyfunction!(schedule_lgreco, m)?)?;
    m.add_function(wrap_pyfunction!(schedule_small_gain_certificate, m)?)?;
    Ok(())
}
