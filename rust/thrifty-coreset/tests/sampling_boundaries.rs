//! Sampling with replacement (inverse CDF and alias tables) and permutations at every size
//! where the code changes shape, under pools of several sizes, and at the extremes of
//! float64: zero weights, a single positive weight, weights from 1e-300 to 1e300, subnormal
//! weights, and draw counts too large for memory.
//!
//! The shapes: scores are summed in blocks of 64 (eight blocks side by side, 512 scores) and
//! chunks of 2^16; draws are made in chunks of `DRAW_CHUNK` = 2^14, each from its own stream;
//! `sample` switches from inverse CDF to an alias table at `m >= n / ALIAS_DIVISOR`; a
//! permutation buckets by 2^16 elements and chunks by 2^20.

mod support;

use proptest::prelude::*;
use thrifty_coreset::sampling::alias::DRAW_CHUNK;
use thrifty_coreset::sampling::{
    inverse_cdf, permutation, sample, totals, AliasTable, Table, ALIAS_DIVISOR,
};

use support::{
    around, assert_counts_follow, assert_within_six_sd, generator, open_unit, same_in_every_pool,
};

/// Scores per block of partial sums, per group of blocks summed side by side, and per chunk.
const BLOCK: usize = 64;
const LANES_BLOCK: usize = 8 * BLOCK;
const CHUNK: usize = 1 << 16;

/// The index sizes where the score pass changes shape, and 10^5.
fn score_boundaries() -> Vec<usize> {
    vec![1, BLOCK, LANES_BLOCK, CHUNK, 2 * CHUNK, 100_000]
}

#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// Log-uniform on [1e-3, 1e3], one in seven zero.
    Uneven,
    /// Log-uniform on [1e-300, 1e300], one in five zero: the sum stays finite for n <= 10^5.
    Spanning,
    /// Zero except at the first and last score of blocks and chunks, and a few others.
    Sparse,
    /// Zero except one score.
    Single,
}

fn scores(n: usize, pattern: Pattern, seed: u64) -> Vec<f64> {
    let mut rng = generator(seed);
    let mut log_uniform = |low: f64, high: f64| {
        let u = open_unit(&mut rng);
        (low.ln() + u * (high.ln() - low.ln())).exp()
    };
    match pattern {
        Pattern::Uneven => (0..n)
            .map(|i| {
                if i % 7 == 3 {
                    0.0
                } else {
                    log_uniform(1e-3, 1e3)
                }
            })
            .collect(),
        Pattern::Spanning => (0..n)
            .map(|i| {
                if i % 5 == 1 {
                    0.0
                } else {
                    log_uniform(1e-300, 1e300)
                }
            })
            .collect(),
        Pattern::Sparse => {
            let mut s = vec![0.0; n];
            for boundary in [BLOCK, LANES_BLOCK, CHUNK, 2 * CHUNK] {
                for i in [boundary - 1, boundary] {
                    if i < n {
                        s[i] = log_uniform(0.5, 2.0);
                    }
                }
            }
            s[n - 1] = 1.0;
            s[(seed as usize) % n] = 3.0;
            s
        }
        Pattern::Single => {
            let mut s = vec![0.0; n];
            s[(seed as usize) % n] = log_uniform(1e-300, 1e300);
            s
        }
    }
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Uneven),
        Just(Pattern::Spanning),
        Just(Pattern::Sparse),
        Just(Pattern::Single),
    ]
}

/// Draw counts around the draw chunk, the alias switch for this `n`, and a few small ones.
fn draw_counts(n: usize) -> impl Strategy<Value = usize> {
    let switch = n.div_ceil(ALIAS_DIVISOR);
    prop_oneof![
        0usize..4,
        around(vec![DRAW_CHUNK, 2 * DRAW_CHUNK], 1, 0),
        around(vec![switch], 2, 0),
    ]
}

