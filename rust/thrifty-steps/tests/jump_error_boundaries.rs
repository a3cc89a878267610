//! The jump-error kernel at, just below and just above every size where it changes shape,
//! against the definition computed directly, on every thread count.
//!
//! Where the code changes shape (the constants are private, so they are restated here):
//! - `BLOCK_ROWS = 8`: the `n - 1` rows are cut into blocks of 8, the last one partial.
//! - `LANES = 8`: each residual is reduced in 8 lanes and a tail of `dim % 8`.
//! - `TILE_BYTES = 512 KiB`: samples go in tiles of `max(1, 2^19 / (n * dim * size_of::<T>()))`,
//!   so the batch splits into tiles once `n * dim` reaches `2^16` (f64) or `2^17` (f32).
//! - Threads from `rows * rows / 2 * batch * dim >= 2^16` multiply-adds (`rows = n - 1`).
//! - The non-finite scan goes in blocks of 4096 values.

mod reference;

use proptest::prelude::*;
use reference::{lcg, pools};
use thrifty_steps::{accumulate_jump_errors, jump_errors, CoreError, Float, Jumps, Metric};

/// A teacher batch: states `(n, batch, dim)`, velocities `(n - 1, batch, dim)` and times,
/// with values in eighths so that f32 holds them exactly.
struct Batch {
    n: usize,
    batch: usize,
    dim: usize,
    states: Vec<f64>,
    velocities: Vec<f64>,
    times: Vec<f64>,
}

impl Batch {
    fn new(n: usize, batch: usize, dim: usize, seed: u64) -> Self {
        let mut draw = lcg(seed);
        let mut value = move || ((draw() % 161) as f64 - 80.0) / 8.0;
        let states = (0..n * batch * dim).map(|_| value()).collect();
        let velocities = (0..(n - 1) * batch * dim).map(|_| value()).collect();
        let mut time = 0.0;
        let times = (0..n)
            .map(|i| {
                time += 0.125 * (1 + i % 3) as f64;
                time
            })
            .collect();
        Self {
            n,
            batch,
            dim,
            states,
            velocities,
            times,
        }
    }

    fn convert<T: Float>(values: &[f64], to: impl Fn(f64) -> T) -> Vec<T> {
        values.iter().map(|&x| to(x)).collect()
    }
}

/// `sum_b err(x_i[b] + (t_j - t_i) v_i[b] - x_j[b])` for every `i < j`, one loop per index.
fn reference(batch: &Batch, metric: Metric) -> Vec<f64> {
    let Batch { n, dim, .. } = *batch;
    let at = |node: usize, b: usize| (node * batch.batch + b) * dim;
    let mut out = vec![0.0; n * n];
    for i in 0..n - 1 {
        for j in i + 1..n {
            let dt = batch.times[j] - batch.times[i];
            for b in 0..batch.batch {
                let mut norm = 0.0;
                for d in 0..dim {
                    let r = batch.states[at(i, b) + d] + dt * batch.velocities[at(i, b) + d]
                        - batch.states[at(j, b) + d];
                    norm += match metric {
                        Metric::L2 => r * r,
                        Metric::L1 => r.abs(),
                    };
                }
                out[i * n + j] += match metric {
                    Metric::L2 => norm.sqrt(),
                    Metric::L1 => norm,
                };
            }
        }
    }
    out
}

