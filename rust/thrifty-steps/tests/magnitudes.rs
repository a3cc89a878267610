//! The BOSS solvers and the Monge test on costs near the ends of the f64 range: subnormal
//! costs, costs whose sums overflow to infinity, and future weights whose powers do.
//!
//! Scaling integer costs by a power of two is exact, so the scaled matrix is Monge exactly
//! when the integer one is, and every DP sum is exact until it overflows. Overflow is where
//! the float comparisons stop telling the truth: `inf <= inf` holds whatever the real sums
//! were, and every path whose sum overflows ties with every other.

mod reference;

use proptest::prelude::*;
use proptest::strategy::Strategy as ValueStrategy;
use reference::{monge_matrix, pools, reference_paths, tie_matrix};
use thrifty_steps::{is_monge, optimal_path_with, optimal_paths_with, CoreError, Path, Strategy};

/// `2^exponent`, exactly, for exponents from -1074 to 1023.
fn power_of_two(exponent: i32) -> f64 {
    if exponent >= -1022 {
        f64::from_bits(((exponent + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (exponent + 1074))
    }
}

/// `cost` times `2^exponent`, in two exact steps so that the factor itself never leaves the
/// f64 range. With `exponent = None`, the largest factor that keeps every entry finite: then
/// the largest entries are within a factor 2 of `f64::MAX`, and any two of them overflow.
fn scaled(cost: &[f64], exponent: Option<i32>) -> Vec<f64> {
    let exponent = exponent.unwrap_or_else(|| {
        let largest = cost
            .iter()
            .filter(|x| x.is_finite())
            .fold(1.0f64, |m, x| m.max(x.abs()));
        1023 - largest.log2().floor() as i32
    });
    let (first, second) = (exponent / 2, exponent - exponent / 2);
    cost.iter()
        .map(|x| x * power_of_two(first) * power_of_two(second))
        .collect()
}

/// What a solver must return against the reference: the same paths, or, where the optimum
/// of some `k` overflows, an error naming `cost`.
fn expect_reference(
    got: Result<Vec<Path>, CoreError>,
    expected: &[Option<Path>],
    context: &str,
) -> Result<(), TestCaseError> {
    if expected.iter().all(Option::is_some) {
        let expected: Vec<Path> = expected.iter().flatten().cloned().collect();
        prop_assert_eq!(got, Ok(expected), "{}", context);
    } else {
        let error = got.unwrap_err();
        prop_assert!(
            matches!(&error, CoreError::NonFinite { argument: "cost", message }
                if message.contains("overflows")),
            "{}: {}",
            context,
            error
        );
    }
    Ok(())
}

/// Exponents at both ends: the smallest subnormal unit, the normal range's edge, and the
/// largest factor that keeps every entry finite (`None`).
fn exponent() -> impl ValueStrategy<Value = Option<i32>> {
    prop::sample::select(vec![
        Some(-1074),
        Some(-1060),
        Some(-1022),
        Some(-600),
        Some(0),
        Some(600),
        Some(980),
        None,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Monge matrices of exact integers scaled to either end of the range: the full scan,
    /// the Monge shortcut and Auto all return the reference's paths, and a `k` whose optimum
    /// overflows is an error rather than a path of infinite cost.
    #[test]
    fn scaled_monge_matrices_solve_exactly(
        n in prop::sample::select(vec![2usize, 3, 4, 5, 17, 18, 40, 257]),
        kind in 0u8..4,
        seed in any::<u64>(),
        exponent in exponent(),
        weight in prop::sample::select(vec![1.0, 2.0]),
        k_pick in any::<prop::sample::Index>(),
    ) {
        // With w = 2 the sums stay exact up to k = 8 (see the reference's integer bounds).
        let most = if weight == 1.0 { n - 1 } else { (n - 1).min(8) };
        let k_max = 1 + k_pick.index(most);
        let cost = scaled(&monge_matrix(n, kind, seed), exponent);
        prop_assert!(is_monge(&cost, n).unwrap());
        let expected = reference_paths(&cost, n, k_max, weight);
        for strategy in [Strategy::Full, Strategy::Monge, Strategy::Auto] {
            let got = optimal_paths_with(&cost, n, k_max, weight, strategy);
            expect_reference(got, &expected, &format!("{strategy:?}, k_max {k_max}"))?;
        }
    }

    /// Integer matrices that are mostly not Monge, scaled so that sums overflow (or cost
    /// nothing, when subnormal): the test still decides as on the integers, negated too
    /// (negative costs are allowed there), and Auto still returns the full scan's paths.
    #[test]
    fn overflow_hides_no_monge_violation(
        n in 4usize..=12,
        seed in any::<u64>(),
        exponent in exponent(),
    ) {
        let integers = tie_matrix(n, seed);
        let cost = scaled(&integers, exponent);
        prop_assert_eq!(is_monge(&cost, n).unwrap(), is_monge(&integers, n).unwrap());
        let negated: Vec<f64> = cost.iter().map(|x| -x).collect();
        let negated_integers: Vec<f64> = integers.iter().map(|x| -x).collect();
        prop_assert_eq!(
            is_monge(&negated, n).unwrap(),
            is_monge(&negated_integers, n).unwrap()
        );
        let expected = reference_paths(&cost, n, n - 1, 1.0);
        for strategy in [Strategy::Full, Strategy::Auto] {
            let got = optimal_paths_with(&cost, n, n - 1, 1.0, strategy);
            expect_reference(got, &expected, &format!("{strategy:?}"))?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A Monge matrix lifted so that every sum of two entries overflows, with one entry
    /// raised past what its unit square allows: the float sums of that square are both
    /// `inf`, yet the matrix is not Monge, and Auto must solve it as the full scan does.
    #[test]
    fn a_violation_among_overflowing_sums_is_found(
        n in prop::sample::select(vec![4usize, 5, 9, 10, 17, 40, 257]),
        kind in 0u8..4,
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
    ) {
        // 2^40 added to every entry keeps the matrix Monge and all entries within a factor
        // of two of each other, so that once scaled every sum of two overflows.
        let mut cost: Vec<f64> = monge_matrix(n, kind, seed).iter().map(|x| x + 2f64.powi(40)).collect();
        let quads: Vec<(usize, usize)> =
            (0..n).flat_map(|i| (i + 2..n - 1).map(move |j| (i, j))).collect();
        let (i, j) = quads[pick.index(quads.len())];
        let at = |r: usize, c: usize| r * n + c;
        let slack = cost[at(i, j + 1)] + cost[at(i + 1, j)] - cost[at(i, j)] - cost[at(i + 1, j + 1)];
        cost[at(i, j)] += slack + 1.0;
        // Raising c[i][j] can also break the square above-left of it, which comes first.
        let first = (0..n - 1)
            .flat_map(|r| (r + 2..n - 1).map(move |c| (r, c)))
            .find(|&(r, c)| cost[at(r, c)] + cost[at(r + 1, c + 1)] > cost[at(r, c + 1)] + cost[at(r + 1, c)])
            .unwrap();
        let cost = scaled(&cost, None);
        prop_assert_eq!(
            cost[at(i, j)] + cost[at(i + 1, j + 1)],
            cost[at(i, j + 1)] + cost[at(i + 1, j)]
        );
        prop_assert!(!is_monge(&cost, n).unwrap());
        let forced = optimal_path_with(&cost, n, 1, 1.0, Strategy::Monge).unwrap_err();
        let needle = format!("is not Monge: cost[{}][{}] + ", first.0, first.1);
        prop_assert!(forced.to_string().contains(&needle), "{}", forced);
        let k_max = (n - 1).min(3);
        let expected = reference_paths(&cost, n, k_max, 1.0);
        let got = optimal_paths_with(&cost, n, k_max, 1.0, Strategy::Auto);
        expect_reference(got, &expected, "Auto")?;
    }
}

/// Regression: `3 + 3 > 3 + 2` in units of 2^1022, but both sums overflow and `inf <= inf`
/// passed the matrix as Monge.
#[test]
fn both_sums_overflowing_is_no_proof_of_monge() {
    let unit = 2f64.powi(1022);
    let n = 4;
    let mut cost = vec![f64::NAN; n * n];
    for (i, j, units) in [
        (0, 1, 1.0),
        (0, 2, 3.0),
        (0, 3, 3.0),
        (1, 2, 2.0),
        (1, 3, 3.0),
        (2, 3, 1.0),
    ] {
        cost[i * n + j] = units * unit;
    }
    assert!(!is_monge(&cost, n).unwrap());
    // Negated, the same square holds with room to spare: -6 <= -5.
    let negated: Vec<f64> = cost.iter().map(|x| -x).collect();
    assert!(is_monge(&negated, n).unwrap());
}

/// Regression: a path whose every sum overflows came back with cost `inf` and the nodes of
/// whichever path the tie rule picked, as if it were an answer.
#[test]
fn a_path_whose_cost_overflows_is_an_error() {
    let n = 3;
    let mut cost = vec![f64::NAN; n * n];
    cost[1] = 0.75 * f64::MAX;
    cost[n + 2] = 0.75 * f64::MAX;
    cost[2] = 0.75 * f64::MAX;
    for strategy in [Strategy::Full, Strategy::Monge, Strategy::Auto] {
        assert_eq!(
            optimal_path_with(&cost, n, 1, 1.0, strategy).unwrap().cost,
            cost[2]
        );
        let error = optimal_path_with(&cost, n, 2, 1.0, strategy).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cost: the cheapest path of 2 jumps costs more than f64::MAX (its weighted sum \
             overflows); scale cost, or future_weight, down"
        );
        let error = optimal_paths_with(&cost, n, 2, 1.0, strategy).unwrap_err();
        assert!(matches!(
            error,
            CoreError::NonFinite {
                argument: "cost",
                ..
            }
        ));
    }
}

/// Future weights whose powers overflow, or underflow to nothing, on a Monge matrix of
/// moderate costs: every `k` whose optimum stays finite is the reference's path, on every
/// thread count, and the first that overflows is an error.
#[test]
fn extreme_future_weights_overflow_into_an_error() {
    let pools = pools();
    for n in [40, 300] {
        let cost = monge_matrix(n, 0, 5);
        for exponent in [-40, 40, 200] {
            let weight = power_of_two(exponent);
            let k_max = n - 1;
            let expected = reference_paths(&cost, n, k_max, weight);
            let finite = expected.iter().take_while(|p| p.is_some()).count();
            if exponent > 0 {
                assert!(finite < k_max, "w = 2^{exponent} must overflow at some k");
            }
            // Past the powers that stay exact, the Monge shortcut may break near-ties
            // differently from the full scan, so only the full scan is compared bit for bit.
            for (threads, pool) in &pools {
                let all =
                    pool.install(|| optimal_paths_with(&cost, n, k_max, weight, Strategy::Full));
                expect_reference(
                    all,
                    &expected,
                    &format!("w = 2^{exponent}, {threads} threads"),
                )
                .unwrap();
                let up_to_finite = pool.install(|| {
                    optimal_paths_with(&cost, n, finite.max(1), weight, Strategy::Full)
                });
                expect_reference(up_to_finite, &expected[..finite.max(1)], "finite k").unwrap();
                for strategy in [Strategy::Auto, Strategy::Monge] {
                    for k in [finite, finite + 1]
                        .into_iter()
                        .filter(|k| (1..=k_max).contains(k))
                    {
                        let single =
                            pool.install(|| optimal_path_with(&cost, n, k, weight, strategy));
                        match &expected[k - 1] {
                            Some(path) => assert_eq!(single.unwrap().cost, path.cost),
                            None => assert!(
                                matches!(
                                    single,
                                    Err(CoreError::NonFinite {
                                        argument: "cost",
                                        ..
                                    })
                                ),
                                "{single:?}"
                            ),
                        }
                    }
                }
            }
        }
    }
}

/// A Monge matrix in which every landing costs a quarter of the f64 range and some rows a
/// half more to leave: a single jump never overflows, but from those rows every path of two
/// jumps or more does, while from the others it does not. With `exponent = 980` a unit of
/// 2^42 is 2^1022, a quarter of the range; all integer sums stay below 2^53, so everything
/// is exact until it overflows.
fn costly_rows(n: usize, costly: &[bool], seed: u64) -> Vec<f64> {
    let mut cost = monge_matrix(n, 0, seed);
    for i in 0..n {
        let leave = if costly[i] { 2f64.powi(43) } else { 0.0 };
        for j in i + 1..n {
            cost[i * n + j] += leave + 2f64.powi(42);
        }
    }
    scaled(&cost, Some(980))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rows whose every path overflows sit among rows whose paths do not (row 0, whose
    /// answer is read, is never costly): the Monge shortcut must not let a row whose minimum
    /// is infinite bound the minimisers of the finite ones.
    #[test]
    fn overflowing_rows_do_not_bound_finite_ones(
        n in prop::sample::select(vec![4usize, 5, 17, 18, 40, 257, 300]),
        seed in any::<u64>(),
        costly in prop::collection::vec(prop::bool::weighted(0.3), 300),
        k_pick in any::<prop::sample::Index>(),
    ) {
        let mut costly = costly[..n].to_vec();
        costly[0] = false;
        let cost = costly_rows(n, &costly, seed);
        prop_assert!(is_monge(&cost, n).unwrap());
        let k_max = 1 + k_pick.index(n - 1);
        let expected = reference_paths(&cost, n, k_max, 1.0);
        for strategy in [Strategy::Full, Strategy::Monge, Strategy::Auto] {
            for k in [1, 2, k_max] {
                let k = k.min(k_max);
                let got = optimal_path_with(&cost, n, k, 1.0, strategy);
                match &expected[k - 1] {
                    Some(path) => prop_assert_eq!(got, Ok(path.clone()), "{:?}, k {}", strategy, k),
                    None => prop_assert!(
                        matches!(got, Err(CoreError::NonFinite { argument: "cost", .. })),
                        "{:?}, k {}: {:?}", strategy, k, got
                    ),
                }
            }
        }
    }
}

/// The same on pools of every size, past the parallel threshold.
#[test]
fn overflowing_rows_on_every_thread_count() {
    let pools = pools();
    let n = 300;
    // Every third row costly, row 0 not: the pivots of each Monge layer hit some.
    let costly: Vec<bool> = (0..n).map(|i| i % 3 == 1).collect();
    let cost = costly_rows(n, &costly, 9);
    let expected = reference_paths(&cost, n, n - 1, 1.0);
    for strategy in [Strategy::Full, Strategy::Monge, Strategy::Auto] {
        for (threads, pool) in &pools {
            let got = pool.install(|| {
                [1, 2, 3, 16, 100, n - 1]
                    .map(|k| optimal_path_with(&cost, n, k, 1.0, strategy).ok())
            });
            let want = [1, 2, 3, 16, 100, n - 1].map(|k| expected[k - 1].clone());
            assert_eq!(got, want, "{strategy:?}, {threads} threads");
        }
    }
}
