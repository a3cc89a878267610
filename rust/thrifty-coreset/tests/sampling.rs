//! Weighted sampling and permutations: validity, exactness on small cases, determinism
//! across thread counts, and errors that name the argument.

use proptest::prelude::*;
use thrifty_core::CoreError;
use thrifty_coreset::sampling::{permutation, sample};

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
    // Three chunks of the without-replacement scan and several chunks of draws.
    let s = scores(3 << 20);
    for replace in [true, false] {
        let one = in_pool(1, || sample(&s, 40_000, replace, 5).unwrap());
        let three = in_pool(3, || sample(&s, 40_000, replace, 5).unwrap());
        assert_eq!(one, three);
        let other_seed = sample(&s, 40_000, replace, 6).unwrap();
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

proptest! {
    #[test]
    fn draws_are_valid(
        s in proptest::collection::vec(prop_oneof![Just(0.0), 1e-9f64..1e9], 1..60),
        m in 0usize..70,
        seed in any::<u64>(),
    ) {
        let positive = s.iter().filter(|&&x| x > 0.0).count();
        prop_assume!(positive > 0);
        let total: f64 = s.iter().sum();
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
