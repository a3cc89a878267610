//! L-GreCo (Markov et al., arXiv 2210.17357): one compression level per layer that minimises
//! the total compressed size subject to a budget on the summed compression error, a
//! multiple-choice knapsack solved exactly by dynamic programming over a discretised budget.

use thrifty_core::{CoreError, CoreResult};

/// How the per-layer errors become the integer weights of the knapsack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Errors rounded up to multiples of `budget / buckets`: every answer is truly feasible,
    /// and optimal for the rounded problem (so its size is at most the optimum of any
    /// budget at most `budget - layers * budget / buckets`).
    Buckets(usize),
    /// Errors are integers and are used as they are: the answer is exactly optimal.
    Integer,
}

/// The DP table may hold at most this many cells (layers x budget units), about 1 GiB of
/// choices; past it the caller must use fewer buckets.
const MAX_CELLS: usize = 1 << 28;

/// Check that a (layers, candidates) table holds finite values >= 0.
fn check_table(table: &[f64], argument: &'static str) -> CoreResult<()> {
    for (index, &value) in table.iter().enumerate() {
        if !value.is_finite() {
            return Err(CoreError::non_finite(
                argument,
                format!("must be finite, got {value} at flat index {index}"),
            ));
        }
        if value < 0.0 {
            return Err(CoreError::invalid(
                argument,
                format!("must be >= 0, got {value} at flat index {index}"),
            ));
        }
    }
    Ok(())
}

/// The integer knapsack weight of every cell and the capacity, or `None` for a cell that no
/// budget admits (an error above the whole budget).
fn integer_weights(
    errors: &[f64],
    budget: f64,
    rounding: Rounding,
) -> CoreResult<(Vec<Option<usize>>, usize)> {
    match rounding {
        Rounding::Integer => {
            if let Some((index, value)) = errors
                .iter()
                .enumerate()
                .find(|(_, e)| e.fract() != 0.0 || **e > 9.007_199_254_740_992e15)
            {
                return Err(CoreError::invalid(
                    "errors",
                    format!(
                        "must hold integers (below 2^53) for the exact integer DP, got {value} \
                         at flat index {index}; pass buckets to discretise float errors"
                    ),
                ));
            }
            let capacity = budget.floor();
            let weights = errors
                .iter()
                .map(|&e| (e <= capacity).then_some(e as usize))
                .collect();
            // Capacity beyond the largest total error changes nothing and would only cost memory.
            Ok((weights, capacity.min(usize::MAX as f64) as usize))
        }
        Rounding::Buckets(buckets) => {
            if buckets == 0 {
                return Err(CoreError::invalid("buckets", "must be >= 1, got 0"));
            }
            let unit = budget / buckets as f64;
            let weights = errors
                .iter()
                .map(|&e| {
                    if e == 0.0 {
                        return Some(0);
                    }
                    if budget == 0.0 || e > budget {
                        return None;
                    }
                    let mut units = (e / unit).ceil();
                    // The division may round down; a unit count whose product falls short of
                    // the error would let an infeasible choice through.
                    while units * unit < e {
                        // Past 2^53 adding 1 gives the same float back: step to the next one
                        // (every float that large is an integer).
                        let up = units + 1.0;
                        units = if up > units {
                            up
                        } else {
                            f64::from_bits(units.to_bits() + 1)
                        };
                    }
                    (units <= buckets as f64).then_some(units as usize)
                })
                .collect();
            Ok((weights, buckets))
        }
    }
}

/// The level per layer that minimises the summed size with summed error <= `budget`.
///
/// `errors` and `sizes` are row-major (layers, candidates) tables. Among choices of equal
/// total size the one with the smaller total error wins, then the lexicographically smallest
/// level vector (lower level indices in earlier layers).
pub fn lgreco(
    errors: &[f64],
    sizes: &[f64],
    layers: usize,
    candidates: usize,
    budget: f64,
    rounding: Rounding,
) -> CoreResult<Vec<i64>> {
    let cells = layers
        .checked_mul(candidates)
        .ok_or_else(|| CoreError::shape("errors", "layers x candidates overflows"))?;
    if candidates == 0 && layers > 0 {
        return Err(CoreError::shape(
            "errors",
            format!("must have at least one candidate level, got shape ({layers}, 0)"),
        ));
    }
    if errors.len() != cells {
        return Err(CoreError::shape(
            "errors",
            format!(
                "must hold {layers} x {candidates} values, got {}",
                errors.len()
            ),
        ));
    }
    if sizes.len() != cells {
        return Err(CoreError::shape(
            "sizes",
            format!(
                "must have the shape of errors ({layers}, {candidates}), got {} values",
                sizes.len()
            ),
        ));
    }
    check_table(errors, "errors")?;
    check_table(sizes, "sizes")?;
    if !budget.is_finite() {
        return Err(CoreError::non_finite(
            "budget",
            format!("must be finite, got {budget}"),
        ));
    }
    if budget < 0.0 {
        return Err(CoreError::invalid(
            "budget",
            format!("must be >= 0, got {budget}"),
        ));
    }
    if layers == 0 {
        return Ok(Vec::new());
    }
    let smallest_total: f64 = errors
        .chunks_exact(candidates)
        .map(|row| row.iter().copied().fold(f64::INFINITY, f64::min))
        .sum();
    if smallest_total > budget {
        return Err(CoreError::invalid(
            "budget",
            format!(
                "is infeasible: {budget} is below {smallest_total}, the summed error of the \
                 least-error level of every layer"
            ),
        ));
    }
    let (weights, capacity) = integer_weights(errors, budget, rounding)?;
    // The largest usable capacity is the sum of each layer's largest admissible weight.
    let reachable: usize = weights
        .chunks_exact(candidates)
        .map(|row| row.iter().flatten().copied().max().unwrap_or(0))
        .fold(0usize, usize::saturating_add);
    let capacity = capacity.min(reachable);
    // Budget units 0..=capacity; the capacity can be usize::MAX itself (a budget past every
    // integer and per-layer maxima whose sum saturated), so the width may not fit a usize.
    let width = capacity
        .checked_add(1)
        .filter(|width| layers.saturating_mul(*width) <= MAX_CELLS);
    let Some(width) = width else {
        return Err(CoreError::invalid(
            "budget",
            format!(
                "needs a DP table of {layers} x {} cells, above the limit of {MAX_CELLS}; \
                 pass fewer buckets (integer errors: buckets also discretises them)",
                capacity as u128 + 1
            ),
        ));
    };
    solve(errors, sizes, &weights, layers, candidates, width).ok_or_else(|| {
        CoreError::invalid(
            "budget",
            format!(
                "{budget} is feasible, but not once errors are rounded up to multiples of \
                 budget / buckets; use more buckets"
            ),
        )
    })
}

