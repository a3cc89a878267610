//! Criterion benches of the BOSS DP and of the jump-error kernel.
//!
//! The (2000, 50) cases are the ones the Python benchmark compares with a vectorised NumPy DP.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::Duration;
use thrifty_steps::{accumulate_jump_errors, optimal_path_with, Jumps, Metric, Strategy};

/// A small deterministic generator, so the benches need no extra dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Uniform costs: not Monge, so every strategy has to scan whole rows.
fn random_costs(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix(seed);
    (0..n * n).map(|_| rng.uniform()).collect()
}

/// `(t_j - t_i)^2` on random integer times: Monge, with exact arithmetic.
fn monge_costs(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix(seed);
    let mut t = vec![0.0; n];
    for i in 1..n {
        t[i] = t[i - 1] + (1 + rng.next_u64() % 8) as f64;
    }
    (0..n * n).map(|x| (t[x % n] - t[x / n]).powi(2)).collect()
}

fn optimal_path_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimal_path");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    for (jumps, k) in [(100, 10), (500, 10), (2000, 50)] {
        let n = jumps + 1;
        let cost = random_costs(n, 1);
        group.bench_with_input(
            BenchmarkId::new("random/full", format!("N={jumps},K={k}")),
            &cost,
            |b, cost| b.iter(|| optimal_path_with(black_box(cost), n, k, 1.0, Strategy::Full)),
        );
    }
    let (jumps, k) = (2000, 50);
    let n = jumps + 1;
    let cost = monge_costs(n, 2);
    for (name, strategy) in [
        ("monge/full", Strategy::Full),
        ("monge/monge", Strategy::Monge),
        ("monge/auto", Strategy::Auto),
    ] {
        group.bench_with_input(
            BenchmarkId::new(name, format!("N={jumps},K={k}")),
            &cost,
            |b, cost| b.iter(|| optimal_path_with(black_box(cost), n, k, 1.0, strategy)),
        );
    }
    group.finish();
}

fn jump_error_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("accumulate_jump_errors");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    for (n, batch, dim, seed) in [(101, 256, 2, 2), (101, 256, 3072, 3072), (201, 512, 768, 7)] {
        // The last is a 16x16 RGB teacher at scale: its targets (201 x 512 x 768 f32, 316 MB) are far
        // larger than the caches, so it measures the tiling over samples.
        bench_teacher_jumps(&mut group, n, batch, dim, seed);
    }
    group.finish();
}

criterion_group!(benches, optimal_path_bench, jump_error_bench);
criterion_main!(benches);

fn bench_teacher_jumps(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
    batch: usize,
    dim: usize,
    seed: u64,
) {
    let times: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
    let mut rng = SplitMix(seed);
    let states: Vec<f32> = (0..n * batch * dim).map(|_| rng.uniform() as f32).collect();
    let velocities: Vec<f32> = (0..(n - 1) * batch * dim)
        .map(|_| rng.uniform() as f32)
        .collect();
    let mut out = vec![0.0; n * n];
    group.bench_function(
        BenchmarkId::new("f32/L2", format!("n={n},batch={batch},dim={dim}")),
        |b| {
            b.iter(|| {
                let jumps = Jumps::teacher(
                    black_box(&states),
                    black_box(&velocities),
                    &times,
                    batch,
                    dim,
                );
                accumulate_jump_errors(&jumps, Metric::L2, &mut out)
            })
        },
    );
}
