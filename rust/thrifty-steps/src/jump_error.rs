//! Jump errors: the BOSS cost matrix measured on teacher trajectories.
//!
//! The cost of jumping from node `i` to node `j` in one Euler step is how far that step lands
//! from the teacher's state at `t_j`: `x_i + (t_j - t_i) v(x_i, t_i) - x_j`, summed over a
//! batch of samples. This is the CPU twin of the CUDA kernel in `cuda/`; tests on both sides
//! check that they agree.
//!
//! The residual of each `(i, j)` pair is formed on the fly and reduced at once, so memory
//! stays at the inputs plus one row of sums, never an `(n, n, state)` array.

use std::ops::Range;
use std::sync::Mutex;
use thrifty_core::{parallel, Choice, CoreError, CoreResult};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element types teacher states and velocities may have: `f32` and `f64`.
///
/// Sealed: every value is widened to `f64` before any arithmetic, which only these two
/// types can promise losslessly.
pub trait Float: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The same value as an `f64` (exact for both implementors).
    fn to_f64(self) -> f64;
}

impl Float for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// How the residual of one sample is reduced over its `dim` coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Euclidean norm: `sqrt(sum r_d^2)`.
    L2,
    /// Sum of absolute values: `sum |r_d|`.
    L1,
}

impl Choice for Metric {
    const ARGUMENT: &'static str = "metric";
    const ALL: &'static [Metric] = &[Metric::L2, Metric::L1];

    fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::L1 => "l1",
        }
    }
}

/// One batch of jumps to score: where each jump starts, with what velocity, and the states
/// it is measured against.
///
/// - `starts`: shape `(n_nodes - 1, batch, dim)`, row-major: the state `s_i[b]` each jump
///   from node `i` starts from. For BOSS's teacher cost these are the teacher's own states
///   `x_0 .. x_{N-1}`; for a student-propagated DP, the student's states.
/// - `velocities`: shape `(n_nodes - 1, batch, dim)`: `v(s_i[b], t_i)`.
/// - `targets`: shape `(n_nodes, batch, dim)`: the teacher's states `x_j[b]`.
/// - `times`: `n_nodes` strictly increasing finite times.
#[derive(Clone, Copy, Debug)]
pub struct Jumps<'a, T> {
    pub starts: &'a [T],
    pub velocities: &'a [T],
    pub targets: &'a [T],
    pub times: &'a [f64],
    pub n_nodes: usize,
    pub batch: usize,
    pub dim: usize,
}

impl<'a, T: Float> Jumps<'a, T> {
    /// The teacher's jumps: every start is the teacher's own state, `states` of shape
    /// `(n_nodes, batch, dim)`.
    pub fn teacher(
        states: &'a [T],
        velocities: &'a [T],
        times: &'a [f64],
        batch: usize,
        dim: usize,
    ) -> Self {
        let n_nodes = times.len();
        // Saturating: absurd sizes must reach the validation, which names them.
        let starts_len = n_nodes
            .saturating_sub(1)
            .saturating_mul(batch)
            .saturating_mul(dim);
        Self {
            starts: &states[..starts_len.min(states.len())],
            velocities,
            targets: states,
            times,
            n_nodes,
            batch,
            dim,
        }
    }
}

/// Add the one-step jump errors of a batch to a cost matrix.
///
/// `out` is `n_nodes x n_nodes`, row-major. For every `i < j`,
/// `out[i][j] += sum_b err(s_i[b] + (t_j - t_i) v_i[b] - x_j[b])` with `err` the [`Metric`];
/// entries with `j <= i` are left untouched, so calls on successive batches accumulate.
///
/// All arithmetic is in `f64`, whatever `T` is. Blocks of rows `i` run in parallel; each sum
/// is taken in sample order, so the result does not depend on the number of threads.
///
/// # Errors
/// `targets` when `n_nodes < 2`, `batch == 0` or `dim == 0`; `starts`, `velocities`,
/// `targets`, `times` or `out` whose length does not match (Shape); NaN or infinity in any
/// input (NonFinite, naming the first one); `times` not strictly increasing.
///
/// # Example
/// ```
/// use thrifty_steps::{accumulate_jump_errors, Jumps, Metric};
/// // One 1-d sample moving at constant speed: every Euler jump is exact.
/// let times = [0.0, 0.5, 1.0];
/// let states = [0.0_f32, 1.0, 2.0];
/// let velocities = [2.0_f32, 2.0];
/// let mut out = vec![0.0; 9];
/// let jumps = Jumps::teacher(&states, &velocities, &times, 1, 1);
/// accumulate_jump_errors(&jumps, Metric::L2, &mut out).unwrap();
/// assert!(out.iter().all(|&e| e == 0.0));
/// ```
pub fn accumulate_jump_errors<T: Float>(
    jumps: &Jumps<'_, T>,
    metric: Metric,
    out: &mut [f64],
) -> CoreResult<()> {
    validate(jumps)?;
    validate_out(jumps.n_nodes, out)?;
    accumulate_validated(jumps, metric, out);
    Ok(())
}

