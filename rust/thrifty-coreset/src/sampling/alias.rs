//! Walker's alias method with Vose's construction: O(n) to build, O(1) per draw, exact up to
//! the rounding of f64 thresholds (Vose, IEEE TSE 1991).

use rayon::prelude::*;
use thrifty_core::{CoreError, CoreResult};

use super::index::Index;
use super::rng::{below, stream, unit, Purpose};
use super::totals::Totals;

/// Draws are made in chunks of this many, each from its own stream, so that the output does
/// not depend on the number of threads.
pub const DRAW_CHUNK: usize = 1 << 14;

/// Vose's pairing of light columns (`t < 1`) with heavy ones, done by two pointers that
/// sweep the array in index order instead of through two work stacks (Hübschle-Schneider
/// and Sanders, arXiv 1903.00227): no extra memory and sequential access, which makes the
/// O(n) build several times faster on large tables.
///
/// On entry `threshold` holds the scaled scores (mean 1); on exit, the keep probabilities.
fn sweep<I: Index>(threshold: &mut [f64], alias: &mut [I]) {
    let n = threshold.len();
    // A heavy column that has become light is stored negated until the end, so that the
    // light pointer (which looks for non-negative values below 1) does not pair it again.
    let is_light = |t: f64| !t.is_sign_negative() && t < 1.0;
    let next_light = |t: &[f64], from: usize| (from..n).find(|&k| is_light(t[k])).unwrap_or(n);
    let next_heavy = |t: &[f64], from: usize| (from..n).find(|&k| t[k] >= 1.0).unwrap_or(n);
    let mut light = next_light(threshold, 0);
    let mut heavy = next_heavy(threshold, 0);
    if heavy < n {
        // The mass column `heavy` still holds: the 1 it keeps plus what it can give.
        let mut residual = threshold[heavy];
        loop {
            if residual >= 1.0 {
                if light >= n {
                    break;
                }
                alias[light] = I::from_u64(heavy as u64);
                // Vose's order of operations: add before subtracting, so that the excess
                // left to the heavy column does not lose the light column's bits.
                residual = (residual + threshold[light]) - 1.0;
                light = next_light(threshold, light + 1);
            } else {
                // The heavy column has become light: it keeps `residual` and takes the rest
                // from the next heavy column, whose scaled score is still untouched.
                let following = next_heavy(threshold, heavy + 1);
                if following >= n {
                    break;
                }
                threshold[heavy] = -residual;
                alias[heavy] = I::from_u64(following as u64);
                residual = (threshold[following] + residual) - 1.0;
                heavy = following;
            }
        }
        // The columns still unpaired hold 1 each up to rounding (the masses sum to n): the
        // current heavy one and the untouched heavy ones keep themselves always.
        threshold[heavy] = 1.0;
        for t in &mut threshold[heavy + 1..] {
            if *t >= 1.0 {
                *t = 1.0;
            }
        }
    }
    // Light columns left over by rounding keep themselves too.
    for k in light..n {
        if is_light(threshold[k]) {
            threshold[k] = 1.0;
            alias[k] = I::from_u64(k as u64);
        }
    }
    for t in threshold.iter_mut() {
        if t.is_sign_negative() {
            *t = -*t;
        }
    }
}

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
        // Masses of mean 1. `columns / total` overflows when the total is subnormal (below
        // about 2.2e-308 times the column count); dividing each score by the total first
        // stays exact to rounding there, at the price of a division per score.
        let scale = columns as f64 / totals.total;
        let mass = |s: f64| {
            if scale.is_finite() {
                s * scale
            } else {
                s / totals.total * columns as f64
            }
        };
        let scaled = |k: usize| match &support {
            Some(support) => mass(scores[support[k].to_u64() as usize]),
            None => mass(scores[k]),
        };
        // Filled in parallel where the pool is usable (not in a forked child).
        let mut threshold: Vec<f64> = if thrifty_core::parallel::enabled() {
            (0..columns).into_par_iter().map(scaled).collect()
        } else {
            (0..columns).map(scaled).collect()
        };
        let mut alias: Vec<I> = vec![I::from_u64(0); columns];
        sweep(&mut threshold, &mut alias);
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

    /// The probability with which a draw gives each index of the scores, as the table
    /// stands: `(threshold[k] + sum over j aliased to k of (1 - threshold[j])) / columns`.
    pub fn probabilities(&self, n: usize) -> Vec<f64> {
        let columns = self.columns() as f64;
        let mut p = vec![0.0; n];
        let index = |k: usize| match &self.support {
            Some(support) => support[k].to_u64() as usize,
            None => k,
        };
        for (k, (&t, &a)) in self.threshold.iter().zip(&self.alias).enumerate() {
            p[index(k)] += t / columns;
            p[index(a.to_u64() as usize)] += (1.0 - t) / columns;
        }
        p
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

    /// `m` independent draws, seeded by `seed`, in draw order. An error names `m` when the
    /// draws do not fit in memory.
    pub fn sample(&self, m: usize, seed: u64) -> CoreResult<Vec<u64>> {
        // Reserved before anything is drawn, and filled in place: collecting the chunks first
        // made a huge m allocate (and abort the process) before this check could refuse it.
        let mut drawn = super::reserve(m, "m")?;
        drawn.resize(m, 0);
        let fill = |(c, part): (usize, &mut [u64])| {
            let mut rng = stream(seed, 0, Purpose::WithReplacement, c as u64);
            for slot in part {
                *slot = self.draw(&mut rng);
            }
        };
        if thrifty_core::parallel::enabled() && m > DRAW_CHUNK {
            drawn.par_chunks_mut(DRAW_CHUNK).enumerate().for_each(fill);
        } else {
            drawn.chunks_mut(DRAW_CHUNK).enumerate().for_each(fill);
        }
        Ok(drawn)
    }
}
