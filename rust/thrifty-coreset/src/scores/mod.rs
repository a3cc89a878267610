//! Importance scores for coresets, and the weighted lp regression solve.
