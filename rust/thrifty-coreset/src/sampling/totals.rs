//! Checks of a score vector, and the totals every sampler needs from it.

use thrifty_core::{CoreError, CoreResult};

/// Scores are checked and summed in chunks of this many, so that the total (and hence every
/// weight) is bit-identical whatever the thread count.
const CHUNK: usize = 1 << 16;

/// What the samplers need to know about a valid score vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Totals {
    /// The sum of the scores, finite and positive.
    pub total: f64,
    /// How many scores are positive; only those can be drawn.
    pub positive: u64,
}

#[derive(Clone, Copy)]
enum Bad {
    NonFinite(usize, f64),
    Negative(usize, f64),
}

/// Check that `scores` are finite, non-negative and not all zero; return their totals.
pub fn totals(scores: &[f64]) -> CoreResult<Totals> {
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
        let mut sum = 0.0;
        let mut positive = 0u64;
        for (offset, &s) in part.iter().enumerate() {
            if !s.is_finite() {
                return Err(Bad::NonFinite(start + offset, s));
            }
            if s < 0.0 {
                return Err(Bad::Negative(start + offset, s));
            }
            sum += s;
            positive += u64::from(s > 0.0);
        }
        Ok((sum, positive))
    });
    let mut total = 0.0;
    let mut positive = 0u64;
    for part in partial {
        match part {
            Ok((sum, count)) => {
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
    Ok(Totals { total, positive })
}
