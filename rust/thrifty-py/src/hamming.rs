//! Bindings for `thrifty-hamming`: text-to-pattern distances and packed binary-code search.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use thrifty_core::CoreError;
use thrifty_hamming::text::Method;
use thrifty_hamming::{binary, text};

use crate::arrays::{borrow_nd, format_shape, slice};
use crate::call::run;
use crate::errors::BindResult;
use crate::options::{export, Wrap};

/// A 1-D uint32 array of symbols, borrowed.
fn symbols<'py>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
) -> BindResult<PyReadonlyArrayDyn<'py, u32>> {
    Ok(borrow_nd::<u32>(object, argument, "uint32", 1)?.0)
}

fn text_options(method: Method, k: Option<u32>, eps: Option<f64>, seed: u64) -> text::Options {
    text::Options {
        method,
        k,
        eps,
        seed,
    }
}

/// text_to_pattern(text, pattern, method, k, eps, seed) -> int32 distances, n - m + 1 of them
#[pyfunction]
#[pyo3(signature = (text, pattern, method=Wrap(Method::Auto), k=None, eps=None, seed=0))]
fn text_to_pattern<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
    pattern: &Bound<'py, PyAny>,
    method: Wrap<Method>,
    k: Option<u32>,
    eps: Option<f64>,
    seed: u64,
) -> BindResult<Bound<'py, PyArray1<i32>>> {
    let options = text_options(method.0, k, eps, seed);
    let text_array = symbols(text, "text")?;
    let pattern_array = symbols(pattern, "pattern")?;
    let text_data = slice(&text_array, "text")?;
    let pattern_data = slice(&pattern_array, "pattern")?;
    let distances = run(py, || {
        text::text_to_pattern(text_data, pattern_data, &options)
    })?;
    Ok(distances.into_pyarray(py))
}

/// text_to_patterns(text, patterns, method, k, eps, seed) -> [int32 distances per pattern]
#[pyfunction]
#[pyo3(signature = (text, patterns, method=Wrap(Method::Auto), k=None, eps=None, seed=0))]
fn text_to_patterns<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
    patterns: Vec<Bound<'py, PyAny>>,
    method: Wrap<Method>,
    k: Option<u32>,
    eps: Option<f64>,
    seed: u64,
) -> BindResult<Vec<Bound<'py, PyArray1<i32>>>> {
    let options = text_options(method.0, k, eps, seed);
    let text_array = symbols(text, "text")?;
    let text_data = slice(&text_array, "text")?;
    let pattern_arrays = patterns
        .iter()
        .map(|p| symbols(p, "patterns"))
        .collect::<BindResult<Vec<_>>>()?;
    let pattern_data = pattern_arrays
        .iter()
        .map(|p| slice(p, "patterns"))
        .collect::<BindResult<Vec<&[u32]>>>()?;
    let all = run(py, || {
        text::text_to_patterns(text_data, &pattern_data, &options)
    })?;
    Ok(all.into_iter().map(|d| d.into_pyarray(py)).collect())
}

/// A 2-D uint8 array of packed codes, borrowed, with its (rows, bytes per code).
fn codes<'py>(
    object: &Bound<'py, PyAny>,
    argument: &'static str,
) -> BindResult<(PyReadonlyArrayDyn<'py, u8>, usize, usize)> {
    let (array, dims) = borrow_nd::<u8>(object, argument, "uint8", 2)?;
    if dims[1] == 0 {
        return Err(CoreError::shape(
            argument,
            format!(
                "must hold codes of at least one byte, got shape {}",
                format_shape(&dims)
            ),
        )
        .into());
    }
    Ok((array, dims[0], dims[1]))
}

