//! Every entry point the Python bindings reach, fed small arrays of extreme values and
//! extreme arguments: each must return a result or an error that names an argument, never
//! panic, and a result must hold no NaN.

mod support;

use proptest::prelude::*;
use thrifty_coreset::sampling::{permutation, sample, Table};
use thrifty_coreset::scores::{
    kmeans_sensitivities, leverage_scores, lewis_weights, lp_regression, lp_sensitivities,
    root_leverage_scores, sketched_leverage_scores, LewisOptions, RegressionOptions, Rows,
    SketchOptions,
};

fn extreme_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -3.0f64..3.0,
        1 => prop::sample::select(vec![
            0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1e-310,
            f64::MIN_POSITIVE, f64::MAX, -f64::MAX, f64::NAN, f64::INFINITY,
            f64::NEG_INFINITY,
        ]),
    ]
}

fn extreme_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..12,
        // Counts whose memory overflows the address space: refused before any allocation.
        1 => prop::sample::select(vec![usize::MAX, usize::MAX / 2, 1 << 62]),
    ]
}

fn extreme_real() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.5f64..8.0,
        1 => prop::sample::select(vec![
            0.0, -1.0, 1.0, 2.0, 4.0, 1e-300, 1e300, f64::NAN, f64::INFINITY, 1e-3, 1e3,
        ]),
    ]
}

fn assert_named<T>(result: &Result<T, thrifty_core::CoreError>) {
    if let Err(error) = result {
        assert!(
            error.argument().is_some(),
            "an error naming no argument: {error}"
        );
    }
}

fn assert_finite(values: &[f64]) {
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
}

proptest! {
    #![proptest_config(support::fixed_cases(1000))]

    #[test]
    fn samplers_never_panic(
        scores in prop::collection::vec(extreme_value(), 0..40),
        m in extreme_count(),
        replace in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let drawn = sample(&scores, m, replace, seed);
        assert_named(&drawn);
        if let Ok(drawn) = drawn {
            prop_assert_eq!(drawn.indices.len(), m);
            prop_assert!(drawn.weights.iter().all(|w| *w > 0.0));
        }
        match Table::new(&scores) {
            Ok(table) => assert_named(&table.draw(m, seed)),
            Err(error) => prop_assert!(error.argument().is_some()),
        }
        let n = (m as u64).min(1 << 40);
        assert_named(&permutation::<u32>(n, seed, 0));
    }

    #[test]
    fn scores_never_panic(
        (n, d, a) in (0usize..12, 0usize..4).prop_flat_map(|(n, d)| {
            (Just(n), Just(d), prop::collection::vec(extreme_value(), n * d))
        }),
        p in extreme_real(),
        eps in extreme_real(),
        k in extreme_count(),
        iters in prop_oneof![0usize..50, Just(usize::MAX)],
        tol in extreme_real(),
        seed in any::<u64>(),
    ) {
        let kmeans = kmeans_sensitivities(&a, n, d, k, seed);
        assert_named(&kmeans);
        if let Ok(out) = &kmeans {
            assert_finite(&out.sensitivities);
        }
        let rows = Rows::new(&a, n, d, "A");
        assert_named(&rows);
        let Ok(rows) = rows else { return Ok(()) };
        for scores in [
            leverage_scores(&rows),
            root_leverage_scores(&rows),
            sketched_leverage_scores(&rows, &SketchOptions { seed, eps }),
        ] {
            assert_named(&scores);
            if let Ok(scores) = scores {
                assert_finite(&scores);
            }
        }
        // Bounded iterations: an unbounded count may legitimately run for long.
        let options = LewisOptions { iters: iters.min(200), tol };
        let lewis = lewis_weights(&rows, p, &options);
        assert_named(&lewis);
        if let Ok(lewis) = lewis {
            assert_finite(&lewis.weights);
        }
        assert_named(&lp_sensitivities(&rows, p, &options));
        let b: Vec<f64> = a.iter().step_by(d.max(1)).copied().collect();
        let weights: Vec<f64> = b.iter().map(|v| v.abs()).collect();
        let options = RegressionOptions { iters: iters.min(50), tol };
        for weights in [None, Some(weights.as_slice())] {
            let fit = lp_regression(&rows, &b, p, weights, &options);
            assert_named(&fit);
            if let Ok(fit) = fit {
                // A solution past the float64 range may round to infinity, never to NaN.
                prop_assert!(!fit.x.iter().any(|v| v.is_nan()) && !fit.cost.is_nan());
            }
        }
    }
}
