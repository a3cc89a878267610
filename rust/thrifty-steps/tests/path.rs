//! The BOSS DP against exhaustive search and against a plain scalar DP.

use proptest::prelude::*;
// proptest's prelude has a `Strategy` trait too; the solver's enum keeps the short name.
use proptest::strategy::Strategy as ValueStrategy;
use thrifty_steps::{
    optimal_path, optimal_path_with, optimal_paths, optimal_paths_with, Path, Strategy,
};

/// Weights whose powers and products with small integers are exact in f64, so that costs
/// computed in any order agree to the bit and ties are real ties.
const EXACT_WEIGHTS: [f64; 5] = [1.0, 0.5, 2.0, 1.5, 0.75];

/// A row-major matrix from its strict upper triangle; everything else is NaN, which the
/// solver must never read.
fn matrix(n: usize, upper: &[f64]) -> Vec<f64> {
    let mut cost = vec![f64::NAN; n * n];
    let mut values = upper.iter();
    for i in 0..n {
        for j in i + 1..n {
            cost[i * n + j] = *values.next().expect("enough upper-triangle values");
        }
    }
    cost
}

/// `sum_m w^m c(jump m)`, accumulated like the DP does (Horner from the end), though with
/// exact weights any order gives the same bits.
fn path_cost(cost: &[f64], n: usize, nodes: &[usize], weight: f64) -> f64 {
    nodes.windows(2).rev().fold(0.0, |tail, jump| {
        cost[jump[0] * n + jump[1]] + weight * tail
    })
}

/// Every path with exactly `k` jumps, in lexicographic order of its node sequence; keeps the
/// first of the cheapest.
fn exhaustive(cost: &[f64], n: usize, k: usize, weight: f64) -> Path {
    fn walk(
        cost: &[f64],
        n: usize,
        jumps_left: usize,
        weight: f64,
        nodes: &mut Vec<usize>,
        best: &mut Option<Path>,
    ) {
        let last = n - 1;
        let here = *nodes.last().unwrap();
        if jumps_left == 1 {
            nodes.push(last);
            let total = path_cost(cost, n, nodes, weight);
            if !matches!(best, Some(ref b) if b.cost <= total) {
                *best = Some(Path {
                    nodes: nodes.clone(),
                    cost: total,
                });
            }
            nodes.pop();
            return;
        }
        // Leave room for the remaining jumps: the next node is at most N - (jumps_left - 1).
        for next in here + 1..=last + 1 - jumps_left {
            nodes.push(next);
            walk(cost, n, jumps_left - 1, weight, nodes, best);
            nodes.pop();
        }
    }
    let mut best = None;
    walk(cost, n, k, weight, &mut vec![0], &mut best);
    best.expect("at least one path")
}

/// The DP in its plainest form (one scalar loop, ties to the smallest j), for large sizes.
fn scalar_dp(cost: &[f64], n: usize, k: usize, weight: f64) -> Path {
    let last = n - 1;
    let mut dp: Vec<Vec<f64>> = vec![vec![f64::INFINITY; n]; k + 1];
    let mut next = vec![vec![0usize; n]; k + 1];
    for i in 0..last {
        dp[1][i] = cost[i * n + last];
        next[1][i] = last;
    }
    for layer in 2..=k {
        for i in 0..=last - layer {
            for j in i + 1..=last - layer + 1 {
                let v = cost[i * n + j] + weight * dp[layer - 1][j];
                if v < dp[layer][i] {
                    dp[layer][i] = v;
                    next[layer][i] = j;
                }
            }
        }
    }
    let mut nodes = vec![0];
    for layer in (1..=k).rev() {
        nodes.push(next[layer][*nodes.last().unwrap()]);
    }
    Path {
        nodes,
        cost: dp[k][0],
    }
}

