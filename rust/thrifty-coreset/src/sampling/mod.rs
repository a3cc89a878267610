//! Exact weighted sampling with and without replacement, and the RS2 permutation stream.
//!
//! * With replacement: an alias table ([`alias`]), O(n) to build and O(1) per draw; weights
//!   `1 / (m p_i)` with `p_i = s_i / sum(s)`.
//! * Without replacement: successive sampling by exponential ranks with A-ExpJ jumps
//!   ([`without_replacement`]); Horvitz-Thompson weights `1 / pi_i` by rank conditioning.
//! * [`permutation`]: uniform permutations of `0..n`, the passes of RS2.
//!
//! Every function takes a seed and gives the same output for it whatever the thread count.

pub mod alias;
pub mod index;
pub mod permutation;
mod rng;
pub mod totals;
pub mod without_replacement;

use thrifty_core::{CoreError, CoreResult};

pub use alias::AliasTable;
pub use index::Index;
pub use permutation::permutation;
pub use totals::{totals, Totals};
pub use without_replacement::inclusion_probability;

/// A weighted sample: indices into the scores and the weight of each.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Indices drawn, in draw order (without replacement: in order of rank, which is the
    /// order of successive sampling).
    pub indices: Vec<i64>,
    /// With replacement `1 / (m p_i)`; without, `1 / pi_i`. Either way
    /// `sum over the sample of weight_i f_i` is unbiased for `sum_i f_i`.
    pub weights: Vec<f64>,
    /// Without replacement: the `(m + 1)`-th smallest rank `tau`, so that
    /// `pi_i = 1 - exp(-s_i tau)` for any `i` (infinity when every positive score is drawn).
    /// With replacement: `None`.
    pub threshold: Option<f64>,
}

/// Draw `m` indices with probability proportional to `scores`.
///
/// Errors name `scores` (empty, non-finite, negative, all zero) or `m` (larger than the
/// number of positive scores without replacement).
pub fn sample(scores: &[f64], m: usize, replace: bool, seed: u64) -> CoreResult<Sample> {
    let totals = totals(scores)?;
    if replace {
        sample_with_replacement(scores, totals, m, seed)
    } else {
        sample_without_replacement(scores, totals, m, seed)
    }
}

fn sample_with_replacement(
    scores: &[f64],
    totals: Totals,
    m: usize,
    seed: u64,
) -> CoreResult<Sample> {
    let indices: Vec<u64> = if m == 0 {
        Vec::new()
    } else if (scores.len() as u64) < u32::LIMIT {
        AliasTable::<u32>::new(scores, totals)?.sample(m, seed)
    } else {
        AliasTable::<u64>::new(scores, totals)?.sample(m, seed)
    };
    let scale = totals.total / m as f64;
    let weights = indices
        .iter()
        .map(|&i| scale / scores[i as usize])
        .collect();
    Ok(Sample {
        indices: indices.into_iter().map(|i| i as i64).collect(),
        weights,
        threshold: None,
    })
}

fn sample_without_replacement(
    scores: &[f64],
    totals: Totals,
    m: usize,
    seed: u64,
) -> CoreResult<Sample> {
    if m as u64 > totals.positive {
        return Err(CoreError::invalid(
            "m",
            format!(
                "must be at most the number of positive scores ({}) without replacement, got {m}",
                totals.positive
            ),
        ));
    }
    let (indices, threshold) = without_replacement::smallest_ranks(scores, m, seed);
    let weights = indices
        .iter()
        .map(|&i| 1.0 / inclusion_probability(scores[i as usize], threshold))
        .collect();
    Ok(Sample {
        indices: indices.into_iter().map(|i| i as i64).collect(),
        weights,
        threshold: Some(threshold),
    })
}
