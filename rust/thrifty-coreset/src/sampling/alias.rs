//! Walker's alias method with Vose's construction: O(n) to build, O(1) per draw, exact up to
//! the rounding of f64 thresholds (Vose, IEEE TSE 1991).

use thrifty_core::{CoreError, CoreResult};

use super::index::Index;
use super::rng::{below, stream, unit, Purpose};
use super::totals::Totals;

/// Draws are made in chunks of this many, each from its own stream, so that the output does
/// not depend on the number of threads.
pub const DRAW_CHUNK: usize = 1 << 14;

/// An alias table over the positive scores.
///
/// Column `k` keeps itself with probability `threshold[k]` and otherwise gives `alias[k]`.
/// Zero scores get no column at all: a zero threshold could otherwise come back as 1.0 from
/// the leftovers of Vose's loop and make a zero score drawable.
pub struct AliasTable<I: Index> {
    threshold: Vec<f64>,
    alias: Vec<I>,
    /// Column -> index into the scores, when some scores are zero.
    support: Option<Vec<I>>,
}

impl<I: Index> AliasTable<I> {
    /// Build the table of `scores` (already checked, with their `totals`).
    pub fn new(scores: &[f64], totals: Totals) -> CoreResult<Self> {
        if scores.len() as u64 >= I::LIMIT {
            return Err(CoreError::invalid(
                "scores",
                format!("is too long for this index type: {} scores", scores.len()),
            ));
        }
        let columns = totals.positive as usize;
        let support = (columns < scores.len()).then(|| {
            scores
                .iter()
                .enumerate()
                .filter(|(_, &s)| s > 0.0)
                .map(|(i, _)| I::from_u64(i as u64))
                .collect::<Vec<I>>()
        });
        let scale = columns as f64 / totals.total;
        let mut threshold: Vec<f64> = match &support {
            Some(support) => support
                .iter()
                .map(|&i| scores[i.to_u64() as usize] * scale)
                .collect(),
            None => scores.iter().map(|&s| s * scale).collect(),
        };
        let mut alias: Vec<I> = (0..columns as u64).map(I::from_u64).collect();
        let mut small: Vec<I> = Vec::new();
        let mut large: Vec<I> = Vec::new();
        for (k, &t) in threshold.iter().enumerate() {
            if t < 1.0 {
                small.push(I::from_u64(k as u64));
            } else {
                large.push(I::from_u64(k as u64));
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            large.pop();
            let (s_k, l_k) = (s.to_u64() as usize, l.to_u64() as usize);
            alias[s_k] = l;
            // Vose's order of operations: add before subtracting, so that the excess moved
            // to the large column does not lose the small column's bits.
            threshold[l_k] = (threshold[l_k] + threshold[s_k]) - 1.0;
            if threshold[l_k] < 1.0 {
                small.push(l);
            } else {
                large.push(l);
            }
        }
        // What is left is 1 up to rounding: keep those columns always.
        for k in small.into_iter().chain(large) {
            threshold[k.to_u64() as usize] = 1.0;
        }
        Ok(Self {
            threshold,
            alias,
            support,
        })
    }

    /// The number of columns (positive scores).
    pub fn columns(&self) -> usize {
        self.threshold.len()
    }

    /// One draw: the index into the scores.
    #[inline]
    fn draw(&self, rng: &mut rand_chacha::ChaCha8Rng) -> u64 {
        let column = below(rng, self.threshold.len() as u64) as usize;
        let k = if unit(rng) < self.threshold[column] {
            column
        } else {
            self.alias[column].to_u64() as usize
        };
        match &self.support {
            Some(support) => support[k].to_u64(),
            None => k as u64,
        }
    }

    /// `m` independent draws, seeded by `seed`, in draw order.
    pub fn sample(&self, m: usize, seed: u64) -> Vec<u64> {
        let chunks = m.div_ceil(DRAW_CHUNK);
        let parts = thrifty_core::parallel::map_indices(chunks, |c| {
            let mut rng = stream(seed, 0, Purpose::WithReplacement, c as u64);
            let count = DRAW_CHUNK.min(m - c * DRAW_CHUNK);
            (0..count)
                .map(|_| self.draw(&mut rng))
                .collect::<Vec<u64>>()
        });
        parts.concat()
    }
}
