//! Weighted lp regression, `min_x sum_i v_i |a_i^T x - b_i|^p` for `p >= 1`: a direct QR
//! least-squares solve for `p = 2`, iteratively reweighted least squares (IRLS) otherwise.
//!
//! IRLS solves the least-squares problem with weights `v_i max(|r_i|, floor)^{p-2}`. The
//! step from `x` to that solution is `-(A^T R A)^{-1} grad f(x) / p`, a descent direction
//! for the convex cost, so a backtracking line search on the true cost makes every accepted
//! step decrease it (plain IRLS can oscillate for p > 3). The floor,
//! `1e-8 * max_i |r_i|`, keeps the weights finite for p < 2 when a residual reaches zero
//! (p = 1 solutions interpolate `d` rows); it biases the solution by a relative `O(1e-8)`.

use thrifty_core::{parallel, CoreError, CoreResult};

use super::matrix::Rows;
use super::qr::{r_factor, Factor};

/// When IRLS stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionOptions {
    /// Most IRLS iterations (not an error when reached: the last iterate is returned).
    pub iters: usize,
    /// Stop once an iteration decreases the cost by less than `tol` relative to it.
    pub tol: f64,
}

impl Default for RegressionOptions {
    fn default() -> Self {
        Self {
            iters: 100,
            tol: 1e-10,
        }
    }
}

/// The solution, its cost `sum_i v_i |a_i^T x - b_i|^p`, and the iterations run.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionFit {
    pub x: Vec<f64>,
    pub cost: f64,
    pub iterations: usize,
}

/// Relative floor on residuals in the IRLS weights for p < 2 (see the module docs).
pub const RESIDUAL_FLOOR: f64 = 1e-8;

fn residuals(a: &Rows<'_>, b: &[f64], x: &[f64]) -> Vec<f64> {
    parallel::map_indices(a.n(), |i| {
        a.row(i).iter().zip(x).map(|(u, v)| u * v).sum::<f64>() - b[i]
    })
}

fn cost(r: &[f64], weights: Option<&[f64]>, p: f64) -> f64 {
    match weights {
        None => r.iter().map(|v| v.abs().powf(p)).sum(),
        Some(w) => r.iter().zip(w).map(|(v, wi)| wi * v.abs().powf(p)).sum(),
    }
}

/// `argmin_x sum_i s_i^2 (a_i^T x - b_i)^2` via the QR of `diag(s) [A b]` (column-normalised
/// `A`), so the rank test sees the same matrix as the solve.
fn least_squares(a: &Rows<'_>, b: &[f64], s: &[f64]) -> CoreResult<Vec<f64>> {
    let d = a.d();
    let cols = d + 1;
    let r = r_factor(a.n(), cols, &|i, j| {
        if j < d {
            s[i] * a.scaled(i, j)
        } else {
            s[i] * b[i]
        }
    });
    let mut upper = vec![0.0; d * d];
    for i in 0..d {
        upper[i * d..(i + 1) * d].copy_from_slice(&r[i * cols..i * cols + d]);
    }
    let upper = Factor::upper_checked(upper, d, a.n(), "A")?;
    let mut z = vec![0.0; d];
    for i in (0..d).rev() {
        let tail: f64 = (i + 1..d).map(|j| upper[i * d + j] * z[j]).sum();
        z[i] = (r[i * cols + d] - tail) / upper[i * d + i];
    }
    Ok(z.iter().zip(a.column_scale()).map(|(v, c)| v * c).collect())
}

/// Solve weighted lp regression (see the module docs). `weights`, when given, are
/// non-negative row weights `v`.
pub fn lp_regression(
    a: &Rows<'_>,
    b: &[f64],
    p: f64,
    weights: Option<&[f64]>,
    options: &RegressionOptions,
) -> CoreResult<RegressionFit> {
    let n = a.n();
    if !(p.is_finite() && p >= 1.0) {
        return Err(CoreError::invalid(
            "p",
            format!("must be a finite number >= 1 (the cost is convex there), got {p}"),
        ));
    }
    if b.len() != n {
        return Err(CoreError::shape(
            "b",
            format!("must hold n = {n} values, got {}", b.len()),
        ));
    }
    if let Some(position) = b.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::non_finite(
            "b",
            format!("must be finite, got {} at {position}", b[position]),
        ));
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(CoreError::shape(
                "weights",
                format!("must hold n = {n} values, got {}", w.len()),
            ));
        }
        if let Some(position) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(CoreError::invalid(
                "weights",
                format!("must be finite and >= 0, got {} at {position}", w[position]),
            ));
        }
    }
    let base: Vec<f64> = match weights {
        None => vec![1.0; n],
        Some(w) => w.iter().map(|v| v.sqrt()).collect(),
    };
    let mut x = least_squares(a, b, &base)?;
    let mut r = residuals(a, b, &x);
    let mut current = cost(&r, weights, p);
    if p == 2.0 {
        return Ok(RegressionFit {
            x,
            cost: current,
            iterations: 1,
        });
    }
    let mut iterations = 1;
    while iterations < options.iters && current > 0.0 {
        iterations += 1;
        let largest = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let floor = RESIDUAL_FLOOR * largest;
        let scale: Vec<f64> = r
            .iter()
            .zip(&base)
            .map(|(ri, bi)| bi * ri.abs().max(floor).powf((p - 2.0) / 2.0))
            .collect();
        let target = least_squares(a, b, &scale)?;
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let trial: Vec<f64> = x
                .iter()
                .zip(&target)
                .map(|(xi, ti)| xi + step * (ti - xi))
                .collect();
            let trial_r = residuals(a, b, &trial);
            let trial_cost = cost(&trial_r, weights, p);
            if trial_cost < current {
                accepted = Some((trial, trial_r, trial_cost));
                break;
            }
            step *= 0.5;
        }
        let Some((trial, trial_r, trial_cost)) = accepted else {
            break;
        };
        let decrease = (current - trial_cost) / current;
        x = trial;
        r = trial_r;
        current = trial_cost;
        if decrease < options.tol {
            break;
        }
    }
    Ok(RegressionFit {
        x,
        cost: current,
        iterations,
    })
}
