//! The Monge shortcut returns exactly what the full DP returns, and only runs on Monge input.

use proptest::prelude::*;
use proptest::strategy::Strategy as ValueStrategy;
use thrifty_steps::{is_monge, optimal_path_with, optimal_paths_with, CoreError, Strategy};

/// Convex functions of the jump length; any of them, plus `a_i + b_j`, gives a Monge matrix.
/// The linear one makes every path with the same k cost the same: nothing but ties.
fn convex(kind: u8, x: f64) -> f64 {
    match kind {
        0 => x * x,
        1 => x,
        2 => (x - 3.0).max(0.0).powi(2),
        _ => x * x * x,
    }
}

/// `c[i][j] = f(t_j - t_i) + a_i + b_j` on random increasing integer times, all integers so
/// that every sum is exact. The lower triangle is NaN: it must never be read.
fn monge_matrix(times: &[u32], rows: &[u32], cols: &[u32], kind: u8) -> Vec<f64> {
    let n = times.len();
    let mut cost = vec![f64::NAN; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let length = f64::from(times[j] - times[i]);
            cost[i * n + j] = convex(kind, length) + f64::from(rows[i]) + f64::from(cols[j]);
        }
    }
    cost
}

fn monge_problem() -> impl ValueStrategy<Value = (usize, Vec<f64>, f64)> {
    (
        2usize..=40,
        0u8..4,
        prop::sample::select(vec![1.0, 0.5, 2.0, 1.5]),
    )
        .prop_flat_map(|(n, kind, weight)| {
            let steps = prop::collection::vec(1u32..6, n);
            let rows = prop::collection::vec(0u32..20, n);
            let cols = prop::collection::vec(0u32..20, n);
            (steps, rows, cols).prop_map(move |(steps, rows, cols)| {
                let times: Vec<u32> = steps
                    .iter()
                    .scan(0, |t, s| {
                        *t += s;
                        Some(*t)
                    })
                    .collect();
                (n, monge_matrix(&times, &rows, &cols, kind), weight)
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn auto_monge_and_full_agree((n, cost, weight) in monge_problem()) {
        prop_assert!(is_monge(&cost, n).unwrap());
        let k_max = n - 1;
        let full = optimal_paths_with(&cost, n, k_max, weight, Strategy::Full).unwrap();
        let monge = optimal_paths_with(&cost, n, k_max, weight, Strategy::Monge).unwrap();
        let auto = optimal_paths_with(&cost, n, k_max, weight, Strategy::Auto).unwrap();
        prop_assert_eq!(&monge, &full);
        prop_assert_eq!(&auto, &full);
        for k in [1, k_max / 2 + 1, k_max] {
            prop_assert_eq!(
                &optimal_path_with(&cost, n, k, weight, Strategy::Monge).unwrap(),
                &full[k - 1]
            );
        }
    }

    #[test]
    fn a_perturbed_matrix_is_not_monge(
        (n, cost, weight) in monge_problem().prop_filter("needs a quadruple", |p| p.0 >= 4),
        pick in any::<prop::sample::Index>(),
    ) {
        // Raise one c[i][j] (i + 1 < j < N) just past what its unit square allows.
        let quads: Vec<(usize, usize)> =
            (0..n).flat_map(|i| (i + 2..n - 1).map(move |j| (i, j))).collect();
        let (i, j) = quads[pick.index(quads.len())];
        let mut cost = cost;
        let at = |r: usize, c: usize| r * n + c;
        let slack = cost[at(i, j + 1)] + cost[at(i + 1, j)] - cost[at(i, j)] - cost[at(i + 1, j + 1)];
        cost[at(i, j)] += slack + 1.0;
        prop_assert!(!is_monge(&cost, n).unwrap());
        let forced = optimal_path_with(&cost, n, 2, weight, Strategy::Monge).unwrap_err();
        prop_assert!(
            matches!(&forced, CoreError::InvalidValue { argument: "cost", message } if message.contains("not Monge")),
            "{}", forced
        );
        // Auto notices and falls back to the full DP.
        for k in 1..n {
            prop_assert_eq!(
                optimal_path_with(&cost, n, k, weight, Strategy::Auto).unwrap(),
                optimal_path_with(&cost, n, k, weight, Strategy::Full).unwrap()
            );
        }
    }
}

#[test]
fn large_monge_grids_agree_across_strategies() {
    // Past the parallel threshold, with times that make many long jumps equally good.
    let n = 700;
    let times: Vec<u32> = (0..n as u32).map(|i| i * 3 + (i * i) % 7).collect();
    let rows: Vec<u32> = (0..n as u32).map(|i| (i * 37) % 11).collect();
    let cols: Vec<u32> = (0..n as u32).map(|i| (i * 53) % 13).collect();
    for kind in 0..4 {
        let cost = monge_matrix(&times, &rows, &cols, kind);
        assert!(is_monge(&cost, n).unwrap());
        for weight in [1.0, 1.5] {
            let full = optimal_paths_with(&cost, n, 30, weight, Strategy::Full).unwrap();
            let monge = optimal_paths_with(&cost, n, 30, weight, Strategy::Monge).unwrap();
            assert_eq!(monge, full, "kind {kind}, w = {weight}");
        }
    }
}

#[test]
fn tiny_matrices_are_monge_and_the_lower_triangle_is_ignored() {
    assert!(is_monge(&[f64::NAN, 0.0, f64::NAN, f64::NAN], 2).unwrap());
    let three = [
        f64::NAN,
        1.0,
        9.0,
        f64::NAN,
        f64::NAN,
        1.0,
        f64::NAN,
        f64::NAN,
        f64::NAN,
    ];
    assert!(is_monge(&three, 3).unwrap());
    // Negative costs are fine for the property itself.
    let n = 4;
    let mut cost = vec![f64::NAN; n * n];
    for i in 0..n {
        for j in i + 1..n {
            cost[i * n + j] = -((j - i) as f64).powi(2);
        }
    }
    // -(x^2) is concave: the square (0, 1) x (2, 3) fails.
    assert!(!is_monge(&cost, n).unwrap());
}

#[test]
fn is_monge_rejects_bad_input() {
    let shape = is_monge(&[0.0; 5], 2).unwrap_err();
    assert!(
        matches!(
            shape,
            CoreError::Shape {
                argument: "cost",
                ..
            }
        ),
        "{shape}"
    );
    let mut cost = vec![0.0; 16];
    cost[2 * 4 + 3] = f64::INFINITY;
    let infinite = is_monge(&cost, 4).unwrap_err();
    assert_eq!(
        infinite.to_string(),
        "cost: cost[2][3] is inf; the upper triangle must be finite"
    );
}

/// The first `(i, j)` (row-major) with `c[i][j] + c[i+1][j+1] > c[i][j+1] + c[i+1][j]`.
fn first_violation(cost: &[f64], n: usize) -> Option<(usize, usize)> {
    let c = |i: usize, j: usize| cost[i * n + j];
    (0..n).find_map(|i| {
        (i + 2..n.saturating_sub(1))
            .find(|&j| c(i, j) + c(i + 1, j + 1) > c(i, j + 1) + c(i + 1, j))
            .map(|j| (i, j))
    })
}

#[test]
fn every_violation_and_bad_entry_is_located() {
    // Every position of a bump, a NaN and a negative entry, on sizes around the 8-wide
    // chunks of the check and past the parallel threshold.
    for n in [5, 12, 21, 300] {
        // A constant keeps the matrix Monge, and the bumped entries non-negative.
        let base: Vec<f64> = (0..n * n)
            .map(|x| ((x % n) as f64 - (x / n) as f64).powi(2) + 10.0)
            .collect();
        let step = if n > 100 { 37 } else { 1 };
        for i in (0..n - 1).step_by(step) {
            for j in (i + 1..n).step_by(step) {
                // The unit squares have a slack of exactly 2, so a bump of 3 breaks those
                // that hold the entry on the wrong side, and 1 breaks none.
                for bump in [3.0, -3.0, 1.0] {
                    let mut bumped = base.clone();
                    bumped[i * n + j] += bump;
                    let monge = optimal_path_with(&bumped, n, 1, 1.0, Strategy::Monge);
                    match first_violation(&bumped, n) {
                        None => assert!(monge.is_ok() && is_monge(&bumped, n).unwrap()),
                        Some((vi, vj)) => {
                            assert!(!is_monge(&bumped, n).unwrap());
                            let message = monge.unwrap_err().to_string();
                            let expected = format!("is not Monge: cost[{vi}][{vj}] + ");
                            assert!(message.contains(&expected), "{message} vs {expected}");
                        }
                    }
                }
                for (bad, shown) in [(f64::NAN, "NaN"), (-1.0, "-1")] {
                    let mut broken = base.clone();
                    broken[i * n + j] = bad;
                    let error = optimal_path_with(&broken, n, 1, 1.0, Strategy::Auto)
                        .unwrap_err()
                        .to_string();
                    assert!(
                        error.contains(&format!("cost[{i}][{j}] is {shown}")),
                        "{error}"
                    );
                }
            }
        }
    }
}
