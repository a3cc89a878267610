//! Bindings of `thrifty_coreset::scores`: leverage, Lewis weights, sensitivities, and the
//! weighted lp regression solve.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use thrifty_coreset::scores::{
    self, LeverageMethod, LewisOptions, RegressionOptions, Rows, SketchOptions,
};

use crate::arrays::{borrow_nd, slice};
use crate::call::run;
use crate::errors::BindResult;
use crate::options::{export, Wrap};

/// A 2-D float64 array, borrowed, with its (rows, columns).
fn matrix<'py>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
) -> BindResult<(PyReadonlyArrayDyn<'py, f64>, usize, usize)> {
    let (array, dims) = borrow_nd::<f64>(object, argument, "float64", 2)?;
    Ok((array, dims[0], dims[1]))
}

/// A 1-D float64 array, borrowed.
fn vector<'py>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
) -> BindResult<PyReadonlyArrayDyn<'py, f64>> {
    Ok(borrow_nd::<f64>(object, argument, "float64", 1)?.0)
}

/// coreset_leverage_scores(A, method, seed, eps) -> float64 (n,)
#[pyfunction]
#[pyo3(signature = (a, method=Wrap(LeverageMethod::Qr), seed=0, eps=0.5))]
fn coreset_leverage_scores<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    method: Wrap<LeverageMethod>,
    seed: u64,
    eps: f64,
) -> BindResult<Bound<'py, PyArray1<f64>>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let scores = run(py, || {
        let sketch = SketchOptions { seed, eps };
        scores::leverage_scores_by(&Rows::new(data, n, d, "A")?, method.0, &sketch)
    })?;
    Ok(scores.into_pyarray(py))
}

/// coreset_root_leverage_scores(A) -> float64 (n,)
#[pyfunction]
fn coreset_root_leverage_scores<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
) -> BindResult<Bound<'py, PyArray1<f64>>> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let scores = run(py, || {
        scores::root_leverage_scores(&Rows::new(data, n, d, "A")?)
    })?;
    Ok(scores.into_pyarray(py))
}

/// lp Lewis weights, with the residual and the iterations the iteration took.
#[pyclass(module = "thrifty._native", name = "LewisWeights", frozen, get_all)]
struct LewisWeights {
    weights: Py<PyArray1<f64>>,
    residual: f64,
    iterations: usize,
}

/// coreset_lewis_weights(A, p, iters, tol) -> LewisWeights
#[pyfunction]
#[pyo3(signature = (a, p, iters=1000, tol=1e-6))]
fn coreset_lewis_weights(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    p: f64,
    iters: usize,
    tol: f64,
) -> BindResult<LewisWeights> {
    let (array, n, d) = matrix(a, "A")?;
    let data = slice(&array, "A")?;
    let lewis = run(py, || {
        scores::lewis_weights(
            &Rows::new(data, n, d, "A")?,
            p,
            &LewisOptions { iters, tol },
        )
    })?;
    Ok(LewisWeights {
        weights: lewis.weights.into_pyarray(py).unbind(),
        residual: lewis.residual,
        iterations: lewis.iterations,
    })
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
) -> BindResult<Bound<'py, PyArray1<f64>>> {
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

/// k-means sensitivity bounds, with the D^2 seeds and each point's nearest seed.
#[pyclass(
    module = "thrifty._native",
    name = "KmeansSensitivities",
    frozen,
    get_all
)]
struct KmeansSensitivities {
    sensitivities: Py<PyArray1<f64>>,
    seeds: Py<PyArray1<i64>>,
    assignment: Py<PyArray1<i64>>,
}

/// coreset_kmeans_sensitivities(X, k, seed) -> KmeansSensitivities
#[pyfunction]
#[pyo3(signature = (x, k, seed=0))]
fn coreset_kmeans_sensitivities(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    k: usize,
    seed: u64,
) -> BindResult<KmeansSensitivities> {
    let (array, n, d) = matrix(x, "X")?;
    let data = slice(&array, "X")?;
    let out = run(py, || scores::kmeans_sensitivities(data, n, d, k, seed))?;
    let indices = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        v.into_pyarray(py).unbind()
    };
    Ok(KmeansSensitivities {
        sensitivities: out.sensitivities.into_pyarray(py).unbind(),
        seeds: indices(out.seeds),
        assignment: indices(out.assignment),
    })
}

/// The solution of a weighted lp regression, its cost, and the IRLS iterations run.
#[pyclass(module = "thrifty._native", name = "RegressionFit", frozen, get_all)]
struct RegressionFit {
    x: Py<PyArray1<f64>>,
    cost: f64,
    iterations: usize,
}

/// coreset_lp_regression(A, b, p, weights, iters, tol) -> RegressionFit
#[pyfunction]
#[pyo3(signature = (a, b, p, weights=None, iters=100, tol=1e-10))]
#[allow(clippy::too_many_arguments)]
fn coreset_lp_regression(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    p: f64,
    weights: Option<&Bound<'_, PyAny>>,
    iters: usize,
    tol: f64,
) -> BindResult<RegressionFit> {
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
    Ok(RegressionFit {
        x: fit.x.into_pyarray(py).unbind(),
        cost: fit.cost,
        iterations: fit.iterations,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LewisWeights>()?;
    m.add_class::<KmeansSensitivities>()?;
    m.add_class::<RegressionFit>()?;
    m.add_function(wrap_pyfunction!(coreset_leverage_scores, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_root_leverage_scores, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lewis_weights, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lp_sensitivities, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_kmeans_sensitivities, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_lp_regression, m)?)?;
    export::<LeverageMethod>(m, "LEVERAGE_METHODS")?;
    Ok(())
}
