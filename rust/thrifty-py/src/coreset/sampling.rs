//! Bindings for the samplers of `thrifty-coreset`: weighted sampling and RS2 permutations.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use thrifty_coreset::sampling::{self, Index};

use crate::arrays::{borrow_nd, slice};
use crate::call::run;
use crate::errors::BindResult;

/// Drawn indices with their importance weights; `threshold` is the rank threshold of a draw
/// without replacement (None with replacement).
#[pyclass(module = "thrifty._native", name = "Sample", frozen, get_all)]
struct Sample {
    indices: Py<PyArray1<i64>>,
    weights: Py<PyArray1<f64>>,
    threshold: Option<f64>,
}

/// A 1-D float64 array of scores, borrowed.
fn scores_of<'py>(object: &Bound<'py, PyAny>) -> BindResult<numpy::PyReadonlyArrayDyn<'py, f64>> {
    Ok(borrow_nd::<f64>(object, "scores", "float64", 1)?.0)
}

/// coreset_sample(scores, m, replace, seed) -> Sample
#[pyfunction]
#[pyo3(signature = (scores, m, replace=true, seed=0))]
fn coreset_sample(
    py: Python<'_>,
    scores: &Bound<'_, PyAny>,
    m: usize,
    replace: bool,
    seed: u64,
) -> BindResult<Sample> {
    let array = scores_of(scores)?;
    let data = slice(&array, "scores")?;
    let drawn = run(py, || sampling::sample(data, m, replace, seed))?;
    Ok(Sample {
        indices: drawn.indices.into_pyarray(py).unbind(),
        weights: drawn.weights.into_pyarray(py).unbind(),
        threshold: drawn.threshold,
    })
}

/// coreset_permutation(n, seed, salt) -> uint32 (n < 2^32) or uint64 permutation of 0..n
#[pyfunction]
#[pyo3(signature = (n, seed=0, salt=0))]
fn coreset_permutation(py: Python<'_>, n: u64, seed: u64, salt: u64) -> BindResult<Py<PyAny>> {
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
    fn new(py: Python<'_>, scores: &Bound<'_, PyAny>) -> BindResult<Self> {
        let array = scores_of(scores)?;
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
    ) -> BindResult<Bound<'py, PyArray1<i64>>> {
        let drawn = run(py, || self.inner.draw(m, seed))?;
        let indices: Vec<i64> = drawn.into_iter().map(|i| i as i64).collect();
        Ok(indices.into_pyarray(py))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Sample>()?;
    m.add_class::<CoresetAliasTable>()?;
    m.add_function(wrap_pyfunction!(coreset_sample, m)?)?;
    m.add_function(wrap_pyfunction!(coreset_permutation, m)?)?;
    Ok(())
}
