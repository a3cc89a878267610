//! The triangular factor of a tall matrix by tall-skinny QR (TSQR), and the quadratic forms
//! `a_i^T (A^T V A)^{-1} a_i` that leverage scores and Lewis weights are made of.
//!
//! QR rather than Cholesky of `A^T V A`: forming the Gram matrix squares the condition number,
//! and Lewis weights for p < 2 drive `V` over many orders of magnitude.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::{Llt, Qr};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, Par, Side};
use thrifty_core::{parallel, CoreError, CoreResult};

use super::chunks::map_chunks;

use super::matrix::Rows;

/// Rows per TSQR block. Fixed (not per thread), so the result does not depend on the thread
/// count; large enough that each block's QR is compute bound.
const BLOCK_ROWS: usize = 8192;

/// Rows per parallel task when evaluating quadratic forms.
const FORM_CHUNK: usize = 4096;

/// The Gram (Cholesky) path is trusted only while the diagonal of its factor spans less
/// than this ratio: the factor's relative error grows like `cond^2 * f64::EPSILON`, and
/// a ratio of `1e-4` keeps that near `1e-8`, below any useful fixed-point tolerance.
const GRAM_DIAGONAL_RATIO: f64 = 1e-4;

/// A numerical rank below the column count: the smallest diagonal entry of `R` (of the
/// column-normalised matrix) is at most this many times `max(n, d) * f64::EPSILON` of the largest.
pub const RANK_TOLERANCE: f64 = 1.0;

/// `R` (upper triangular, `cols x cols`, row-major) of the thin QR of the `n x cols` matrix
/// whose entries `entry(i, j)` gives. Blocks of rows are factorised in parallel and their `R`
/// factors stacked and factorised again, in a fixed order.
pub fn r_factor(n: usize, cols: usize, entry: &(dyn Fn(usize, usize) -> f64 + Sync)) -> Vec<f64> {
    let block = BLOCK_ROWS.max(2 * cols);
    if n <= block {
        let r = thin_r(Mat::from_fn(n, cols, entry));
        return square(&r, cols);
    }
    let parts: Vec<Mat<f64>> = parallel::map_indices(n.div_ceil(block), |b| {
        let lo = b * block;
        let hi = n.min(lo + block);
        thin_r(Mat::from_fn(hi - lo, cols, |i, j| entry(lo + i, j)))
    });
    let total: usize = parts.iter().map(|p| p.nrows()).sum();
    let mut stacked = Mat::<f64>::zeros(total, cols);
    let mut at = 0;
    for part in &parts {
        for i in 0..part.nrows() {
            for j in 0..cols {
                stacked[(at + i, j)] = part[(i, j)];
            }
        }
        at += part.nrows();
    }
    r_factor(total, cols, &|i, j| stacked[(i, j)])
}

fn thin_r(m: Mat<f64>) -> Mat<f64> {
    Qr::new(m.as_ref()).thin_R().to_owned()
}

/// Pad (when n < cols) and flatten to row-major `cols x cols`.
fn square(r: &Mat<f64>, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; cols * cols];
    for i in 0..r.nrows().min(cols) {
        for j in i..cols {
            out[i * cols + j] = r[(i, j)];
        }
    }
    out
}

/// The Cholesky-like factor of `A^T V A` for a column-normalised `A`: `L = R^T`.
#[derive(Debug, Clone)]
pub struct Factor {
    lower: Mat<f64>,
}

impl Factor {
    /// Factor `A^T diag(row_scale^2) A` (`row_scale = None` for `A^T A`). Errors name
    /// `argument` when the weighted matrix has numerical rank below `d`.
    pub fn new(
        a: &Rows<'_>,
        row_scale: Option<&[f64]>,
        argument: &'static str,
    ) -> CoreResult<Self> {
        let d = a.d();
        let r = match row_scale {
            None => r_factor(a.n(), d, &|i, j| a.scaled(i, j)),
            Some(s) => r_factor(a.n(), d, &|i, j| s[i] * a.scaled(i, j)),
        };
        let upper = Self::upper_checked(r, d, a.n(), argument)?;
        Ok(Self::from_upper(&upper, d))
    }

