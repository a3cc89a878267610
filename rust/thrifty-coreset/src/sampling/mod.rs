//! Exact weighted sampling with and without replacement, and the RS2 permutation stream.
//!
//! * With replacement: weights `1 / (m p_i)` with `p_i = s_i / sum(s)`. One-shot draws
//!   ([`sample`]) use inverse-CDF sampling ([`inverse_cdf`]) on the partial sums of the
//!   checking pass: O(n) in parallel, then O(log n + 64) per draw, O(n / 64) memory. Repeated
//!   draws from the same scores use an alias table ([`alias`], [`Table`]), O(n) and
//!   sequential to build, O(1) per draw; [`sample`] uses it too when `m` is large against
//!   `n` (see [`ALIAS_DIVISOR`]).
//! * Without replacement: successive sampling by exponential ranks with A-ExpJ jumps
//!   ([`without_replacement`]); Horvitz-Thompson weights `1 / pi_i` by rank conditioning.
//! * [`permutation`]: uniform permutations of `0..n`, the passes of RS2.
//!
//! Every function takes a seed and gives the same output for it whatever the thread count.

pub mod alias;
pub mod index;
pub mod inverse_cdf;
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
/// Errors name `scores` (empty, non-finite, negative, all zero, or without replacement a
/// positive score below [`totals::TINY`]) or `m` (larger than the number of positive scores
/// without replacement, or too many draws for memory).
pub fn sample(scores: &[f64], m: usize, replace: bool, seed: u64) -> CoreResult<Sample> {
    if replace {
        sample_with_replacement(scores, m, seed)
    } else {
        sample_without_replacement(scores, totals::rankable_totals(scores)?, m, seed)
    }
}

/// With replacement, [`sample`] builds an alias table when `m >= n / ALIAS_DIVISOR`, and
/// draws by inverse CDF otherwise. Both need the checking pass over the scores; on top of it
/// an inverse-CDF draw costs a share of a sort and a forward rescan of part of a block of 64
/// scores (about 100 ns), an alias draw two lookups (about 25 ns), and the alias table a
/// sequential O(n) build (about 25 ns per score). Measured on 2 cores at n = 10^5, 10^6 and
/// 10^7, the two cross at about `m = n / 4`.
pub const ALIAS_DIVISOR: usize = 4;

/// An empty vector with room for `len` items, or an error naming `argument` when the memory
/// is not there: an allocation failure would abort the process instead of raising.
pub(crate) fn reserve<T>(len: usize, argument: &'static str) -> CoreResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        CoreError::invalid(
            argument,
            format!(
                "needs {len} items of {} bytes, more memory than can be allocated",
                std::mem::size_of::<T>()
            ),
        )
    })?;
    Ok(v)
}

/// An alias table in the narrowest index type that fits, built once and drawn from many
/// times (an importance sampler draws every epoch from the same scores).
pub enum Table {
    Narrow(AliasTable<u32>),
    Wide(AliasTable<u64>),
}

impl Table {
    /// Check `scores` and build their table.
    pub fn new(scores: &[f64]) -> CoreResult<Self> {
        let totals = totals(scores)?;
        Self::with_totals(scores, totals)
    }

    fn with_totals(scores: &[f64], totals: Totals) -> CoreResult<Self> {
        Ok(if (scores.len() as u64) < u32::LIMIT {
            Self::Narrow(AliasTable::new(scores, totals)?)
        } else {
            Self::Wide(AliasTable::new(scores, totals)?)
        })
    }

    /// `m` independent draws for `seed`, from the same distribution as [`sample`] with
    /// replacement (the same draws when `sample` takes the alias path, `m >= n / ALIAS_DIVISOR`).
    pub fn draw(&self, m: usize, seed: u64) -> CoreResult<Vec<u64>> {
        match self {
            Self::Narrow(table) => table.sample(m, seed),
            Self::Wide(table) => table.sample(m, seed),
        }
    }
}

fn sample_with_replacement(scores: &[f64], m: usize, seed: u64) -> CoreResult<Sample> {
    let mut out_indices: Vec<i64> = reserve(m, "m")?;
    let mut weights: Vec<f64> = reserve(m, "m")?;
    let (totals, indices) = if m == 0 {
        (totals(scores)?, Vec::new())
    } else if m.saturating_mul(ALIAS_DIVISOR) >= scores.len() {
        let totals = totals(scores)?;
        (totals, Table::with_totals(scores, totals)?.draw(m, seed)?)
    } else {
        let (totals, partials) = totals::partials(scores)?;
        (totals, inverse_cdf::sample(scores, &partials, m, seed)?)
    };
    // total / s_i first: it is at least 1, where total / m underflowed to 0 for a subnormal
    // total (a weight of 0 for every draw from scores [5e-324] with m = 2).
    let m_float = m as f64;
    weights.extend(
        indices
            .iter()
            .map(|&i| totals.total / scores[i as usize] / m_float),
    );
    out_indices.extend(indices.into_iter().map(|i| i as i64));
    Ok(Sample {
        indices: out_indices,
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