/// Both sides of a search must hold codes of the same width; the error names the second.
fn same_width(first: (&str, usize), second: (&'static str, usize)) -> BindResult<usize> {
    if first.1 == second.1 {
        return Ok(first.1);
    }
    Err(CoreError::shape(
        second.0,
        format!(
            "must hold codes of {} bytes like {}, got {} bytes per code",
            first.1, first.0, second.1
        ),
    )
    .into())
}

/// The `k` nearest codes of each query, row-major by query: `(nq, k')` arrays.
#[pyclass(module = "thrifty._native", name = "TopK", frozen, get_all)]
struct TopK {
    distances: Py<PyArray2<i32>>,
    indices: Py<PyArray2<i64>>,
}

/// Every code within a radius of each query, as CSR: query `i`'s hits are
/// `offsets[i]..offsets[i + 1]` of `indices` and `distances`.
#[pyclass(module = "thrifty._native", name = "RadiusHits", frozen, get_all)]
struct RadiusHits {
    offsets: Py<PyArray1<i64>>,
    indices: Py<PyArray1<i64>>,
    distances: Py<PyArray1<i32>>,
}

/// hamming_pack(bits) -> uint8 codes (rows, ceil(dims / 8)), numpy.packbits bit order
#[pyfunction]
fn hamming_pack<'py>(
    py: Python<'py>,
    bits: &Bound<'py, PyAny>,
) -> BindResult<Bound<'py, PyArray2<u8>>> {
    let (array, dims) = borrow_nd::<u8>(bits, "bits", "uint8", 2)?;
    let (rows, columns) = (dims[0], dims[1]);
    let data = slice(&array, "bits")?;
    let packed = run(py, || binary::pack(data, rows, columns))?;
    Ok(packed
        .into_pyarray(py)
        .reshape([rows, columns.div_ceil(8)])?)
}

/// hamming_cdist(a, b) -> int32 (na, nb)
#[pyfunction]
fn hamming_cdist<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> BindResult<Bound<'py, PyArray2<i32>>> {
    let (a_array, na, a_width) = codes(a, "a")?;
    let (b_array, nb, b_width) = codes(b, "b")?;
    let width = same_width(("a", a_width), ("b", b_width))?;
    let a_data = slice(&a_array, "a")?;
    let b_data = slice(&b_array, "b")?;
    let out = run(py, || binary::cdist_matrix(a_data, b_data, width))?;
    Ok(out.into_pyarray(py).reshape([na, nb])?)
}

/// hamming_topk(queries, db, k) -> TopK of shape (nq, min(k, nb))
#[pyfunction]
fn hamming_topk(
    py: Python<'_>,
    queries: &Bound<'_, PyAny>,
    db: &Bound<'_, PyAny>,
    k: usize,
) -> BindResult<TopK> {
    let (q_array, nq, q_width) = codes(queries, "queries")?;
    let (db_array, nb, db_width) = codes(db, "db")?;
    let width = same_width(("queries", q_width), ("db", db_width))?;
    let q_data = slice(&q_array, "queries")?;
    let db_data = slice(&db_array, "db")?;
    let (distances, indices) = run(py, || binary::topk(q_data, db_data, width, k))?;
    let kept = k.min(nb);
    Ok(TopK {
        distances: distances.into_pyarray(py).reshape([nq, kept])?.unbind(),
        indices: indices.into_pyarray(py).reshape([nq, kept])?.unbind(),
    })
}

/// hamming_radius(queries, db, r) -> RadiusHits, CSR over the queries
#[pyfunction]
fn hamming_radius(
    py: Python<'_>,
    queries: &Bound<'_, PyAny>,
    db: &Bound<'_, PyAny>,
    r: u32,
) -> BindResult<RadiusHits> {
    let (q_array, _, q_width) = codes(queries, "queries")?;
    let (db_array, _, db_width) = codes(db, "db")?;
    let width = same_width(("queries", q_width), ("db", db_width))?;
    let q_data = slice(&q_array, "queries")?;
    let db_data = slice(&db_array, "db")?;
    let (offsets, indices, distances) = run(py, || binary::radius(q_data, db_data, width, r))?;
    Ok(RadiusHits {
        offsets: offsets.into_pyarray(py).unbind(),
        indices: indices.into_pyarray(py).unbind(),
        distances: distances.into_pyarray(py).unbind(),
    })
}

/// hamming_kernel() -> the popcount kernel picked on this CPU
#[pyfunction]
fn hamming_kernel() -> &'static str {
    binary::kernel()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TopK>()?;
    m.add_class::<RadiusHits>()?;
    m.add_function(wrap_pyfunction!(text_to_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(text_to_patterns, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_pack, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_cdist, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_topk, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_radius, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_kernel, m)?)?;
    export::<Method>(m, "TEXT_METHODS")?;
    Ok(())
}
