//! What the boundary tests compare the solvers with: the BOSS DP in its plainest form, cost
//! matrices built from a seed, and thread pools of a given size.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use thrifty_steps::Path;

/// Deterministic pseudo-random numbers, so that a matrix of 10^6 entries costs one `u64` of
/// proptest input rather than 10^6 values to draw and shrink.
pub fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    }
}

/// The BOSS DP for every `k` in `1..=k_max`: one scalar loop over every admissible next node,
/// the strict `<` keeping the smallest on ties, each term formed as `c + w * dp` like the
/// solver forms it. `O(k_max n^2)` time. `None` for a `k` whose optimum overflows to `+inf`.
pub fn reference_paths(cost: &[f64], n: usize, k_max: usize, weight: f64) -> Vec<Option<Path>> {
    let last = n - 1;
    let mut dp = vec![vec![f64::INFINITY; n]; k_max + 1];
    let mut next = vec![vec![0usize; n]; k_max + 1];
    for i in 0..last {
        dp[1][i] = cost[i * n + last];
        next[1][i] = last;
    }
    for k in 2..=k_max {
        // k jumps from i need i <= N - k, and leave k - 1 jumps after j: j <= N - k + 1.
        let hi = last + 1 - k;
        for i in 0..hi {
            let (mut best, mut arg) = (f64::INFINITY, i + 1);
            for j in i + 1..=hi {
                let value = cost[i * n + j] + weight * dp[k - 1][j];
                if value < best {
                    best = value;
                    arg = j;
                }
            }
            dp[k][i] = best;
            next[k][i] = arg;
        }
    }
    (1..=k_max)
        .map(|k| {
            if dp[k][0].is_infinite() {
                return None;
            }
            let mut nodes = vec![0];
            for layer in (1..=k).rev() {
                nodes.push(next[layer][*nodes.last().unwrap()]);
            }
            Some(Path {
                nodes,
                cost: dp[k][0],
            })
        })
        .collect()
}

/// `sum_m w^m c(jump m)`, by Horner from the last jump as the DP sums it.
pub fn path_cost(cost: &[f64], n: usize, nodes: &[usize], weight: f64) -> f64 {
    nodes.windows(2).rev().fold(0.0, |tail, jump| {
        cost[jump[0] * n + jump[1]] + weight * tail
    })
}

/// `c[i][j] = f(t_j - t_i) + a_i + b_j` with `f` convex: Monge. Integer times and offsets
/// keep every entry an integer below 2^36, so sums of up to 2^16 of them are exact. The
/// lower triangle is NaN: no solver may read it.
pub fn monge_matrix(n: usize, kind: u8, seed: u64) -> Vec<f64> {
    let mut draw = lcg(seed);
    let mut time = 0u64;
    let times: Vec<f64> = (0..n)
        .map(|_| {
            time += 1 + draw() % 5;
            time as f64
        })
        .collect();
    let rows: Vec<f64> = (0..n).map(|_| (draw() % 20) as f64).collect();
    let cols: Vec<f64> = (0..n).map(|_| (draw() % 20) as f64).collect();
    // The linear f makes every path with the same k equally cheap (ties only); the hinge
    // makes every short jump free (ties among the short ones).
    let f = |x: f64| match kind {
        0 => x * x,
        1 => x,
        2 => (x - 7.0).max(0.0).powi(2),
        _ => x * x * x,
    };
    let mut cost = vec![f64::NAN; n * n];
    for i in 0..n {
        for j in i + 1..n {
            cost[i * n + j] = f(times[j] - times[i]) + rows[i] + cols[j];
        }
    }
    cost
}

/// Small integer costs (0..4): ties everywhere, every sum exact, almost never Monge.
pub fn tie_matrix(n: usize, seed: u64) -> Vec<f64> {
    let mut draw = lcg(seed);
    (0..n * n).map(|_| (draw() % 4) as f64).collect()
}

/// Costs with inexact sums (sevenths), almost never Monge.
pub fn real_matrix(n: usize, seed: u64) -> Vec<f64> {
    let mut draw = lcg(seed);
    (0..n * n)
        .map(|_| (draw() % 1_000_000) as f64 / 7.0)
        .collect()
}

/// Rayon pools of 1, 2, 3 and 8 threads: one thread, fewer threads than tasks, a count that
/// divides nothing the code cuts by, and more threads than cores. Built once per test, since
/// building a pool starts its threads.
pub fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1, 2, 3, 8]
        .into_iter()
        .map(|threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            (threads, pool)
        })
        .collect()
}