    /// The factor `L = R^T` of a checked row-major upper-triangular `R` (`d x d`).
    pub fn from_upper(upper: &[f64], d: usize) -> Self {
        let lower = Mat::from_fn(d, d, |i, j| if j <= i { upper[j * d + i] } else { 0.0 });
        Self { lower }
    }

    /// The same factor from the Cholesky decomposition of the Gram matrix, summed over
    /// fixed blocks in order: about 7x faster than TSQR for tall matrices (one BLAS-3
    /// product per block instead of Householder QR), at the price of squaring the
    /// condition number. So it is used only where that is harmless (see
    /// `GRAM_DIAGONAL_RATIO`), and falls back to [`Factor::new`] otherwise; the rank test
    /// (and its error) is always TSQR's.
    pub fn new_fast(a: &Rows<'_>, row_scale: &[f64], argument: &'static str) -> CoreResult<Self> {
        let (n, d) = (a.n(), a.d());
        let block = BLOCK_ROWS.max(2 * d);
        let parts = parallel::map_indices(n.div_ceil(block), |b| {
            let lo = b * block;
            let x = Mat::from_fn(n.min(lo + block) - lo, d, |i, j| {
                row_scale[lo + i] * a.scaled(lo + i, j)
            });
            let mut gram = Mat::<f64>::zeros(d, d);
            matmul(
                gram.as_mut(),
                Accum::Replace,
                x.transpose(),
                x.as_ref(),
                1.0,
                Par::Seq,
            );
            gram
        });
        let mut gram = Mat::<f64>::zeros(d, d);
        for part in &parts {
            gram += part;
        }
        if let Ok(llt) = Llt::new(gram.as_ref(), Side::Lower) {
            let lower = llt.L().to_owned();
            let diagonal: Vec<f64> = (0..d).map(|i| lower[(i, i)].abs()).collect();
            let largest = diagonal.iter().copied().fold(0.0, f64::max);
            let smallest = diagonal.iter().copied().fold(f64::INFINITY, f64::min);
            if largest > 0.0 && smallest > GRAM_DIAGONAL_RATIO * largest {
                return Ok(Self { lower });
            }
        }
        Self::new(a, Some(row_scale), argument)
    }

    /// `r` (row-major upper `d x d`) if its diagonal passes the rank test.
    pub fn upper_checked(
        r: Vec<f64>,
        d: usize,
        n: usize,
        argument: &'static str,
    ) -> CoreResult<Vec<f64>> {
        let diagonal: Vec<f64> = (0..d).map(|i| r[i * d + i].abs()).collect();
        let largest = diagonal.iter().copied().fold(0.0, f64::max);
        let tolerance = RANK_TOLERANCE * (n.max(d) as f64) * f64::EPSILON * largest;
        let rank = diagonal.iter().filter(|&&v| v > tolerance).count();
        if largest == 0.0 || rank < d {
            return Err(CoreError::invalid(
                argument,
                format!(
                    "is rank-deficient: numerical rank {rank} < {d} columns (relative tolerance \
                     max(n, d) * machine epsilon on the diagonal of R)"
                ),
            ));
        }
        Ok(r)
    }

    /// `a_i^T (A^T V A)^{-1} a_i = ||L^{-1} a_i||^2` for every row of `a`: a blocked
    /// triangular solve per fixed chunk of rows (rows become columns of the right-hand side).
    pub fn quadratic_forms(&self, a: &Rows<'_>) -> Vec<f64> {
        let d = a.d();
        map_chunks(a.n(), FORM_CHUNK, |rows| {
            let start = rows.start;
            let mut y = Mat::from_fn(d, rows.len(), |j, t| a.scaled(start + t, j));
            solve_lower_triangular_in_place(self.lower.as_ref(), y.as_mut(), Par::Seq);
            (0..rows.len())
                .map(|t| (0..d).map(|j| y[(j, t)] * y[(j, t)]).sum())
                .collect()
        })
    }
}
