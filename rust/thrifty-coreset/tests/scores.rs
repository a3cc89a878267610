//! Properties of the scores: ranges and sums, invariances, agreement with the definitions on
//! small cases, independence from the thread count, and errors that name the argument.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thrifty_coreset::scores::{
    kmeans_sensitivities, leverage_scores, lewis_weights, lp_regression, lp_sensitivities,
    sketched_leverage_scores, LewisOptions, RegressionOptions, Rows, SketchOptions,
};

fn gaussian_matrix(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d)
        .map(|_| {
            let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let v = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// `a_i^T (A^T A)^{-1} a_i` by Gauss-Jordan on the normal equations (small d only).
fn leverage_by_normal_equations(a: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for row in a.chunks_exact(d) {
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] += row[i] * row[j];
            }
        }
    }
    let mut inverse = vec![0.0; d * d];
    for i in 0..d {
        inverse[i * d + i] = 1.0;
    }
    for c in 0..d {
        let pivot = (c..d)
            .max_by(|&x, &y| m[x * d + c].abs().total_cmp(&m[y * d + c].abs()))
            .unwrap();
        for k in 0..d {
            m.swap(c * d + k, pivot * d + k);
            inverse.swap(c * d + k, pivot * d + k);
        }
        let diagonal = m[c * d + c];
        for k in 0..d {
            m[c * d + k] /= diagonal;
            inverse[c * d + k] /= diagonal;
        }
        for r in 0..d {
            if r != c {
                let factor = m[r * d + c];
                for k in 0..d {
                    m[r * d + k] -= factor * m[c * d + k];
                    inverse[r * d + k] -= factor * inverse[c * d + k];
                }
            }
        }
    }
    (0..n)
        .map(|i| {
            let x = &a[i * d..(i + 1) * d];
            (0..d)
                .map(|r| x[r] * (0..d).map(|c| inverse[r * d + c] * x[c]).sum::<f64>())
                .sum()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn leverage_in_unit_interval_sums_to_d_and_matches_the_definition(
        d in 1usize..6, extra in 0usize..50, seed in any::<u64>()
    ) {
        let n = d + extra;
        let a = gaussian_matrix(n, d, seed);
        let tau = leverage_scores(&Rows::new(&a, n, d, "A").unwrap()).unwrap();
        let reference = leverage_by_normal_equations(&a, n, d);
        prop_assert!(tau.iter().all(|&t| (0.0..=1.0).contains(&t)));
        prop_assert!((tau.iter().sum::<f64>() - d as f64).abs() < 1e-9);
        for (t, r) in tau.iter().zip(&reference) {
            prop_assert!((t - r).abs() < 1e-7, "{t} vs {r}");
        }
    }

    #[test]
    fn lewis_weights_are_a_fixed_point_summing_to_d(
        d in 1usize..5, extra in 0usize..40, seed in any::<u64>(),
        p in prop::sample::select(vec![0.5, 1.0, 1.5, 3.0, 4.0, 6.0])
    ) {
        let n = d + extra;
        let a = gaussian_matrix(n, d, seed);
        let rows = Rows::new(&a, n, d, "A").unwrap();
        let options = LewisOptions { iters: 2000, tol: 1e-9 };
        let lewis = lewis_weights(&rows, p, &options).unwrap();
        prop_assert!(lewis.residual <= 1e-9);
        for (w, t) in lewis.weights.iter().zip(&lewis.image) {
            prop_assert!((w - t).abs() <= 1e-9 * w + 1e-15);
        }
        prop_assert!((lewis.weights.iter().sum::<f64>() - d as f64).abs() < 1e-7 * d as f64);
    }

    #[test]
    fn leverage_ignores_column_scale(seed in any::<u64>(), scale in 1e-6f64..1e6) {
        let (n, d) = (30, 3);
        let a = gaussian_matrix(n, d, seed);
        let scaled: Vec<f64> = a.iter().enumerate()
            .map(|(i, v)| if i % d == 1 { v * scale } else { *v }).collect();
        let t0 = leverage_scores(&Rows::new(&a, n, d, "A").unwrap()).unwrap();
        let t1 = leverage_scores(&Rows::new(&scaled, n, d, "A").unwrap()).unwrap();
        for (x, y) in t0.iter().zip(&t1) {
            prop_assert!((x - y).abs() < 1e-10);
        }
    }
}

fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(work)
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // More rows than one TSQR block and one chunk, so the parallel paths are exercised.
    let (n, d) = (30_000, 5);
    let a = gaussian_matrix(n, d, 7);
    let run = || {
        let rows = Rows::new(&a, n, d, "A").unwrap();
        (
            leverage_scores(&rows).unwrap(),
            lewis_weights(&rows, 1.0, &LewisOptions::default()).unwrap(),
            sketched_leverage_scores(&rows, &SketchOptions { seed: 3, eps: 0.5 }).unwrap(),
            kmeans_sensitivities(&a, n, d, 8, 11).unwrap(),
        )
    };
    let one = in_pool(1, run);
    let four = in_pool(4, run);
    assert_eq!(one, four);
}