/// The jump errors of one batch in a new `n_nodes x n_nodes` matrix: what
/// [`accumulate_jump_errors`] adds to a matrix of zeros. Entries with `j <= i` are 0.
///
/// The inputs are checked before the matrix is allocated, so a wrong shape is an error
/// rather than an allocation sized from it, and a matrix too large to allocate is an error
/// too (naming `targets`, whose first dimension is `n_nodes`).
///
/// # Errors
/// As [`accumulate_jump_errors`], less the check of `out`.
pub fn jump_errors<T: Float>(jumps: &Jumps<'_, T>, metric: Metric) -> CoreResult<Vec<f64>> {
    validate(jumps)?;
    let n_nodes = jumps.n_nodes;
    let too_large = || {
        CoreError::invalid(
            "targets",
            format!("{n_nodes} nodes need a {n_nodes} x {n_nodes} matrix, too large to allocate"),
        )
    };
    let cells = n_nodes.checked_mul(n_nodes).ok_or_else(too_large)?;
    let mut out = Vec::new();
    out.try_reserve_exact(cells).map_err(|_| too_large())?;
    out.resize(cells, 0.0);
    accumulate_validated(jumps, metric, &mut out);
    Ok(out)
}

fn accumulate_validated<T: Float>(jumps: &Jumps<'_, T>, metric: Metric, out: &mut [f64]) {
    let n_nodes = jumps.n_nodes;
    let rows = n_nodes - 1;
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let block_rows = |block: usize| block * BLOCK_ROWS..((block + 1) * BLOCK_ROWS).min(rows);
    // Each block's running sums, carried from one tile of samples to the next. Every block is
    // touched by one task at a time, so the locks are never contended.
    let sums: Vec<Mutex<Vec<f64>>> = (0..blocks)
        .map(|block| Mutex::new(vec![0.0; block_rows(block).len() * n_nodes]))
        .collect();
    // Below this many multiply-adds the whole matrix takes microseconds: not worth threads.
    let work = (rows * rows / 2)
        .saturating_mul(jumps.batch)
        .saturating_mul(jumps.dim);
    let tile = samples_per_tile::<T>(n_nodes, jumps.dim).min(jumps.batch);
    for first in (0..jumps.batch).step_by(tile) {
        let samples = first..(first + tile).min(jumps.batch);
        let block = |block: usize| {
            let mut block_sums = sums[block].lock().unwrap_or_else(|e| e.into_inner());
            block_errors(
                jumps,
                metric,
                block_rows(block),
                samples.clone(),
                &mut block_sums,
            );
        };
        if work >= 1 << 16 {
            parallel::for_each_index(blocks, block);
        } else {
            (0..blocks).for_each(block);
        }
    }
    for (block, block_sums) in sums.into_iter().enumerate() {
        let block_sums = block_sums.into_inner().unwrap_or_else(|e| e.into_inner());
        for (r, row_sums) in block_sums.chunks_exact(n_nodes).enumerate() {
            let i = block * BLOCK_ROWS + r;
            let target = &mut out[i * n_nodes + i + 1..(i + 1) * n_nodes];
            for (o, s) in target.iter_mut().zip(&row_sums[i + 1..]) {
                *o += s;
            }
        }
    }
}

/// Bytes of target states per tile of samples: all threads scan the targets `x_j[b]` of
/// every node `j` for the tile's samples, once per block of rows, so the tile is sized to
/// stay in L2 while they do. Without tiles each block of rows streamed the whole `targets`
/// array from memory (measured 2.9 G updates/s at 201 nodes, batch 512, dim 768, against
/// 5 G/s once the targets fit in cache).
const TILE_BYTES: usize = 512 * 1024;

