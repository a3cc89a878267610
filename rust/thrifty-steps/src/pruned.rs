//! The full DP on large matrices: every cell skips the blocks of columns that cannot hold
//! its minimiser.
//!
//! Each cost row is cut into blocks of [`minplus::PRUNE_BLOCK`] columns, and each block gets
//! a lower bound: the minimum of its costs plus `w` times the minimum of the layer below over
//! the same columns. A cell scans only the blocks whose bound does not exceed the best value
//! it can already reach (see [`minplus::pruned_row_argmin`], which keeps the result exact to
//! the bit). On uniform random costs at N = 2000, K = 50 about 7 % of the blocks get through.
//!
//! The DP runs layer by layer: the rows of a layer are independent, so they are shared out
//! among threads with one barrier per layer. (The plain full DP works by row blocks instead,
//! to stream each cost row through the cache once for all layers; here a layer reads only
//! the row minima, a sixteenth of the matrix, and the few blocks that pass, so that reason
//! is gone, and the row-block scheme's sequential triangle and barrier per block cost
//! 1.4-1.5x in wall time on two threads at N = 2000, K = 50.)

use crate::minplus::{self, PRUNE_BLOCK};
use crate::validate;
use thrifty_core::{parallel, CoreResult};

/// From this many nodes on, the full DP prunes.
///
/// What a pruned cell costs is mostly fixed (a group of bounds per 128 columns, a few
/// scanned blocks whose loads miss the cache, a final reduction), so pruning only beats the
/// plain scan once rows are long: on uniform random costs at K = 50 (Intel Emerald Rapids,
/// AVX-512, two threads) it measured 1.2x slower at 300 nodes, 1.4x faster at 500 and 2.1x
/// at 1000. Smooth and Monge-like matrices gain
/// about as much as random ones; a matrix of four distinct values (ties everywhere) gains
/// nothing.
pub(crate) const MIN_NODES: usize = 500;

/// The full DP, with the same inputs and outputs as the plain one: `dp[(k - 1) * n_nodes +
/// i]` and `choices[..]` of layer 1 filled in, the others filled here for every row that can
/// still make `k` jumps (only row 0 of the top layer, the one that is read back).
///
/// The cost entries need not be validated: each row is checked just before its block minima
/// are taken, while it is in cache, and the first invalid entry in row-major order is
/// reported as [`validate::cost_entries`] would.
pub(crate) fn full_by_layers(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    weight: f64,
    parallel: bool,
    dp: &mut [f64],
    choices: &mut [u32],
) -> CoreResult<()> {
    let last = n_nodes - 1;
    let blocks = n_nodes.div_ceil(PRUNE_BLOCK);
    let row_minima = |i: usize| match validate::first_bad_in_row(cost, n_nodes, i, false) {
        Some(j) => Err(j),
        None => {
            let mut mins = vec![f64::INFINITY; blocks];
            block_minima(&cost[i * n_nodes..(i + 1) * n_nodes], i, &mut mins);
            Ok(mins)
        }
    };
    let row_min: Vec<Result<Vec<f64>, usize>> = if parallel {
        parallel::map_indices(last, row_minima)
    } else {
        (0..last).map(row_minima).collect()
    };
    let row_min = row_min
        .into_iter()
        .enumerate()
        .map(|(i, mins)| mins.map_err(|j| validate::entry_error(cost, n_nodes, i, j)))
        .collect::<CoreResult<Vec<_>>>()?;
    // Several ranges per thread, since the rows' lengths (and so their costs) differ.
    let pieces = if parallel { parallel::threads() * 8 } else { 1 };
    let mut below_min = vec![f64::INFINITY; blocks];
    for k in 2..=k_max {
        let hi = last - k + 1;
        let rows = if k == k_max { 1 } else { hi };
        let (done, rest) = dp.split_at_mut((k - 1) * n_nodes);
        let below = &done[(k - 2) * n_nodes..];
        for (b, m) in below_min.iter_mut().enumerate() {
            *m = minplus::slice_min(&below[b * PRUNE_BLOCK..((b + 1) * PRUNE_BLOCK).min(n_nodes)]);
        }
        let (choices_below, choices_here) = choices.split_at_mut((k - 1) * n_nodes);
        let choices_below = &choices_below[(k - 2) * n_nodes..];
        let below_min = &below_min;
        let solve_rows = |range: std::ops::Range<usize>| -> Vec<(f64, usize)> {
            range
                .map(|i| {
                    let row = &cost[i * n_nodes..(i + 1) * n_nodes];
                    // The layer below's choice is often this one's too, and its term, an
                    // upper bound of the cell, lets blocks be skipped from the start.
                    let guess = (choices_below[i] as usize).min(hi);
                    let seed = minplus::term_scalar(row[guess], below[guess], weight);
                    minplus::pruned_row_argmin(
                        row,
                        below,
                        &row_min[i],
                        below_min,
                        i + 1,
                        hi,
                        weight,
                        seed,
                    )
                    .expect("the seed is a term of the range, so the minimum is <= it")
                })
                .collect()
        };
        let solved = if parallel {
            parallel::map_ranges(rows, pieces, solve_rows)
        } else {
            vec![solve_rows(0..rows)]
        };
        for (i, (value, j)) in solved.into_iter().flatten().enumerate() {
            rest[i] = value;
            choices_here[i] = j as u32;
        }
    }
    Ok(())
}

/// `mins[b]` = the minimum of `row[j]` over the columns `j > i` of block `b` (the upper
/// triangle only: nothing below it is ever read); blocks wholly at or before `i` are left
/// alone.
fn block_minima(row: &[f64], i: usize, mins: &mut [f64]) {
    let mut j = i + 1;
    while j < row.len() {
        let end = ((j / PRUNE_BLOCK + 1) * PRUNE_BLOCK).min(row.len());
        mins[j / PRUNE_BLOCK] = minplus::slice_min(&row[j..end]);
        j = end;
    }
}
