//! The exact BOSS dynamic programme: the cheapest path of exactly `K` jumps through the grid.
//!
//! With `N = n_nodes - 1`, `dp_1[i] = c[i][N]` and
//! `dp_k[i] = min_{i < j <= N-k+1} c[i][j] + w * dp_{k-1}[j]` (the bound keeps `k - 1` jumps
//! possible after `j`). `dp_K[0]` is the optimum, and it equals
//! `sum_m w^m * c(jump m)` over the path's jumps `m = 0..K` in order: `w` is GITS' factor
//! that makes later jumps cost more (or less) because their error compounds.
//!
//! One pass fills a table of `dp_k[i]` (`O(K N)` floats) and one `u32` choice per `(k, i)`
//! to walk the path back, so it yields the optimum for every `k <= k_max` at once.
//!
//! **Ties.** Every cell keeps the smallest minimising `j`. Walking forward from node 0 this
//! gives, among all optimal paths, the lexicographically smallest node sequence: any optimal
//! path's first jump `j` satisfies `c[0][j] + w * dp_{K-1}[j] = dp_K[0]` (its tail costs at
//! least `dp_{K-1}[j]`, and `w > 0`), so the DP's first jump is the smallest first jump of
//! any optimal path, and the same holds for the tail from there. All strategies and thread
//! counts apply this rule to bit-identical values (see [`crate::minplus`]), so they return
//! the same nodes.

use crate::validate::{self, PARALLEL_MIN_NODES};
use crate::{minplus, monge, pruned};
use thrifty_core::{parallel, Choice, CoreError, CoreResult};

/// A path through the grid: `nodes[0] = 0 < nodes[1] < ... < nodes[k] = N`, so
/// `nodes.len() == k + 1`, and its cost `sum_m future_weight^m * c[nodes[m]][nodes[m+1]]`
/// as the DP computed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub nodes: Vec<usize>,
    pub cost: f64,
}

/// How each DP layer is solved.
///
/// All strategies return the same paths whenever the sums `c[i][j] + w * dp[j]` are exact
/// (integer or dyadic costs and weights, as in the tests). With general floats, Monge is a
/// property of real numbers that rounding can bend by an ulp, so on near-ties (within a few
/// ulps) the Monge strategy may pick a different, equally cheap up to rounding, path than
/// the full scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Test the matrix for the Monge property (`O(N^2)`, in the same pass as the input
    /// validation) and use [`Strategy::Monge`] when it holds, [`Strategy::Full`] otherwise.
    #[default]
    Auto,
    /// Scan every admissible `j` for every cell: `O(K N^2)`, any matrix.
    Full,
    /// Divide and conquer over monotone minimisers: `O(K N log N)`. The matrix must be Monge,
    /// else `InvalidValue` on `cost`.
    Monge,
}

impl Choice for Strategy {
    const ARGUMENT: &'static str = "strategy";
    const ALL: &'static [Strategy] = &[Strategy::Auto, Strategy::Full, Strategy::Monge];

    fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Full => "full",
            Strategy::Monge => "monge",
        }
    }
}

/// The cheapest path of exactly `k` jumps from node 0 to node `N = n_nodes - 1`.
///
/// `cost` is a row-major `n_nodes x n_nodes` matrix of which only the strict upper triangle
/// (`j > i`, the cost of one jump `i -> j`) is read; it must be finite and `>= 0` there.
/// Later jumps are weighted by powers of `future_weight` (1 for plain BOSS). Ties go to the
/// lexicographically smallest node sequence. Uses [`Strategy::Auto`].
///
/// # Errors
/// `cost` when `n_nodes < 2`, the length is not `n_nodes^2`, or an upper-triangle entry is
/// NaN, infinite or negative; `k` outside `1..=N`; `future_weight` not finite and `> 0`;
/// `cost` (NonFinite) when the optimal path's weighted cost overflows to infinity.
///
/// # Example
/// ```
/// // Jumping costs the square of its length: the best 2-jump path over 4 steps halves it.
/// let n = 5;
/// let cost: Vec<f64> = (0..n * n).map(|x| ((x % n) as f64 - (x / n) as f64).powi(2)).collect();
/// let path = thrifty_steps::optimal_path(&cost, n, 2, 1.0).unwrap();
/// assert_eq!(path.nodes, vec![0, 2, 4]);
/// assert_eq!(path.cost, 8.0);
/// ```
pub fn optimal_path(
    cost: &[f64],
    n_nodes: usize,
    k: usize,
    future_weight: f64,
) -> CoreResult<Path> {
    optimal_path_with(cost, n_nodes, k, future_weight, Strategy::Auto)
}

