//! Small-Gain Nash (Sharma, arXiv 2512.06791): from per-player curvature bounds `mu_i`,
//! cross-player coupling bounds `L_ij` and a Lipschitz bound of the pseudo-gradient, a block
//! metric `||x||_w^2 = sum_i w_i ||x_i||^2` in which the pseudo-gradient `F` is strongly
//! monotone, with safe step sizes for simultaneous Euler and RK4 play.
//!
//! With `d_i = ||x_i - y_i||`, the bounds give
//! `<F(x) - F(y), x - y>_w >= d^T S(w) d`, `S(w) = (W M + M^T W) / 2`, where `M` is the
//! comparison matrix (`M_ii = mu_i`, `M_ij = -L_ij`). So `F` is `m`-strongly monotone in the
//! `w`-metric with `m = lambda_min(W^-1/2 S(w) W^-1/2)`, the margin. A positive margin exists
//! for some `w > 0` exactly when `M` is a nonsingular M-matrix, i.e. when the small-gain
//! condition `rho(D_mu^-1 L) < 1` holds.
//!
//! Checked against the paper's code companion (github.com/AashVed/SmallGainNash,
//! `LQ_GAMES/compute_sgn_metrics.py` and `markov/sgn_theory.py`; the paper's own text was not
//! available to us): the metric `diag(w_i I)`, the margin (its `alpha_*(w)`, half the least
//! eigenvalue of `D^-1/2 C(w) D^-1/2` with `C_ii = 2 w_i mu_i`,
//! `C_ij = -(w_i L_ij + w_j L_ji)`) and Euler's bound `2 m / L_w^2` agree, and it too takes
//! the Lipschitz constant `L_w` ("beta") in the weighted metric. The RK4 bound is ours: the
//! companion uses the linear-stability guideline `h <= 2.5 / L_w`, which is no contraction
//! certificate for a nonlinear (or non-normal) `F`.

use thrifty_core::{CoreError, CoreResult};

use crate::symmetric::{binary_exponent, eigenvalues, times_power_of_two};

/// The Lipschitz bound of the pseudo-gradient.
#[derive(Debug, Clone, PartialEq)]
pub enum Lipschitz {
    /// One Euclidean bound `||F(x) - F(y)|| <= l ||x - y||`. It also bounds each player's
    /// gradient in its own block, so `K = L + l I` bounds the blocks as in
    /// [`Lipschitz::Blocks`]; the `w`-metric constant is the smaller of
    /// `||W^1/2 K W^-1/2||_2` and `l sqrt(max w / min w)`.
    Global(f64),
    /// Per-player bounds `l_i` of `F_i` in its own block; with the couplings `L_ij` they bound
    /// `||F_i(x) - F_i(y)|| <= sum_j K_ij d_j` with `K = L + diag(l)`, so the `w`-metric
    /// Lipschitz constant is `||W^1/2 K W^-1/2||_2`.
    Blocks(Vec<f64>),
}

/// The certificate, or the reason there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// Block weights, normalised to `max w = 1`.
    pub weights: Vec<f64>,
    /// Strong-monotonicity modulus of `F` in the `w`-metric (> 0 when certified).
    pub margin: f64,
    /// Lipschitz constant of `F` in the `w`-metric.
    pub lipschitz_weighted: f64,
    /// `rho(D_mu^-1 L)`, the small-gain of the coupling; < 1 is necessary and sufficient.
    pub small_gain: f64,
    /// Euler's best step `margin / lipschitz_weighted^2`.
    pub step: f64,
    /// The per-step contraction factor of Euler at `step`: `sqrt(1 - (m / L_w)^2)`.
    pub rate: f64,
    /// Euler contracts for every step in `(0, max_step_euler)`: `2 m / L_w^2`.
    pub max_step_euler: f64,
    /// RK4 contracts for every step in `(0, max_step_rk4)` (see [`rk4_factor`]).
    pub max_step_rk4: f64,
    pub certified: bool,
    /// Why there is no certificate; empty when certified.
    pub reason: String,
}

/// Euler's contraction factor in the `w`-metric: `||x+ - y+||_w^2 = ||D||^2 - 2h<DF, D>_w +
/// h^2 ||DF||_w^2 <= (1 - 2hm + h^2 L^2) ||D||_w^2`.
pub fn euler_factor(step: f64, margin: f64, lipschitz: f64) -> f64 {
    (1.0 - 2.0 * step * margin + step * step * lipschitz * lipschitz)
        .max(0.0)
        .sqrt()
}

