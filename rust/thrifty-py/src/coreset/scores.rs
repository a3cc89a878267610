//! Bindings of `thrifty_coreset::scores`: leverage, Lewis weights, sensitivities, and the
//! weighted lp regression solve.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use thrifty_core::CoreError;
use thrifty_coreset::scores::{self, LewisOptions, RegressionOptions, Rows, SketchOptions};

use crate::arrays::{borrow, expect_ndim, shape, slice};
use crate::call::run;

/// A 2-D float64 array, borrowed, with its (rows, columns).
fn matrix<'py>(
    object: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<(PyReadonlyArrayDyn<'py, f64>, usize, usize)> {
    let array = borrow::<f64>(object, argument, "float64")?;
    let dims = shape(&array);
    expect_ndim(object.py(), &dims, 2, argument)?;
    Ok((array, dims[0], dims[1]))
}

/// A 1-D float64 array, borrowed.
fn vector<'py>(
    object: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f64>> {
    let array = borrow::<f64>(object, argument, "float64")?;
    expect_ndim(object.py(), &shape(&array), 1, argument)?;
    Ok(array)
}

/// coreset_leverage_scores(A, method, seed, eps) -> float64 (n,)
#[pyfunction]
#[pyo3(signature = (a, method="qr", seed=0, eps=0.5))]
fn coreset_leverage_scores<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    method: &str,
    seed: u64,
    eps: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let method = method.to_owned();
    let scores = run(py, || {
        let rows = Rows::new(data, n, d, "A")?;
        match method.as_str() {
            "qr" => scores::leverage_scores(&rows),
            "sketch" => scores::sketched_leverage_scores(&rows, &SketchOptions { seed, eps }),
            other => Err(CoreError::invalid(
                "method",
                format!("must be 'qr' or 'sketch', got {other:?}"),
            )),
        }
    })?;
    Ok(scores.into_pyarray(py))
}

/// coreset_root_leverage_scores(A) -> float64 (n,)
#[pyfunction]
fn coreset_root_leverage_scores<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let scores = run(py, || {
        scores::root_leverage_scores(&Rows::new(data, n, d, "A")?)
    })?;
    Ok(scores.into_pyarray(py))
}

type Lewis<'py> = (Bound<'py, PyArray1<f64>>, f64, usize);

/// coreset_lewis_weights(A, p, iters, tol) -> (weights, residual, iterations)
#[pyfunction]
#[pyo3(signature = (a, p, iters=1000, tol=1e-6))]
fn coreset_lewis_weights<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    p: f64,
    iters: usize,
    tol: f64,
) -> PyResult<Lewis<'py>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let lewis = run(py, || {
        scores::lewis_weights(
            &Rows::new(data, n, d, "A")?,
            p,
            &LewisOptions { iters, tol },
        )
    })?;
    Ok((
        lewis.weights.into_pyarray(py),
        lewis.residual,
        lewis.iterations,
    ))
}

/// coreset_lp_sensitivities(A, p, iters, tol) -> float64 (n,)
#[pyfunction]
#[pyo3(signature = (a, p, iters=1000, tol=1e-6))]
fn coreset_lp_sensitivities<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    p: f64,
    iters: usize,
    tol: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let bounds = run(py, || {
        scores::lp_sensitivities(
            &Rows::new(data, n, d, "A")?,
            p,
            &LewisOptions { iters, tol },
        )
    })?;
    Ok(bounds.into_pyarray(py))
}

type Kmeans<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// coreset_kmeans_sensitivities(X, k, seed) -> (sensitivities, seeds, assignment)
#[pyfunction]
#[pyo3(signature = (x, k, seed=0))]
fn coreset_kmeans_sensitivities<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k: usize,
    seed: u64,
) -> PyResult<Kmeans<'py>> {
    let (array, n, d) = matrix(x, "X")?;
    let data = slice(&array, "X")?;
    let out = run(py, || scores::kmeans_sensitivities(data, n, d, k, seed))?;
    let to_i64 = |v: Vec<usize>| v.into_iter().map(|i| i as i64).collect::<Vec<i64>>();
    Ok((
        out.sensitivities.into_pyarray(py),
        to_i64(out.seeds).into_pyarray(py),
        to_i64(out.assignment).into_pyarray(py),
    ))
}

type Fit<'py> = (Bound<'py, PyArray1<f64>>, f64, usize);

/// coreset_lp_regression(A, b, p, weights, iters, tol) -> (x, cost, iterations)
#[pyfunction]
#[pyo3(signature = (a, b, p, weights=None, iters=100, tol=1e-10))]
#[allow(clippy::too_many_arguments)]
fn coreset_lp_regression<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    p: f64,
    weights: Option<&Bound<'py, PyAny>>,
    iters: usize,
    tol: f64,
) -> PyResult<Fit<'py>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let b_array = vector(b, "b")?;
    let b_data = slice(&b_array, "b")?;
    let w_array = weights.map(|w| vector(w, "weights")).transpose()?;
    let w_data = w_array.as_ref().map(|w| slice(w, "weights")).transpose()?;
    let fit = run(py, || {
        scores::lp_regression(
            &Rows::new(data, n, d, "A")?,
            b_data,
            p,
            w_data,
            &RegressionOptions { iters, tol },
        )
    })?;
    Ok((fit.x.into_pyarray(py), fit.cost, fit.iterations))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coreset_leverage_scores, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_root_leverage_scores, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lewis_weights, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lp_sensitivities, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_kmeans_sensitivities, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lp_regression, m)?)?;
    Ok(())
}
