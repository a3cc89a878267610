//! The BOSS solvers at, just below and just above every size where they change shape, against
//! the DP in its plainest form, on every thread count.
//!
//! Where the code changes shape (the constants are private, so they are restated here):
//! - `PARALLEL_MIN_NODES = 256` (validate.rs): from 256 nodes on, the validation, the Monge
//!   test and every DP layer go to the thread pool.
//! - `BLOCK_ROWS = 128`, `TASK_ROWS = 8` (path.rs): the full DP walks the `n - 2` rows of the
//!   layers past the first bottom-up in blocks of 128 rows, each cut into tasks of 8; the top
//!   block holds `(n - 2) % 128` rows and its top task `(n - 2) % 8`. A block has no far part
//!   for `k` once its end passes `N - k + 1`, so `k` near `N` changes the shape too, and row 0
//!   alone takes the layer `k_max`.
//! - `SEGMENTS = 16`, `SHORT_RANGE = 16` (monge.rs): the Monge layer of `k` jumps has
//!   `n - k` rows, cut at 15 pivot rows when there are 16 or more, at `rows - 1` otherwise;
//!   search ranges up to 16 long are scanned by a plain loop, longer ones by the SIMD kernel.
//!   A Monge quadruple needs 4 nodes; rows `i + 2 < N` take the fused 8-lane check, the last
//!   two rows the scalar one.
//! - `BLOCK = 64`, `LANES = 8` (minplus.rs, 16 per AVX2 step): a scan of length `L` has
//!   `L / 64` whole blocks and a tail. The full DP of `n` nodes scans every length up to
//!   `n - 1`, so every `n` past 130 covers the block edges; smaller `n` are listed below.
//! - `k = 1` (no layer past the first), `k = N` (every node is visited), `k = N - 1`.
//!
//! Node counts stop at 2049, not 10^4: the input itself is an `n x n` matrix (33 MB at 2049
//! nodes, 800 MB at 10^4, per copy), and the reference is `O(k n^2)`, so larger grids would
//! spend the time budget on memory traffic without reaching a new shape.

mod reference;

use proptest::prelude::*;
use proptest::strategy::Strategy as ValueStrategy;
use reference::{monge_matrix, path_cost, pools, real_matrix, reference_paths, tie_matrix};
use thrifty_steps::{is_monge, optimal_path_with, optimal_paths_with, CoreError, Path, Strategy};

/// Node counts at, below and above each shape change listed at the top.
const NODE_COUNTS: &[usize] = &[
    2, 3, 4, 5, // one jump; the first Monge quadruple
    6, 9, 10, 11, // n - 2 = 8: one full task of rows
    15, 16, 17, 18, 19, // 16 rows in a Monge layer; powers of two
    31, 32, 33, // powers of two
    63, 64, 65, 66, 67, // one min-plus block
    127, 128, 129, 130, 131, // n - 2 = 128: one full row block; powers of two
    137, 138, 139, // a row block and one task
    255, 256, 257, 258, 259, // the parallel threshold; two row blocks
    385, 386, 387, // three row blocks
    511, 512, 513, 514, 515, // four row blocks; powers of two
];

/// Which matrix a case solves.
#[derive(Clone, Copy, Debug)]
enum Costs {
    /// Integers in 0..4.
    Ties,
    /// Sevenths: inexact sums.
    Real,
    /// A Monge matrix of the given convex kind (see [`monge_matrix`]).
    Monge(u8),
}

#[derive(Clone, Debug)]
struct Case {
    n: usize,
    k_max: usize,
    weight: f64,
    costs: Costs,
    seed: u64,
}

impl Case {
    fn matrix(&self) -> Vec<f64> {
        match self.costs {
            Costs::Ties => tie_matrix(self.n, self.seed),
            Costs::Real => real_matrix(self.n, self.seed),
            Costs::Monge(kind) => monge_matrix(self.n, kind, self.seed),
        }
    }

    /// Whether every sum the DP forms is exact: then the Monge shortcut must return what the
    /// full scan returns, bit for bit (with inexact sums it may differ on near-ties).
    fn exact(&self) -> bool {
        let dyadic = [1.0, 0.5, 2.0, 1.5, 0.75].contains(&self.weight);
        let integers = !matches!(self.costs, Costs::Real);
        // Up to k = 8, w^k * c in units of 4^-k stays below 2^53 for the integer costs.
        integers && (self.weight == 1.0 || (dyadic && self.k_max <= 8))
    }
}