/// RK4's weights `b_i`.
const RK4_WEIGHTS: [f64; 4] = [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0];

/// A contraction factor of one RK4 step, valid for any `F` that is `margin`-strongly monotone
/// and `lipschitz`-Lipschitz in the `w`-metric (not only for affine `F`, whose Taylor tail
/// would give a tighter factor).
///
/// For two points at distance `d` let `D_i` be the difference of the stage points
/// (`D_1 = D`, `D_2 = D + (h/2) g_1`, `D_3 = D + (h/2) g_2`, `D_4 = D + h g_3`) and `g_i` that
/// of the stage values `-F`. With `a = hL`, the Lipschitz bound gives `||D_i - D|| <= e_i d`
/// for `e_1 = 0`, `e_2 = a/2`, `e_3 = (a/2)(1 + e_2)`, `e_4 = a(1 + e_3)`, and
/// `||g_i|| <= L (1 + e_i) d`. Monotonicity at the stage points gives
/// `<D, g_i> = <D_i, g_i> - <D_i - D, g_i> <= (-m (1 - e_i)_+^2 + L e_i (1 + e_i)) d^2`, so
/// the step `D + h sum_i b_i g_i` has squared length at most
/// `(1 + 2h sum_i b_i (-m (1 - e_i)_+^2 + L e_i (1 + e_i)) + (a sum_i b_i (1 + e_i))^2) d^2`.
/// That is `1 - 2hm + O(h^2)`, and its excess over 1 divided by `h` grows with `h`, so the
/// contracting steps form one interval starting at 0.
pub fn rk4_factor(step: f64, margin: f64, lipschitz: f64) -> f64 {
    let a = step * lipschitz;
    let e2 = a / 2.0;
    let e3 = a / 2.0 * (1.0 + e2);
    let e4 = a * (1.0 + e3);
    let mut inner = 0.0;
    let mut reach = 0.0;
    for (b, e) in RK4_WEIGHTS.iter().zip([0.0, e2, e3, e4]) {
        let shrunk = (1.0 - e).max(0.0);
        inner += b * (-margin * shrunk * shrunk + lipschitz * e * (1.0 + e));
        reach += b * (1.0 + e);
    }
    (1.0 + 2.0 * step * inner + a * a * reach * reach)
        .max(0.0)
        .sqrt()
}

fn check_inputs(mu: &[f64], coupling: &[f64], lipschitz: &Lipschitz) -> CoreResult<usize> {
    let n = mu.len();
    if n == 0 {
        return Err(CoreError::shape(
            "mu",
            "must hold at least one player, got 0",
        ));
    }
    if n.checked_mul(n) != Some(coupling.len()) {
        return Err(CoreError::shape(
            "L",
            format!("must be ({n}, {n}) like mu, got {} values", coupling.len()),
        ));
    }
    if let Some(v) = mu.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::non_finite(
            "mu",
            format!("must be finite, got {v}"),
        ));
    }
    for i in 0..n {
        for j in 0..n {
            let v = coupling[i * n + j];
            if !v.is_finite() {
                return Err(CoreError::non_finite(
                    "L",
                    format!("must be finite, got {v} at [{i}, {j}]"),
                ));
            }
            if v < 0.0 {
                return Err(CoreError::invalid(
                    "L",
                    format!("coupling bounds must be >= 0, got {v} at [{i}, {j}]"),
                ));
            }
            if i == j && v != 0.0 {
                return Err(CoreError::invalid(
                    "L",
                    format!(
                        "diagonal must be 0 (a player's own curvature is mu), got {v} at [{i}, {i}]"
                    ),
                ));
            }
        }
    }
    let own = mu.iter().copied().fold(0.0, f64::max);
    match lipschitz {
        Lipschitz::Global(l) => {
            if !l.is_finite() {
                return Err(CoreError::non_finite(
                    "lipschitz",
                    format!("must be finite, got {l}"),
                ));
            }
            // A Lipschitz bound below some mu_i contradicts mu_i's strong monotonicity.
            if *l <= 0.0 || *l < own {
                return Err(CoreError::invalid(
                    "lipschitz",
                    format!("must be > 0 and >= max(mu) = {own}, got {l}"),
                ));
            }
        }
        Lipschitz::Blocks(l) => {
            if l.len() != n {
                return Err(CoreError::shape(
                    "lipschitz",
                    format!("per-player bounds must have length {n}, got {}", l.len()),
                ));
            }
            for (i, (&li, &mi)) in l.iter().zip(mu).enumerate() {
                if !li.is_finite() {
                    return Err(CoreError::non_finite(
                        "lipschitz",
                        format!("must be finite, got {li} at [{i}]"),
                    ));
                }
                if li <= 0.0 || li < mi {
                    return Err(CoreError::invalid(
                        "lipschitz",
                        format!("must be > 0 and >= mu[{i}] = {mi}, got {li} at [{i}]"),
                    ));
                }
            }
        }
    }
    Ok(n)
}

