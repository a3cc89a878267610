//! Weighted sampling and permutations: validity, exactness on small cases, determinism
//! across thread counts, and errors that name the argument.

use proptest::prelude::*;
use thrifty_core::CoreError;
use thrifty_coreset::sampling::{
    inverse_cdf, permutation, sample, totals, AliasTable, ALIAS_DIVISOR,
};

fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(work)
}

fn scores(n: usize) -> Vec<f64> {
    // Deterministic, uneven, with zeros: enough structure without a random crate.
    (0..n)
        .map(|i| {
            if i % 11 == 3 {
                0.0
            } else {
                1.0 + ((i * 7919) % 101) as f64
            }
        })
        .collect()
}

#[test]
fn samples_do_not_depend_on_the_thread_count() {
    // Three chunks of the without-replacement scan (m = 40 000) or 48 chunks of dense ranks
    // (m = 200 000, n / m below 64), and several chunks of draws.
    let s = scores(3 << 20);
    for (replace, m) in [(true, 40_000), (false, 40_000), (false, 200_000)] {
        let one = in_pool(1, || sample(&s, m, replace, 5).unwrap());
        let three = in_pool(3, || sample(&s, m, replace, 5).unwrap());
        assert_eq!(one, three);
        let other_seed = sample(&s, m, replace, 6).unwrap();
        assert_ne!(one.indices, other_seed.indices);
    }
}

#[test]
fn permutations_do_not_depend_on_the_thread_count() {
    let n = 5_000_000;
    let one = in_pool(1, || permutation::<u32>(n, 3, 1).unwrap());
    let four = in_pool(4, || permutation::<u32>(n, 3, 1).unwrap());
    assert_eq!(one, four);
    let mut sorted = one.clone();
    sorted.sort_unstable();
    assert!(sorted.iter().enumerate().all(|(i, &v)| v as usize == i));
    assert_ne!(one, permutation::<u32>(n, 3, 2).unwrap());
    let wide = permutation::<u64>(n, 3, 1).unwrap();
    assert!(wide.iter().zip(&one).all(|(&w, &v)| w == u64::from(v)));
}

