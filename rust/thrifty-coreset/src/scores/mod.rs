//! Importance scores for coresets, and the weighted lp regression solve.
//!
//! Every score here takes a row-major `n x d` matrix as a slice. All of them are invariant
//! to scaling the columns of `A`, so [`matrix::Rows`] normalises columns once; that also makes
//! the rank test meaningful for badly scaled columns.

mod binary_scale;
mod chunks;
pub mod kmeans;
pub mod leverage;
pub mod lewis;
pub mod matrix;
pub mod qr;
pub mod regression;
pub mod sensitivity;
pub mod sketch;

pub use kmeans::{kmeans_sensitivities, KmeansSensitivities};
pub use leverage::{leverage_scores, leverage_scores_by, root_leverage_scores, LeverageMethod};
pub use lewis::{lewis_weights, LewisOptions, LewisWeights};
pub use matrix::Rows;
pub use regression::{lp_regression, RegressionFit, RegressionOptions, MAX_P};
pub use sensitivity::lp_sensitivities;
pub use sketch::{sketched_leverage_scores, SketchOptions};
