//! Sampling without replacement at every size where the code changes shape, under pools of
//! several sizes, checked against successive sampling written out in full.
//!
//! The shapes: every item draws its rank (in chunks of 2^16) while `n < 64 m`; from
//! `n = 64 m` on, the exponential jumps of A-ExpJ run over chunks of
//! `max(2^20, next_power_of_two(16 (m + 1)))` items, each chunk with its own stream and
//! reservoir. Then `m = 0`, `m` equal to the number of positive scores (every one drawn,
//! weights 1), and `m` above it (an error naming `m`).

mod support;

use proptest::prelude::*;
use thrifty_coreset::sampling::{sample, Sample};

use support::{
    around, assert_counts_follow, assert_within_six_sd, generator, open_unit, same_in_every_pool,
};

/// Items per chunk of the dense path, items per chunk of the scan (for `m + 1 <= 2^16`), and
/// the ratio `n / m` from which the scan runs.
const DENSE_CHUNK: usize = 1 << 16;
const SCAN_CHUNK: usize = 1 << 20;
const SCAN_FROM_RATIO: usize = 64;

/// Scores with zeros (one in `zero_every`, none when 0) and the rest log-uniform on
/// `[low, high]`.
fn scores(n: usize, zero_every: usize, low: f64, high: f64, seed: u64) -> Vec<f64> {
    let mut rng = generator(seed);
    (0..n)
        .map(|i| {
            let u = open_unit(&mut rng);
            if zero_every > 0 && i % zero_every == zero_every / 2 {
                0.0
            } else {
                (low.ln() + u * (high.ln() - low.ln())).exp()
            }
        })
        .collect()
}