#[test]
fn permutations_of_three_are_uniform() {
    let rounds = 6000;
    let mut counts = std::collections::HashMap::new();
    for salt in 0..rounds {
        *counts
            .entry(permutation::<u32>(3, 0, salt).unwrap())
            .or_insert(0u32) += 1;
    }
    assert_eq!(counts.len(), 6);
    // Each count is Binomial(6000, 1/6): mean 1000, sd about 29; 6 sd either side.
    assert!(
        counts.values().all(|&c| (826..=1174).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn inclusion_frequencies_match_successive_sampling() {
    // scores (1, 2, 3), m = 2: i is left out when the other two are drawn, in either order.
    let s = [1.0, 2.0, 3.0];
    let rounds = 20_000u64;
    let mut drawn = [0u64; 3];
    for seed in 0..rounds {
        for &i in &sample(&s, 2, false, seed).unwrap().indices {
            drawn[i as usize] += 1;
        }
    }
    let exact = [
        1.0 - (2.0 / 6.0 * 3.0 / 4.0 + 3.0 / 6.0 * 2.0 / 3.0),
        1.0 - (1.0 / 6.0 * 3.0 / 5.0 + 3.0 / 6.0 * 1.0 / 3.0),
        1.0 - (1.0 / 6.0 * 2.0 / 5.0 + 2.0 / 6.0 * 1.0 / 4.0),
    ];
    for (count, p) in drawn.iter().zip(exact) {
        let frequency = *count as f64 / rounds as f64;
        let sd = (p * (1.0 - p) / rounds as f64).sqrt();
        assert!((frequency - p).abs() < 5.0 * sd, "{frequency} vs {p}");
    }
}

#[test]
fn errors_name_the_argument() {
    let cases: Vec<(Vec<f64>, usize, bool, &str)> = vec![
        (vec![1.0, f64::NAN], 1, true, "scores"),
        (vec![1.0, -2.0], 1, true, "scores"),
        (vec![0.0, 0.0], 1, false, "scores"),
        (vec![], 0, true, "scores"),
        (vec![1.0, 0.0, 1.0], 3, false, "m"),
    ];
    for (s, m, replace, argument) in cases {
        let error = sample(&s, m, replace, 0).unwrap_err();
        assert_eq!(error.argument(), Some(argument), "{error}");
    }
    assert!(matches!(
        sample(&[f64::INFINITY], 1, true, 0),
        Err(CoreError::NonFinite { .. })
    ));
    assert_eq!(
        permutation::<u32>(1 << 33, 0, 0).unwrap_err().argument(),
        Some("n")
    );
}

#[test]
fn drawing_every_positive_score_gives_unit_weights() {
    let drawn = sample(&[0.0, 2.0, 5.0, 0.0], 2, false, 1).unwrap();
    assert_eq!(drawn.weights, vec![1.0, 1.0]);
    assert_eq!(drawn.threshold, Some(f64::INFINITY));
}

/// Chi-square of the counts of `drawn` against `s / sum(s)`, bins expecting fewer than 5
/// merged, far below the 1e-9 tail of its distribution; and no zero score drawn.
fn assert_follows(s: &[f64], drawn: &[u64]) {
    let total: f64 = s.iter().sum();
    let mut counts = vec![0u64; s.len()];
    for &i in drawn {
        assert!(s[i as usize] > 0.0, "drew index {i} of score 0");
        counts[i as usize] += 1;
    }
    let m = drawn.len() as f64;
    let (mut statistic, mut df) = (0.0f64, 0.0f64);
    let (mut merged_observed, mut merged_expected) = (0.0, 0.0);
    for (&c, &si) in counts.iter().zip(s) {
        let expected = m * si / total;
        if expected < 5.0 {
            merged_observed += c as f64;
            merged_expected += expected;
        } else {
            statistic += (c as f64 - expected).powi(2) / expected;
            df += 1.0;
        }
    }
    if merged_expected > 0.0 {
        statistic += (merged_observed - merged_expected).powi(2) / merged_expected.max(5.0);
        df += 1.0;
    }
    // Wilson-Hilferty: a chi-square of df degrees stays below df + 6 sqrt(2 df) + 30 but
    // with probability far under 1e-6.
    let bound = df + 6.0 * (2.0 * df).sqrt() + 30.0;
    assert!(statistic < bound, "chi-square {statistic} over {df} bins");
}

#[test]
fn inverse_cdf_draws_follow_the_scores() {
    let skewed: Vec<f64> = (0..60).map(|k| 0.5f64.powi(k)).collect();
    // A few huge weights among many tiny ones, across several chunks of 2^16 and blocks of
    // 64 whose sums are dominated by one score.
    let mut huge_and_tiny = vec![1e-3; 300_000];
    for (k, i) in [5usize, 70_000, 131_071, 299_999].into_iter().enumerate() {
        huge_and_tiny[i] = 1e3 * (k + 1) as f64;
    }
    for i in (0..huge_and_tiny.len()).step_by(13) {
        huge_and_tiny[i] = 0.0;
    }
    let cases = [
        skewed,
        huge_and_tiny,
        scores(200_001),
        vec![0.0, 0.0, 5.0, 0.0],
        vec![1.0],
    ];
    for (k, s) in cases.iter().enumerate() {
        let drawn = inverse_cdf::draw(s, 300_000, k as u64).unwrap();
        assert_eq!(drawn.len(), 300_000);
        assert_follows(s, &drawn);
    }
}

#[test]
fn inverse_cdf_draws_do_not_depend_on_the_thread_count() {
    let s = scores(5 << 16);
    let one = in_pool(1, || inverse_cdf::draw(&s, 100_000, 3).unwrap());
    let two = in_pool(2, || inverse_cdf::draw(&s, 100_000, 3).unwrap());
    let five = in_pool(5, || inverse_cdf::draw(&s, 100_000, 3).unwrap());
    assert_eq!(one, two);
    assert_eq!(one, five);
    // sample() takes this path for m < n / ALIAS_DIVISOR and weighs each draw 1 / (m p_i).
    let m = s.len() / ALIAS_DIVISOR - 1;
    let drawn = sample(&s, m, true, 3).unwrap();
    assert_eq!(
        drawn.indices,
        inverse_cdf::draw(&s, m, 3)
            .unwrap()
            .into_iter()
            .map(|i| i as i64)
            .collect::<Vec<_>>()
    );
    assert_follows(
        &s,
        &drawn.indices.iter().map(|&i| i as u64).collect::<Vec<_>>(),
    );
}

#[test]
fn inverse_cdf_draws_come_in_independent_order() {
    // Sorted or grouped output would make consecutive draws dependent; i.i.d. draws from
    // two equal halves have a first half that looks like the second.
    let s = vec![1.0; 1 << 18];
    let drawn = inverse_cdf::draw(&s, 40_000, 8).unwrap();
    let ascending = drawn.windows(2).filter(|w| w[1] > w[0]).count() as f64;
    // Each pair ascends with probability about 1/2: mean 20_000, sd 100 (Bernoulli bound).
    assert!((ascending - 20_000.0).abs() < 1_000.0, "{ascending}");
}

fn assert_table_is_exact(s: &[f64]) {
    let t = totals(s).unwrap();
    for p in [
        AliasTable::<u32>::new(s, t).unwrap().probabilities(s.len()),
        AliasTable::<u64>::new(s, t).unwrap().probabilities(s.len()),
    ] {
        for (&pi, &si) in p.iter().zip(s) {
            // Each pairing rounds once; a column takes part in a few of them.
            let exact = si / t.total;
            assert!((pi - exact).abs() <= 1e-9 * exact, "{pi} vs {exact}");
        }
    }
}

#[test]
fn alias_tables_hold_the_exact_distribution() {
    assert_table_is_exact(&scores(100_000));
    let skewed: Vec<f64> = (0..80).map(|k| 0.5f64.powi(k)).collect();
    assert_table_is_exact(&skewed);
    let mut one_heavy = vec![1.0; 10_000];
    one_heavy[7] = 1e9;
    assert_table_is_exact(&one_heavy);
    assert_table_is_exact(&[0.0, 0.0, 5.0, 0.0]);
    assert_table_is_exact(&[1.0; 17]);
}

proptest! {
    #[test]
    fn alias_tables_are_exact(
        s in proptest::collection::vec(prop_oneof![Just(0.0), 1e-6f64..1.0, 1.0f64..1e6], 1..300),
    ) {
        prop_assume!(s.iter().any(|&x| x > 0.0));
        assert_table_is_exact(&s);
    }


    #[test]
    fn draws_are_valid(
        s in proptest::collection::vec(prop_oneof![Just(0.0), 1e-9f64..1e9], 1..60),
        m in 0usize..70,
        seed in any::<u64>(),
    ) {
        let positive = s.iter().filter(|&&x| x > 0.0).count();
        prop_assume!(positive > 0);
        let total: f64 = s.iter().sum();
        let by_inverse_cdf = inverse_cdf::draw(&s, m, seed).unwrap();
        prop_assert_eq!(by_inverse_cdf.len(), m);
        prop_assert!(by_inverse_cdf.iter().all(|&i| s[i as usize] > 0.0));
        let with = sample(&s, m, true, seed).unwrap();
        prop_assert_eq!(with.indices.len(), m);
        for (&i, &w) in with.indices.iter().zip(&with.weights) {
            prop_assert!(s[i as usize] > 0.0);
            let expected = total / (m as f64 * s[i as usize]);
            prop_assert!((w - expected).abs() <= 1e-12 * expected);
        }
        match sample(&s, m, false, seed) {
            Ok(without) => {
                prop_assert!(m <= positive);
                let mut unique = without.indices.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), m);
                prop_assert!(without.indices.iter().all(|&i| s[i as usize] > 0.0));
                prop_assert!(without.weights.iter().all(|&w| w >= 1.0 && w.is_finite()));
            }
            Err(error) => {
                prop_assert!(m > positive);
                prop_assert_eq!(error.argument(), Some("m"));
            }
        }
    }

    #[test]
    fn permutations_are_permutations(n in 0u64..300_000, seed in any::<u64>()) {
        let mut p = permutation::<u32>(n, seed, 0).unwrap();
        p.sort_unstable();
        prop_assert!(p.iter().enumerate().all(|(i, &v)| v as usize == i));
    }
}
