//! Every bad input of the path solvers gets an error that names the argument and says why.

use thrifty_steps::{optimal_path, optimal_path_with, optimal_paths, CoreError, Strategy};

fn upper_ones(n: usize) -> Vec<f64> {
    // Lower triangle and diagonal hold NaN, which is allowed: they are never read.
    (0..n * n)
        .map(|x| if x % n > x / n { 1.0 } else { f64::NAN })
        .collect()
}

fn expect_shape(error: CoreError, argument: &str, message: &str) {
    assert!(
        matches!(&error, CoreError::Shape { argument: a, .. } if *a == argument),
        "{error}"
    );
    assert_eq!(error.to_string(), message);
}

fn expect_invalid(error: CoreError, argument: &str, message: &str) {
    assert!(
        matches!(&error, CoreError::InvalidValue { argument: a, .. } if *a == argument),
        "{error}"
    );
    assert_eq!(error.to_string(), message);
}

fn expect_non_finite(error: CoreError, argument: &str, message: &str) {
    assert!(
        matches!(&error, CoreError::NonFinite { argument: a, .. } if *a == argument),
        "{error}"
    );
    assert_eq!(error.to_string(), message);
}

#[test]
fn fewer_than_two_nodes() {
    expect_shape(
        optimal_path(&[0.0], 1, 1, 1.0).unwrap_err(),
        "cost",
        "cost: must have at least 2 nodes (one jump), got n_nodes=1",
    );
    expect_shape(
        optimal_path(&[], 0, 1, 1.0).unwrap_err(),
        "cost",
        "cost: must have at least 2 nodes (one jump), got n_nodes=0",
    );
}

#[test]
fn not_square() {
    expect_shape(
        optimal_path(&[0.0; 12], 4, 2, 1.0).unwrap_err(),
        "cost",
        "cost: must be square, got 12 values for n_nodes=4 (expected 16)",
    );
    expect_shape(
        optimal_path(&[0.0; 4], usize::MAX, 2, 1.0).unwrap_err(),
        "cost",
        &format!(
            "cost: must be square, but n_nodes={} squared overflows",
            usize::MAX
        ),
    );
}

#[test]
fn jump_count_out_of_range() {
    let cost = upper_ones(6);
    expect_invalid(
        optimal_path(&cost, 6, 0, 1.0).unwrap_err(),
        "k",
        "k: must be in 1..=N (N = 5 jumps available), got 0",
    );
    expect_invalid(
        optimal_path(&cost, 6, 7, 1.0).unwrap_err(),
        "k",
        "k: must be in 1..=N (N = 5 jumps available), got 7",
    );
    expect_invalid(
        optimal_paths(&cost, 6, 6, 1.0).unwrap_err(),
        "k_max",
        "k_max: must be in 1..=N (N = 5 jumps available), got 6",
    );
    assert_eq!(optimal_paths(&cost, 6, 5, 1.0).unwrap().len(), 5);
}

#[test]
fn future_weight_must_be_positive_and_finite() {
    let cost = upper_ones(4);
    for (weight, shown) in [
        (0.0, "0"),
        (-1.0, "-1"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (-0.0, "-0"),
    ] {
        expect_invalid(
            optimal_path(&cost, 4, 2, weight).unwrap_err(),
            "future_weight",
            &format!("future_weight: must be finite and > 0, got {shown}"),
        );
    }
    assert!(optimal_path(&cost, 4, 2, 1e-300).is_ok());
}

const STRATEGIES: [Strategy; 3] = [Strategy::Auto, Strategy::Full, Strategy::Monge];

#[test]
fn non_finite_costs_are_located() {
    let n = 6;
    for (bad, shown) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        let mut cost = upper_ones(n);
        cost[2 * n + 5] = bad;
        cost[3 * n + 4] = f64::NAN; // later in row-major order: not the one reported
        for strategy in STRATEGIES {
            expect_non_finite(
                optimal_path_with(&cost, n, 2, 1.0, strategy).unwrap_err(),
                "cost",
                &format!("cost: cost[2][5] is {shown}; the upper triangle must be finite"),
            );
        }
    }
}

#[test]
fn negative_costs_are_located() {
    let n = 6;
    let mut cost = upper_ones(n);
    cost[n + 3] = -1.5;
    // Also not Monge from row 0 on: a bad entry still takes precedence.
    cost[2] = 50.0;
    for strategy in STRATEGIES {
        expect_invalid(
            optimal_path_with(&cost, n, 2, 1.0, strategy).unwrap_err(),
            "cost",
            "cost: cost[1][3] is -1.5, but costs must be >= 0",
        );
    }
}

#[test]
fn bad_costs_are_found_past_the_parallel_threshold() {
    let n = 300;
    let mut cost = upper_ones(n);
    cost[250 * n + 299] = -2.0;
    cost[251 * n + 260] = f64::NAN;
    for strategy in STRATEGIES {
        expect_invalid(
            optimal_path_with(&cost, n, 2, 1.0, strategy).unwrap_err(),
            "cost",
            "cost: cost[250][299] is -2, but costs must be >= 0",
        );
    }
}

/// Past the size at which the full DP prunes, it validates each row as it reads it, and
/// the Monge test of `Auto` stops at its first violation: the error must still be the first
/// bad entry in row-major order, wherever it lies against that violation.
#[test]
fn bad_costs_are_found_where_the_full_dp_prunes() {
    let n = 700;
    // Row 3 breaks the Monge property, so `Auto` takes the full DP.
    let not_monge = |cost: &mut Vec<f64>| cost[3 * n + 5] = 9.0;
    // (row, column, value) of each bad entry, and the start of the error it must give.
    type Case<'a> = (&'a [(usize, usize, f64)], &'a str);
    let cases: [Case; 4] = [
        (
            &[(640, 690, f64::NAN), (650, 660, -1.0)],
            "cost[640][690] is NaN",
        ),
        (
            &[(650, 660, -1.0), (640, 690, f64::INFINITY)],
            "cost[640][690] is inf",
        ),
        (&[(1, 2, -0.5), (640, 690, f64::NAN)], "cost[1][2] is -0.5"),
        (&[(698, 699, f64::NEG_INFINITY)], "cost[698][699] is -inf"),
    ];
    for (bad, first) in cases {
        let mut cost = upper_ones(n);
        not_monge(&mut cost);
        for &(i, j, x) in bad {
            cost[i * n + j] = x;
        }
        for strategy in [Strategy::Auto, Strategy::Full] {
            let error = optimal_path_with(&cost, n, 3, 1.0, strategy).unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("cost: {first}")),
                "{strategy:?}: {error}"
            );
        }
    }
}

#[test]
fn the_lower_triangle_and_diagonal_may_hold_anything() {
    let n = 5;
    let mut cost = upper_ones(n);
    cost[n * 3 + 1] = f64::NEG_INFINITY;
    cost[n * 4] = -7.0;
    assert_eq!(optimal_path(&cost, n, 2, 1.0).unwrap().cost, 2.0);
}

#[test]
fn forcing_monge_on_a_matrix_that_is_not() {
    let n = 4;
    let mut cost = upper_ones(n);
    cost[2] = 9.0; // c[0][2] + c[1][3] = 10 > c[0][3] + c[1][2] = 2
    expect_invalid(
        optimal_path_with(&cost, n, 2, 1.0, Strategy::Monge).unwrap_err(),
        "cost",
        "cost: is not Monge: cost[0][2] + cost[1][3] > cost[0][3] + cost[1][2]; use \
         Strategy::Full or Strategy::Auto",
    );
    assert!(optimal_path_with(&cost, n, 2, 1.0, Strategy::Full).is_ok());
}
