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

use super::binary_scale::{binary_exponent, power_of_two, times_power_of_two};
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

/// The largest p solved. With b scaled to [1, 2) residuals are a few units at most, so
/// their p-th powers stay within float64 and the IRLS weights `(|r_i| / max |r|)^(p-2)` of
/// rows within half the worst residual stay normal.
pub const MAX_P: f64 = 256.0;

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
    if !(1.0..=MAX_P).contains(&p) {
        return Err(CoreError::invalid(
            "p",
            format!(
                "must lie in [1, {MAX_P}] (the cost is convex from 1; past {MAX_P}, |r|^p \
                 leaves the float64 range and the problem is l-infinity regression), got {p}"
            ),
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
    // The solution scales with b and not with the weights, the cost with both. Solving for
    // b and weights scaled by powers of two to a largest magnitude in [1, 2) changes no bit
    // of the problem and keeps |r|^p in range: b near 2^600 gave an infinite cost at p = 3
    // (near 2^-600 a zero one), and IRLS stopped at its least-squares start.
    let b_exponent = largest_exponent(b);
    let b_scaled: Vec<f64> = b.iter().map(|v| v * power_of_two(-b_exponent)).collect();
    let weights_exponent = weights.map_or(0, largest_exponent);
    let weights_scaled: Option<Vec<f64>> = weights.map(|w| {
        w.iter()
            .map(|v| v * power_of_two(-weights_exponent))
            .collect()
    });
    let fit = solve(a, &b_scaled, p, weights_scaled.as_deref(), options)?;
    let cost_exponent = f64::from(b_exponent) * p + f64::from(weights_exponent);
    let cost = times_power_of_two(fit.cost, cost_exponent);
    Ok(RegressionFit {
        x: fit
            .x
            .into_iter()
            .map(|v| times_power_of_two(v, f64::from(b_exponent)))
            .collect(),
        cost,
        iterations: fit.iterations,
    })
}

/// The binary exponent of the largest magnitude in `values`, 0 when they are all zero.
fn largest_exponent(values: &[f64]) -> i32 {
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if largest > 0.0 {
        binary_exponent(largest)
    } else {
        0
    }
}

/// [`lp_regression`] on checked (and scaled) inputs.
fn solve(
    a: &Rows<'_>,
    b: &[f64],
    p: f64,
    weights: Option<&[f64]>,
    options: &RegressionOptions,
) -> CoreResult<RegressionFit> {
    let n = a.n();
    let base: Vec<f64> = match weights {
        None => vec![1.0; n],
        Some(w) => w.iter().map(|v| v.sqrt()).collect(),
    };
    let mut x = match least_squares(a, b, &base) {
        Ok(x) => x,
        // Rank lost to zero weights is the weights' doing when A alone has full rank.
        Err(error) if weights.is_some() => {
            Factor::new(a, None, "A")?;
            return Err(CoreError::invalid(
                "weights",
                format!(
                    "leave too few rows with positive weight to fit x: A weighted by them {}",
                    match &error {
                        CoreError::InvalidValue { message, .. } => message.as_str(),
                        _ => "is rank-deficient",
                    }
                ),
            ));
        }
        Err(error) => return Err(error),
    };
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
        // Relative to the largest residual: a common factor leaves the least-squares
        // solution as it is, and |r_i|^(p-2) itself over- or underflows for large p.
        let largest = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale: Vec<f64> = r
            .iter()
            .zip(&base)
            .map(|(ri, bi)| {
                bi * (ri.abs() / largest)
                    .max(RESIDUAL_FLOOR)
                    .powf((p - 2.0) / 2.0)
            })
            .collect();
        // For a very large p the weights of all but the worst rows underflow, and the
        // weighted problem can lose rank although A has it: no step can be computed, so the
        // descent stops where it is, as when the line search finds no decrease.
        let Ok(target) = least_squares(a, b, &scale) else {
            break;
        };
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