proptest! {
    #![proptest_config(support::fixed_cases(40))]

    #[test]
    fn draws_with_replacement_are_valid_and_independent_of_the_thread_count(
        (n, m) in around(score_boundaries(), 2, 1)
            .prop_flat_map(|n| (Just(n), draw_counts(n))),
        pattern in pattern(),
        seed in any::<u64>(),
    ) {
        let s = scores(n, pattern, seed);
        let total: f64 = s.iter().sum();
        let drawn = same_in_every_pool(|| sample(&s, m, true, seed).unwrap());
        prop_assert_eq!(drawn.indices.len(), m);
        prop_assert_eq!(drawn.weights.len(), m);
        prop_assert_eq!(drawn.threshold, None);
        for (&i, &w) in drawn.indices.iter().zip(&drawn.weights) {
            prop_assert!((0..n as i64).contains(&i), "index {} of {}", i, n);
            let si = s[i as usize];
            prop_assert!(si > 0.0, "drew index {} of score 0", i);
            // Horvitz-Thompson with replacement: 1 / (m p_i), p_i = s_i / sum(s).
            let expected = total / si / m as f64;
            prop_assert!((w - expected).abs() <= 1e-12 * expected, "{} vs {}", w, expected);
        }
        // The switch: an alias table from m >= n / ALIAS_DIVISOR on, inverse CDF below.
        let by_path: Vec<u64> = if m.saturating_mul(ALIAS_DIVISOR) >= n && m > 0 {
            same_in_every_pool(|| Table::new(&s).unwrap().draw(m, seed).unwrap())
        } else {
            same_in_every_pool(|| inverse_cdf::draw(&s, m, seed).unwrap())
        };
        let as_i64: Vec<i64> = by_path.iter().map(|&i| i as i64).collect();
        prop_assert_eq!(&drawn.indices, &as_i64);
        if pattern_has_one_positive(&s) {
            let only = s.iter().position(|&x| x > 0.0).unwrap() as i64;
            prop_assert!(drawn.indices.iter().all(|&i| i == only));
        }
    }

    #[test]
    fn alias_tables_draw_the_same_with_either_index_type(
        n in around(score_boundaries(), 2, 1),
        m in around(vec![1, DRAW_CHUNK, 2 * DRAW_CHUNK], 1, 0),
        pattern in pattern(),
        seed in any::<u64>(),
    ) {
        let s = scores(n, pattern, seed);
        let t = totals(&s).unwrap();
        let narrow = same_in_every_pool(|| {
            AliasTable::<u32>::new(&s, t).unwrap().sample(m, seed).unwrap()
        });
        let wide = AliasTable::<u64>::new(&s, t).unwrap().sample(m, seed).unwrap();
        prop_assert_eq!(&narrow, &wide);
        prop_assert!(narrow.iter().all(|&i| s[i as usize] > 0.0));
    }

    #[test]
    fn permutations_are_permutations_at_every_bucket_and_chunk_count(
        n in prop_oneof![0u64..4, around(vec![1 << 16, 2 << 16, 1 << 20], 2, 0).prop_map(|n| n as u64)],
        seed in any::<u64>(),
        salt in 0u64..4,
    ) {
        let p = same_in_every_pool(|| permutation::<u32>(n, seed, salt).unwrap());
        let mut seen = vec![false; n as usize];
        for &v in &p {
            prop_assert!(!std::mem::replace(&mut seen[v as usize], true), "{} twice", v);
        }
        prop_assert_eq!(p.len() as u64, n);
        let wide = permutation::<u64>(n, seed, salt).unwrap();
        prop_assert!(wide.iter().zip(&p).all(|(&w, &v)| w == u64::from(v)));
    }
}

fn pattern_has_one_positive(s: &[f64]) -> bool {
    s.iter().filter(|&&x| x > 0.0).count() == 1
}

/// The positions just before and at every boundary of the score pass, and the last one.
fn straddling_positions(n: usize) -> Vec<usize> {
    let mut positions = vec![0, n - 1];
    for boundary in [BLOCK, LANES_BLOCK, CHUNK, 2 * CHUNK] {
        if boundary < n {
            positions.extend([boundary - 1, boundary]);
        }
    }
    positions
}

#[test]
fn a_single_positive_score_is_drawn_every_time_wherever_it_sits() {
    let n = 2 * CHUNK + 3;
    for position in straddling_positions(n) {
        let mut s = vec![0.0; n];
        s[position] = 0.75;
        for m in [1, 3, DRAW_CHUNK + 1, n / ALIAS_DIVISOR + 1] {
            let drawn = sample(&s, m, true, position as u64).unwrap();
            assert!(
                drawn.indices.iter().all(|&i| i == position as i64),
                "position {position}, m {m}"
            );
            for &w in &drawn.weights {
                assert!((w - 1.0 / m as f64).abs() <= 1e-15, "{w} for m {m}");
            }
        }
    }
}

#[test]
fn neighbours_across_a_boundary_are_drawn_in_proportion() {
    // Two positive scores, 1 and 3, at positions i - 1 and i for every boundary i: a walk
    // that stops one score early or late draws a zero score, or the wrong neighbour.
    let n = 2 * CHUNK + 5;
    let m = 20_000;
    for boundary in [BLOCK, LANES_BLOCK, CHUNK, 2 * CHUNK, n - 1] {
        let mut s = vec![0.0; n];
        s[boundary - 1] = 1.0;
        s[boundary] = 3.0;
        for (path, drawn) in [
            (
                "inverse CDF",
                inverse_cdf::draw(&s, m, boundary as u64).unwrap(),
            ),
            (
                "alias",
                Table::new(&s).unwrap().draw(m, boundary as u64).unwrap(),
            ),
        ] {
            assert!(
                drawn
                    .iter()
                    .all(|&i| i == boundary as u64 - 1 || i == boundary as u64),
                "{path}: drew a zero score near {boundary}"
            );
            let upper = drawn.iter().filter(|&&i| i == boundary as u64).count() as f64;
            let sd = (m as f64 * 0.75 * 0.25).sqrt();
            assert_within_six_sd(upper, 0.75 * m as f64, sd, path);
        }
    }
}

