//! Bindings for `thrifty-steps`: the BOSS dynamic programme and the jump-error accumulator.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use thrifty_steps::{Metric, Path, Strategy};

use crate::arrays::{borrow, expect_ndim, format_shape, shape, slice};
use crate::call::run;
use crate::errors::thrifty_error;

fn square_cost<'py>(
    cost: &Bound<'py, PyAny>,
) -> PyResult<(numpy::PyReadonlyArrayDyn<'py, f64>, usize)> {
    let py = cost.py();
    let array = borrow::<f64>(cost, "cost", "float64")?;
    let dims = shape(&array);
    expect_ndim(py, &dims, 2, "cost")?;
    if dims[0] != dims[1] {
        return Err(thrifty_error(
            py,
            "ShapeError",
            format!("cost must be square, got shape {}", format_shape(&dims)),
            Some("cost"),
        ));
    }
    Ok((array, dims[0]))
}

fn parse_strategy(py: Python<'_>, strategy: &str) -> PyResult<Strategy> {
    match strategy {
        "auto" => Ok(Strategy::Auto),
        "full" => Ok(Strategy::Full),
        "monge" => Ok(Strategy::Monge),
        other => Err(thrifty_error(
            py,
            "InvalidArgumentError",
            format!("strategy must be 'auto', 'full' or 'monge', got {other:?}"),
            Some("strategy"),
        )),
    }
}

type PathOut<'py> = (Bound<'py, PyArray1<i64>>, f64);

fn path_to_py(py: Python<'_>, path: Path) -> PathOut<'_> {
    let nodes: Vec<i64> = path.nodes.iter().map(|&n| n as i64).collect();
    (nodes.into_pyarray(py), path.cost)
}

/// optimal_path(cost, k, future_weight, strategy) -> (nodes, cost)
#[pyfunction]
#[pyo3(signature = (cost, k, future_weight=1.0, strategy="auto"))]
fn optimal_path<'py>(
    py: Python<'py>,
    cost: &Bound<'py, PyAny>,
    k: usize,
    future_weight: f64,
    strategy: &str,
) -> PyResult<PathOut<'py>> {
    let strategy = parse_strategy(py, strategy)?;
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    let best = run(py, || {
        thrifty_steps::optimal_path_with(data, n_nodes, k, future_weight, strategy)
    })?;
    Ok(path_to_py(py, best))
}

/// optimal_paths(cost, k_max, future_weight, strategy) -> [(nodes, cost) for k in 1..=k_max]
#[pyfunction]
#[pyo3(signature = (cost, k_max, future_weight=1.0, strategy="auto"))]
fn optimal_paths<'py>(
    py: Python<'py>,
    cost: &Bound<'py, PyAny>,
    k_max: usize,
    future_weight: f64,
    strategy: &str,
) -> PyResult<Vec<PathOut<'py>>> {
    let strategy = parse_strategy(py, strategy)?;
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    let paths = run(py, || {
        thrifty_steps::optimal_paths_with(data, n_nodes, k_max, future_weight, strategy)
    })?;
    Ok(paths.into_iter().map(|p| path_to_py(py, p)).collect())
}

/// is_monge(cost) -> bool
#[pyfunction]
fn is_monge(py: Python<'_>, cost: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (array, n_nodes) = square_cost(cost)?;
    let data = slice(&array, "cost")?;
    run(py, || thrifty_steps::is_monge(data, n_nodes))
}

fn parse_metric(py: Python<'_>, metric: &str) -> PyResult<Metric> {
    match metric {
        "l2" => Ok(Metric::L2),
        "l1" => Ok(Metric::L1),
        other => Err(thrifty_error(
            py,
            "InvalidArgumentError",
            format!("metric must be 'l2' or 'l1', got {other:?}"),
            Some("metric"),
        )),
    }
}

/// Sum over the batch of every jump error, for one batch of teacher states.
fn jump_errors_typed<'py, T: numpy::Element + thrifty_steps::Float>(
    py: Python<'py>,
    arrays: [&Bound<'py, PyAny>; 3],
    times: &[f64],
    metric: Metric,
    dtype_name: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let starts = borrow::<T>(arrays[0], "starts", dtype_name)?;
    let velocities = borrow::<T>(arrays[1], "velocities", dtype_name)?;
    let targets = borrow::<T>(arrays[2], "targets", dtype_name)?;
    let dims = shape(&targets);
    expect_ndim(py, &shape(&starts), 3, "starts")?;
    expect_ndim(py, &shape(&velocities), 3, "velocities")?;
    expect_ndim(py, &dims, 3, "targets")?;
    let (n_nodes, batch, dim) = (dims[0], dims[1], dims[2]);
    let starts = slice(&starts, "starts")?;
    let velocities = slice(&velocities, "velocities")?;
    let targets = slice(&targets, "targets")?;
    let jumps = thrifty_steps::Jumps {
        starts,
        velocities,
        targets,
        times,
        n_nodes,
        batch,
        dim,
    };
    // The core checks the shapes before it allocates the n x n result: a zero-size array
    // may claim any number of nodes.
    let sums = run(py, || thrifty_steps::jump_errors(&jumps, metric))?;
    let flat = sums.into_pyarray(py);
    flat.reshape([n_nodes, n_nodes])
}

/// jump_errors(starts, velocities, targets, times, metric) -> (n+1, n+1) sums over the batch
#[pyfunction]
#[pyo3(signature = (starts, velocities, targets, times, metric="l2"))]
fn jump_errors<'py>(
    py: Python<'py>,
    starts: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    times: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let metric = parse_metric(py, metric)?;
    let times = borrow::<f64>(times, "times", "float64")?;
    expect_ndim(py, &shape(&times), 1, "times")?;
    let times = slice(&times, "times")?;
    // Anything that is not a float32 array goes down the float64 path, whose borrow names
    // the argument and the dtype it received.
    let is_f32 = starts
        .getattr("dtype")
        .and_then(|dtype| dtype.str())
        .is_ok_and(|name| name == "float32");
    if is_f32 {
        jump_errors_typed::<f32>(py, [starts, velocities, targets], times, metric, "float32")
    } else {
        jump_errors_typed::<f64>(py, [starts, velocities, targets], times, metric, "float64")
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(optimal_path, m)?)?;
    m.add_function(wrap_pyfunction!(optimal_paths, m)?)?;
    m.add_function(wrap_pyfunction!(is_monge, m)?)?;
    m.add_function(wrap_pyfunction!(jump_errors, m)?)?;
    Ok(())
}