/// Jump counts at the shapes listed at the top, for a grid of `n` nodes.
fn jump_counts(n: usize) -> impl ValueStrategy<Value = usize> {
    let most = n - 1;
    let pinned: Vec<usize> = [1, 2, 3, most - 1, most]
        .into_iter()
        .chain([15, 16, 17].map(|rows| n.saturating_sub(rows)))
        .filter(|k| (1..=most).contains(k))
        .collect();
    prop_oneof![prop::sample::select(pinned), 1..=most]
}

fn case() -> impl ValueStrategy<Value = Case> {
    let costs = prop_oneof![
        Just(Costs::Ties),
        Just(Costs::Real),
        (0u8..4).prop_map(Costs::Monge),
    ];
    (
        prop::sample::select(NODE_COUNTS),
        prop::sample::select(vec![1.0, 0.5, 2.0, 1.5, 0.75, 1.1]),
        costs,
        any::<u64>(),
    )
        .prop_flat_map(|(n, weight, costs, seed)| {
            jump_counts(n).prop_map(move |k_max| Case {
                n,
                k_max,
                weight,
                costs,
                seed,
            })
        })
}

/// `got` for every `k <= k_max` against the reference: identical paths where `exact`, else
/// (the Monge shortcut on inexact sums) a well-formed path whose cost is within rounding of
/// the optimum.
fn check_paths(
    got: &[Path],
    expected: &[Option<Path>],
    cost: &[f64],
    n: usize,
    weight: f64,
    exact: bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), expected.len());
    for (k, (got, expected)) in (1..).zip(got.iter().zip(expected)) {
        let expected = expected.as_ref().expect("no overflow at these magnitudes");
        if exact {
            prop_assert_eq!(got, expected, "k = {}", k);
        } else {
            prop_assert_eq!(got.nodes.len(), k + 1);
            prop_assert_eq!(got.nodes[0], 0);
            prop_assert_eq!(*got.nodes.last().unwrap(), n - 1);
            prop_assert!(got.nodes.windows(2).all(|w| w[0] < w[1]));
            let total = path_cost(cost, n, &got.nodes, weight);
            let tolerance = 1e-9 * expected.cost.abs().max(1.0);
            prop_assert!((got.cost - expected.cost).abs() <= tolerance, "k = {}", k);
            prop_assert!((total - expected.cost).abs() <= tolerance, "k = {}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every strategy, for every `k` up to the drawn `k_max`, against the reference; and one
    /// `k` alone against the same `k` read from all of them.
    #[test]
    fn every_strategy_matches_the_reference_dp_at_every_boundary(case in case()) {
        let Case { n, k_max, weight, .. } = case;
        let cost = case.matrix();
        let expected = reference_paths(&cost, n, k_max, weight);
        let monge = is_monge(&cost, n).unwrap();
        if matches!(case.costs, Costs::Monge(_)) {
            prop_assert!(monge);
        }
        let full = optimal_paths_with(&cost, n, k_max, weight, Strategy::Full).unwrap();
        // The full scan forms the same sums as the reference, so it agrees on any input.
        check_paths(&full, &expected, &cost, n, weight, true)?;
        let exact = !monge || case.exact();
        let auto = optimal_paths_with(&cost, n, k_max, weight, Strategy::Auto).unwrap();
        check_paths(&auto, &expected, &cost, n, weight, exact)?;
        let forced = optimal_paths_with(&cost, n, k_max, weight, Strategy::Monge);
        if monge {
            check_paths(&forced.unwrap(), &expected, &cost, n, weight, exact)?;
        } else {
            let error = forced.unwrap_err();
            prop_assert!(
                matches!(&error, CoreError::InvalidValue { argument: "cost", message }
                    if message.contains("is not Monge")),
                "{}", error
            );
        }
        for strategy in [Strategy::Full, Strategy::Auto] {
            let single = optimal_path_with(&cost, n, k_max, weight, strategy).unwrap();
            let from_all = if strategy == Strategy::Full { &full } else { &auto };
            prop_assert_eq!(&single, &from_all[k_max - 1], "{:?}", strategy);
        }
    }
}

/// Every result of every strategy, on pools of 1, 2, 3 and 8 threads, bit for bit equal to
/// the one on the default pool; on node counts either side of the parallel threshold and of
/// the row blocks, with `k_max` at the Monge segment count and at `N`.
#[test]
fn thread_count_never_changes_a_path() {
    let pools = pools();
    for (n, seed) in [
        (255, 1),
        (256, 2),
        (257, 3),
        (258, 4),
        (259, 5),
        (386, 6),
        (515, 7),
    ] {
        let matrices = [
            (tie_matrix(n, seed), 1.0),
            (real_matrix(n, seed), 1.1),
            (monge_matrix(n, 1, seed), 1.0),
            (monge_matrix(n, 2, seed), 0.5),
        ];
        for (cost, weight) in &matrices {
            for k_max in [1, n - 16, n - 1] {
                for strategy in [Strategy::Auto, Strategy::Full, Strategy::Monge] {
                    let solve = || optimal_paths_with(cost, n, k_max, *weight, strategy);
                    let default = solve();
                    for (threads, pool) in &pools {
                        assert_eq!(
                            pool.install(solve),
                            default,
                            "n {n}, k_max {k_max}, {strategy:?}, {threads} threads"
                        );
                    }
                }
            }
        }
    }
}

/// Around the powers of two 1024 and 2048, with the reference for a few `k` (quadratic in `n`
/// per layer, so `k` stays small here; `k` up to `N` is drawn by the property test above).
#[test]
fn large_grids_around_powers_of_two_match_the_reference() {
    for (n, seed) in [
        (1023, 11),
        (1024, 12),
        (1025, 13),
        (2047, 14),
        (2048, 15),
        (2049, 16),
    ] {
        for (cost, weight) in [
            (tie_matrix(n, seed), 1.0),
            (real_matrix(n, seed), 1.1),
            (monge_matrix(n, 0, seed), 1.0),
        ] {
            let k_max = 17;
            let expected = reference_paths(&cost, n, k_max, weight);
            for strategy in [Strategy::Auto, Strategy::Full] {
                let got = optimal_paths_with(&cost, n, k_max, weight, strategy).unwrap();
                let expected: Vec<Path> = expected.iter().flatten().cloned().collect();
                assert_eq!(got, expected, "n {n}, {strategy:?}");
            }
        }
    }
}

/// Where a Monge layer has fewer rows than segments, exactly as many, and one more, on every
/// thread count: the pivots then fall on every row, or on all but the last.
#[test]
fn monge_layers_with_about_as_many_rows_as_segments() {
    let pools = pools();
    for n in [17, 18, 31, 32, 33, 300] {
        for kind in 0..4 {
            let cost = monge_matrix(n, kind, n as u64);
            let expected = reference_paths(&cost, n, n - 1, 1.0);
            let expected: Vec<Path> = expected.into_iter().flatten().collect();
            for (threads, pool) in &pools {
                let got = pool
                    .install(|| optimal_paths_with(&cost, n, n - 1, 1.0, Strategy::Monge).unwrap());
                assert_eq!(got, expected, "n {n}, kind {kind}, {threads} threads");
            }
        }
    }
}

/// The first bad entry in row-major order is the one named, wherever it sits against the
/// 8-lane chunks of the scans, the fused Monge rows and the parallel threshold, on every
/// thread count; a second bad entry further on changes nothing.
#[test]
fn the_first_bad_entry_is_named_on_every_thread_count() {
    let pools = pools();
    for n in [9, 10, 255, 256, 257] {
        let base = monge_matrix(n, 0, 3);
        let last = n - 1;
        // Rows at both ends (the last two rows are checked by the scalar loop), and columns
        // at the chunk edges of the row's upper triangle.
        let rows = [0, 1, last / 2, last - 3, last - 2, last - 1];
        for i in rows.into_iter().filter(|&i| i + 1 < n) {
            let columns = [1, 7, 8, 9, 16, 17].map(|offset| i + offset);
            for j in columns.into_iter().chain([last]).filter(|&j| j < n) {
                for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (-1.0, "-1")] {
                    let mut cost = base.clone();
                    cost[i * n + j] = bad;
                    // A later bad entry, in the last row with an upper triangle.
                    if (i, j) != (last - 1, last) {
                        cost[(last - 1) * n + last] = f64::NAN;
                    }
                    let needle = format!("cost[{i}][{j}] is {shown}");
                    for (threads, pool) in &pools {
                        for strategy in [Strategy::Auto, Strategy::Full, Strategy::Monge] {
                            let error = pool.install(|| {
                                optimal_path_with(&cost, n, 1, 1.0, strategy).unwrap_err()
                            });
                            assert!(
                                error.to_string().contains(&needle),
                                "{error} should name {needle} ({strategy:?}, {threads} threads)"
                            );
                        }
                    }
                    if bad.is_finite() {
                        continue;
                    }
                    let error = is_monge(&cost, n).unwrap_err();
                    assert!(error.to_string().contains(&needle), "{error}");
                }
            }
        }
    }
}