/// [`optimal_path`] with an explicit [`Strategy`].
pub fn optimal_path_with(
    cost: &[f64],
    n_nodes: usize,
    k: usize,
    future_weight: f64,
    strategy: Strategy,
) -> CoreResult<Path> {
    let tables = prepare_and_solve(cost, n_nodes, k, "k", future_weight, strategy)?;
    tables.path(k)
}

/// The optimal paths for every number of jumps `k` in `1..=k_max`, from one DP pass:
/// element `k - 1` holds exactly what [`optimal_path`] returns for `k`.
///
/// # Errors
/// As [`optimal_path`], with `k_max` in place of `k`; the overflow error names the smallest
/// `k` whose optimal cost overflows.
pub fn optimal_paths(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    future_weight: f64,
) -> CoreResult<Vec<Path>> {
    optimal_paths_with(cost, n_nodes, k_max, future_weight, Strategy::Auto)
}

/// [`optimal_paths`] with an explicit [`Strategy`].
pub fn optimal_paths_with(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    future_weight: f64,
    strategy: Strategy,
) -> CoreResult<Vec<Path>> {
    let tables = prepare_and_solve(cost, n_nodes, k_max, "k_max", future_weight, strategy)?;
    (1..=k_max).map(|k| tables.path(k)).collect()
}

fn prepare_and_solve(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    k_argument: &'static str,
    future_weight: f64,
    strategy: Strategy,
) -> CoreResult<Tables> {
    validate::cost_shape(cost, n_nodes)?;
    validate::jump_count(k_max, n_nodes, k_argument)?;
    validate::future_weight(future_weight)?;
    // The pruned full DP validates each row while it holds it in cache, which saves a pass
    // over the matrix; the other solvers need every entry validated first.
    let prune = (n_nodes >= pruned::MIN_NODES).then(pruned::Tuning::default);
    let use_monge = match strategy {
        Strategy::Full => {
            if prune.is_none() {
                validate::cost_entries(cost, n_nodes, false)?;
            }
            false
        }
        Strategy::Auto => {
            monge::validated_violation(cost, n_nodes, false, prune.is_none())?.is_none()
        }
        Strategy::Monge => match monge::validated_violation(cost, n_nodes, false, true)? {
            None => true,
            Some((i, j)) => {
                return Err(CoreError::invalid(
                    "cost",
                    format!(
                        "is not Monge: cost[{i}][{j}] + cost[{}][{}] > cost[{i}][{}] + \
                         cost[{}][{j}]; use Strategy::Full or Strategy::Auto",
                        i + 1,
                        j + 1,
                        j + 1,
                        i + 1
                    ),
                ))
            }
        },
    };
    let parallel = n_nodes >= PARALLEL_MIN_NODES;
    solve(
        cost,
        n_nodes,
        k_max,
        future_weight,
        use_monge,
        parallel,
        prune,
    )
}

/// What the DP leaves behind: enough to read off the optimal path for any `k <= k_max`.
pub(crate) struct Tables {
    n_nodes: usize,
    /// `best[k - 1] = dp_k[0]`.
    best: Vec<f64>,
    /// `choices[(k - 1) * n_nodes + i]`: the node after `i` when `k` jumps remain.
    choices: Vec<u32>,
}

impl Tables {
    /// The optimal path of `k` jumps, or an error when even its cost overflows: every path
    /// then ties at `+inf`, and the one the tie rule picks says nothing about the real sums.
    pub(crate) fn path(&self, k: usize) -> CoreResult<Path> {
        let cost = self.best[k - 1];
        if cost.is_infinite() {
            return Err(CoreError::non_finite(
                "cost",
                format!(
                    "the cheapest path of {k} jumps costs more than f64::MAX (its weighted sum \
                     overflows); scale cost, or future_weight, down"
                ),
            ));
        }
        let mut nodes = Vec::with_capacity(k + 1);
        let mut node = 0;
        nodes.push(node);
        for remaining in (1..=k).rev() {
            node = self.choices[(remaining - 1) * self.n_nodes + node] as usize;
            nodes.push(node);
        }
        debug_assert_eq!(node, self.n_nodes - 1, "a path must end at the last node");
        Ok(Path { nodes, cost })
    }
}