/// Counts of `drawn` per index of `s` (panicking on an index of a zero score), and the
/// probabilities `s / sum(s)`.
fn counts_and_probabilities(s: &[f64], drawn: &[u64]) -> (Vec<u64>, Vec<f64>) {
    let mut counts = vec![0u64; s.len()];
    for &i in drawn {
        assert!(s[i as usize] > 0.0, "drew index {i} of score 0");
        counts[i as usize] += 1;
    }
    let total: f64 = s.iter().sum();
    (counts, s.iter().map(|&x| x / total).collect())
}

#[test]
fn draws_follow_the_scores_across_blocks_and_chunks() {
    // Per block of 64, so that every block boundary of three chunks is a bin boundary: a
    // walk that strays into the next block moves mass between bins.
    let n = 2 * CHUNK + 77;
    let s = scores(n, Pattern::Uneven, 11);
    let block_probabilities =
        |p: &[f64]| -> Vec<f64> { p.chunks(BLOCK).map(|b| b.iter().sum()).collect() };
    let block_counts =
        |c: &[u64]| -> Vec<u64> { c.chunks(BLOCK).map(|b| b.iter().sum()).collect() };
    let m = 3 * DRAW_CHUNK + 9;
    for (path, drawn) in [
        ("inverse CDF", inverse_cdf::draw(&s, m, 1).unwrap()),
        ("alias", Table::new(&s).unwrap().draw(m, 1).unwrap()),
    ] {
        let (counts, p) = counts_and_probabilities(&s, &drawn);
        assert_counts_follow(
            &block_counts(&counts),
            &block_probabilities(&p),
            m as u64,
            path,
        );
    }
}

#[test]
fn weights_spanning_the_float64_range_draw_only_what_has_mass() {
    let s = scores(CHUNK + 3, Pattern::Spanning, 5);
    let m = 40_000;
    for (path, drawn) in [
        ("inverse CDF", inverse_cdf::draw(&s, m, 2).unwrap()),
        ("alias", Table::new(&s).unwrap().draw(m, 2).unwrap()),
    ] {
        let (counts, p) = counts_and_probabilities(&s, &drawn);
        assert_counts_follow(&counts, &p, m as u64, path);
    }
}

#[test]
fn draws_do_not_depend_on_a_power_of_two_scale() {
    // Multiplying every score by a power of two scales every sum exactly, so the draws, for
    // both paths and without replacement, must be the same indices.
    let s = scores(CHUNK + 100, Pattern::Uneven, 3);
    for scale in [2f64.powi(-1000), 2f64.powi(900)] {
        let scaled: Vec<f64> = s.iter().map(|&x| x * scale).collect();
        for (m, replace) in [(1000, true), (CHUNK, true), (1000, false), (20_000, false)] {
            let plain = sample(&s, m, replace, 9).unwrap();
            let other = sample(&scaled, m, replace, 9).unwrap();
            assert_eq!(plain.indices, other.indices, "scale {scale:e}, m {m}");
        }
    }
}

#[test]
fn subnormal_scores_keep_their_proportions() {
    // Scores 1, 2, ... times the smallest subnormal: their sums are exact, and the draws must
    // be those of the same scores times 1. The alias table once scaled by columns / total,
    // which overflows for a subnormal total, and inverse CDF drew t = u * total on the grid
    // of subnormals, which favours the first score (1/5 instead of 1/3 for scores 1, 2).
    let smallest = f64::from_bits(1);
    for integers in [
        vec![1.0],
        vec![1.0, 2.0],
        (1..=300).map(f64::from).collect::<Vec<_>>(),
    ] {
        let tiny: Vec<f64> = integers.iter().map(|&k| k * smallest).collect();
        let total: f64 = integers.iter().sum();
        for m in [1, 2, 5, integers.len() / ALIAS_DIVISOR + 1] {
            let plain = sample(&integers, m, true, 4).unwrap();
            let subnormal = sample(&tiny, m, true, 4).unwrap();
            if m * ALIAS_DIVISOR < integers.len() {
                assert_eq!(plain.indices, subnormal.indices, "m {m}");
            }
            // The weight total / (m s_i) is the same ratio at any scale; total / m alone
            // underflowed to 0 for m = 2 of a single score 5e-324.
            for (&i, &w) in subnormal.indices.iter().zip(&subnormal.weights) {
                let expected = total / integers[i as usize] / m as f64;
                assert!(
                    (w - expected).abs() <= 1e-12 * expected,
                    "{w} vs {expected}"
                );
            }
        }
        let t = totals(&tiny).unwrap();
        let table = AliasTable::<u32>::new(&tiny, t).unwrap();
        for (&p, &k) in table.probabilities(tiny.len()).iter().zip(&integers) {
            assert!(
                (p - k / total).abs() <= 1e-9 * k / total,
                "{p} vs {}",
                k / total
            );
        }
        let m = 30_000;
        for (path, drawn) in [
            ("inverse CDF", inverse_cdf::draw(&tiny, m, 8).unwrap()),
            ("alias", Table::new(&tiny).unwrap().draw(m, 8).unwrap()),
        ] {
            let (counts, _) = counts_and_probabilities(&tiny, &drawn);
            let p: Vec<f64> = integers.iter().map(|&k| k / total).collect();
            assert_counts_follow(&counts, &p, m as u64, path);
        }
    }
}