/// `lambda_min(W^-1/2 S(w) W^-1/2)`, the best `m` with `d^T S(w) d >= m d^T W d`; scale-free
/// in `w`. Its off-diagonal is `-(w_i L_ij + w_j L_ji) / (2 sqrt(w_i w_j))`.
fn margin(weights: &[f64], mu: &[f64], coupling: &[f64]) -> f64 {
    let n = mu.len();
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = if i == j {
                mu[i]
            } else {
                -0.5 * (weights[i] * coupling[i * n + j] + weights[j] * coupling[j * n + i])
                    / (weights[i] * weights[j]).sqrt()
            };
        }
    }
    eigenvalues(&s, n)[0]
}

/// `||W^1/2 K W^-1/2||_2` for the block bound matrix `K` with diagonal `own` and the couplings
/// off it: the `w`-metric Lipschitz constant of an `F` whose blocks obey
/// `||F_i(x) - F_i(y)|| <= sum_j K_ij d_j`.
fn block_lipschitz(weights: &[f64], coupling: &[f64], own: &[f64]) -> f64 {
    let n = weights.len();
    // ||B||_2^2 = lambda_max(B^T B) with B = W^1/2 K W^-1/2.
    let b: Vec<f64> = (0..n * n)
        .map(|c| {
            let (i, j) = (c / n, c % n);
            let k = if i == j { own[i] } else { coupling[c] };
            (weights[i] / weights[j]).sqrt() * k
        })
        .collect();
    let gram: Vec<f64> = (0..n * n)
        .map(|c| {
            let (i, j) = (c / n, c % n);
            (0..n).map(|r| b[r * n + i] * b[r * n + j]).sum()
        })
        .collect();
    eigenvalues(&gram, n)[n - 1].max(0.0).sqrt()
}

/// The Lipschitz constant of `F` in the `w`-metric.
fn weighted_lipschitz(weights: &[f64], coupling: &[f64], lipschitz: &Lipschitz) -> f64 {
    match lipschitz {
        Lipschitz::Global(l) => {
            // Both are valid bounds. The norm change alone costs sqrt(max w / min w), which
            // for the spread weights a strong one-way coupling needs makes steps tiny; the
            // block bound weighs each coupling by sqrt(w_i / w_j) instead, which the weights
            // were chosen to keep small. Near-uniform weights can favour the first.
            let top = weights.iter().copied().fold(0.0, f64::max);
            let bottom = weights.iter().copied().fold(f64::INFINITY, f64::min);
            let by_norms = l * (top / bottom).sqrt();
            let by_blocks = block_lipschitz(weights, coupling, &vec![*l; weights.len()]);
            by_norms.min(by_blocks)
        }
        Lipschitz::Blocks(l) => block_lipschitz(weights, coupling, l),
    }
}

