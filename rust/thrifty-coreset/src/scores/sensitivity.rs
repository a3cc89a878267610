//! Upper bounds on lp sensitivities from Lewis weights.
//!
//! The sensitivity of row `i` is `sigma_i = sup_x |a_i^T x|^p / ||Ax||_p^p`. Let `w` be any
//! positive weights, `q_i = a_i^T M^{-1} a_i` with `M = A^T W^{1-2/p} A`, `T_i = q_i^{p/2}`
//! (so `T = w` at the Lewis fixed point), `y = Ax` and `S = sum_j w_j^{1-2/p} y_j^2 = x^T M x`.
//! Cauchy–Schwarz in the `M` inner product gives `y_i^2 <= q_i S`, i.e.
//! `|y_i|^p <= T_i S^{p/2}`. It remains to bound `S` by `||y||_p`:
//!
//! * `p >= 2`: Hölder with exponents `p/2` and `p/(p-2)` gives
//!   `S <= (sum_j w_j)^{1-2/p} ||y||_p^2`, so `sigma_i <= T_i (sum_j w_j)^{p/2-1}`, which is
//!   `w_i d^{p/2-1}` at the fixed point (total `<= d^{p/2}`).
//! * `p < 2`: with `rho = max_j T_j / w_j`, each term obeys
//!   `w_j^{1-2/p} y_j^2 = w_j^{1-2/p} |y_j|^p |y_j|^{2-p} <= |y_j|^p rho^{2/p-1} S^{1-p/2}`,
//!   so `S^{p/2} <= rho^{2/p-1} ||y||_p^p` and `sigma_i <= T_i rho^{2/p-1}`: `w_i` at the fixed
//!   point (total `<= d`).
//!
//! Both hold for the computed (approximate) weights exactly as written, so the returned
//! bounds are true upper bounds, not bounds up to the iteration's tolerance. Each is also
//! capped at 1, since `|a_i^T x|^p <= ||Ax||_p^p`.

use thrifty_core::CoreResult;

use super::lewis::{lewis_weights, LewisOptions};
use super::matrix::Rows;

/// Upper bounds on the lp sensitivities of the rows of `a` (see the module docs).
pub fn lp_sensitivities(a: &Rows<'_>, p: f64, options: &LewisOptions) -> CoreResult<Vec<f64>> {
    let lewis = lewis_weights(a, p, options)?;
    let factor = if p >= 2.0 {
        let total: f64 = lewis.weights.iter().sum();
        total.powf(p / 2.0 - 1.0)
    } else {
        let rho = lewis
            .weights
            .iter()
            .zip(&lewis.image)
            .filter(|(&w, _)| w > 0.0)
            .map(|(&w, &t)| t / w)
            .fold(0.0, f64::max);
        rho.powf(2.0 / p - 1.0)
    };
    Ok(lewis.image.iter().map(|&t| (t * factor).min(1.0)).collect())
}