/// Samples per tile: at least one, else as many as fit in [`TILE_BYTES`].
fn samples_per_tile<T>(n_nodes: usize, dim: usize) -> usize {
    let per_sample = n_nodes * dim * std::mem::size_of::<T>();
    (TILE_BYTES / per_sample.max(1)).max(1)
}

/// Rows `i` handled together: each target state `x_j[b]` is then read (and widened) once per
/// block instead of once per row. With 3072-d states the kernel is otherwise memory-bound
/// (every pair `(i, j)` reads a 12 KB target). Eight rows measured 12 G updates/s against
/// 10.6 with four (201 nodes, batch 512, dim 768, two threads), while leaving enough blocks
/// for the threads.
const BLOCK_ROWS: usize = 8;

/// `sums[r * n_nodes + j] += err(...)` for rows `i = rows.start + r`, `j > i` and every
/// sample `b` in `samples`, in sample order.
fn block_errors<T: Float>(
    jumps: &Jumps<'_, T>,
    metric: Metric,
    rows: Range<usize>,
    samples: Range<usize>,
    sums: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        // The reductions are long (dim can be thousands) and the default x86-64 target only
        // has SSE2; the same code compiled for AVX2 runs twice as wide.
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { block_errors_avx2(jumps, metric, rows, samples, sums) };
        }
    }
    block_errors_widened(jumps, metric, rows, samples, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_errors_avx2<T: Float>(
    jumps: &Jumps<'_, T>,
    metric: Metric,
    rows: Range<usize>,
    samples: Range<usize>,
    sums: &mut [f64],
) {
    block_errors_widened(jumps, metric, rows, samples, sums)
}

/// The residual of one sample under `metric`.
#[inline(always)]
fn residual<U: Float>(metric: Metric, x: &[U], v: &[U], target: &[U], dt: f64) -> f64 {
    match metric {
        Metric::L2 => l2_residual(x, v, target, dt),
        Metric::L1 => l1_residual(x, v, target, dt),
    }
}

/// One block of rows over a range of samples. Each sample's states are widened to `f64`
/// once (exactly), instead of once per pair `(i, j)`, so the inner reduction runs on
/// contiguous `f64` loads only, whatever `T` is; for `f64` the copy also keeps the block's
/// rows together in cache. The values, and so every sum, are the same.
#[inline(always)]
fn block_errors_widened<T: Float>(
    jumps: &Jumps<'_, T>,
    metric: Metric,
    rows: Range<usize>,
    samples: Range<usize>,
    sums: &mut [f64],
) {
    let Jumps {
        starts,
        velocities,
        targets,
        times,
        n_nodes,
        batch,
        dim,
    } = *jumps;
    let stride = batch * dim;
    debug_assert_eq!(sums.len(), rows.len() * n_nodes);
    let widen = |from: &[T], to: &mut [f64]| {
        for (t, f) in to.iter_mut().zip(from) {
            *t = f.to_f64();
        }
    };
    let mut s_block = vec![0.0f64; rows.len() * dim];
    let mut v_block = vec![0.0f64; rows.len() * dim];
    let mut x_j = vec![0.0f64; dim];
    for b in samples {
        let sample = |node: usize| node * stride + b * dim..node * stride + (b + 1) * dim;
        for (r, i) in rows.clone().enumerate() {
            widen(&starts[sample(i)], &mut s_block[r * dim..(r + 1) * dim]);
            widen(&velocities[sample(i)], &mut v_block[r * dim..(r + 1) * dim]);
        }
        for j in rows.start + 1..n_nodes {
            widen(&targets[sample(j)], &mut x_j);
            for i in rows.start..rows.end.min(j) {
                let r = i - rows.start;
                let (s_i, v_i) = (
                    &s_block[r * dim..(r + 1) * dim],
                    &v_block[r * dim..(r + 1) * dim],
                );
                sums[r * n_nodes + j] += residual(metric, s_i, v_i, &x_j, times[j] - times[i]);
            }
        }
    }
}

/// Independent partial sums so the reduction vectorises (f64 addition is not reassociated
/// by the compiler on its own).
const LANES: usize = 8;

#[inline(always)]
fn reduce<T: Float>(x: &[T], v: &[T], target: &[T], dt: f64, f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x
        .chunks_exact(LANES)
        .zip(v.chunks_exact(LANES))
        .zip(target.chunks_exact(LANES));
    for ((x, v), t) in chunks {
        for lane in 0..LANES {
            let r = x[lane].to_f64() + dt * v[lane].to_f64() - t[lane].to_f64();
            acc[lane] += f(r);
        }
    }
    let tail_start = x.len() - x.len() % LANES;
    let mut total = 0.0;
    for ((x, v), t) in x[tail_start..]
        .iter()
        .zip(&v[tail_start..])
        .zip(&target[tail_start..])
    {
        total += f(x.to_f64() + dt * v.to_f64() - t.to_f64());
    }
    total + acc.iter().sum::<f64>()
}

#[inline(always)]
fn l2_residual<T: Float>(x: &[T], v: &[T], target: &[T], dt: f64) -> f64 {
    reduce(x, v, target, dt, |r| r * r).sqrt()
}

#[inline(always)]
fn l1_residual<T: Float>(x: &[T], v: &[T], target: &[T], dt: f64) -> f64 {
    reduce(x, v, target, dt, f64::abs)
}

fn validate_out(n_nodes: usize, out: &[f64]) -> CoreResult<()> {
    // `targets` is n_nodes * batch * dim and fits, so n_nodes^2 does unless batch * dim < n.
    if n_nodes.checked_mul(n_nodes) != Some(out.len()) {
        return Err(CoreError::shape(
            "out",
            format!(
                "must be n_nodes x n_nodes = {n_nodes} x {n_nodes}, got {} values",
                out.len()
            ),
        ));
    }
    Ok(())
}

fn validate<T: Float>(jumps: &Jumps<'_, T>) -> CoreResult<()> {
    let Jumps {
        starts,
        velocities,
        targets,
        times,
        n_nodes,
        batch,
        dim,
    } = *jumps;
    if n_nodes < 2 {
        return Err(CoreError::shape(
            "targets",
            format!("must hold at least 2 nodes, got n_nodes={n_nodes}"),
        ));
    }
    if batch == 0 || dim == 0 {
        return Err(CoreError::shape(
            "targets",
            format!("batch and dim must be >= 1, got batch={batch}, dim={dim}"),
        ));
    }
    let expect_len = |argument: &'static str, len: usize, dims: [usize; 3]| -> CoreResult<()> {
        let [a, b, c] = dims;
        let expected = a.checked_mul(b).and_then(|ab| ab.checked_mul(c));
        if expected == Some(len) {
            return Ok(());
        }
        let expected =
            expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string());
        Err(CoreError::shape(
            argument,
            format!("must have shape ({a}, {b}, {c}) = {expected} values, got {len}"),
        ))
    };
    expect_len("targets", targets.len(), [n_nodes, batch, dim])?;
    expect_len("starts", starts.len(), [n_nodes - 1, batch, dim])?;
    expect_len("velocities", velocities.len(), [n_nodes - 1, batch, dim])?;
    if times.len() != n_nodes {
        return Err(CoreError::shape(
            "times",
            format!("must hold n_nodes={n_nodes} values, got {}", times.len()),
        ));
    }
    if let Some(at) = times.iter().position(|t| !t.is_finite()) {
        return Err(CoreError::non_finite(
            "times",
            format!("times[{at}] is {}", times[at]),
        ));
    }
    if let Some(at) = times.windows(2).position(|w| w[1] <= w[0]) {
        return Err(CoreError::invalid(
            "times",
            format!(
                "must be strictly increasing, got times[{}] = {} <= times[{at}] = {}",
                at + 1,
                times[at + 1],
                times[at]
            ),
        ));
    }
    for (argument, values) in [
        ("starts", starts),
        ("velocities", velocities),
        ("targets", targets),
    ] {
        if let Some(at) = first_non_finite(values) {
            let (node, rest) = (at / (batch * dim), at % (batch * dim));
            return Err(CoreError::non_finite(
                argument,
                format!(
                    "{argument}[{node}][{}][{}] is {}",
                    rest / dim,
                    rest % dim,
                    values[at].to_f64()
                ),
            ));
        }
    }
    Ok(())
}

fn first_non_finite<T: Float>(values: &[T]) -> Option<usize> {
    // Block-wise, branch-free scan: inputs can be hundreds of megabytes.
    const BLOCK: usize = 4096;
    values.chunks(BLOCK).enumerate().find_map(|(block, chunk)| {
        let finite = chunk.iter().fold(true, |ok, x| ok & x.to_f64().is_finite());
        if finite {
            None
        } else {
            chunk
                .iter()
                .position(|x| !x.to_f64().is_finite())
                .map(|p| block * BLOCK + p)
        }
    })
}
