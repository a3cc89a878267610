//! Bindings for `thrifty-steps`: the BOSS dynamic programme and the jump-error accumulator.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use thrifty_core::CoreError;
use thrifty_steps::{Metric, Strategy};

use crate::arrays::{borrow_nd, format_shape, slice};
use crate::call::run;
use crate::errors::BindResult;
use crate::options::{export, Wrap};

/// The cheapest path of `k` jumps: its nodes, from 0 to n, and its (weighted) cost.
#[pyclass(module = "thrifty._native", name = "Path", frozen, get_all)]
struct PyPath {
    nodes: Py<PyArray1<i64>>,
    cost: f64,
}

impl PyPath {
    fn new(py: Python<'_>, path: thrifty_steps::Path) -> Self {
        let nodes: Vec<i64> = path.nodes.iter().map(|&n| n as i64).collect();
        Self {
            nodes: nodes.into_pyarray(py).unbind(),
            cost: path.cost,
        }
    }
}

/// A square float64 cost matrix, borrowed, with its number of nodes.
fn square_cost<'py>(cost: &Bound<'py, PyAny>) -> BindResult<(PyReadonlyArrayDyn<'py, f64>, usize)> {
    let (array, dims) = borrow_nd::<f64>(cost, "cost", "float64", 2)?;
    if dims[0] != dims[1] {
        return Err(CoreError::shape(
            "cost",
            format!("must be square, got shape {}", format_shape(&dims)),
        )
        .into());
    }
    Ok((array, dims[0]))
}

/// optimal_path(cost, k, future_weight, strategy) -> Path
#[pyfunction]
#[pyo3(signature = (cost, k, future_weight=1.0, strategy=Wrap(Strategy::Auto)))]
fn optimal_path(
    py: Python<'_>,
    cost: &Bound<'_, PyAny>,
    k: usize,
    future_weight: f64,
    strategy: Wrap<Strategy>,
) -> BindResult<PyPath> {
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    let best = run(py, || {
        thrifty_steps::optimal_path_with(data, n_nodes, k, future_weight, strategy.0)
    })?;
    Ok(PyPath::new(py, best))
}

/// optimal_paths(cost, k_max, future_weight, strategy) -> [Path for k in 1..=k_max]
#[pyfunction]
#[pyo3(signature = (cost, k_max, future_weight=1.0, strategy=Wrap(Strategy::Auto)))]
fn optimal_paths(
    py: Python<'_>,
    cost: &Bound<'_, PyAny>,
    k_max: usize,
    future_weight: f64,
    strategy: Wrap<Strategy>,
) -> BindResult<Vec<PyPath>> {
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    let paths = run(py, || {
        thrifty_steps::optimal_paths_with(data, n_nodes, k_max, future_weight, strategy.0)
    })?;
    Ok(paths.into_iter().map(|p| PyPath::new(py, p)).collect())
}

/// is_monge(cost) -> bool
#[pyfunction]
fn is_monge(py: Python<'_>, cost: &Bound<'_, PyAny>) -> BindResult<bool> {
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    run(py, || thrifty_steps::is_monge(data, n_nodes))
}

/// Sum over the batch of every jump error, for one batch of teacher states.
fn jump_errors_typed<'py, T: numpy::Element + thrifty_steps::Float>(
    py: Python<'py>,
    arrays: [&Bound<'py, PyAny>; 3],
    times: &[f64],
    metric: Metric,
    dtype_name: &str,
) -> BindResult<Bound<'py, PyArray2<f64>>> {
    let (starts, _) = borrow_nd::<T>(arrays[0], "starts", dtype_name, 3)?;
    let (velocities, _) = borrow_nd::<T>(arrays[1], "velocities", dtype_name, 3)?;
    let (targets, dims) = borrow_nd::<T>(arrays[2], "targets", dtype_name, 3)?;
    let (n_nodes, batch, dim) = (dims[0], dims[1], dims[2]);
    let jumps = thrifty_steps::Jumps {
        starts: slice(&starts, "starts")?,
        velocities: slice(&velocities, "velocities")?,
        targets: slice(&targets, "targets")?,
        times,
        n_nodes,
        batch,
        dim,
    };
    // The core checks the shapes before it allocates the n x n result: a zero-size array
    // may claim any number of nodes.
    let sums = run(py, || thrifty_steps::jump_errors(&jumps, metric))?;
    Ok(sums.into_pyarray(py).reshape([n_nodes, n_nodes])?)
}

/// jump_errors(starts, velocities, targets, times, metric) -> (n+1, n+1) sums over the batch
#[pyfunction]
#[pyo3(signature = (starts, velocities, targets, times, metric=Wrap(Metric::L2)))]
fn jump_errors<'py>(
    py: Python<'py>,
    starts: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    times: &Bound<'py, PyAny>,
    metric: Wrap<Metric>,
) -> BindResult<Bound<'py, PyArray2<f64>>> {
    let (times, _) = borrow_nd::<f64>(times, "times", "float64", 1)?;
    let times = slice(&times, "times")?;
    // Anything that is not a float32 array goes down the float64 path, whose borrow names
    // the argument and the dtype it received.
    let is_f32 = starts
        .getattr("dtype")
        .and_then(|dtype| dtype.str())
        .is_ok_and(|name| name == "float32");
    let arrays = [starts, velocities, targets];
    if is_f32 {
        jump_errors_typed::<f32>(py, arrays, times, metric.0, "float32")
    } else {
        jump_errors_typed::<f64>(py, arrays, times, metric.0, "float64")
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPath>()?;
    m.add_function(wrap_pyfunction!(optimal_path, m)?)?;
    m.add_function(wrap_pyfunction!(optimal_paths, m)?)?;
    m.add_function(wrap_pyfunction!(is_monge, m)?)?;
    m.add_function(wrap_pyfunction!(jump_errors, m)?)?;
    export::<Strategy>(m, "STRATEGIES")?;
    export::<Metric>(m, "METRICS")?;
    Ok(())
}
