//! Argument checks shared by the path solvers and the Monge test.
//!
//! Cheap checks (sizes, scalars) run before the `O(N^2)` scans of the matrix, so a wrong
//! call fails fast. Only the strict upper triangle of a cost matrix is ever read: the rest
//! may hold anything, NaN included, because a jump never goes backwards.

use thrifty_core::{parallel, CoreError, CoreResult};

/// From this many nodes on, `O(N^2)` scans and DP layers are split across threads; below
/// it a layer is too small to pay for the hand-off.
pub(crate) const PARALLEL_MIN_NODES: usize = 256;

pub(crate) fn cost_shape(cost: &[f64], n_nodes: usize) -> CoreResult<()> {
    if n_nodes < 2 {
        return Err(CoreError::shape(
            "cost",
            format!("must have at least 2 nodes (one jump), got n_nodes={n_nodes}"),
        ));
    }
    match n_nodes.checked_mul(n_nodes) {
        Some(expected) if expected == cost.len() => Ok(()),
        Some(expected) => Err(CoreError::shape(
            "cost",
            format!(
                "must be square, got {} values for n_nodes={n_nodes} (expected {expected})",
                cost.len()
            ),
        )),
        None => Err(CoreError::shape(
            "cost",
            format!("must be square, but n_nodes={n_nodes} squared overflows"),
        )),
    }
}

/// `k` (named `argument`) must be a number of jumps the grid can hold.
pub(crate) fn jump_count(k: usize, n_nodes: usize, argument: &'static str) -> CoreResult<()> {
    let available = n_nodes - 1;
    if k == 0 || k > available {
        return Err(CoreError::invalid(
            argument,
            format!("must be in 1..=N (N = {available} jumps available), got {k}"),
        ));
    }
    Ok(())
}

pub(crate) fn future_weight(weight: f64) -> CoreResult<()> {
    if !(weight.is_finite() && weight > 0.0) {
        return Err(CoreError::invalid(
            "future_weight",
            format!("must be finite and > 0, got {weight}"),
        ));
    }
    Ok(())
}

/// Every upper-triangle cost must be finite, and also `>= 0` unless `allow_negative`.
pub(crate) fn cost_entries(cost: &[f64], n_nodes: usize, allow_negative: bool) -> CoreResult<()> {
    let rows = n_nodes - 1;
    let bad_in = |i: usize| first_bad_in_row(cost, n_nodes, i, allow_negative).map(|j| (i, j));
    let bad = if n_nodes >= PARALLEL_MIN_NODES {
        parallel::map_indices(rows, bad_in)
            .into_iter()
            .flatten()
            .next()
    } else {
        (0..rows).find_map(bad_in)
    };
    match bad {
        None => Ok(()),
        Some((i, j)) => Err(entry_error(cost, n_nodes, i, j)),
    }
}

/// The first `j > i` whose cost is not finite (or negative, unless `allow_negative`).
pub(crate) fn first_bad_in_row(
    cost: &[f64],
    n_nodes: usize,
    i: usize,
    allow_negative: bool,
) -> Option<usize> {
    let row = &cost[i * n_nodes + i + 1..(i + 1) * n_nodes];
    if all_finite_and_bounded(row, allow_negative) {
        return None;
    }
    let acceptable = |x: f64| x.is_finite() && (allow_negative || x >= 0.0);
    row.iter().position(|&x| !acceptable(x)).map(|p| i + 1 + p)
}

/// The error for the bad entry `cost[i][j]` found by [`first_bad_in_row`].
pub(crate) fn entry_error(cost: &[f64], n_nodes: usize, i: usize, j: usize) -> CoreError {
    let x = cost[i * n_nodes + j];
    if x.is_finite() {
        CoreError::invalid(
            "cost",
            format!("cost[{i}][{j}] is {x}, but costs must be >= 0"),
        )
    } else {
        CoreError::non_finite(
            "cost",
            format!("cost[{i}][{j}] is {x}; the upper triangle must be finite"),
        )
    }
}

/// Whether every value is finite (and `>= 0` unless `allow_negative`), as a branch-free
/// vector loop: the matrix is scanned once per call, and at N = 2000 a scalar scan would cost
/// as much as the Monge solve itself.
fn all_finite_and_bounded(values: &[f64], allow_negative: bool) -> bool {
    const LANES: usize = 8;
    // `x * 0.0` is 0 for finite x and NaN for NaN or infinity, so one NaN poisons a lane.
    let mut poison = [0.0f64; LANES];
    let mut min = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            let x = chunk[lane];
            poison[lane] += x * 0.0;
            min[lane] = if x < min[lane] { x } else { min[lane] };
        }
    }
    let finite = |p: &f64| *p == 0.0;
    let tail_ok = tail
        .iter()
        .all(|x| x.is_finite() && (allow_negative || *x >= 0.0));
    tail_ok && poison.iter().all(finite) && (allow_negative || min.iter().all(|m| *m >= 0.0))
}