#[test]
fn every_draw_chunk_has_its_own_stream() {
    // With equal scores, two chunks seeded alike would give the same draws.
    let s = vec![1.0; 5000];
    let m = 2 * DRAW_CHUNK;
    for drawn in [
        inverse_cdf::draw(&s, m, 0).unwrap(),
        Table::new(&s).unwrap().draw(m, 0).unwrap(),
    ] {
        assert_ne!(drawn[..DRAW_CHUNK], drawn[DRAW_CHUNK..]);
    }
    assert_ne!(
        sample(&s, m, true, 0).unwrap().indices,
        sample(&s, m, true, 1).unwrap().indices
    );
}

#[test]
fn too_many_draws_for_memory_is_an_error_naming_m() {
    // The alias table drew every chunk before reserving the output, so a huge m aborted the
    // process (an allocation failure, not even a panic) instead of failing.
    let s = [1.0, 2.0, 0.0];
    let t = totals(&s).unwrap();
    for m in [usize::MAX, usize::MAX / 2, 1 << 60] {
        assert_eq!(
            Table::new(&s).unwrap().draw(m, 0).unwrap_err().argument(),
            Some("m")
        );
        assert_eq!(
            AliasTable::<u64>::new(&s, t)
                .unwrap()
                .sample(m, 0)
                .unwrap_err()
                .argument(),
            Some("m")
        );
        assert_eq!(
            inverse_cdf::draw(&s, m, 0).unwrap_err().argument(),
            Some("m")
        );
        assert_eq!(sample(&s, m, true, 0).unwrap_err().argument(), Some("m"));
    }
}

#[test]
fn scores_that_cannot_be_sampled_are_errors_naming_scores() {
    let cases: Vec<Vec<f64>> = vec![
        vec![],
        vec![0.0; CHUNK + 1],
        vec![1.0, f64::NAN],
        vec![f64::INFINITY],
        vec![1.0, -0.5],
        vec![f64::MAX, f64::MAX],
    ];
    for s in &cases {
        for m in [0, 1, 10] {
            for replace in [true, false] {
                let error = sample(s, m, replace, 0).unwrap_err();
                assert_eq!(error.argument(), Some("scores"), "{error}");
            }
        }
        assert_eq!(Table::new(s).err().unwrap().argument(), Some("scores"));
    }
    // A negative score past the first chunk is found and named by its index.
    let mut late = vec![1.0; CHUNK + 10];
    late[CHUNK + 4] = -1.0;
    let error = sample(&late, 1, true, 0).unwrap_err();
    assert!(
        error.to_string().contains(&format!("index {}", CHUNK + 4)),
        "{error}"
    );
}

#[test]
fn permutations_mix_across_buckets_and_chunks() {
    // Two chunks of the bucketing pass and 17 buckets. Cross-tabulate value and position
    // in 8 x 8 bins: a uniform permutation fills every cell near n / 64 (its margins are
    // fixed, which only shrinks the chi-square).
    let n = (1u64 << 20) + 3;
    let bins = 8u64;
    let bin = |v: u64| (v * bins / n) as usize;
    for salt in 0..3 {
        let p = permutation::<u32>(n, 17, salt).unwrap();
        let mut counts = vec![0u64; (bins * bins) as usize];
        for (position, &value) in p.iter().enumerate() {
            counts[bin(position as u64) * bins as usize + bin(u64::from(value))] += 1;
        }
        let uniform = vec![1.0 / (bins * bins) as f64; counts.len()];
        assert_counts_follow(&counts, &uniform, n, "value by position");
    }
    assert_ne!(
        permutation::<u32>(n, 17, 0).unwrap(),
        permutation::<u32>(n, 17, 1).unwrap()
    );
}
