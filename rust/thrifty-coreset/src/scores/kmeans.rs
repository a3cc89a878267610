//! k-means sensitivities: D^2 (k-means++) seeding, then the bound of Bachem, Lucic & Krause,
//! "Practical Coreset Constructions for Machine Learning" (arXiv 1703.06476).
//!
//! With seeds `B`, `d(x, B)^2` the squared distance to the nearest seed, `c = mean_x
//! d(x, B)^2`, `P_b` the points whose nearest seed is `b` and `alpha = 16 (log2 k + 2)`:
//!
//! `s(x) = alpha d(x,B)^2 / c + 2 alpha (sum_{x' in P_b} d(x',B)^2) / (|P_b| c) + 4 n / |P_b|`.
//!
//! `alpha` is the paper's bound on the approximation factor of D^2 seeding (in expectation);
//! with it, `s(x) / n` bounds the share of the k-means cost point `x` can carry for any `k`
//! centers. The scores sum to exactly `n (3 alpha + 4 k)`: sampling needs `O(k log k)` times
//! the usual `eps^{-2}` factors, independent of `n`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thrifty_core::{parallel, CoreError, CoreResult};

use super::binary_scale::unit_scale;
use super::chunks::map_chunks;

/// Points per parallel task and per partial sum. Fixed, so sums (and thus the sampled seeds)
/// do not depend on the thread count.
const CHUNK: usize = 4096;

/// The seeds and the sensitivity bound of every point.
#[derive(Debug, Clone, PartialEq)]
pub struct KmeansSensitivities {
    /// `s(x)` for every point.
    pub sensitivities: Vec<f64>,
    /// Indices of the `k` seeds, in the order D^2 sampling picked them.
    pub seeds: Vec<usize>,
    /// Index into `seeds` of the nearest seed of every point.
    pub assignment: Vec<usize>,
}

/// `||a - b||^2` of the points scaled by the power of two `scale`.
fn squared_distance(a: &[f64], b: &[f64], scale: f64) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let difference = x * scale - y * scale;
            difference * difference
        })
        .sum()
}

/// A uniform draw in `[0, 1)` with 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Sum of `values` in fixed chunks, then over chunk sums in order.
fn chunk_sums(values: &[f64]) -> Vec<f64> {
    parallel::map_indices(values.len().div_ceil(CHUNK), |c| {
        values[c * CHUNK..values.len().min((c + 1) * CHUNK)]
            .iter()
            .sum::<f64>()
    })
}

/// The index `i` with `prefix(i) <= target < prefix(i + 1)` over `values`, using chunk sums.
fn pick(values: &[f64], sums: &[f64], mut target: f64) -> usize {
    for (c, &s) in sums.iter().enumerate() {
        if target < s {
            let lo = c * CHUNK;
            for (k, &v) in values[lo..(lo + CHUNK).min(values.len())]
                .iter()
                .enumerate()
            {
                if target < v {
                    return lo + k;
                }
                target -= v;
            }
            // Rounding left a sliver past the last positive entry of this chunk.
            return (lo..(lo + CHUNK).min(values.len()))
                .rev()
                .find(|&i| values[i] > 0.0)
                .unwrap_or(lo);
        }
        target -= s;
    }
    (0..values.len())
        .rev()
        .find(|&i| values[i] > 0.0)
        .unwrap_or(0)
}

/// D^2 seeding and the sensitivity bound for the `n x d` row-major points `x`.
pub fn kmeans_sensitivities(
    x: &[f64],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
) -> CoreResult<KmeansSensitivities> {
    if d == 0 || n == 0 || n.checked_mul(d) != Some(x.len()) {
        return Err(CoreError::shape(
            "X",
            format!(
                "must be a non-empty n x d matrix, got {} entries for ({n}, {d})",
                x.len()
            ),
        ));
    }
    if k == 0 || k > n {
        return Err(CoreError::invalid(
            "k",
            format!("must be in [1, n = {n}], got {k}"),
        ));
    }
    if let Some(position) = x.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::non_finite(
            "X",
            format!(
                "must be finite, got {} at row {}",
                x[position],
                position / d
            ),
        ));
    }
    // The sensitivities are ratios of squared distances, so scaling X by a power of two
    // changes none of them; scaling it to a largest magnitude in [1, 2) keeps the squares
    // (and differences) of coordinates near 1e±200 from overflowing or underflowing.
    let largest = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = unit_scale(largest);
    let point = |i: usize| &x[i * d..(i + 1) * d];
    let distance = |i: usize, j: usize| squared_distance(point(i), point(j), scale);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first = (unit(&mut rng) * n as f64) as usize;
    let mut seeds = vec![first.min(n - 1)];
    let mut nearest: Vec<f64> = parallel::map_indices(n, |i| distance(i, seeds[0]));
    let mut assignment = vec![0usize; n];
    let mut is_seed = vec![false; n];
    is_seed[seeds[0]] = true;
    // Every point before this one is a seed: the search for a point not yet a seed resumes
    // here, so that it takes O(n) over all seeds. Scanning the seeds for every candidate
    // took O(k^3) for k coinciding points: 3 s at k = 4096, hours at 10^5.
    let mut unseeded_from = 0;
    while seeds.len() < k {
        let sums = chunk_sums(&nearest);
        let total: f64 = sums.iter().sum();
        let next = if total > 0.0 {
            pick(&nearest, &sums, unit(&mut rng) * total)
        } else {
            // Fewer distinct points than k: any point not yet a seed adds nothing, take the first.
            while is_seed[unseeded_from] {
                unseeded_from += 1;
            }
            unseeded_from
        };
        let label = seeds.len();
        seeds.push(next);
        is_seed[next] = true;
        let closer: Vec<Option<f64>> = map_chunks(n, CHUNK, |rows| {
            rows.map(|i| {
                let dist = distance(i, next);
                (dist < nearest[i]).then_some(dist)
            })
            .collect()
        });
        for (i, dist) in closer.into_iter().enumerate() {
            if let Some(dist) = dist {
                nearest[i] = dist;
                assignment[i] = label;
            }
        }
    }
    let mut cluster_cost = vec![0.0f64; k];
    let mut cluster_size = vec![0usize; k];
    for (i, &b) in assignment.iter().enumerate() {
        cluster_cost[b] += nearest[i];
        cluster_size[b] += 1;
    }
    let mean_cost = cluster_cost.iter().sum::<f64>() / n as f64;
    let alpha = 16.0 * ((k as f64).log2() + 2.0);
    let nf = n as f64;
    let sensitivities = parallel::map_indices(n, |i| {
        let b = assignment[i];
        let size = cluster_size[b] as f64;
        let spread = if mean_cost > 0.0 {
            alpha * nearest[i] / mean_cost + 2.0 * alpha * cluster_cost[b] / (size * mean_cost)
        } else {
            // Every point sits on a seed: the cost is zero for these seeds, only the
            // cluster-size term carries information.
            0.0
        };
        spread + 4.0 * nf / size
    });
    Ok(KmeansSensitivities {
        sensitivities,
        seeds,
        assignment,
    })
}