/// Suffix DP: `best[l][b]` is the lexicographically least (total size, total error) of layers
/// `l..` within `b` units; solving from the last layer lets the forward reconstruction take
/// the lowest level index at each layer among ties.
fn solve(
    errors: &[f64],
    sizes: &[f64],
    weights: &[Option<usize>],
    layers: usize,
    candidates: usize,
    width: usize,
) -> Option<Vec<i64>> {
    const NONE: u32 = u32::MAX;
    let mut next: Vec<(f64, f64)> = vec![(0.0, 0.0); width];
    let mut current: Vec<(f64, f64)> = vec![(f64::INFINITY, f64::INFINITY); width];
    let mut choice = vec![NONE; layers * width];
    for layer in (0..layers).rev() {
        let row = layer * candidates;
        for (units, slot) in current.iter_mut().enumerate() {
            let mut best = (f64::INFINITY, f64::INFINITY);
            let mut chosen = NONE;
            for level in 0..candidates {
                let Some(weight) = weights[row + level] else {
                    continue;
                };
                if weight > units {
                    continue;
                }
                let (size, error) = next[units - weight];
                if size.is_infinite() {
                    continue;
                }
                let total = (size + sizes[row + level], error + errors[row + level]);
                if total.0 < best.0 || (total.0 == best.0 && total.1 < best.1) {
                    best = total;
                    chosen = level as u32;
                }
            }
            *slot = best;
            choice[layer * width + units] = chosen;
        }
        std::mem::swap(&mut next, &mut current);
    }
    let mut units = width - 1;
    let mut levels = Vec::with_capacity(layers);
    for layer in 0..layers {
        let level = choice[layer * width + units];
        if level == NONE {
            return None;
        }
        levels.push(i64::from(level));
        units -= weights[layer * candidates + level as usize]?;
    }
    Some(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_smallest_size_within_budget() {
        // Two layers, levels: lossless-big, lossy-small.
        let errors = [0.0, 3.0, 0.0, 2.0];
        let sizes = [10.0, 1.0, 10.0, 1.0];
        let pick = |budget| lgreco(&errors, &sizes, 2, 2, budget, Rounding::Integer).unwrap();
        assert_eq!(pick(5.0), vec![1, 1]);
        // Equal sizes: the smaller total error wins.
        assert_eq!(pick(3.0), vec![0, 1]);
        assert_eq!(pick(2.0), vec![0, 1]);
        assert_eq!(pick(1.0), vec![0, 0]);
    }

    #[test]
    fn ties_prefer_less_error_then_lower_level() {
        let errors = [1.0, 0.0, 2.0];
        let sizes = [1.0, 1.0, 1.0];
        let got = lgreco(&errors, &sizes, 1, 3, 2.0, Rounding::Integer).unwrap();
        assert_eq!(got, vec![1]);
        let errors = [1.0, 1.0];
        let got = lgreco(&errors, &[1.0, 1.0], 1, 2, 2.0, Rounding::Integer).unwrap();
        assert_eq!(got, vec![0]);
    }

    #[test]
    fn infeasible_budget_names_budget() {
        let err = lgreco(&[2.0, 3.0], &[1.0, 1.0], 1, 2, 1.0, Rounding::Buckets(10)).unwrap_err();
        assert_eq!(err.argument(), Some("budget"));
    }

    #[test]
    fn bad_tables_are_named() {
        let nan = lgreco(&[f64::NAN], &[1.0], 1, 1, 1.0, Rounding::Buckets(4)).unwrap_err();
        assert_eq!(nan.argument(), Some("errors"));
        let negative = lgreco(&[0.0], &[-1.0], 1, 1, 1.0, Rounding::Buckets(4)).unwrap_err();
        assert_eq!(negative.argument(), Some("sizes"));
        let fraction = lgreco(&[0.5], &[1.0], 1, 1, 1.0, Rounding::Integer).unwrap_err();
        assert_eq!(fraction.argument(), Some("errors"));
        let shape = lgreco(&[0.0, 1.0], &[1.0], 1, 2, 1.0, Rounding::Integer).unwrap_err();
        assert_eq!(shape.argument(), Some("sizes"));
    }

    #[test]
    fn rounded_choices_stay_within_budget() {
        // 0.34 rounds up to 0.4 with 10 buckets of 0.1: three layers at 0.34 would be 1.02
        // > 1, and the rounded problem keeps that choice out.
        let errors = [0.34, 0.0, 0.34, 0.0, 0.34, 0.0];
        let sizes = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0];
        let got = lgreco(&errors, &sizes, 3, 2, 1.0, Rounding::Buckets(10)).unwrap();
        assert_eq!(got, vec![0, 0, 1]);
    }
}