/// The DP itself, on input validated except, when the full strategy prunes, for the matrix
/// entries, which the pruned DP checks itself. `parallel` only changes who computes each
/// cell, and `prune` (full strategy only, with its sizes) which cells are looked at, never
/// what comes out: all runs are bit-identical.
pub(crate) fn solve(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    weight: f64,
    use_monge: bool,
    parallel: bool,
    prune: Option<pruned::Tuning>,
) -> CoreResult<Tables> {
    let last = n_nodes - 1;
    // dp[(k - 1) * n_nodes + i] = dp_k[i]. All layers are kept (O(K N) floats, like the
    // choices) because the full strategy fills them row by row rather than layer by layer.
    // Cells no path can use stay +inf and are never read.
    let mut dp = vec![f64::INFINITY; k_max * n_nodes];
    let mut choices = vec![0u32; k_max * n_nodes];
    for i in 0..last {
        dp[i] = cost[i * n_nodes + last];
        choices[i] = last as u32;
    }
    if use_monge {
        for k in 2..=k_max {
            // Rows 0..=N-k can still make k jumps; their next node is at most N-k+1. The
            // whole layer is solved even when only row 0 will be read back (it is cheap
            // here), so that the recursion, and with it every result, is independent of k_max.
            let hi = last - k + 1;
            let (done, rest) = dp.split_at_mut((k - 1) * n_nodes);
            let prev = &done[(k - 2) * n_nodes..];
            let layer_choices = &mut choices[(k - 1) * n_nodes..k * n_nodes];
            let (value, choice) = (&mut rest[..hi], &mut layer_choices[..hi]);
            monge::layer(cost, n_nodes, prev, weight, hi, parallel, value, choice);
        }
    } else if let Some(tuning) = prune {
        pruned::full_by_bands(
            cost,
            n_nodes,
            k_max,
            weight,
            parallel,
            tuning,
            &mut dp,
            &mut choices,
        )?;
    } else {
        full_by_row_blocks(
            cost,
            n_nodes,
            k_max,
            weight,
            parallel,
            &mut dp,
            &mut choices,
        );
    }
    let best = (0..k_max).map(|k| dp[k * n_nodes]).collect();
    Ok(Tables {
        n_nodes,
        best,
        choices,
    })
}

/// Rows per block of [`full_by_row_blocks`]: large enough to give every thread real work,
/// small enough that the sequential triangle inside a block stays a few per cent of the total.
const BLOCK_ROWS: usize = 128;

/// Rows per parallel task inside a block: their cost rows (8 x 16 KB at N = 2000) stay in L2
/// while one layer's slice of the DP table, shared by all of them, stays in L1.
const TASK_ROWS: usize = 8;