fn small_problem() -> impl ValueStrategy<Value = (usize, Vec<f64>, f64)> {
    (2usize..=13, prop::sample::select(EXACT_WEIGHTS.to_vec())).prop_flat_map(|(n, weight)| {
        // Integer costs in 0..4: plenty of ties, all arithmetic exact.
        let upper = prop::collection::vec((0u8..4).prop_map(f64::from), n * (n - 1) / 2);
        (
            Just(n),
            upper.prop_map(move |u| matrix(n, &u)),
            Just(weight),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Optimal cost, and among optimal paths the lexicographically smallest node sequence.
    #[test]
    fn matches_exhaustive_search_for_every_k((n, cost, weight) in small_problem()) {
        for k in 1..n {
            let expected = exhaustive(&cost, n, k, weight);
            for strategy in [Strategy::Auto, Strategy::Full] {
                let got = optimal_path_with(&cost, n, k, weight, strategy).unwrap();
                prop_assert_eq!(&got, &expected, "k = {}, {:?}", k, strategy);
            }
        }
    }

    #[test]
    fn all_k_at_once_agrees_with_one_k_at_a_time((n, cost, weight) in small_problem()) {
        let k_max = n - 1;
        for strategy in [Strategy::Auto, Strategy::Full] {
            let all = optimal_paths_with(&cost, n, k_max, weight, strategy).unwrap();
            prop_assert_eq!(all.len(), k_max);
            for k in 1..=k_max {
                prop_assert_eq!(&all[k - 1], &optimal_path_with(&cost, n, k, weight, strategy).unwrap());
                // A shorter k_max must not change the answers it shares.
                let fewer = optimal_paths_with(&cost, n, k, weight, strategy).unwrap();
                prop_assert_eq!(&fewer[..], &all[..k]);
            }
        }
    }

    #[test]
    fn paths_are_well_formed((n, cost, weight) in small_problem()) {
        for (k, path) in (1..n).zip(optimal_paths(&cost, n, n - 1, weight).unwrap()) {
            prop_assert_eq!(path.nodes.len(), k + 1);
            prop_assert_eq!(path.nodes[0], 0);
            prop_assert_eq!(*path.nodes.last().unwrap(), n - 1);
            prop_assert!(path.nodes.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(path.cost, path_cost(&cost, n, &path.nodes, weight));
        }
    }
}

/// Deterministic pseudo-random numbers for the large cases (no extra dependency).
fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    }
}

#[test]
fn large_grids_match_the_scalar_dp_on_ties_and_on_real_costs() {
    // 600 nodes is past the parallel threshold and spans several row blocks.
    let n = 601;
    let mut draw = lcg(3);
    let ties: Vec<f64> = (0..n * n).map(|_| (draw() % 4) as f64).collect();
    let real: Vec<f64> = (0..n * n)
        .map(|_| (draw() % 1_000_000) as f64 / 7.0)
        .collect();
    for (cost, weight) in [(&ties, 1.0), (&ties, 0.5), (&real, 1.0), (&real, 1.1)] {
        let all = optimal_paths(cost, n, 25, weight).unwrap();
        for k in [1, 2, 3, 17, 25] {
            assert_eq!(
                all[k - 1],
                scalar_dp(cost, n, k, weight),
                "k = {k}, w = {weight}"
            );
        }
        let single = optimal_path(cost, n, 600, weight).unwrap();
        assert_eq!(
            single.nodes,
            (0..n).collect::<Vec<_>>(),
            "N jumps visit every node"
        );
    }
}

#[test]
fn future_weight_scales_later_jumps() {
    // 0 -> 2 costs 1 then 2 -> 4 costs 10: cheaper with w = 0.5, dearer with w = 2 than
    // 0 -> 1 (cost 6) then 1 -> 4 (cost 4).
    let n = 5;
    let mut cost = vec![100.0; n * n];
    cost[2] = 1.0;
    cost[2 * n + 4] = 10.0;
    cost[1] = 6.0;
    cost[n + 4] = 4.0;
    let light = optimal_path(&cost, n, 2, 0.5).unwrap();
    assert_eq!(
        light,
        Path {
            nodes: vec![0, 2, 4],
            cost: 1.0 + 0.5 * 10.0
        }
    );
    let heavy = optimal_path(&cost, n, 2, 2.0).unwrap();
    assert_eq!(
        heavy,
        Path {
            nodes: vec![0, 1, 4],
            cost: 6.0 + 2.0 * 4.0
        }
    );
}

#[test]
fn two_nodes_have_one_path() {
    let path = optimal_path(&[f64::NAN, 3.5, f64::NAN, f64::NAN], 2, 1, 1.0).unwrap();
    assert_eq!(
        path,
        Path {
            nodes: vec![0, 1],
            cost: 3.5
        }
    );
}
