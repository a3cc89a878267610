//! Leverage scores `tau_i = a_i^T (A^T A)^{-1} a_i` and their square roots.

use thrifty_core::{Choice, CoreResult};

use super::matrix::Rows;
use super::qr::Factor;
use super::sketch::{sketched_leverage_scores, SketchOptions};

/// How leverage scores are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeverageMethod {
    /// Exactly, from a thin QR ([`leverage_scores`]).
    Qr,
    /// Approximately, from a sparse sketch ([`sketched_leverage_scores`]).
    Sketch,
}

impl Choice for LeverageMethod {
    const ARGUMENT: &'static str = "method";
    const ALL: &'static [LeverageMethod] = &[LeverageMethod::Qr, LeverageMethod::Sketch];

    fn name(self) -> &'static str {
        match self {
            LeverageMethod::Qr => "qr",
            LeverageMethod::Sketch => "sketch",
        }
    }
}

/// Leverage scores by `method`; `sketch` is read by [`LeverageMethod::Sketch`] only.
pub fn leverage_scores_by(
    a: &Rows<'_>,
    method: LeverageMethod,
    sketch: &SketchOptions,
) -> CoreResult<Vec<f64>> {
    match method {
        LeverageMethod::Qr => leverage_scores(a),
        LeverageMethod::Sketch => sketched_leverage_scores(a, sketch),
    }
}

/// Exact leverage scores from a thin QR: `tau_i = ||R^{-T} a_i||^2`, in `[0, 1]`, summing to
/// `d`. A rank-deficient `A` is an error naming `A`.
pub fn leverage_scores(a: &Rows<'_>) -> CoreResult<Vec<f64>> {
    let factor = Factor::new(a, None, "A")?;
    // Rounding can push a score a hair past 1; the clamp keeps the documented range.
    Ok(factor
        .quadratic_forms(a)
        .into_iter()
        .map(|t| t.min(1.0))
        .collect())
}

/// Root leverage scores `sqrt(tau_i)` (Woodruff & Yasuda, arXiv 2306.00732): sampling by them
/// needs about `d` rows for an lp subspace embedding with `1 <= p < 2`.
pub fn root_leverage_scores(a: &Rows<'_>) -> CoreResult<Vec<f64>> {
    Ok(leverage_scores(a)?.into_iter().map(f64::sqrt).collect())
}
