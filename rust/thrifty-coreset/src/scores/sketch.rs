//! Fast approximate leverage scores: Drineas, Magdon-Ismail, Mahoney & Woodruff,
//! "Fast approximation of matrix coherence and statistical leverage" (arXiv 1109.3843), with
//! a sparse embedding (OSNAP, Nelson & Nguyen arXiv 1211.1002) in place of the SRHT.
//!
//! 1. `S A` with `S` an `m x n` OSNAP: every row of `A` is added, with a random sign and
//!    weight `1/sqrt(s)`, to `s` random rows of `SA`. With `m = ceil(8 d max(1, ln d))` and
//!    `s = 4`, `S` is a subspace embedding with distortion about 1/2 with high probability,
//!    so `R` from `SA = QR` makes `A R^{-1}` well conditioned: `||e_i^T A R^{-1}||^2` is
//!    within `[1/(1+1/2)^2, 1/(1-1/2)^2] = [0.44, 4]` times `tau_i`.
//! 2. A Johnson–Lindenstrauss Gaussian `G` (`d x k`, `k = ceil(8 ln(200 n) / eps^2)`,
//!    entries `N(0, 1/k)`) keeps every squared row norm of `A R^{-1} G` within `1 ± eps` of
//!    that of `A R^{-1}` with probability >= 0.99 (union bound over the rows).
//!
//! Documented accuracy: with probability about 0.99 every score lies within
//! `[(1-eps) 0.44, (1+eps) 4] tau_i`; in practice within a few tens of percent. Cost:
//! `O(nnz(A) s + m d^2 + n d k)` against `O(n d^2)` for QR, so it pays when `d` is well above
//! `k` (hundreds of columns or more). When `k >= d` the JL step would cost more than it saves
//! and is skipped: the scores are then the row norms of `A R^{-1}` (error from step 1 only).
//!
//! When `m` reaches `n` (small `n`: `n <= 8 d max(1, ln d)`) the sketch would save nothing
//! and embed nothing, so `R` is that of `A` itself; and when a sketch happens to lose rank
//! (the probability is small, not zero), `R` is that of `A` too, whose rank test is the one
//! that speaks for `A`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thrifty_core::{CoreError, CoreResult};

use super::chunks::map_chunks;

use super::matrix::Rows;
use super::qr::{r_factor, Factor};

/// Rows per random stream: each chunk seeds its own generator from `(seed, chunk)`, so the
/// sketch does not depend on the thread count.
const CHUNK: usize = 4096;

/// Rows of `S A` summed per parallel task.
const SKETCH_ROWS_PER_TASK: usize = 64;

/// Nonzeros per row of `A` in the sparse embedding.
pub const NONZEROS: usize = 4;

/// Options of [`sketched_leverage_scores`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchOptions {
    pub seed: u64,
    /// Relative accuracy of the Johnson–Lindenstrauss step.
    pub eps: f64,
}

impl Default for SketchOptions {
    fn default() -> Self {
        Self { seed: 0, eps: 0.5 }
    }
}

fn stream(seed: u64, chunk: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(chunk.wrapping_mul(4).wrapping_add(purpose));
    rng
}

