//! What the boundary tests share: pools of several sizes, sizes that straddle a boundary,
//! random test data, and the statistical checks, with bounds that a correct sampler misses
//! with probability far below 1e-6 (and every seed is fixed, so a run never flakes).

#![allow(dead_code)]

pub mod dense;

use std::fmt::Debug;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// One thread (every chunk in order), two and three (which divide few chunk counts evenly),
/// eight (more threads than chunks for small inputs).
pub const THREADS: [usize; 4] = [1, 2, 3, 8];

/// The pool of `threads` threads, one of [`THREADS`], built once per test binary.
pub fn pool(threads: usize) -> &'static ThreadPool {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        THREADS
            .iter()
            .map(|&t| {
                ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .expect("a thread pool")
            })
            .collect()
    });
    let i = THREADS
        .iter()
        .position(|&t| t == threads)
        .expect("a thread count from THREADS");
    &pools[i]
}

/// `work` run in a pool of every size of [`THREADS`]; the results must be identical, and
/// that result is returned.
pub fn same_in_every_pool<T, F>(work: F) -> T
where
    T: PartialEq + Debug + Send,
    F: Fn() -> T + Sync + Send,
{
    let first = pool(THREADS[0]).install(&work);
    for &threads in &THREADS[1..] {
        let other = pool(threads).install(&work);
        assert!(
            other == first,
            "the result differs between 1 and {threads} threads"
        );
    }
    first
}

/// A proptest configuration of `cases` cases drawn from a fixed seed: every run checks the
/// same inputs, so a statistical bound that holds for them holds for ever.
pub fn fixed_cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7468_7269_6674_7921),
        ..ProptestConfig::default()
    }
}

/// A size within `spread` of one of `boundaries` (below, at or above it), at least `floor`.
pub fn around(boundaries: Vec<usize>, spread: usize, floor: usize) -> impl Strategy<Value = usize> {
    (prop::sample::select(boundaries), 0..=2 * spread)
        .prop_map(move |(b, offset)| (b + offset).saturating_sub(spread).max(floor))
}

/// A generator for test data, seeded.
pub fn generator(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform on (0, 1).
pub fn open_unit(rng: &mut ChaCha8Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal (Box-Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v) = (open_unit(rng), open_unit(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// An `n x d` row-major matrix of standard normals.
pub fn gaussian_matrix(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = generator(seed);
    (0..n * d).map(|_| normal(&mut rng)).collect()
}

/// The upper bound used for a chi-square statistic of `df` degrees of freedom: by the
/// Wilson-Hilferty approximation, a chi-square exceeds `df + 6 sqrt(2 df) + 30` with
/// probability far below 1e-6.
pub fn chi_square_bound(df: f64) -> f64 {
    df + 6.0 * (2.0 * df).sqrt() + 30.0
}

/// Pearson's chi-square of `counts` against `probabilities` (summing to 1) for `draws`
/// draws, bins expecting fewer than 5 merged; panics past [`chi_square_bound`].
pub fn assert_counts_follow(counts: &[u64], probabilities: &[f64], draws: u64, what: &str) {
    let m = draws as f64;
    let (mut statistic, mut df) = (0.0f64, 0.0f64);
    let (mut merged_observed, mut merged_expected) = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(probabilities) {
        let expected = m * p;
        if expected < 5.0 {
            merged_observed += c as f64;
            merged_expected += expected;
        } else {
            statistic += (c as f64 - expected).powi(2) / expected;
            df += 1.0;
        }
    }
    if merged_expected > 0.0 || merged_observed > 0.0 {
        statistic += (merged_observed - merged_expected).powi(2) / merged_expected.max(5.0);
        df += 1.0;
    }
    let bound = chi_square_bound(df);
    assert!(
        statistic < bound,
        "{what}: chi-square {statistic} over {df} bins (bound {bound})"
    );
}

/// `|value - expected| <= sd * 6`: a normal (or binomial, by its normal approximation)
/// deviates by six standard deviations with probability about 2e-9.
pub fn assert_within_six_sd(value: f64, expected: f64, sd: f64, what: &str) {
    assert!(
        (value - expected).abs() <= 6.0 * sd,
        "{what}: {value} against {expected} (sd {sd})"
    );
}