#[test]
fn sensitivity_bounds_cap_at_one_and_total_at_most_d() {
    let (n, d) = (200, 3);
    let a = gaussian_matrix(n, d, 5);
    let rows = Rows::new(&a, n, d, "A").unwrap();
    let bounds = lp_sensitivities(&rows, 1.0, &LewisOptions::default()).unwrap();
    assert!(bounds.iter().all(|&b| b > 0.0 && b <= 1.0));
    assert!(bounds.iter().sum::<f64>() <= d as f64 * (1.0 + 1e-5));
}

#[test]
fn regression_recovers_an_exact_fit_for_every_p() {
    let (n, d) = (50, 3);
    let a = gaussian_matrix(n, d, 9);
    let truth = [1.0, -2.0, 0.5];
    let b: Vec<f64> = a
        .chunks_exact(d)
        .map(|r| r.iter().zip(&truth).map(|(x, t)| x * t).sum())
        .collect();
    let rows = Rows::new(&a, n, d, "A").unwrap();
    for p in [1.0, 1.5, 2.0, 3.0] {
        let fit = lp_regression(&rows, &b, p, None, &RegressionOptions::default()).unwrap();
        for (x, t) in fit.x.iter().zip(&truth) {
            assert!((x - t).abs() < 1e-8, "p = {p}: {x} vs {t}");
        }
    }
}

#[test]
fn errors_name_the_argument() {
    let a = gaussian_matrix(10, 2, 1);
    let rows = Rows::new(&a, 10, 2, "A").unwrap();
    let argument = |e: thrifty_core::CoreError| e.argument().unwrap();
    assert_eq!(argument(Rows::new(&a, 2, 10, "A").unwrap_err()), "A");
    assert_eq!(argument(Rows::new(&a, 10, 3, "A").unwrap_err()), "A");
    let mut bad = a.clone();
    bad[3] = f64::NAN;
    assert_eq!(argument(Rows::new(&bad, 10, 2, "A").unwrap_err()), "A");
    let duplicated: Vec<f64> = (0..10).flat_map(|i| [a[2 * i], a[2 * i]]).collect();
    let dup = Rows::new(&duplicated, 10, 2, "A").unwrap();
    assert_eq!(argument(leverage_scores(&dup).unwrap_err()), "A");
    for p in [0.0, -1.0, f64::NAN] {
        let e = lewis_weights(&rows, p, &LewisOptions::default()).unwrap_err();
        assert_eq!(argument(e), "p");
    }
    let tight = LewisOptions {
        iters: 1,
        tol: 1e-12,
    };
    assert_eq!(
        argument(lewis_weights(&rows, 1.0, &tight).unwrap_err()),
        "iters"
    );
    assert_eq!(
        argument(kmeans_sensitivities(&a, 10, 2, 0, 0).unwrap_err()),
        "k"
    );
    assert_eq!(
        argument(kmeans_sensitivities(&a, 10, 2, 11, 0).unwrap_err()),
        "k"
    );
    let b = vec![0.0; 9];
    let e = lp_regression(&rows, &b, 1.0, None, &RegressionOptions::default()).unwrap_err();
    assert_eq!(argument(e), "b");
}