/// Both precisions and metrics against the reference (to summation order), on pools of
/// 1, 2, 3 and 8 threads, each bit for bit equal to the default pool's.
fn check(batch: &Batch, pools: &[(usize, rayon::ThreadPool)]) -> Result<(), TestCaseError> {
    let Batch {
        n, batch: b, dim, ..
    } = *batch;
    let states32 = Batch::convert(&batch.states, |x| x as f32);
    let velocities32 = Batch::convert(&batch.velocities, |x| x as f32);
    let wide = Jumps::teacher(&batch.states, &batch.velocities, &batch.times, b, dim);
    let narrow = Jumps::teacher(&states32, &velocities32, &batch.times, b, dim);
    for metric in [Metric::L2, Metric::L1] {
        let expected = reference(batch, metric);
        let wide_default = jump_errors(&wide, metric).unwrap();
        let narrow_default = jump_errors(&narrow, metric).unwrap();
        for (got, precision) in [(&wide_default, "f64"), (&narrow_default, "f32")] {
            for (at, (&got, &want)) in got.iter().zip(&expected).enumerate() {
                let (i, j) = (at / n, at % n);
                prop_assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "{} {:?}: out[{}][{}] = {} but the definition gives {}",
                    precision,
                    metric,
                    i,
                    j,
                    got,
                    want
                );
            }
        }
        for (threads, pool) in pools {
            let (wide_here, narrow_here) = pool.install(|| {
                (
                    jump_errors(&wide, metric).unwrap(),
                    jump_errors(&narrow, metric).unwrap(),
                )
            });
            prop_assert!(wide_here == wide_default, "f64 on {} threads", threads);
            prop_assert!(narrow_here == narrow_default, "f32 on {} threads", threads);
        }
        // Accumulating into a matrix adds to the upper triangle and leaves the rest alone.
        let mut out: Vec<f64> = (0..n * n).map(|x| x as f64).collect();
        accumulate_jump_errors(&wide, metric, &mut out).unwrap();
        for (at, &got) in out.iter().enumerate() {
            let want = if at % n > at / n {
                at as f64 + wide_default[at]
            } else {
                at as f64
            };
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Node counts around the 8-row blocks and dims around the 8 lanes.
    #[test]
    fn row_blocks_and_lanes(
        n in prop::sample::select(vec![2usize, 3, 8, 9, 10, 16, 17, 18, 25, 33, 34]),
        batch in 1usize..=3,
        dim in prop::sample::select(vec![1usize, 7, 8, 9, 15, 16, 17, 24, 25]),
        seed in any::<u64>(),
    ) {
        check(&Batch::new(n, batch, dim, seed), &pools())?;
    }
}

/// Either side of the threshold for threads: 32 rows make 512 pairs per coordinate, so
/// `batch * dim` of 127, 128 and 129 straddle 2^16.
#[test]
fn around_the_threshold_for_threads() {
    let pools = pools();
    for (batch, dim) in [(1, 127), (1, 128), (1, 129), (16, 8), (3, 43)] {
        check(&Batch::new(33, batch, dim, 5), &pools).unwrap();
    }
}

/// Batches around a tile of 1, 2 and 5 samples: 65 nodes of 403 coordinates are 209 560
/// bytes per f64 sample (tiles of 2) and 104 780 per f32 sample (tiles of 5); 129 nodes of
/// 512 are 528 384 bytes per f64 sample, past the whole tile (tiles of 1, and of 1 in f32).
#[test]
fn batches_around_the_tile_size() {
    let pools = pools();
    for batch in [1, 2, 3, 4, 5, 6] {
        check(&Batch::new(65, batch, 403, batch as u64), &pools).unwrap();
    }
    for batch in [1, 2, 3] {
        check(&Batch::new(129, batch, 512, 7), &pools).unwrap();
    }
}

/// The first non-finite value is named, wherever it falls against the 4096-value blocks of
/// the scan, in each input.
#[test]
fn non_finite_values_around_the_scan_blocks_are_located() {
    let batch = Batch::new(17, 8, 64, 3);
    let (b, dim) = (8, 64);
    for at in [0, 4095, 4096, 4097, 8191] {
        for (argument, bad) in [("starts", f64::NAN), ("velocities", f64::INFINITY)] {
            let mut states = batch.states.clone();
            let mut velocities = batch.velocities.clone();
            if argument == "starts" {
                states[at] = bad;
            } else {
                velocities[at] = bad;
            }
            // A later non-finite value must not be the one reported.
            if at < 8191 {
                velocities[8191] = f64::NAN;
            }
            let jumps = Jumps::teacher(&states, &velocities, &batch.times, b, dim);
            let error = jump_errors(&jumps, Metric::L2).unwrap_err();
            let (node, rest) = (at / (b * dim), at % (b * dim));
            let needle = format!(
                "{argument}[{node}][{}][{}] is {bad}",
                rest / dim,
                rest % dim
            );
            assert!(
                matches!(&error, CoreError::NonFinite { argument: a, message }
                    if *a == argument && message.contains(&needle)),
                "{error} should name {needle}"
            );
        }
    }
}

/// Regression: the teacher's view multiplied its sizes unchecked, so a batch and dim whose
/// product overflows panicked before the validation could name them.
#[test]
fn absurd_sizes_are_errors_not_overflows() {
    let states = [0.0f64; 4];
    let velocities = [0.0f64; 2];
    let times = [0.0, 1.0];
    let jumps = Jumps::teacher(&states, &velocities, &times, usize::MAX / 2, 3);
    let error = jump_errors(&jumps, Metric::L2).unwrap_err();
    assert!(
        matches!(&error, CoreError::Shape { argument: "targets", message }
            if message.contains("more than usize::MAX")),
        "{error}"
    );
}

/// Regression: the binding allocated the `n x n` result from the first dimension of
/// `targets` before anything was checked, so a zero-size array claiming 2^40 nodes asked
/// for 8 TiB (an abort, not an error). The core now checks first.
#[test]
fn a_zero_size_batch_claiming_many_nodes_allocates_nothing() {
    let empty: [f32; 0] = [];
    let jumps = Jumps {
        starts: &empty,
        velocities: &empty,
        targets: &empty,
        times: &[],
        n_nodes: 1 << 40,
        batch: 0,
        dim: 3,
    };
    let error = jump_errors(&jumps, Metric::L1).unwrap_err();
    assert_eq!(
        error,
        CoreError::shape("targets", "batch and dim must be >= 1, got batch=0, dim=3")
    );
}
