//! Weighted lp regression at every size where the code changes shape, under pools of several
//! sizes: the least-squares solve factors `[A b]` by TSQR in blocks of 8192 rows; then
//! `n = d` (an exact fit), zero and single nonzero weights, and right-hand sides and weights
//! whose scale takes `|r|^p` past the float64 range.

mod support;

use proptest::prelude::*;
use thrifty_coreset::scores::{lp_regression, RegressionFit, RegressionOptions, Rows, MAX_P};

use support::dense::weighted_least_squares;
use support::{around, gaussian_matrix, generator, normal, open_unit, same_in_every_pool};

const BLOCK_ROWS: usize = 8192;

fn cost(a: &[f64], b: &[f64], v: &[f64], x: &[f64], p: f64) -> f64 {
    let d = x.len();
    a.chunks_exact(d)
        .zip(b)
        .zip(v)
        .map(|((row, bi), vi)| {
            let r: f64 = row.iter().zip(x).map(|(u, w)| u * w).sum::<f64>() - bi;
            vi * r.abs().powf(p)
        })
        .sum()
}

struct Problem {
    a: Vec<f64>,
    b: Vec<f64>,
    weights: Option<Vec<f64>>,
    n: usize,
    d: usize,
}

impl Problem {
    fn new(n: usize, d: usize, weighted: bool, seed: u64) -> Self {
        let a = gaussian_matrix(n, d, seed);
        let mut rng = generator(seed ^ 1);
        // A planted fit plus heavy-ish noise, so that the lp solutions differ for each p.
        let b = a
            .chunks_exact(d)
            .map(|row| {
                let fit: f64 = row
                    .iter()
                    .enumerate()
                    .map(|(j, v)| v * (j as f64 - 1.0))
                    .sum();
                fit + normal(&mut rng) / open_unit(&mut rng).sqrt()
            })
            .collect();
        // One in five weights zero, but never among the first d rows (which keep A's rank).
        let weights = weighted.then(|| {
            (0..n)
                .map(|i| {
                    if i >= d && i % 5 == 2 {
                        0.0
                    } else {
                        0.1 + open_unit(&mut rng)
                    }
                })
                .collect()
        });
        Self {
            a,
            b,
            weights,
            n,
            d,
        }
    }

    fn fit(&self, p: f64) -> RegressionFit {
        let rows = Rows::new(&self.a, self.n, self.d, "A").unwrap();
        lp_regression(
            &rows,
            &self.b,
            p,
            self.weights.as_deref(),
            &RegressionOptions::default(),
        )
        .unwrap()
    }

    fn weights_or_ones(&self) -> Vec<f64> {
        self.weights.clone().unwrap_or_else(|| vec![1.0; self.n])
    }
}

proptest! {
    #![proptest_config(support::fixed_cases(20))]

    #[test]
    fn regression_solves_its_problem_at_every_block_count(
        (n, d) in (1usize..=4).prop_flat_map(|d| (
            prop_oneof![d..d + 3, around(vec![BLOCK_ROWS, 2 * BLOCK_ROWS], 2, d)],
            Just(d),
        )),
        p in prop::sample::select(vec![1.0, 1.5, 2.0, 3.0]),
        weighted in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let problem = Problem::new(n, d, weighted, seed);
        let fit = same_in_every_pool(|| problem.fit(p));
        let v = problem.weights_or_ones();
        let recomputed = cost(&problem.a, &problem.b, &v, &fit.x, p);
        prop_assert!((fit.cost - recomputed).abs() <= 1e-9 * recomputed.max(1e-300));
        if p == 2.0 {
            let reference = weighted_least_squares(&problem.a, &problem.b, &v, n, d);
            for (x, r) in fit.x.iter().zip(&reference) {
                prop_assert!((x - r).abs() <= 1e-8 * r.abs().max(1.0), "{} vs {}", x, r);
            }
        }
        if n == d {
            // Square and full rank: the fit interpolates, whatever p.
            let scale: f64 = problem.b.iter().map(|v| v.abs().powf(p)).sum();
            prop_assert!(fit.cost <= 1e-12 * scale.max(1.0), "cost {}", fit.cost);
        } else {
            // A step of 1% of |x| in any direction must not lower the cost by more than
            // the solver's tolerance.
            let mut rng = generator(seed);
            let size = fit.x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-3);
            for _ in 0..8 {
                let moved: Vec<f64> = fit.x.iter().map(|v| v + 1e-2 * size * normal(&mut rng)).collect();
                let other = cost(&problem.a, &problem.b, &v, &moved, p);
                prop_assert!(fit.cost <= other * (1.0 + 1e-6), "{} > {}", fit.cost, other);
            }
        }
    }
}