/// A standard normal draw (Box–Muller on 53-bit uniforms).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let unit =
        |r: &mut ChaCha8Rng| ((r.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    let (u, v) = (unit(rng), unit(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Sketch rows `m` for `n x d`.
pub fn sketch_rows(n: usize, d: usize) -> usize {
    let m = (8.0 * d as f64 * (d as f64).ln().max(1.0)).ceil() as usize;
    m.clamp(d, n)
}

/// JL columns `k` for `n` rows and accuracy `eps`.
pub fn jl_columns(n: usize, eps: f64) -> usize {
    (8.0 * (200.0 * n as f64).ln() / (eps * eps)).ceil() as usize
}

/// Approximate leverage scores (see the module docs for the accuracy).
pub fn sketched_leverage_scores(a: &Rows<'_>, options: &SketchOptions) -> CoreResult<Vec<f64>> {
    if !(options.eps > 0.0 && options.eps < 1.0) {
        return Err(CoreError::invalid(
            "eps",
            format!("must lie in (0, 1), got {}", options.eps),
        ));
    }
    let (n, d) = (a.n(), a.d());
    let m = sketch_rows(n, d);
    // R from A itself: the exact factor, and the rank test that speaks for A.
    let exact = || Factor::upper_checked(r_factor(n, d, &|i, j| a.scaled(i, j)), d, n, "A");
    let r = if m >= n {
        // A sketch of as many rows as A saves nothing and is no embedding (a sketch of one
        // row could cancel to zero).
        exact()?
    } else {
        // A sketch that happens to lose rank says nothing about A: factor A instead, which
        // is exact, or refuses A when A itself is rank-deficient.
        Factor::upper_checked(sketch_factor(a, m, options.seed), d, n, "A").or_else(|_| exact())?
    };
    let k = jl_columns(n, options.eps);
    if k >= d {
        // The JL step would cost more than it saves: exact row norms of A R^{-1}.
        return Ok(Factor::from_upper(&r, d).quadratic_forms(a));
    }
    Ok(jl_step(a, &r, k, options.seed))
}

/// `R` (row-major, `d x d`, unchecked) of the QR of `S A`, for an `m x n` OSNAP `S` seeded
/// by `seed`.
fn sketch_factor(a: &Rows<'_>, m: usize, seed: u64) -> Vec<f64> {
    let (n, d) = (a.n(), a.d());
    let weight = 1.0 / (NONZEROS as f64).sqrt();
    // One draw per (row, slot): bucket in the high bits, sign in the lowest.
    let draws: Vec<u64> = map_chunks(n * NONZEROS, CHUNK * NONZEROS, |slots| {
        let mut rng = stream(seed, (slots.start / (CHUNK * NONZEROS)) as u64, 0);
        slots.map(|_| rng.next_u64()).collect()
    });
    let buckets: Vec<u32> = draws.iter().map(|d| ((d >> 1) % m as u64) as u32).collect();
    let signs: Vec<f64> = draws
        .iter()
        .map(|d| if d & 1 == 0 { weight } else { -weight })
        .collect();
    // Group the (row, slot) pairs by bucket so each row of SA is summed in a fixed order.
    let mut starts = vec![0usize; m + 1];
    for &b in &buckets {
        starts[b as usize + 1] += 1;
    }
    for j in 0..m {
        starts[j + 1] += starts[j];
    }
    let mut order = vec![0usize; buckets.len()];
    let mut fill = starts.clone();
    for (slot, &b) in buckets.iter().enumerate() {
        order[fill[b as usize]] = slot;
        fill[b as usize] += 1;
    }
    let sketch: Vec<f64> = map_chunks(m, SKETCH_ROWS_PER_TASK, |rows| {
        let mut out = vec![0.0f64; rows.len() * d];
        for (t, j) in rows.enumerate() {
            let row = &mut out[t * d..(t + 1) * d];
            for &slot in &order[starts[j]..starts[j + 1]] {
                let i = slot / NONZEROS;
                for (c, o) in row.iter_mut().enumerate() {
                    *o += signs[slot] * a.scaled(i, c);
                }
            }
        }
        out
    });
    r_factor(m, d, &|i, j| sketch[i * d + j])
}

/// The rest of [`sketched_leverage_scores`] once `R` is known: the JL step.
fn jl_step(a: &Rows<'_>, r: &[f64], k: usize, seed: u64) -> Vec<f64> {
    let (n, d) = (a.n(), a.d());
    // Columns of R^{-1} G: every score is a squared row norm of A times them.
    let mut rng = stream(seed, u64::MAX / 4, 1);
    let scale = 1.0 / (k as f64).sqrt();
    let g: Vec<f64> = (0..d * k).map(|_| normal(&mut rng) * scale).collect();
    let right = back_substitute(r, d, &g, k);
    let columns = k;
    let scale = a.column_scale();
    map_chunks(n, CHUNK, |rows| {
        let mut y = vec![0.0; columns];
        rows.map(|i| {
            y.iter_mut().for_each(|v| *v = 0.0);
            for (j, (v, s)) in a.row(i).iter().zip(scale).enumerate() {
                let x = v * s;
                for (yv, rv) in y.iter_mut().zip(&right[j * columns..(j + 1) * columns]) {
                    *yv += x * rv;
                }
            }
            y.iter().map(|v| v * v).sum::<f64>()
        })
        .collect()
    })
}

/// `R^{-1} B` for upper-triangular row-major `R` (`d x d`) and row-major `B` (`d x k`).
fn back_substitute(r: &[f64], d: usize, b: &[f64], k: usize) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in (0..d).rev() {
        for j in i + 1..d {
            let factor = r[i * d + j];
            if factor != 0.0 {
                for c in 0..k {
                    x[i * k + c] -= factor * x[j * k + c];
                }
            }
        }
        for c in 0..k {
            x[i * k + c] /= r[i * d + i];
        }
    }
    x
}
