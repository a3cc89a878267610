//! Bindings for `thrifty-hamming`: text-to-pattern distances and packed binary-code search.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use thrifty_core::Choice;
use thrifty_hamming::{binary, text};

use crate::arrays::{borrow, expect_ndim, format_shape, shape, slice};
use crate::call::run;
use crate::errors::{core_error, thrifty_error};

/// A 1-D uint32 array of symbols, borrowed.
fn symbols<'py>(
    object: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<numpy::PyReadonlyArrayDyn<'py, u32>> {
    let array = borrow::<u32>(object, argument, "uint32")?;
    expect_ndim(object.py(), &shape(&array), 1, argument)?;
    Ok(array)
}

fn text_options(
    py: Python<'_>,
    method: &str,
    k: Option<u32>,
    eps: Option<f64>,
    seed: u64,
) -> PyResult<text::Options> {
    let method = text::Method::parse(method).map_err(|e| core_error(py, e))?;
    Ok(text::Options {
        method,
        k,
        eps,
        seed,
    })
}

/// text_to_pattern(text, pattern, method, k, eps, seed) -> int32 distances, n - m + 1 of them
#[pyfunction]
#[pyo3(signature = (text, pattern, method="auto", k=None, eps=None, seed=0))]
fn text_to_pattern<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
    pattern: &Bound<'py, PyAny>,
    method: &str,
    k: Option<u32>,
    eps: Option<f64>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<i32>>> {
    let options = text_options(py, method, k, eps, seed)?;
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
#[pyo3(signature = (text, patterns, method="auto", k=None, eps=None, seed=0))]
fn text_to_patterns<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
    patterns: Vec<Bound<'py, PyAny>>,
    method: &str,
    k: Option<u32>,
    eps: Option<f64>,
    seed: u64,
) -> PyResult<Vec<Bound<'py, PyArray1<i32>>>> {
    let options = text_options(py, method, k, eps, seed)?;
    let text_array = symbols(text, "text")?;
    let text_data = slice(&text_array, "text")?;
    let pattern_arrays = patterns
        .iter()
        .map(|p| symbols(p, "patterns"))
        .collect::<PyResult<Vec<_>>>()?;
    let pattern_data = pattern_arrays
        .iter()
        .map(|p| slice(p, "patterns"))
        .collect::<PyResult<Vec<&[u32]>>>()?;
    let all = run(py, || {
        text::text_to_patterns(text_data, &pattern_data, &options)
    })?;
    Ok(all.into_iter().map(|d| d.into_pyarray(py)).collect())
}

/// A 2-D uint8 array of packed codes, borrowed, with its (rows, bytes per code).
fn codes<'py>(
    object: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<(numpy::PyReadonlyArrayDyn<'py, u8>, usize, usize)> {
    let array = borrow::<u8>(object, argument, "uint8")?;
    let dims = shape(&array);
    expect_ndim(object.py(), &dims, 2, argument)?;
    if dims[1] == 0 {
        return Err(thrifty_error(
            object.py(),
            "ShapeError",
            format!(
                "{argument} must hold codes of at least one byte, got shape {}",
                format_shape(&dims)
            ),
            Some(argument),
        ));
    }
    Ok((array, dims[0], dims[1]))
}

/// Both sides of a search must hold codes of the same width; the error names the second.
fn same_width(py: Python<'_>, first: (&str, usize), second: (&str, usize)) -> PyResult<usize> {
    if first.1 == second.1 {
        return Ok(first.1);
    }
    Err(thrifty_error(
        py,
        "ShapeError",
        format!(
            "{} must hold codes of {} bytes like {}, got {} bytes per code",
            second.0, first.1, first.0, second.1
        ),
        Some(second.0),
    ))
}

/// hamming_pack(bits) -> uint8 codes (rows, ceil(dims / 8)), numpy.packbits bit order
#[pyfunction]
fn hamming_pack<'py>(
    py: Python<'py>,
    bits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let array = borrow::<u8>(bits, "bits", "uint8")?;
    let dims = shape(&array);
    expect_ndim(py, &dims, 2, "bits")?;
    let (rows, columns) = (dims[0], dims[1]);
    let data = slice(&array, "bits")?;
    let packed = run(py, || binary::pack(data, rows, columns))?;
    packed.into_pyarray(py).reshape([rows, columns.div_ceil(8)])
}

/// hamming_cdist(a, b) -> int32 (na, nb)
#[pyfunction]
fn hamming_cdist<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (a_array, na, a_width) = codes(a, "a")?;
    let (b_array, nb, b_width) = codes(b, "b")?;
    let width = same_width(py, ("a", a_width), ("b", b_width))?;
    let a_data = slice(&a_array, "a")?;
    let b_data = slice(&b_array, "b")?;
    let out = run(py, || {
        let too_large =
            || thrifty_core::CoreError::shape("b", format!("{na} x {nb} distances do not fit"));
        let cells = na.checked_mul(nb).ok_or_else(too_large)?;
        // A failed allocation would abort the interpreter; a failed reservation is an error.
        let mut out = Vec::new();
        out.try_reserve_exact(cells).map_err(|_| too_large())?;
        out.resize(cells, 0i32);
        binary::cdist(a_data, b_data, width, &mut out)?;
        Ok(out)
    })?;
    out.into_pyarray(py).reshape([na, nb])
}

type TopK<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<i64>>);

/// hamming_topk(queries, db, k) -> (int32 distances, int64 indices), (nq, min(k, nb))
#[pyfunction]
fn hamming_topk<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    db: &Bound<'py, PyAny>,
    k: usize,
) -> PyResult<TopK<'py>> {
    let (q_array, nq, q_width) = codes(queries, "queries")?;
    let (db_array, nb, db_width) = codes(db, "db")?;
    let width = same_width(py, ("queries", q_width), ("db", db_width))?;
    let q_data = slice(&q_array, "queries")?;
    let db_data = slice(&db_array, "db")?;
    let (distances, indices) = run(py, || binary::topk(q_data, db_data, width, k))?;
    let kept = k.min(nb);
    Ok((
        distances.into_pyarray(py).reshape([nq, kept])?,
        indices.into_pyarray(py).reshape([nq, kept])?,
    ))
}

type Csr<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
);

/// hamming_radius(queries, db, r) -> (offsets, indices, distances) as CSR over the queries
#[pyfunction]
fn hamming_radius<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    db: &Bound<'py, PyAny>,
    r: u32,
) -> PyResult<Csr<'py>> {
    let (q_array, _, q_width) = codes(queries, "queries")?;
    let (db_array, _, db_width) = codes(db, "db")?;
    let width = same_width(py, ("queries", q_width), ("db", db_width))?;
    let q_data = slice(&q_array, "queries")?;
    let db_data = slice(&db_array, "db")?;
    let (offsets, indices, distances) = run(py, || binary::radius(q_data, db_data, width, r))?;
    Ok((
        offsets.into_pyarray(py),
        indices.into_pyarray(py),
        distances.into_pyarray(py),
    ))
}

/// hamming_kernel() -> the popcount kernel picked on this CPU
#[pyfunction]
fn hamming_kernel() -> &'static str {
    binary::kernel()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(text_to_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(text_to_patterns, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_pack, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_cdist, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_topk, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_radius, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_kernel, m)?)?;
    Ok(())
}