/// `rho(A)` of the nonnegative `A = D_mu^-1 L` as `||A^m||^(1/m)` for `m = 2^64`, by
/// repeated squaring with the scale kept in a logarithm. Power iteration would need
/// thousands of steps on a defective `A` (a Jordan block converges like `1/k`); squaring a
/// nonnegative matrix has no cancellation, and the bound is within a factor
/// `(m^(n-1) cond)^(1/m)`, i.e. 1 to rounding, of `rho`.
///
/// The ratios `L_ij / mu_i` can overflow where the curvatures are tiny next to the couplings,
/// so both are first brought near 1 by powers of two (exact, and undone in the logarithm).
fn spectral_radius(mu: &[f64], coupling: &[f64]) -> f64 {
    let n = mu.len();
    let largest = coupling.iter().copied().fold(0.0, f64::max);
    if largest == 0.0 {
        return 0.0;
    }
    let smallest = mu.iter().copied().fold(f64::INFINITY, f64::min);
    let (top, bottom) = (binary_exponent(largest), binary_exponent(smallest));
    let mut b: Vec<f64> = (0..n * n)
        .map(|c| times_power_of_two(coupling[c], -top) / times_power_of_two(mu[c / n], -bottom))
        .collect();
    let mut log_scale = f64::from(top - bottom) * std::f64::consts::LN_2;
    let mut power = 1.0;
    for _ in 0..64 {
        let norm = (0..n)
            .map(|i| b[i * n..(i + 1) * n].iter().sum::<f64>())
            .fold(0.0, f64::max);
        if norm == 0.0 {
            return 0.0;
        }
        b.iter_mut().for_each(|x| *x /= norm);
        log_scale += norm.ln() / power;
        b = (0..n * n)
            .map(|c| (0..n).map(|k| b[(c / n) * n + k] * b[k * n + c % n]).sum())
            .collect();
        power *= 2.0;
    }
    let norm = (0..n)
        .map(|i| b[i * n..(i + 1) * n].iter().sum::<f64>())
        .fold(0.0, f64::max);
    if norm == 0.0 {
        return 0.0;
    }
    (log_scale + norm.ln() / power).exp()
}

/// Solve `A z = 1` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve_ones(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut z = vec![1.0; n];
    for col in 0..n {
        let pivot =
            (col..n).max_by(|&r, &s| m[r * n + col].abs().total_cmp(&m[s * n + col].abs()))?;
        if m[pivot * n + col].abs() < 1e-300 {
            return None;
        }
        for k in 0..n {
            m.swap(col * n + k, pivot * n + k);
        }
        z.swap(col, pivot);
        for r in col + 1..n {
            let f = m[r * n + col] / m[col * n + col];
            for k in col..n {
                m[r * n + k] -= f * m[col * n + k];
            }
            z[r] -= f * z[col];
        }
    }
    for col in (0..n).rev() {
        let tail: f64 = (col + 1..n).map(|k| m[col * n + k] * z[k]).sum();
        z[col] = (z[col] - tail) / m[col * n + col];
    }
    Some(z)
}

/// Block weights that maximise the margin. The start is the classical M-matrix scaling
/// `w_i = u_i / v_i` with `M v = 1`, `M^T u = 1` (positive exactly when `M` is a nonsingular
/// M-matrix, and then `W M + M^T W` is positive definite); a pattern search in `log w`
/// (step halved when no coordinate move helps, down to 1e-6) then enlarges the margin.
fn optimise_weights(mu: &[f64], coupling: &[f64]) -> Vec<f64> {
    let n = mu.len();
    let m: Vec<f64> = (0..n * n)
        .map(|c| {
            if c / n == c % n {
                mu[c / n]
            } else {
                -coupling[c]
            }
        })
        .collect();
    let mt: Vec<f64> = (0..n * n).map(|c| m[(c % n) * n + c / n]).collect();
    let mut start = vec![1.0; n];
    if let (Some(v), Some(u)) = (solve_ones(&m, n), solve_ones(&mt, n)) {
        if v.iter().chain(&u).all(|x| *x > 0.0) {
            let scaled: Vec<f64> = u.iter().zip(&v).map(|(a, b)| a / b).collect();
            if margin(&scaled, mu, coupling) > margin(&start, mu, coupling) {
                start = scaled;
            }
        }
    }
    let mut log_w: Vec<f64> = start.iter().map(|w| w.ln()).collect();
    let value = |lw: &[f64]| {
        margin(
            &lw.iter().map(|x| x.exp()).collect::<Vec<_>>(),
            mu,
            coupling,
        )
    };
    let mut best = value(&log_w);
    let mut step = 1.0;
    while step > 1e-6 {
        let mut improved = false;
        for i in 0..n {
            for sign in [1.0, -1.0] {
                let mut trial = log_w.clone();
                trial[i] += sign * step;
                let v = value(&trial);
                if v > best {
                    best = v;
                    log_w = trial;
                    improved = true;
                }
            }
        }
        if !improved {
            step *= 0.5;
        }
    }
    let top = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    log_w.iter().map(|x| (x - top).exp()).collect()
}

