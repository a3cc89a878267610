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

/// An alias table over scores, built once, drawn from many times.
#[pyclass(module = "thrifty._native", name = "CoresetAliasTable", frozen)]
struct CoresetAliasTable {
    inner: sampling::Table,
}

#[pymethods]
impl CoresetAliasTable {
    #[new]
    fn new(py: Python<'_>, scores: &Bound<'_, PyAny>) -> PyResult<Self> {
        let array = borrow::<f64>(scores, "scores", "float64")?;
        expect_ndim(py, &shape(&array), 1, "scores")?;
        let data = slice(&array, "scores")?;
        let inner = run(py, || sampling::Table::new(data))?;
        Ok(Self { inner })
    }

    /// draw(m, seed) -> int64 indices, i.i.d. from scores / sum(scores); the same draws as
    /// coreset_sample(scores, m, True, seed) when that takes the alias path (m >= n / 4)
    #[pyo3(signature = (m, seed=0))]
    fn draw<'py>(
        &self,
        py: Python<'py>,
        m: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let drawn = run(py, || self.inner.draw(m, seed))?;
        let indices: Vec<i64> = drawn.into_iter().map(|i| i as i64).collect();
        Ok(indices.into_pyarray(py))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CoresetAliasTable>()?;
    m.add_function(wrap_pyfunction!(coreset_sample, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_permutation, m)?)?;
    Ok(())
}
