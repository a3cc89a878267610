//! Leverage scores (TSQR and sketched), Lewis weights and lp sensitivities at every size where
//! the code changes shape, under pools of several sizes, against a Householder QR written out
//! in the test.
//!
//! The shapes: TSQR factors blocks of `max(8192, 2 d)` rows and factors their stacked `R`s
//! again, recursively while they are more than a block; quadratic forms are solved in chunks
//! of 4096 rows and Lewis powers taken in chunks of 16384; Lewis weights switch from the
//! plain to the damped iteration at p = 4, and from the Gram to the TSQR factor when the
//! Gram factor's diagonal spans more than 1e4. The sketch has `m = clamp(8 d max(1, ln d),
//! d, n)` rows filled from a stream per 4096 rows of `A`, summed 64 rows per task, and a
//! Johnson-Lindenstrauss step only when its `k` columns are fewer than `d`; then `d = n`,
//! `n = 1` and `d = 1`.

mod support;

use proptest::prelude::*;
use thrifty_coreset::scores::qr::r_factor;
use thrifty_coreset::scores::sketch::{jl_columns, sketch_rows};
use thrifty_coreset::scores::{
    leverage_scores, lewis_weights, lp_sensitivities, root_leverage_scores,
    sketched_leverage_scores, LewisOptions, Rows, SketchOptions,
};

use support::dense::{householder_r, leverage, quadratic_forms};
use support::{around, gaussian_matrix, generator, normal, same_in_every_pool};

/// Rows per TSQR block and per chunk of quadratic forms, and rows per Lewis power chunk.
const BLOCK_ROWS: usize = 8192;
const FORM_CHUNK: usize = 4096;
const LEWIS_CHUNK: usize = 16384;

fn row_counts(d: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        d..d + 3,
        around(
            vec![
                FORM_CHUNK,
                BLOCK_ROWS,
                2 * BLOCK_ROWS,
                LEWIS_CHUNK + BLOCK_ROWS,
                100_000
            ],
            2,
            d,
        ),
    ]
}

fn assert_close(value: &[f64], reference: &[f64], tolerance: f64, what: &str) {
    assert_eq!(value.len(), reference.len());
    for (i, (v, r)) in value.iter().zip(reference).enumerate() {
        assert!(
            (v - r).abs() <= tolerance * r.abs().max(1e-3),
            "{what}: row {i}: {v} vs {r}"
        );
    }
}

proptest! {
    #![proptest_config(support::fixed_cases(24))]

    #[test]
    fn leverage_matches_householder_qr_at_every_block_count(
        (n, d) in (1usize..=6).prop_flat_map(|d| (row_counts(d), Just(d))),
        seed in any::<u64>(),
    ) {
        let a = gaussian_matrix(n, d, seed);
        let tau = same_in_every_pool(|| leverage_scores(&Rows::new(&a, n, d, "A").unwrap()).unwrap());
        assert_close(&tau, &leverage(&a, n, d), 1e-9, "leverage");
        prop_assert!(tau.iter().all(|&t| (0.0..=1.0).contains(&t)));
        prop_assert!((tau.iter().sum::<f64>() - d as f64).abs() < 1e-8 * d as f64);
        let root = root_leverage_scores(&Rows::new(&a, n, d, "A").unwrap()).unwrap();
        prop_assert!(root.iter().zip(&tau).all(|(r, t)| *r == t.sqrt()));
    }

}

proptest! {
    #![proptest_config(support::fixed_cases(12))]

    #[test]
    fn lewis_weights_are_the_fixed_point_at_every_chunk_count(
        (n, d) in (1usize..=4).prop_flat_map(|d| (prop_oneof![
            d..d + 3,
            around(vec![BLOCK_ROWS, LEWIS_CHUNK], 2, d),
        ], Just(d))),
        p in prop::sample::select(vec![0.5, 1.0, 1.5, 2.0, 3.0, 3.99, 4.0, 6.0]),
        seed in any::<u64>(),
    ) {
        let a = gaussian_matrix(n, d, seed);
        let options = LewisOptions { iters: 3000, tol: 1e-9 };
        let lewis = same_in_every_pool(|| {
            lewis_weights(&Rows::new(&a, n, d, "A").unwrap(), p, &options).unwrap()
        });
        assert_close(&lewis.image, &lewis_map(&a, n, d, p, &lewis.weights), 1e-8, "T(w)");
        assert_close(&lewis.weights, &lewis.image, 2e-9, "fixed point");
        prop_assert!((lewis.weights.iter().sum::<f64>() - d as f64).abs() < 1e-6 * d as f64);
    }
}