/// The full DP, row block by row block from the bottom of the matrix up.
///
/// Going layer by layer streams the whole upper triangle through the caches once per layer:
/// fine while it fits in the last-level cache, but memory-bound beyond (measured 2.4 times
/// slower at N = 5000, K = 20 on a 32 MB L3). Instead a block of cost rows is loaded once
/// and used for all `K` layers while it sits in cache: cell `dp_k[i]`
/// only needs rows `j > i` of the layer below, so rows can be finished, all layers at once,
/// from the bottom up. For a block of rows `start..end`, the part of each minimum over
/// `j >= end` depends on finished rows only and is computed for all rows of the block in
/// parallel; the part over `j < end` then runs row by row, bottom-up, inside the block.
///
/// Splitting a minimum in two changes nothing: the two halves evaluate the same values, and
/// on a tie the lower half (smaller `j`) wins, which keeps the leftmost minimiser.
///
/// The price is the sequential part (about `BLOCK_ROWS / N` of the work) and one barrier per
/// block: at N = 2000, where the triangle still fits in cache, this measured 10-20 % slower
/// than layer by layer on two threads, and equal on one.
fn full_by_row_blocks(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    weight: f64,
    parallel: bool,
    dp: &mut [f64],
    choices: &mut [u32],
) {
    let last = n_nodes - 1;
    // Layers of row i: k jumps fit iff i <= N - k, and of the last layer only row 0 is read.
    let top_layer = |i: usize| {
        if i == 0 {
            k_max.min(last)
        } else {
            (k_max - 1).min(last - i)
        }
    };
    // min over j in lo..=hi of cost[i][j] + w * dp_{k-1}[j], as (value, j).
    let cell = |dp: &[f64], i: usize, k: usize, lo: usize, hi: usize| {
        let row = &cost[i * n_nodes + lo..=i * n_nodes + hi];
        let below = &dp[(k - 2) * n_nodes + lo..=(k - 2) * n_nodes + hi];
        let (value, offset) = minplus::row_argmin(row, below, weight);
        (value, lo + offset)
    };
    // Rows 0..=N-2 take part in layers 2 and up.
    let stride = k_max - 1;
    let mut end = last - 1;
    while end > 0 {
        let start = end.saturating_sub(BLOCK_ROWS);
        let shared: &[f64] = dp;
        // Far parts of rows start + t * TASK_ROWS.., at [row offset * stride + k - 2].
        let far_part = |t: usize| -> Vec<Option<(f64, usize)>> {
            let rows = start + t * TASK_ROWS..(start + (t + 1) * TASK_ROWS).min(end);
            let mut far = vec![None; rows.len() * stride];
            // Layer-major so that one slice of dp_{k-1} serves every row of the task.
            for k in 2..=k_max {
                let hi = last - k + 1;
                if end > hi {
                    break;
                }
                for i in rows.clone().filter(|&i| k <= top_layer(i)) {
                    far[(i - rows.start) * stride + k - 2] = Some(cell(shared, i, k, end, hi));
                }
            }
            far
        };
        let tasks = (end - start).div_ceil(TASK_ROWS);
        let far: Vec<_> = if parallel {
            parallel::map_indices(tasks, far_part)
        } else {
            (0..tasks).map(far_part).collect()
        };
        for i in (start..end).rev() {
            let offset = i - start;
            let far = &far[offset / TASK_ROWS][(offset % TASK_ROWS) * stride..];
            for (k, far) in (2..=top_layer(i)).zip(far) {
                let near_hi = (last - k + 1).min(end - 1);
                let near = (i < near_hi).then(|| cell(dp, i, k, i + 1, near_hi));
                let (value, j) = match (near, *far) {
                    // A near value comes first, so it wins ties.
                    (Some(near), Some(far)) => {
                        if near.0 <= far.0 {
                            near
                        } else {
                            far
                        }
                    }
                    (Some(only), None) | (None, Some(only)) => only,
                    (None, None) => unreachable!("row {i} has no admissible next node"),
                };
                dp[(k - 1) * n_nodes + i] = value;
                choices[(k - 1) * n_nodes + i] = j as u32;
            }
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    // Named apart from the DP's own `Strategy`, which `super::*` brings in.
    use proptest::strategy::Strategy as Generator;

    fn pseudo_random_costs(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n * n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Few distinct values, so that ties are everywhere.
                ((state >> 33) % 7) as f64 * 0.25
            })
            .collect()
    }

    #[test]
    fn parallel_and_sequential_layers_are_identical() {
        let n = 300;
        let cost = pseudo_random_costs(n, 7);
        for weight in [1.0, 1.25] {
            let seq = solve(&cost, n, 40, weight, false, false, None).unwrap();
            let par = solve(&cost, n, 40, weight, false, true, None).unwrap();
            for k in 1..=40 {
                assert_eq!(seq.path(k).unwrap(), par.path(k).unwrap());
            }
        }
    }

    /// Sizes that make small matrices reach every path of the pruned DP: short lists (cut,
    /// raised, or left empty), fallbacks to the block scan, many bands.
    fn small_tuning() -> impl Generator<Value = pruned::Tuning> {
        (
            1usize..24,
            1usize..40,
            prop_oneof![Just(None), (1usize..6).prop_map(Some)],
        )
            .prop_map(|(keep, min_row, bands)| pruned::Tuning {
                keep,
                min_row,
                bands,
            })
    }

    /// Costs of one of three kinds: `distinct` values spread over [0, 1) (few: ties
    /// everywhere; many: sums that round), or costs rising along each row with a little of
    /// that noise, whose cheapest entries are a row's first (lists settle few cells there).
    fn costs(n: usize, seed: u64, distinct: u64, rising: bool) -> Vec<f64> {
        let noise = few_values(n, seed, distinct);
        if !rising {
            return noise;
        }
        (0..n * n)
            .map(|x| ((x % n) as f64 - (x / n) as f64).abs() / n as f64 + 0.05 * noise[x])
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The pruned DP (threshold scan, block-pruned fallback, bands) changes no node and no
        /// bit of any cost: on few distinct values (ties everywhere), many, rising rows, and
        /// with weights that round.
        #[test]
        fn pruned_and_unpruned_full_dp_are_identical(
            n in 2usize..300,
            k_max in 1usize..24,
            distinct in prop_oneof![Just(1u64), Just(2), Just(3), Just(5), Just(1 << 20)],
            rising in any::<bool>(),
            weight in prop_oneof![Just(1.0), Just(0.5), Just(1.3), Just(2.0), Just(0.7)],
            seed in any::<u64>(),
            parallel in any::<bool>(),
            tuning in small_tuning(),
        ) {
            let k_max = k_max.min(n - 1);
            let cost = costs(n, seed, distinct, rising);
            let plain = solve(&cost, n, k_max, weight, false, parallel, None).unwrap();
            let pruned = solve(&cost, n, k_max, weight, false, parallel, Some(tuning)).unwrap();
            for k in 1..=k_max {
                let (a, b) = (plain.path(k), pruned.path(k));
                prop_assert_eq!(a.is_ok(), b.is_ok());
                if let (Ok(a), Ok(b)) = (a, b) {
                    prop_assert_eq!(&a.nodes, &b.nodes);
                    prop_assert_eq!(a.cost.to_bits(), b.cost.to_bits());
                }
            }
            prop_assert_eq!(plain.choices, pruned.choices);
        }

        /// Every band validates all its rows before it gives up, so the first invalid entry in
        /// row-major order is the one reported, whichever band holds it.
        #[test]
        fn pruned_dp_reports_the_first_invalid_entry_of_all_bands(
            n in 20usize..200,
            bad in proptest::collection::vec((0usize..1000, 0usize..1000, 0usize..3), 1..4),
            bands in 1usize..6,
        ) {
            let mut cost = few_values(n, 3, 1 << 20);
            let mut first = None;
            for &(i, j, kind) in &bad {
                let i = i % (n - 1);
                let j = i + 1 + j % (n - 1 - i);
                cost[i * n + j] = [f64::NAN, f64::INFINITY, -1.0][kind];
                first = first.min(Some((i, j))).or(Some((i, j)));
            }
            let (i, j) = first.expect("at least one bad entry");
            let tuning = pruned::Tuning { keep: 8, min_row: 4, bands: Some(bands) };
            let error = solve(&cost, n, 3, 1.0, false, true, Some(tuning)).err();
            let expected = validate::entry_error(&cost, n, i, j);
            prop_assert_eq!(error.map(|e| e.to_string()), Some(expected.to_string()));
        }
    }

    /// `distinct` values spread over [0, 1), so that sums round when there are many.
    fn few_values(n: usize, seed: u64, distinct: u64) -> Vec<f64> {
        let mut state = seed | 1;
        (0..n * n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % distinct) as f64 / distinct as f64
            })
            .collect()
    }

    #[test]
    fn pruned_dp_handles_sums_that_overflow_to_infinity() {
        // Every path's weighted sum overflows, so every cell ties at +inf.
        let n = 300;
        let cost = vec![f64::MAX; n * n];
        for weight in [1.0, 2.0] {
            let plain = solve(&cost, n, 6, weight, false, true, None).unwrap();
            let small = pruned::Tuning {
                keep: 4,
                min_row: 2,
                bands: Some(3),
            };
            for tuning in [pruned::Tuning::default(), small] {
                let pruned = solve(&cost, n, 6, weight, false, true, Some(tuning)).unwrap();
                assert_eq!(plain.choices, pruned.choices);
                assert_eq!(plain.best, pruned.best);
            }
        }
    }

    #[test]
    fn parallel_and_sequential_monge_layers_are_identical() {
        // Squared jump lengths on uneven times, in floats: Monge, with inexact sums.
        let n = 400;
        let times: Vec<f64> = (0..n).map(|i| (i as f64).powf(1.3) / 7.0).collect();
        let cost: Vec<f64> = (0..n * n)
            .map(|x| (times[x % n] - times[x / n]).powi(2))
            .collect();
        for weight in [1.0, 1.25] {
            let seq = solve(&cost, n, 40, weight, true, false, None).unwrap();
            let par = solve(&cost, n, 40, weight, true, true, None).unwrap();
            for k in 1..=40 {
                assert_eq!(seq.path(k).unwrap(), par.path(k).unwrap());
            }
        }
    }
}
