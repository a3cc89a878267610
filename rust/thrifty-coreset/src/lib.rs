//! Coresets: which rows of a data set to keep, and with what weight, so that a loss over the
//! weighted subset stays within (1 ± eps) of the loss over all of it.
//!
//! * [`scores`]: leverage, root-leverage, lp Lewis weights, lp and k-means sensitivities,
//!   and the weighted lp regression solve (IRLS) that a regression coreset feeds.
//! * [`sampling`]: exact weighted sampling with and without replacement, and the
//!   without-replacement permutation stream behind RS2.

pub mod sampling;
pub mod scores;
