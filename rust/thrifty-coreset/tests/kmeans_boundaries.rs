//! k-means sensitivities at every size where the code changes shape (distances are summed
//! and searched in chunks of 4096 points), under pools of several sizes, recomputed from
//! their seeds by the formula written out in the test; then `k = 1`, `k = n`, points that
//! coincide, and coordinates whose squares leave the float64 range.

mod support;

use proptest::prelude::*;
use thrifty_coreset::scores::{kmeans_sensitivities, KmeansSensitivities};

use support::{around, assert_within_six_sd, gaussian_matrix, same_in_every_pool};

const CHUNK: usize = 4096;

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Check `out` against the definition for the points `x` (`n x d`) and its own seeds: every
/// point is assigned to its nearest seed (the earliest on ties), and
/// `s(x) = alpha d^2 / c + 2 alpha cost(P_b) / (|P_b| c) + 4 n / |P_b|`.
fn assert_matches_definition(x: &[f64], n: usize, d: usize, k: usize, out: &KmeansSensitivities) {
    assert_eq!(out.seeds.len(), k);
    assert_eq!(out.sensitivities.len(), n);
    assert_eq!(out.assignment.len(), n);
    let point = |i: usize| &x[i * d..(i + 1) * d];
    let mut distinct = out.seeds.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), k, "seeds {:?} repeat", out.seeds);
    assert!(out.seeds.iter().all(|&s| s < n));
    let mut nearest = vec![f64::INFINITY; n];
    let mut label = vec![0; n];
    for (b, &seed) in out.seeds.iter().enumerate() {
        for i in 0..n {
            let dist = squared_distance(point(i), point(seed));
            if dist < nearest[i] {
                nearest[i] = dist;
                label[i] = b;
            }
        }
    }
    assert_eq!(out.assignment, label);
    let mut cost = vec![0.0; k];
    let mut size = vec![0usize; k];
    for i in 0..n {
        cost[label[i]] += nearest[i];
        size[label[i]] += 1;
    }
    let mean = cost.iter().sum::<f64>() / n as f64;
    let alpha = 16.0 * ((k as f64).log2() + 2.0);
    for i in 0..n {
        let b = label[i];
        let spread = if mean > 0.0 {
            alpha * nearest[i] / mean + 2.0 * alpha * cost[b] / (size[b] as f64 * mean)
        } else {
            0.0
        };
        let expected = spread + 4.0 * n as f64 / size[b] as f64;
        let got = out.sensitivities[i];
        assert!(
            (got - expected).abs() <= 1e-9 * expected,
            "point {i}: {got} vs {expected}"
        );
    }
}

proptest! {
    #![proptest_config(support::fixed_cases(24))]

    #[test]
    fn sensitivities_match_their_definition_at_every_chunk_count(
        n in prop_oneof![1usize..5, around(vec![CHUNK, 2 * CHUNK, 30_000], 2, 1)],
        d in 1usize..4,
        k in prop_oneof![Just(1usize), Just(2), Just(7)],
        seed in any::<u64>(),
    ) {
        let k = k.min(n);
        let x = gaussian_matrix(n, d, seed);
        let out = same_in_every_pool(|| kmeans_sensitivities(&x, n, d, k, seed).unwrap());
        assert_matches_definition(&x, n, d, k, &out);
    }
}

#[test]
fn every_point_a_seed() {
    for n in [1, 2, 17, 300] {
        let x = gaussian_matrix(n, 2, n as u64);
        let out = kmeans_sensitivities(&x, n, 2, n, 1).unwrap();
        assert_matches_definition(&x, n, 2, n, &out);
        // Every cluster is one point at cost zero: s = 4 n.
        assert!(out.sensitivities.iter().all(|&s| s == 4.0 * n as f64));
    }
}