#[test]
fn regression_does_not_depend_on_the_scale_of_b_or_the_weights() {
    // Scaling b by 2^k scales x by 2^k and the cost by 2^(k p); scaling the weights scales
    // the cost only. At 2^600, |r|^3 overflowed float64 and IRLS stopped at the
    // least-squares start with an infinite cost; at 2^-600 the cost underflowed to 0 and it
    // stopped there too.
    let problem = Problem::new(300, 3, true, 7);
    for p in [1.0, 1.5, 3.0] {
        let plain = problem.fit(p);
        for k in [600, -600, 1000, -1000] {
            let scale = 2f64.powi(k);
            let scaled_b = Problem {
                b: problem.b.iter().map(|v| v * scale).collect(),
                a: problem.a.clone(),
                weights: problem.weights.clone(),
                ..problem
            };
            let fit = scaled_b.fit(p);
            let unscaled: Vec<f64> = fit.x.iter().map(|v| v / scale).collect();
            assert_eq!(unscaled, plain.x, "p {p}, b times 2^{k}");
            let expected_log = plain.cost.ln() + f64::from(k) * p * 2f64.ln();
            if fit.cost.is_finite() && fit.cost > 0.0 {
                assert!((fit.cost.ln() - expected_log).abs() < 1e-9, "p {p}, k {k}");
            } else {
                // Past the float64 range the cost saturates, on the side the logarithm says.
                assert_eq!(
                    fit.cost == 0.0,
                    expected_log < 0.0,
                    "p {p}, k {k}: {}",
                    fit.cost
                );
            }
            let scaled_weights = Problem {
                weights: problem
                    .weights
                    .as_ref()
                    .map(|w| w.iter().map(|v| v * scale).collect()),
                a: problem.a.clone(),
                b: problem.b.clone(),
                ..problem
            };
            assert_eq!(
                scaled_weights.fit(p).x,
                plain.x,
                "p {p}, weights times 2^{k}"
            );
        }
    }
}

#[test]
fn weights_that_leave_too_few_rows_are_refused() {
    // Positive weights on d - 1 rows leave the weighted problem rank-deficient.
    let (n, d) = (50, 3);
    let problem = Problem::new(n, d, false, 2);
    let rows = Rows::new(&problem.a, n, d, "A").unwrap();
    let mut v = vec![0.0; n];
    v[7] = 1.0;
    v[9] = 2.0;
    for p in [1.0, 2.0, 3.0] {
        for weights in [vec![0.0; n], v.clone()] {
            let error = lp_regression(
                &rows,
                &problem.b,
                p,
                Some(&weights),
                &RegressionOptions::default(),
            )
            .unwrap_err();
            assert_eq!(error.argument(), Some("weights"), "{error}");
        }
    }
    // A single positive weight with d = 1: the fit goes through that row.
    let a = gaussian_matrix(20, 1, 4);
    let rows = Rows::new(&a, 20, 1, "A").unwrap();
    let b: Vec<f64> = (0..20).map(f64::from).collect();
    let mut single = vec![0.0; 20];
    single[13] = 0.5;
    let fit = lp_regression(&rows, &b, 1.5, Some(&single), &RegressionOptions::default()).unwrap();
    assert!(
        (fit.x[0] * a[13] - 13.0).abs() < 1e-9,
        "{}",
        fit.x[0] * a[13]
    );
}

#[test]
fn regression_inputs_that_cannot_be_solved_are_errors_naming_the_argument() {
    let problem = Problem::new(20, 2, false, 3);
    let rows = Rows::new(&problem.a, 20, 2, "A").unwrap();
    let options = RegressionOptions::default();
    let argument = |b: &[f64], p: f64, w: Option<&[f64]>| {
        lp_regression(&rows, b, p, w, &options)
            .unwrap_err()
            .argument()
    };
    for p in [0.5, 0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(argument(&problem.b, p, None), Some("p"));
    }
    assert_eq!(argument(&problem.b[..19], 2.0, None), Some("b"));
    let mut bad = problem.b.clone();
    bad[19] = f64::NAN;
    assert_eq!(argument(&bad, 2.0, None), Some("b"));
    for w in [
        vec![1.0; 19],
        vec![-1.0; 20],
        vec![f64::INFINITY; 20],
        vec![f64::NAN; 20],
    ] {
        assert_eq!(argument(&problem.b, 2.0, Some(&w)), Some("weights"));
    }
}

/// Large p underflows the IRLS weights of all but the worst rows: up to the largest p
/// solved, the fit must still be a finite descent from least squares and never call a
/// full-rank A rank-deficient; past it, the error names p.
#[test]
fn large_p_is_solved_up_to_the_limit_and_refused_past_it() {
    for seed in 0..50 {
        let mut problem = Problem::new(31, 1 + (seed as usize % 3), false, seed);
        // b at most 1, so that the true cost of a good fit stays within float64 at every p.
        let largest = problem.b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let unit = 2f64.powi(largest.log2().ceil() as i32);
        problem.b.iter_mut().for_each(|v| *v /= unit);
        let rows = Rows::new(&problem.a, problem.n, problem.d, "A").unwrap();
        let options = RegressionOptions::default();
        let least_squares = lp_regression(&rows, &problem.b, 2.0, None, &options).unwrap();
        for p in [50.0, 255.0, MAX_P] {
            let fit = lp_regression(&rows, &problem.b, p, None, &options)
                .unwrap_or_else(|e| panic!("seed {seed}, p = {p}: {e}"));
            assert!(fit.cost.is_finite() && fit.x.iter().all(|v| v.is_finite()));
            let start = cost(&problem.a, &problem.b, &vec![1.0; 31], &least_squares.x, p);
            assert!(
                fit.cost <= start,
                "seed {seed}, p = {p}: {} > {start}",
                fit.cost
            );
        }
        for p in [MAX_P * (1.0 + f64::EPSILON), 1e5, 1e300] {
            let error = lp_regression(&rows, &problem.b, p, None, &options).unwrap_err();
            assert_eq!(error.argument(), Some("p"), "p = {p}: {error}");
        }
    }
}
