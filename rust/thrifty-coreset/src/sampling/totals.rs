//! Checks of a score vector, the totals every sampler needs from it, and (for inverse-CDF
//! draws) the partial sums that locate a draw without an n-long prefix-sum array.

use thrifty_core::{CoreError, CoreResult};

/// Scores are checked and summed in chunks of this many, so that the total (and hence every
/// weight) is bit-identical whatever the thread count.
pub(crate) const CHUNK: usize = 1 << 16;

/// A chunk is summed as blocks of this many scores, each summed left to right from 0.0, and
/// the chunk sum is the left-to-right sum of its block sums. Inverse-CDF draws keep one
/// partial sum per block (n / 8 bytes) and rescan at most one block per draw.
pub(crate) const BLOCK: usize = 64;

/// Blocks summed side by side: eight independent addition chains instead of one long one,
/// with the same result, since each block is still summed in its own order.
const LANES: usize = 8;

/// Positive scores below this (2^-1018, about 3.6e-307) are tiny: the exponential rank
/// `E / s` of sampling without replacement (with `E` at most 53 ln 2, the uniform behind it
/// being at least 2^-53) can overflow float64 for them.
pub const TINY: f64 = f64::MIN_POSITIVE * 16.0;

/// What the samplers need to know about a valid score vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Totals {
    /// The sum of the scores, finite and positive.
    pub total: f64,
    /// How many scores are positive; only those can be drawn.
    pub positive: u64,
}

/// The partial sums of a valid score vector at chunk and block boundaries.
pub(crate) struct Partials {
    /// `offsets[c]`: the sum of the chunks before chunk `c`, left to right; the last entry
    /// (one past the last chunk) is the total.
    pub offsets: Vec<f64>,
    /// `blocks[c][b]`: the sum of the blocks of chunk `c` before block `b`, from 0.0.
    pub blocks: Vec<Vec<f64>>,
}

#[derive(Clone, Copy)]
enum Bad {
    NonFinite(usize, f64),
    Negative(usize, f64),
    Tiny(usize, f64),
}

/// Check that `scores` are finite, non-negative and not all zero; return their totals.
pub fn totals(scores: &[f64]) -> CoreResult<Totals> {
    scan::<false>(scores, false).map(|(totals, _)| totals)
}

/// [`totals`], also checking that no positive score is [`TINY`]: what exponential ranks need.
pub(crate) fn rankable_totals(scores: &[f64]) -> CoreResult<Totals> {
    scan::<true>(scores, false).map(|(totals, _)| totals)
}

/// The totals and the block partial sums, in one pass over `scores`.
pub(crate) fn partials(scores: &[f64]) -> CoreResult<(Totals, Partials)> {
    scan::<false>(scores, true)
}

/// Count the positive scores of a chunk starting at `start`, or find its first bad one (a
/// tiny one counting as bad when `RANKABLE`).
fn check<const RANKABLE: bool>(start: usize, part: &[f64]) -> Result<u64, Bad> {
    // Branch-free over the chunk (it vectorises); the bad score is looked for only if any.
    // The tiny test is compiled in only where it is needed: it slows this loop by a third.
    let mut bad = false;
    let mut positive = 0u64;
    for &s in part {
        bad |= if RANKABLE {
            (s != 0.0) & !(TINY..=f64::MAX).contains(&s)
        } else {
            !(0.0..=f64::MAX).contains(&s)
        };
        positive += u64::from(s > 0.0);
    }
    if bad {
        for (offset, &s) in part.iter().enumerate() {
            if !s.is_finite() {
                return Err(Bad::NonFinite(start + offset, s));
            }
            if s < 0.0 {
                return Err(Bad::Negative(start + offset, s));
            }
            if RANKABLE && s > 0.0 && s < TINY {
                return Err(Bad::Tiny(start + offset, s));
            }
        }
    }
    Ok(positive)
}

/// Call `each` with the sum of every block of `part`, in order.
fn block_sums(part: &[f64], mut each: impl FnMut(f64)) {
    let mut groups = part.chunks_exact(BLOCK * LANES);
    for group in groups.by_ref() {
        let mut sums = [0.0f64; LANES];
        for j in 0..BLOCK {
            for (lane, sum) in sums.iter_mut().enumerate() {
                *sum += group[lane * BLOCK + j];
            }
        }
        sums.into_iter().for_each(&mut each);
    }
    for block in groups.remainder().chunks(BLOCK) {
        each(block.iter().fold(0.0, |sum, &s| sum + s));
    }
}

fn scan<const RANKABLE: bool>(scores: &[f64], keep_blocks: bool) -> CoreResult<(Totals, Partials)> {
    if scores.is_empty() {
        return Err(CoreError::shape(
            "scores",
            "must not be empty, got shape (0,)",
        ));
    }
    let chunks = scores.len().div_ceil(CHUNK);
    let partial = thrifty_core::parallel::map_indices(chunks, |c| {
        let start = c * CHUNK;
        let part = &scores[start..scores.len().min(start + CHUNK)];
        let positive = check::<RANKABLE>(start, part)?;
        let mut before = if keep_blocks {
            Vec::with_capacity(part.len().div_ceil(BLOCK))
        } else {
            Vec::new()
        };
        let mut sum = 0.0;
        block_sums(part, |block| {
            if keep_blocks {
                before.push(sum);
            }
            sum += block;
        });
        Ok((sum, positive, before))
    });
    let mut total = 0.0;
    let mut positive = 0u64;
    let mut offsets = Vec::with_capacity(if keep_blocks { chunks + 1 } else { 0 });
    let mut blocks = Vec::with_capacity(if keep_blocks { chunks } else { 0 });
    for part in partial {
        match part {
            Ok((sum, count, before)) => {
                if keep_blocks {
                    offsets.push(total);
                    blocks.push(before);
                }
                total += sum;
                positive += count;
            }
            Err(Bad::NonFinite(i, s)) => {
                return Err(CoreError::non_finite(
                    "scores",
                    format!("must be finite, got {s} at index {i}"),
                ))
            }
            Err(Bad::Negative(i, s)) => {
                return Err(CoreError::invalid(
                    "scores",
                    format!("must be non-negative, got {s} at index {i}"),
                ))
            }
            Err(Bad::Tiny(i, s)) => {
                return Err(CoreError::invalid(
                    "scores",
                    format!(
                        "must be 0 or at least {TINY:e} (2^-1018) to sample without replacement, \
                         got {s:e} at index {i}: the exponential ranks of smaller scores can \
                         overflow float64 (rescale the scores, or set the tiny ones to 0)"
                    ),
                ))
            }
        }
    }
    if positive == 0 {
        return Err(CoreError::invalid(
            "scores",
            "must have at least one positive score, got all zeros",
        ));
    }
    if !total.is_finite() {
        return Err(CoreError::non_finite(
            "scores",
            "must have a finite sum, got one that overflows float64 (rescale the scores)",
        ));
    }
    if keep_blocks {
        offsets.push(total);
    }
    Ok((Totals { total, positive }, Partials { offsets, blocks }))
}