#[test]
fn coinciding_points_give_distinct_seeds_and_finite_sensitivities() {
    // Fewer distinct points than k: D^2 sampling has no mass left, and seeds are taken from
    // the points not yet chosen.
    let n = CHUNK + 3;
    let mut x = vec![1.5; n * 2];
    x[2 * 100] = -3.0;
    for k in [1, 2, 3, 50, n] {
        let out = same_in_every_pool(|| kmeans_sensitivities(&x, n, 2, k, 9).unwrap());
        let mut seeds = out.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), k);
        assert!(out.sensitivities.iter().all(|s| s.is_finite() && *s > 0.0));
        if k >= 2 {
            assert!(
                out.seeds.contains(&100),
                "the distinct point is a seed: {:?}",
                &out.seeds[..2]
            );
        }
    }
}

#[test]
fn d2_seeding_picks_across_a_chunk_boundary_in_proportion() {
    // All points at 0 but two, at 1 and 2, on either side of the chunk boundary: the second
    // seed is one of them, with probabilities 1/5 and 4/5, whenever the first is at 0.
    let n = CHUNK + 1;
    let mut x = vec![0.0; n];
    x[CHUNK - 1] = 1.0;
    x[CHUNK] = 2.0;
    let rounds = 3000;
    let mut far = 0u32;
    let mut counted = 0u32;
    for seed in 0..rounds {
        let out = kmeans_sensitivities(&x, n, 1, 2, seed).unwrap();
        if out.seeds[0] < CHUNK - 1 {
            counted += 1;
            let second = out.seeds[1];
            assert!(
                second == CHUNK - 1 || second == CHUNK,
                "second seed {second}"
            );
            far += u32::from(second == CHUNK);
        }
    }
    let m = f64::from(counted);
    assert_within_six_sd(
        f64::from(far),
        0.8 * m,
        (m * 0.8 * 0.2).sqrt(),
        "seeds at 2",
    );
}

#[test]
fn sensitivities_do_not_depend_on_a_power_of_two_scale() {
    // Squared distances of coordinates near 2^600 overflowed to infinity (NaN
    // sensitivities), and near 2^-600 underflowed to zero (every point looked like a seed).
    let (n, d) = (2 * CHUNK + 1, 3);
    let x = gaussian_matrix(n, d, 2);
    for k in [1, 5] {
        let plain = kmeans_sensitivities(&x, n, d, k, 4).unwrap();
        for scale in [
            2f64.powi(600),
            2f64.powi(-600),
            2f64.powi(1000),
            2f64.powi(-1000),
        ] {
            let scaled: Vec<f64> = x.iter().map(|v| v * scale).collect();
            let out = kmeans_sensitivities(&scaled, n, d, k, 4).unwrap();
            assert_eq!(out, plain, "k {k}, scale {scale:e}");
        }
    }
    // Points 1e300 and -1e300 apart: their difference itself overflows.
    let wide = [1e300, -1e300, 0.0, 5e299];
    let out = kmeans_sensitivities(&wide, 4, 1, 2, 0).unwrap();
    assert_matches_definition(&[1.0, -1.0, 0.0, 0.5], 4, 1, 2, &out);
}

#[test]
fn points_that_cannot_be_scored_are_errors_naming_the_argument() {
    let x = gaussian_matrix(10, 2, 1);
    let argument = |x: &[f64], n: usize, d: usize, k: usize| {
        kmeans_sensitivities(x, n, d, k, 0).unwrap_err().argument()
    };
    assert_eq!(argument(&x, 10, 2, 0), Some("k"));
    assert_eq!(argument(&x, 10, 2, 11), Some("k"));
    assert_eq!(argument(&x, 10, 0, 1), Some("X"));
    assert_eq!(argument(&x, 0, 2, 1), Some("X"));
    assert_eq!(argument(&x, 9, 2, 1), Some("X"));
    assert_eq!(argument(&x, usize::MAX, 2, 1), Some("X"));
    assert_eq!(argument(&x, 2, usize::MAX / 2 + 1, 1), Some("X"));
    let mut bad = x.clone();
    bad[13] = f64::NEG_INFINITY;
    assert_eq!(argument(&bad, 10, 2, 1), Some("X"));
}