/// `T(w)_i = (a_i^T (A^T W^{1-2/p} A)^{-1} a_i)^{p/2}` from a Householder QR of
/// `W^{1/2-1/p} A`, with `W` divided by its smallest entry (and the power of it put back at
/// the end) so that `w^{1/2-1/p}` stays finite for small `p`.
fn lewis_map(a: &[f64], n: usize, d: usize, p: f64, w: &[f64]) -> Vec<f64> {
    let exponent = 0.5 - 1.0 / p;
    let smallest = w.iter().copied().fold(f64::INFINITY, f64::min);
    let scaled: Vec<f64> = (0..n * d)
        .map(|k| a[k] * (w[k / d] / smallest).powf(exponent))
        .collect();
    let q = quadratic_forms(a, n, d, &householder_r(&scaled, n, d));
    q.iter()
        .map(|&qi| qi.powf(p / 2.0) * smallest.powf(1.0 - p / 2.0))
        .collect()
}

#[test]
fn square_matrices_have_unit_leverage_and_lewis_weights() {
    for n in [1, 2, 5, 9] {
        let a = gaussian_matrix(n, n, n as u64);
        let rows = Rows::new(&a, n, n, "A").unwrap();
        assert_close(
            &leverage_scores(&rows).unwrap(),
            &vec![1.0; n],
            1e-10,
            "leverage",
        );
        for p in [0.5, 1.0, 3.0, 6.0] {
            let lewis = lewis_weights(&rows, p, &LewisOptions::default()).unwrap();
            assert_close(&lewis.weights, &vec![1.0; n], 1e-6, "Lewis weights");
        }
    }
}

#[test]
fn tsqr_reduces_recursively_when_the_stacked_factors_pass_a_block() {
    // 4097 blocks of two columns stack into 8194 rows, more than a block: a second level of
    // TSQR runs. R^T R must be the Gram matrix of the rows, whatever the thread count.
    let n = BLOCK_ROWS * 4097;
    let entry = |i: usize, j: usize| {
        let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64) << 17;
        ((h >> 11) % 2001) as f64 / 1000.0 - 1.0
    };
    let r = same_in_every_pool(|| r_factor(n, 2, &entry));
    let mut gram = [0.0f64; 3];
    for i in 0..n {
        let (x, y) = (entry(i, 0), entry(i, 1));
        gram[0] += x * x;
        gram[1] += x * y;
        gram[2] += y * y;
    }
    let rtr = [r[0] * r[0], r[0] * r[1], r[1] * r[1] + r[3] * r[3]];
    assert_eq!(r[2], 0.0);
    for (x, g) in rtr.iter().zip(&gram) {
        assert!((x - g).abs() <= 1e-9 * gram[0].max(gram[2]), "{x} vs {g}");
    }
}

#[test]
fn lewis_weights_take_the_tsqr_path_for_ill_conditioned_columns() {
    // Two columns equal up to 1e-6: the Gram factor's diagonal spans about 1e6, past 1e4,
    // so every step factors by TSQR instead. The weights are still the fixed point.
    let (n, d) = (BLOCK_ROWS + 5, 3);
    let mut a = gaussian_matrix(n, d, 3);
    let mut rng = generator(4);
    for i in 0..n {
        a[i * d + 1] = a[i * d] + 1e-6 * normal(&mut rng);
    }
    for p in [1.0, 3.0, 6.0] {
        let options = LewisOptions {
            iters: 3000,
            tol: 1e-9,
        };
        let lewis = same_in_every_pool(|| {
            lewis_weights(&Rows::new(&a, n, d, "A").unwrap(), p, &options).unwrap()
        });
        assert_close(
            &lewis.image,
            &lewis_map(&a, n, d, p, &lewis.weights),
            1e-6,
            "T(w)",
        );
    }
}

#[test]
fn small_p_is_solved_or_refused_by_naming_p() {
    // w^{1/2 - 1/p} overflowed for p near 0 (w^-99.5 at p = 0.01), and the factorisation of
    // the infinite matrix was reported as "A is rank-deficient" for a full-rank A.
    let (n, d) = (300, 3);
    let a = gaussian_matrix(n, d, 8);
    let rows = Rows::new(&a, n, d, "A").unwrap();
    for p in [0.05, 0.01] {
        let options = LewisOptions {
            iters: 50_000,
            tol: 1e-7,
        };
        let lewis = lewis_weights(&rows, p, &options).unwrap();
        assert_close(
            &lewis.image,
            &lewis_map(&a, n, d, p, &lewis.weights),
            1e-6,
            "T(w)",
        );
        let bounds = lp_sensitivities(&rows, p, &options).unwrap();
        assert!(bounds
            .iter()
            .all(|b| b.is_finite() && *b > 0.0 && *b <= 1.0));
    }
    for p in [1e-3, 1e-6, 1e-300] {
        let options = LewisOptions {
            iters: 100,
            tol: 1e-6,
        };
        match lewis_weights(&rows, p, &options) {
            Ok(lewis) => assert!(lewis.weights.iter().all(|w| w.is_finite())),
            Err(error) => assert!(
                matches!(error.argument(), Some("p") | Some("iters")),
                "p = {p}: {error}"
            ),
        }
    }
}