/// The largest step with `rk4_factor < 1`, by bisection on the interval where it holds.
fn rk4_step_limit(margin: f64, lipschitz: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 2.0 * margin / (lipschitz * lipschitz));
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if rk4_factor(mid, margin, lipschitz) < 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The Small-Gain Nash certificate of a game with the given bounds. `coupling` is the
/// row-major (n, n) matrix of `L_ij`, the Lipschitz constant of `F_i` in `x_j`, zero diagonal.
///
/// The certificate is homogeneous: bounds `s` times larger give the same weights, small gain
/// and rate, a margin and `L_w` `s` times larger and steps `s` times smaller. It is computed
/// on the bounds scaled by the power of two that brings the largest to `[1, 2)`, exactly, so
/// that no square or product of them leaves the f64 range, and scaled back.
pub fn small_gain_certificate(
    mu: &[f64],
    coupling: &[f64],
    lipschitz: &Lipschitz,
) -> CoreResult<Certificate> {
    let n = check_inputs(mu, coupling, lipschitz)?;
    if let Some(i) = mu.iter().position(|&m| m <= 0.0) {
        return Ok(refusal(
            vec![1.0; n],
            f64::INFINITY,
            format!(
                "mu[{i}] = {} <= 0: player {i} is not strongly monotone in its own block, \
                 which no block weighting can repair",
                mu[i]
            ),
        ));
    }
    // The ratios L_ij / mu_i do not change with the scale: taken from the bounds as given.
    let small_gain = spectral_radius(mu, coupling);
    let bounds = match lipschitz {
        Lipschitz::Global(l) => std::slice::from_ref(l),
        Lipschitz::Blocks(l) => l.as_slice(),
    };
    // > 0: every Lipschitz bound is.
    let largest = mu
        .iter()
        .chain(coupling)
        .chain(bounds)
        .fold(0.0, |m, x| x.abs().max(m));
    let exponent = binary_exponent(largest);
    let unit = |values: &[f64]| -> Vec<f64> {
        values
            .iter()
            .map(|x| times_power_of_two(*x, -exponent))
            .collect()
    };
    let (mu, coupling) = (unit(mu), unit(coupling));
    let lipschitz = match lipschitz {
        Lipschitz::Global(l) => Lipschitz::Global(times_power_of_two(*l, -exponent)),
        Lipschitz::Blocks(l) => Lipschitz::Blocks(unit(l)),
    };
    let weights = optimise_weights(&mu, &coupling);
    let m = margin(&weights, &mu, &coupling);
    // Not `m <= 0.0` alone: a NaN margin certifies nothing either.
    if m.is_nan() || m <= 0.0 {
        let best = times_power_of_two(m, exponent);
        return Ok(refusal(
            weights,
            small_gain,
            format!(
                "the small-gain condition fails: rho(D_mu^-1 L) = {small_gain:.6} >= 1, so no \
                 block weights make the pseudo-gradient strongly monotone (best margin {best:.3e})"
            ),
        ));
    }
    let l_w = weighted_lipschitz(&weights, &coupling, &lipschitz);
    let step = m / (l_w * l_w);
    let to_scale = |x: f64| times_power_of_two(x, exponent);
    let to_step = |x: f64| times_power_of_two(x, -exponent);
    Ok(Certificate {
        rate: euler_factor(step, m, l_w),
        max_step_euler: to_step(2.0 * step),
        max_step_rk4: to_step(rk4_step_limit(m, l_w)),
        weights,
        margin: to_scale(m),
        lipschitz_weighted: to_scale(l_w),
        small_gain,
        step: to_step(step),
        certified: true,
        reason: String::new(),
    })
}