/// What holds for every sample without replacement: `m` distinct indices of positive scores,
/// and the Horvitz-Thompson weight `1 / (1 - exp(-s_i tau))` of each, or 1 when every
/// positive score is drawn (`tau` infinite).
fn assert_valid(s: &[f64], m: usize, drawn: &Sample) {
    let positive = s.iter().filter(|&&x| x > 0.0).count();
    assert_eq!(drawn.indices.len(), m);
    assert_eq!(drawn.weights.len(), m);
    let tau = drawn.threshold.expect("a threshold without replacement");
    if m > 0 {
        assert_eq!(
            tau.is_infinite(),
            m == positive,
            "tau {tau} for m {m} of {positive}"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (&i, &w) in drawn.indices.iter().zip(&drawn.weights) {
        assert!((0..s.len() as i64).contains(&i), "index {i}");
        assert!(seen.insert(i), "index {i} drawn twice");
        let si = s[i as usize];
        assert!(si > 0.0, "drew index {i} of score 0");
        let expected = if tau.is_infinite() {
            1.0
        } else {
            1.0 / -(-si * tau).exp_m1()
        };
        assert_eq!(w, expected, "weight of index {i}");
        assert!(w >= 1.0 && w.is_finite());
    }
}

/// Sizes around the chunk and 10^5, and draw counts around the dense/scan switch for each.
fn sizes() -> impl Strategy<Value = (usize, usize)> {
    around(vec![1, 2, 64, DENSE_CHUNK, 2 * DENSE_CHUNK, 100_000], 2, 1).prop_flat_map(|n| {
        let switch = n / SCAN_FROM_RATIO;
        (
            Just(n),
            prop_oneof![0..=n.min(3), around(vec![switch, switch + 1, n / 2], 1, 0)],
        )
    })
}

proptest! {
    #![proptest_config(support::fixed_cases(48))]

    #[test]
    fn samples_are_valid_and_independent_of_the_thread_count(
        (n, m) in sizes(),
        zero_every in prop_oneof![Just(0usize), Just(2), Just(7)],
        spanning in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (low, high) = if spanning { (1e-300, 1e300) } else { (1e-3, 1e3) };
        let s = scores(n, zero_every, low, high, seed);
        let positive = s.iter().filter(|&&x| x > 0.0).count();
        if positive == 0 {
            prop_assert_eq!(sample(&s, m, false, seed).unwrap_err().argument(), Some("scores"));
        } else if m > positive {
            prop_assert_eq!(sample(&s, m, false, seed).unwrap_err().argument(), Some("m"));
        } else {
            let drawn = same_in_every_pool(|| sample(&s, m, false, seed).unwrap());
            assert_valid(&s, m, &drawn);
            // Drawing every positive score, or all but one, stays valid.
            for all in [positive, positive - 1] {
                assert_valid(&s, all, &sample(&s, all, false, seed).unwrap());
            }
        }
    }
}

#[test]
fn samples_at_the_scan_chunk_boundaries_are_valid_and_independent_of_the_thread_count() {
    // One scan chunk, two (the second holding one item), and, with 2^16 ranks to keep (the
    // chunk grows to 2^21), two chunks of a 2^22-long score vector against four at 2^16 - 1.
    let cases = [
        (SCAN_CHUNK, 7),
        (SCAN_CHUNK + 1, 7),
        (2 * SCAN_CHUNK + 1, 1000),
        (1 << 22, 1 << 16),
        (1 << 22, (1 << 16) - 1),
    ];
    for (n, m) in cases {
        assert!(n >= SCAN_FROM_RATIO * m, "a scan case");
        let s = scores(n, 5, 1e-3, 1e3, n as u64);
        let drawn = same_in_every_pool(|| sample(&s, m, false, 21).unwrap());
        assert_valid(&s, m, &drawn);
    }
}

/// Successive sampling of `m` from `s`, written out: the probability of every ordered draw,
/// summed into the probability that each index is drawn.
fn inclusion_by_enumeration(s: &[f64], m: usize) -> Vec<f64> {
    fn walk(s: &[f64], m: usize, taken: &mut Vec<usize>, p: f64, inclusion: &mut [f64]) {
        if taken.len() == m {
            for &i in taken.iter() {
                inclusion[i] += p;
            }
            return;
        }
        let left: f64 = (0..s.len())
            .filter(|i| !taken.contains(i))
            .map(|i| s[i])
            .sum();
        for i in 0..s.len() {
            if !taken.contains(&i) && s[i] > 0.0 {
                taken.push(i);
                walk(s, m, taken, p * s[i] / left, inclusion);
                taken.pop();
            }
        }
    }
    let mut inclusion = vec![0.0; s.len()];
    walk(s, m, &mut Vec::new(), 1.0, &mut inclusion);
    inclusion
}

#[test]
fn inclusion_frequencies_match_successive_sampling_on_both_sides_of_the_switch() {
    // m = 1 draws index i with probability s_i / sum(s) exactly: n = 63 ranks every item,
    // n = 64 and 65 jump. For m = 2 and 3, successive sampling written out on small n.
    let rounds = 20_000u64;
    for n in [63usize, 64, 65] {
        let s = scores(n, 9, 0.1, 10.0, n as u64);
        let mut counts = vec![0u64; n];
        for seed in 0..rounds {
            counts[sample(&s, 1, false, seed).unwrap().indices[0] as usize] += 1;
        }
        let total: f64 = s.iter().sum();
        let p: Vec<f64> = s.iter().map(|&x| x / total).collect();
        assert_counts_follow(&counts, &p, rounds, &format!("m = 1 of n = {n}"));
    }
    for (s, m) in [
        (vec![1.0, 2.0, 0.0, 3.0, 4.0], 2),
        (vec![5.0, 1.0, 1.0, 0.5, 2.0, 0.0], 3),
    ] {
        let exact = inclusion_by_enumeration(&s, m);
        let mut drawn = vec![0u64; s.len()];
        for seed in 0..rounds {
            for &i in &sample(&s, m, false, seed).unwrap().indices {
                drawn[i as usize] += 1;
            }
        }
        for (i, (&count, &p)) in drawn.iter().zip(&exact).enumerate() {
            let sd = (rounds as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert_within_six_sd(count as f64, rounds as f64 * p, sd, &format!("index {i}"));
        }
    }
}

#[test]
fn horvitz_thompson_totals_are_unbiased_across_scan_chunks() {
    // Weights 1 in the first scan chunk and 3 in the second: the weighted count of the
    // sampled items of each chunk estimates its size, whatever chunk a reservoir came from.
    let n = SCAN_CHUNK + SCAN_CHUNK / 2;
    let s: Vec<f64> = (0..n)
        .map(|i| if i < SCAN_CHUNK { 1.0 } else { 3.0 })
        .collect();
    let m = 200;
    let rounds = 60;
    let estimates: Vec<f64> = (0..rounds)
        .map(|seed| {
            let drawn = sample(&s, m, false, seed).unwrap();
            drawn
                .indices
                .iter()
                .zip(&drawn.weights)
                .filter(|(&i, _)| i as usize >= SCAN_CHUNK)
                .map(|(_, &w)| w)
                .sum()
        })
        .collect();
    let mean = estimates.iter().sum::<f64>() / rounds as f64;
    let variance = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (rounds - 1) as f64;
    let truth = (n - SCAN_CHUNK) as f64;
    // With 59 degrees of freedom, a t statistic passes 7 with probability about 2e-9.
    let sd = (variance / rounds as f64).sqrt();
    assert!(
        (mean - truth).abs() <= 7.0 * sd,
        "{mean} vs {truth}, sd {sd}"
    );
}

#[test]
fn samples_do_not_depend_on_a_power_of_two_scale_down_to_the_smallest_safe_score() {
    // Ranks E / s scale exactly with the scores. E is at most 53 ln 2 (the uniform behind it
    // is at least 2^-53), so 2^-1018 is the smallest power of two whose ranks cannot overflow.
    let smallest_safe = f64::MIN_POSITIVE * 16.0;
    let s = scores(3 * DENSE_CHUNK, 0, 1.0, 100.0, 4);
    let scaled: Vec<f64> = s.iter().map(|&x| x * smallest_safe).collect();
    for m in [10, 4000] {
        let plain = sample(&s, m, false, 2).unwrap();
        let small = sample(&scaled, m, false, 2).unwrap();
        assert_eq!(plain.indices, small.indices);
        assert_eq!(plain.weights, small.weights);
        assert_valid(&scaled, m, &small);
    }
}

#[test]
fn scores_whose_ranks_overflow_are_an_error_naming_scores() {
    // E / s can overflow float64 for s below about 2e-307: every rank of subnormal scores was
    // infinite, so the sample was the first m positive indices with weights 1.
    let subnormal = f64::from_bits(1);
    let cases = [
        vec![subnormal; 10],
        vec![1.0, 2.0, 1e-310, 3.0],
        vec![f64::MIN_POSITIVE * 8.0, 1.0],
    ];
    for s in &cases {
        for m in [0, 1, 2] {
            let error = sample(s, m, false, 0).unwrap_err();
            assert_eq!(error.argument(), Some("scores"), "{error}");
        }
        // With replacement they are fine.
        assert_eq!(sample(s, 3, true, 0).unwrap().indices.len(), 3);
    }
}

#[test]
fn a_single_positive_score_is_the_whole_sample() {
    for n in [1, 64, DENSE_CHUNK + 1] {
        let mut s = vec![0.0; n];
        s[n / 2] = 1e-300;
        let drawn = sample(&s, 1, false, 3).unwrap();
        assert_eq!(drawn.indices, vec![(n / 2) as i64]);
        assert_eq!(drawn.weights, vec![1.0]);
        assert_eq!(drawn.threshold, Some(f64::INFINITY));
        assert_eq!(sample(&s, 2, false, 3).unwrap_err().argument(), Some("m"));
        let empty = sample(&s, 0, false, 3).unwrap();
        assert!(empty.indices.is_empty() && empty.weights.is_empty());
    }
}

#[test]
fn every_scan_chunk_has_its_own_stream() {
    // Equal scores over two scan chunks: a shared stream would pick the same offsets in each.
    let s = vec![1.0; 2 * SCAN_CHUNK];
    let drawn = sample(&s, 2000, false, 5).unwrap();
    let mut first: Vec<i64> = drawn
        .indices
        .iter()
        .copied()
        .filter(|&i| (i as usize) < SCAN_CHUNK)
        .collect();
    let mut second: Vec<i64> = drawn
        .indices
        .iter()
        .filter(|&&i| i as usize >= SCAN_CHUNK)
        .map(|&i| i - SCAN_CHUNK as i64)
        .collect();
    first.sort_unstable();
    second.sort_unstable();
    assert_ne!(first, second);
    // Both chunks are drawn from: Binomial-like split of 2000, mean 1000, sd about 22.
    assert_within_six_sd(
        first.len() as f64,
        1000.0,
        23.0,
        "items from the first chunk",
    );
}
