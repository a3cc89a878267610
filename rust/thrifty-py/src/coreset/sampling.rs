//! Bindings for the samplers of `thrifty-coreset`: weighted sampling and RS2 permutations.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use thrifty_coreset::sampling::{self, Index};

use crate::arrays::{borrow, expect_ndim, shape, slice};
use crate::call::run;

type Drawn<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Option<f64>,
);

/// coreset_sample(scores, m, replace, seed) -> (int64 indices, float64 weights, threshold)
#[pyfunction]
#[pyo3(signature = (scores, m, replace=true, seed=0))]
fn coreset_sample<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    m: usize,
    replace: bool,
    seed: u64,
) -> PyResult<Drawn<'py>> {
    let array = borrow::<f64>(scores, "scores", "float64")?;
    expect_ndim(py, &shape(&array), 1, "scores")?;
    let data = slice(&array, "scores")?;
    let drawn = run(py, || sampling::sample(data, m, replace, seed))?;
    Ok((
        drawn.indices.into_pyarray(py),
        drawn.weights.into_pyarray(py),
        drawn.threshold,
    ))
}

/// coreset_permutation(n, seed, salt) -> uint32 (n < 2^32) or uint64 permutation of 0..n
#[pyfunction]
#[pyo3(signature = (n, seed=0, salt=0))]
fn coreset_permutation(py: Python<'_>, n: u64, seed: u64, salt: u64) -> PyResult<Py<PyAny>> {
    if n < u32::LIMIT {
        let p = run(py, || sampling::permutation::<u32>(n, seed, salt))?;
        Ok(p.into_pyarray(py).into_any().unbind())
    } else {
        let p = run(py, || sampling::permutation::<u64>(n, seed, salt))?;
        Ok(p.into_pyarray(py).into_any().unbind())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coreset_sample, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_permutation, m)?)?;
    Ok(())
}