#[test]
fn sensitivity_bounds_hold_at_every_chunk_count() {
    // For p = 2 the bound is the leverage score itself; for any p it bounds
    // |a_i^T x|^p / ||A x||_p^p for every x, so random directions can never exceed it.
    for n in [FORM_CHUNK + 1, LEWIS_CHUNK + 1] {
        let d = 3;
        let a = gaussian_matrix(n, d, n as u64);
        let rows = Rows::new(&a, n, d, "A").unwrap();
        let two = lp_sensitivities(&rows, 2.0, &LewisOptions::default()).unwrap();
        assert_close(&two, &leverage(&a, n, d), 1e-9, "p = 2");
        let mut rng = generator(1);
        for p in [1.0, 1.5, 3.0, 5.0] {
            let bounds = same_in_every_pool(|| {
                lp_sensitivities(
                    &Rows::new(&a, n, d, "A").unwrap(),
                    p,
                    &LewisOptions::default(),
                )
                .unwrap()
            });
            assert!(bounds.iter().all(|&b| b > 0.0 && b <= 1.0));
            for _ in 0..20 {
                let x: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
                let y: Vec<f64> = a
                    .chunks_exact(d)
                    .map(|row| {
                        row.iter()
                            .zip(&x)
                            .map(|(u, v)| u * v)
                            .sum::<f64>()
                            .abs()
                            .powf(p)
                    })
                    .collect();
                let total: f64 = y.iter().sum();
                for (i, (&yi, &b)) in y.iter().zip(&bounds).enumerate() {
                    assert!(
                        yi / total <= b * (1.0 + 1e-9),
                        "p = {p}, row {i}: {} > {b}",
                        yi / total
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(support::fixed_cases(16))]

    #[test]
    fn sketched_leverage_is_deterministic_and_within_its_distortion(
        (n, d) in prop_oneof![
            // A sketch of fewer rows than A, across the 4096-row streams.
            (1usize..=6).prop_flat_map(|d| (around(vec![FORM_CHUNK, 2 * FORM_CHUNK], 2, 64), Just(d))),
            // Sketches of as many rows as A (d = n among them), and 64-row sketch tasks.
            (1usize..=8).prop_flat_map(|d| (d..d + 70, Just(d))),
        ],
        seed in any::<u64>(),
    ) {
        let a = gaussian_matrix(n, d, seed);
        let options = SketchOptions { seed, eps: 0.5 };
        let scores = same_in_every_pool(|| {
            sketched_leverage_scores(&Rows::new(&a, n, d, "A").unwrap(), &options).unwrap()
        });
        let exact = leverage(&a, n, d);
        if sketch_rows(n, d) >= n && jl_columns(n, options.eps) >= d {
            // No rows to save: the scores are the exact ones.
            assert_close(&scores, &exact, 1e-9, "unsketched");
        }
        // Documented: within [(1 - eps) 0.44, (1 + eps) 4] of the exact scores with
        // probability about 0.99; far outside [0.05, 20] only by a broken sketch.
        for (s, t) in scores.iter().zip(&exact) {
            prop_assert!(*s >= 0.05 * t && *s <= 20.0 * t, "{} vs {}", s, t);
        }
    }
}

#[test]
fn sketched_leverage_with_the_johnson_lindenstrauss_step() {
    // k = ceil(8 ln(200 n) / eps^2) columns, fewer than d = 150 at eps = 0.99: the JL step
    // runs, once with as many sketch rows as A and once with fewer.
    for (n, d) in [(160, 150), (6100, 150)] {
        assert!(jl_columns(n, 0.99) < d);
        let a = gaussian_matrix(n, d, 6);
        let exact = leverage(&a, n, d);
        for seed in 0..3 {
            let options = SketchOptions { seed, eps: 0.99 };
            let scores = same_in_every_pool(|| {
                sketched_leverage_scores(&Rows::new(&a, n, d, "A").unwrap(), &options).unwrap()
            });
            // Documented band: [(1 - eps) 0.44, (1 + eps) 4] = [0.0044, 7.96].
            for (i, (s, t)) in scores.iter().zip(&exact).enumerate() {
                assert!(
                    *s >= 0.0044 * t && *s <= 7.96 * t,
                    "n {n}, row {i}: {s} vs {t}"
                );
            }
        }
    }
}

#[test]
fn sketching_a_full_rank_matrix_never_reports_it_rank_deficient() {
    // A sketch of a single row (n = d = 1) summed four random signs into its one row, which
    // cancelled for 3 seeds in 8, and the sketch's R was then reported as A's rank
    // deficiency. The same for a column with one nonzero among 9 rows (a sketch of 8 rows).
    let mut cases: Vec<(Vec<f64>, usize, usize)> = vec![
        (vec![3.0], 1, 1),
        (vec![1.0, 0.0, 0.0, 1.0], 2, 2),
        (gaussian_matrix(5, 5, 1), 5, 5),
    ];
    let mut one_row = vec![0.0; 9];
    one_row[4] = 2.0;
    cases.push((one_row, 9, 1));
    for (a, n, d) in &cases {
        let rows = Rows::new(a, *n, *d, "A").unwrap();
        let exact = leverage(a, *n, *d);
        for seed in 0..64 {
            let scores = sketched_leverage_scores(&rows, &SketchOptions { seed, eps: 0.5 })
                .unwrap_or_else(|e| panic!("n {n}, d {d}, seed {seed}: {e}"));
            for (s, t) in scores.iter().zip(&exact) {
                assert!(*s >= 0.05 * t && *s <= 20.0 * t, "{s} vs {t}");
            }
        }
    }
    // A matrix that is rank-deficient is still refused, naming A.
    let twice: Vec<f64> = gaussian_matrix(40, 1, 2)
        .into_iter()
        .flat_map(|v| [v, v])
        .collect();
    let rows = Rows::new(&twice, 40, 2, "A").unwrap();
    let error = sketched_leverage_scores(&rows, &SketchOptions::default()).unwrap_err();
    assert_eq!(error.argument(), Some("A"));
}

#[test]
fn scores_of_badly_scaled_columns_and_rows() {
    // Columns 1e-300 and 1e300 apart are normalised before factorising; a row 1e6 times
    // the others takes a leverage score of almost 1.
    let (n, d) = (BLOCK_ROWS + 1, 3);
    let a = gaussian_matrix(n, d, 12);
    let scaled: Vec<f64> = a
        .iter()
        .enumerate()
        .map(|(k, &v)| match k % d {
            0 => v * 1e-300,
            1 => v * 1e300,
            _ => v,
        })
        .collect();
    let plain = leverage_scores(&Rows::new(&a, n, d, "A").unwrap()).unwrap();
    let other = leverage_scores(&Rows::new(&scaled, n, d, "A").unwrap()).unwrap();
    assert_close(&other, &plain, 1e-9, "column scale");
    let mut heavy = a.clone();
    for v in &mut heavy[..d] {
        *v *= 1e6;
    }
    let tau = leverage_scores(&Rows::new(&heavy, n, d, "A").unwrap()).unwrap();
    assert_close(&tau, &leverage(&heavy, n, d), 1e-9, "heavy row");
    assert!(tau[0] > 1.0 - 1e-7, "{}", tau[0]);
}

#[test]
fn matrices_that_cannot_be_scored_are_errors_naming_the_argument() {
    let a = gaussian_matrix(10, 2, 1);
    assert_eq!(Rows::new(&a, 10, 0, "A").unwrap_err().argument(), Some("A"));
    assert_eq!(Rows::new(&[], 0, 1, "A").unwrap_err().argument(), Some("A"));
    assert_eq!(
        Rows::new(&a, usize::MAX, 2, "A").unwrap_err().argument(),
        Some("A")
    );
    let rows = Rows::new(&a, 10, 2, "A").unwrap();
    for eps in [0.0, 1.0, -1.0, f64::NAN, f64::INFINITY] {
        let error = sketched_leverage_scores(&rows, &SketchOptions { seed: 0, eps }).unwrap_err();
        assert_eq!(error.argument(), Some("eps"));
    }
    for p in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let error = lp_sensitivities(&rows, p, &LewisOptions::default()).unwrap_err();
        assert_eq!(error.argument(), Some("p"));
    }
    for tol in [0.0, -1.0, f64::NAN] {
        let options = LewisOptions { iters: 10, tol };
        assert_eq!(
            lewis_weights(&rows, 1.0, &options).unwrap_err().argument(),
            Some("tol")
        );
    }
    let options = LewisOptions {
        iters: 0,
        tol: 1e-6,
    };
    assert_eq!(
        lewis_weights(&rows, 1.0, &options).unwrap_err().argument(),
        Some("iters")
    );
}