/// A certificate that certifies nothing, with the weights tried and the reason.
fn refusal(weights: Vec<f64>, small_gain: f64, reason: String) -> Certificate {
    Certificate {
        weights,
        margin: 0.0,
        lipschitz_weighted: f64::NAN,
        small_gain,
        step: 0.0,
        rate: 1.0,
        max_step_euler: 0.0,
        max_step_rk4: 0.0,
        certified: false,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncoupled_players_keep_their_curvature() {
        let c = small_gain_certificate(&[1.0, 2.0], &[0.0; 4], &Lipschitz::Global(2.0)).unwrap();
        assert!(c.certified);
        assert!((c.margin - 1.0).abs() < 1e-6, "{}", c.margin);
        assert!(c.small_gain.abs() < 1e-12);
    }

    #[test]
    fn asymmetric_coupling_needs_weights() {
        // Euclidean: S = [[1, -5.025], [-5.025, 1]] is indefinite; rho = sqrt(10 * 0.05) < 1.
        let coupling = [0.0, 10.0, 0.05, 0.0];
        let c = small_gain_certificate(&[1.0, 1.0], &coupling, &Lipschitz::Blocks(vec![1.0, 1.0]))
            .unwrap();
        assert!(margin(&[1.0, 1.0], &[1.0, 1.0], &coupling) < 0.0);
        assert!(c.certified, "{}", c.reason);
        assert!((c.small_gain - 0.5f64.sqrt()).abs() < 1e-9);
        assert!(c.margin > 0.0 && c.rate < 1.0 && c.max_step_rk4 > 0.0);
        assert!(c.max_step_rk4 <= c.max_step_euler);
    }

    #[test]
    fn one_euclidean_bound_is_weighted_through_the_blocks() {
        // Weights spread by the one-way coupling: the norm change alone would multiply l by
        // sqrt(max w / min w); the block bound does not.
        let coupling = [0.0, 10.0, 0.05, 0.0];
        let c = small_gain_certificate(&[1.0, 1.0], &coupling, &Lipschitz::Global(10.1)).unwrap();
        assert!(c.certified, "{}", c.reason);
        let spread = c.weights.iter().copied().fold(0.0, f64::max)
            / c.weights.iter().copied().fold(f64::INFINITY, f64::min);
        let by_norms = 10.1 * spread.sqrt();
        let by_blocks = block_lipschitz(&c.weights, &coupling, &[10.1, 10.1]);
        assert!((c.lipschitz_weighted - by_norms.min(by_blocks)).abs() < 1e-12);
        assert!(by_blocks < by_norms, "{by_blocks} {by_norms}");
    }

    #[test]
    fn rk4_factor_is_one_at_zero_and_contracts_just_after() {
        assert_eq!(rk4_factor(0.0, 0.5, 2.0), 1.0);
        // 1 - 2hm + O(h^2): below 1 for a small step, above 1 at Euler's limit 2m/L^2.
        assert!(rk4_factor(1e-3, 0.5, 2.0) < 1.0);
        assert!(rk4_factor(2.0 * 0.5 / 4.0, 0.5, 2.0) > 1.0);
        let limit = rk4_step_limit(0.5, 2.0);
        assert!(limit > 0.0 && rk4_factor(0.99 * limit, 0.5, 2.0) < 1.0);
    }

    #[test]
    fn strong_coupling_is_refused() {
        let c = small_gain_certificate(&[1.0, 1.0], &[0.0, 2.0, 1.0, 0.0], &Lipschitz::Global(3.0))
            .unwrap();
        assert!(!c.certified);
        assert!(c.reason.contains("small-gain"), "{}", c.reason);
        assert!((c.small_gain - 2f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn spectral_radius_of_defective_and_periodic_couplings() {
        // A Jordan block (nilpotent) and a swap (eigenvalues +-rho) defeat power iteration.
        assert_eq!(spectral_radius(&[1.0, 1.0], &[0.0, 0.0, 1.0, 0.0]), 0.0);
        let swap = spectral_radius(&[2.0, 1.0], &[0.0, 2.0, 0.5, 0.0]);
        assert!((swap - 0.5f64.sqrt()).abs() < 1e-12, "{swap}");
        let jordan = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.25, 0.0, 0.0];
        let cyclic = spectral_radius(&[1.0, 1.0, 1.0], &jordan);
        assert!((cyclic - 0.25f64.cbrt()).abs() < 1e-9, "{cyclic}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let e = small_gain_certificate(&[1.0], &[1.0], &Lipschitz::Global(1.0)).unwrap_err();
        assert_eq!(e.argument(), Some("L"));
        let e = small_gain_certificate(&[2.0], &[0.0], &Lipschitz::Global(1.0)).unwrap_err();
        assert_eq!(e.argument(), Some("lipschitz"));
        let e = small_gain_certificate(&[f64::NAN], &[0.0], &Lipschitz::Global(1.0)).unwrap_err();
        assert_eq!(e.argument(), Some("mu"));
    }
}
