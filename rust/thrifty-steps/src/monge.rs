//! The Monge shortcut: an exact `O(N log N)` DP layer for matrices with the Monge property.
//!
//! A cost matrix is Monge on its upper triangle when
//! `c[i][j] + c[i+1][j+1] <= c[i][j+1] + c[i+1][j]` for every `i + 1 < j`. Summing these
//! unit inequalities gives `c[i][j'] + c[i'][j] <= c[i][j] + c[i'][j']` for all
//! `i < i' < j' < j`, and adding `w * dp[j]` (a column term) keeps it. Then if `j` is the
//! leftmost minimiser for row `i` and some `j' < j` were optimal for a later row `i'`, row `i`
//! would strictly prefer `j` over `j'` and the inequality would make row `i'` strictly prefer
//! `j` too: the leftmost minimisers are non-decreasing in `i`. Divide and conquer over the
//! rows (solve the middle row, then the upper half only left of its minimiser and the lower
//! half only right of it) therefore finds exactly the leftmost minimisers of the full DP.
//!
//! The check compares with `<=` and no tolerance: a tolerance would admit matrices on which
//! the shortcut could return a different path from the full DP. The argument is about real
//! numbers; with floats it is exact whenever the sums involved are exact (integer or dyadic
//! costs and weights), and otherwise can only differ from the full DP on ties within a few
//! ulps. Overflow is the one rounding that breaks ties wholesale, so it is kept out of both
//! halves: the check compares halved sums where a sum overflows, and a layer in which some
//! row's minimum overflowed is scanned in full.

use crate::minplus;
use crate::validate::{self, PARALLEL_MIN_NODES};
use std::sync::atomic::{AtomicUsize, Ordering};
use thrifty_core::{parallel, CoreResult};

/// Whether the strict upper triangle of `cost` (row-major, `n_nodes x n_nodes`) is Monge:
/// `c[i][j] + c[i+1][j+1] <= c[i][j+1] + c[i+1][j]` for every `i + 1 < j <= N - 1`,
/// compared exactly.
///
/// Matrices with fewer than 4 nodes have no such quadruple and are Monge. Errors name
/// `cost` when it is not square or holds NaN or infinity in its upper triangle; negative
/// entries are allowed here.
pub fn is_monge(cost: &[f64], n_nodes: usize) -> CoreResult<bool> {
    validate::cost_shape(cost, n_nodes)?;
    Ok(validated_violation(cost, n_nodes, true, true)?.is_none())
}

/// Validates the upper triangle (see [`validate::cost_entries`]) and, in the same pass over
/// the matrix, finds the first `(i, j)` (row-major) at which the Monge inequality fails.
///
/// One pass instead of two: at N = 2000 each pass reads 16 MB, as much time as the Monge
/// solve itself. An invalid entry takes precedence over any violation (a NaN fails every
/// comparison). Once some row has a violation, later rows skip the Monge test: they could
/// not hold the first one. The row that does is never skipped, so the answer is the same
/// on any number of threads.
///
/// With `validate_all_rows` false, the rows after the first violation are not validated
/// either (nor reported, if some thread did look at them): a caller that reads every row
/// anyway, like the pruned DP, validates them there while they are in cache, and reports
/// the same first invalid entry.
pub(crate) fn validated_violation(
    cost: &[f64],
    n_nodes: usize,
    allow_negative: bool,
    validate_all_rows: bool,
) -> CoreResult<Option<(usize, usize)>> {
    let first_violating_row = AtomicUsize::new(usize::MAX);
    let check_row = |i: usize| {
        let wanted = i < first_violating_row.load(Ordering::Relaxed);
        if !wanted && !validate_all_rows {
            return (None, None);
        }
        let (bad, violation) = if wanted && i + 2 < n_nodes - 1 {
            // One fused, branch-free pass; the exact scans below run only to locate what
            // it found, on the rare row that has something.
            let (clean, holds) = fused_row_check(cost, n_nodes, i, allow_negative);
            let bad = if clean {
                None
            } else {
                validate::first_bad_in_row(cost, n_nodes, i, allow_negative)
            };
            let violation = if holds {
                None
            } else {
                violation_in_row(cost, n_nodes, i)
            };
            (bad, violation)
        } else {
            let bad = validate::first_bad_in_row(cost, n_nodes, i, allow_negative);
            let violation = if wanted {
                violation_in_row(cost, n_nodes, i)
            } else {
                None
            };
            (bad, violation)
        };
        if violation.is_some() {
            first_violating_row.fetch_min(i, Ordering::Relaxed);
        }
        (bad, violation)
    };
    // Every row with an upper triangle: 0..=N-1.
    let rows = n_nodes - 1;
    let checked = if n_nodes >= PARALLEL_MIN_NODES {
        parallel::map_indices(rows, check_row)
    } else {
        (0..rows).map(check_row).collect()
    };
    let mut first_violation = None;
    for (i, (bad, violation)) in checked.into_iter().enumerate() {
        if let Some(j) = bad {
            return Err(validate::entry_error(cost, n_nodes, i, j));
        }
        if first_violation.is_none() {
            first_violation = violation.map(|j| (i, j));
            if first_violation.is_some() && !validate_all_rows {
                break;
            }
        }
    }
    Ok(first_violation)
}

/// For a row `i` with `i + 2 < N`, in one pass over rows `i` and `i + 1`: whether row `i`'s
/// upper triangle is finite (and `>= 0` unless `allow_negative`), and whether every Monge
/// inequality of the row holds. When the entries are finite, `a + b > c + d` is exactly
/// `!(a + b <= c + d)`; when they are not, the caller reports the bad entry, whatever this
/// says about the inequalities.
fn fused_row_check(cost: &[f64], n_nodes: usize, i: usize, allow_negative: bool) -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { fused_row_check_avx2(cost, n_nodes, i, allow_negative) };
        }
    }
    fused_row_check_portable(cost, n_nodes, i, allow_negative)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fused_row_check_avx2(
    cost: &[f64],
    n_nodes: usize,
    i: usize,
    allow_negative: bool,
) -> (bool, bool) {
    fused_row_check_portable(cost, n_nodes, i, allow_negative)
}

#[inline(always)]
fn fused_row_check_portable(
    cost: &[f64],
    n_nodes: usize,
    i: usize,
    allow_negative: bool,
) -> (bool, bool) {
    const LANES: usize = 8;
    let last = n_nodes - 1;
    let upper = &cost[i * n_nodes..(i + 1) * n_nodes];
    let lower = &cost[(i + 1) * n_nodes..(i + 2) * n_nodes];
    let (here_up, here_down) = (&upper[i + 2..last], &lower[i + 2..last]);
    let (right_up, right_down) = (&upper[i + 3..=last], &lower[i + 3..=last]);
    let mut poison = [0.0f64; LANES];
    let mut min = [0.0f64; LANES];
    let mut broken = [0u64; LANES];
    let whole = here_up.len() - here_up.len() % LANES;
    for at in (0..whole).step_by(LANES) {
        let (a, b) = (&here_up[at..at + LANES], &right_down[at..at + LANES]);
        let (c, d) = (&right_up[at..at + LANES], &here_down[at..at + LANES]);
        for lane in 0..LANES {
            // `x * 0.0` is 0 for finite x and NaN otherwise: one NaN poisons the lane.
            poison[lane] += a[lane] * 0.0;
            min[lane] = if a[lane] < min[lane] {
                a[lane]
            } else {
                min[lane]
            };
            // Not `a + b > c + d`: where both sides overflow, `inf > inf` is false whatever
            // the real sums were. Their difference is NaN there, and has the sign of the
            // comparison everywhere else, so such a row goes to the exact scan.
            let excess = (a[lane] + b[lane]) - (c[lane] + d[lane]);
            // Negated so that NaN counts as broken.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let flagged = !(excess <= 0.0);
            broken[lane] |= u64::from(flagged);
        }
    }
    let acceptable = |x: f64| x.is_finite() && (allow_negative || x >= 0.0);
    let mut clean = acceptable(upper[i + 1])
        && acceptable(upper[last])
        && poison.iter().all(|p| *p == 0.0)
        && (allow_negative || min.iter().all(|m| *m >= 0.0));
    let mut holds = broken.iter().all(|b| *b == 0);
    for at in whole..here_up.len() {
        clean &= acceptable(here_up[at]);
        holds &= unit_square_holds(here_up[at], right_down[at], right_up[at], here_down[at]);
    }
    (clean, holds)
}

/// The first `j` at which `c[i][j] + c[i+1][j+1] <= c[i][j+1] + c[i+1][j]` fails, over
/// `i + 1 < j < N`.
fn violation_in_row(cost: &[f64], n_nodes: usize, i: usize) -> Option<usize> {
    let last = n_nodes - 1;
    // Rows 0..=N-3 are the only ones with a quadruple (i, i+1) x (j, j+1), i + 1 < j < N.
    if i + 2 >= last {
        return None;
    }
    let upper = &cost[i * n_nodes..(i + 1) * n_nodes];
    let lower = &cost[(i + 1) * n_nodes..(i + 2) * n_nodes];
    // Four aligned slices so that the loop has no bounds checks and vectorises.
    let (here_up, here_down) = (&upper[i + 2..last], &lower[i + 2..last]);
    let (right_up, right_down) = (&upper[i + 3..=last], &lower[i + 3..=last]);
    let quads = || {
        here_up
            .iter()
            .zip(right_down)
            .zip(right_up.iter().zip(here_down))
    };
    let holds = |((a, b), (c, d)): ((&f64, &f64), (&f64, &f64))| unit_square_holds(*a, *b, *c, *d);
    // Branch-free fold first so the common case vectorises.
    if quads().fold(true, |ok, q| ok & holds(q)) {
        None
    } else {
        quads().position(|q| !holds(q)).map(|p| i + 2 + p)
    }
}

/// `a + b <= c + d`, decided as on the real sums where a float sum overflows.
///
/// A finite right-hand side decides it as it stands: a left sum that overflowed to `+inf` is
/// really above it, one that overflowed to `-inf` really below. An infinite right-hand side
/// would let `inf <= inf` pass a real violation (both sides past `f64::MAX`, the left one
/// further), so the halved sums are compared instead: they cannot overflow, and halving
/// values that large is exact.
#[inline(always)]
fn unit_square_holds(a: f64, b: f64, c: f64, d: f64) -> bool {
    let right = c + d;
    if right.is_finite() {
        a + b <= right
    } else {
        0.5 * a + 0.5 * b <= 0.5 * c + 0.5 * d
    }
}

/// Independent pieces per layer: enough to keep a many-core machine busy, and fixed (not
/// derived from the thread count) so that the result never depends on the machine.
const SEGMENTS: usize = 16;

/// One DP layer by divide and conquer: for every row `i < value.len()`, the leftmost
/// minimiser over `j` in `i+1..=hi` of `cost[i][j] + weight * prev[j]`.
///
/// `cost` must be Monge (see [`validated_violation`]); then this equals the full scan.
///
/// A few pivot rows are solved first, each scanning right from the previous pivot's
/// minimiser; by monotonicity they bound the minimisers of the rows between them, so the
/// segments between pivots are independent and run in parallel. The same segments are used
/// with or without threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer(
    cost: &[f64],
    n_nodes: usize,
    prev: &[f64],
    weight: f64,
    hi: usize,
    parallel: bool,
    value: &mut [f64],
    choice: &mut [u32],
) {
    let rows = value.len();
    let segments = SEGMENTS.min(rows);
    let pivots: Vec<usize> = (1..segments).map(|s| s * rows / segments).collect();
    let mut pivot_choice = Vec::with_capacity(pivots.len());
    let mut lowest = 1;
    for &pivot in &pivots {
        let (v, j) = leftmost_min(cost, n_nodes, prev, weight, pivot, lowest, hi);
        value[pivot] = v;
        choice[pivot] = j as u32;
        pivot_choice.push(j);
        lowest = j;
    }
    // Segment s: rows strictly between pivots s-1 and s, minimisers between their choices.
    let segment = |s: usize| {
        let row_lo = if s == 0 { 0 } else { pivots[s - 1] + 1 };
        let row_hi = if s + 1 == segments { rows } else { pivots[s] };
        let opt_lo = if s == 0 { 1 } else { pivot_choice[s - 1] };
        let opt_hi = if s + 1 == segments {
            hi
        } else {
            pivot_choice[s]
        };
        let mut cells = vec![(0.0, 0u32); row_hi - row_lo];
        divide_and_conquer(
            cost,
            n_nodes,
            prev,
            weight,
            (row_lo, row_hi, opt_lo, opt_hi),
            &mut cells,
        );
        (row_lo, cells)
    };
    let solved = if parallel {
        parallel::map_indices(segments, segment)
    } else {
        (0..segments).map(segment).collect()
    };
    for (row_lo, cells) in solved {
        for (offset, (v, j)) in cells.into_iter().enumerate() {
            value[row_lo + offset] = v;
            choice[row_lo + offset] = j;
        }
    }
    // Monotone minimisers are a property of the real sums. A row whose sums all overflowed
    // has nothing but ties at +inf, and the leftmost of them bounds no other row: a finite
    // row above it could lose its minimiser to that bound. Only costs within a few powers
    // of two of f64::MAX get here; their layers are scanned in full.
    if value.iter().any(|v| v.is_infinite()) {
        let row = |i: usize| leftmost_min(cost, n_nodes, prev, weight, i, i + 1, hi);
        let cells: Vec<(f64, usize)> = if parallel {
            parallel::map_indices(rows, row)
        } else {
            (0..rows).map(row).collect()
        };
        for (i, (v, j)) in cells.into_iter().enumerate() {
            value[i] = v;
            choice[i] = j as u32;
        }
    }
}

/// Leftmost minimiser for row `i` over `j` in `max(lowest, i+1)..=highest`.
fn leftmost_min(
    cost: &[f64],
    n_nodes: usize,
    prev: &[f64],
    weight: f64,
    i: usize,
    lowest: usize,
    highest: usize,
) -> (f64, usize) {
    let lo = lowest.max(i + 1);
    debug_assert!(lo <= highest, "empty Monge search range");
    let row = &cost[i * n_nodes + lo..=i * n_nodes + highest];
    let next = &prev[lo..=highest];
    if row.len() <= SHORT_RANGE {
        // Most divide-and-conquer ranges are a handful of columns: a plain scan beats the
        // dispatch and the two passes of the SIMD kernel there, and it finds the same
        // leftmost minimiser from the same `row[j] + weight * next[j]` values.
        let mut best = (f64::INFINITY, 0);
        for (offset, (r, n)) in row.iter().zip(next).enumerate() {
            let v = r + weight * n;
            if v < best.0 {
                best = (v, offset);
            }
        }
        let at = best.1;
        return (row[at] + weight * next[at], lo + at);
    }
    let (v, offset) = minplus::row_argmin(row, next, weight);
    (v, lo + offset)
}

/// Search ranges up to this long are scanned without the SIMD kernel.
const SHORT_RANGE: usize = 16;

/// Rows `row_lo..row_hi`, whose minimisers lie in `opt_lo..=opt_hi`, into `cells` (indexed
/// from `row_lo`).
fn divide_and_conquer(
    cost: &[f64],
    n_nodes: usize,
    prev: &[f64],
    weight: f64,
    (row_lo, row_hi, opt_lo, opt_hi): (usize, usize, usize, usize),
    cells: &mut [(f64, u32)],
) {
    // An explicit stack: the depth is only log2(rows), but recursion would need all the
    // borrowed context threaded through.
    let mut pending = vec![(row_lo, row_hi, opt_lo, opt_hi)];
    while let Some((row_lo_now, row_hi_now, opt_lo_now, opt_hi_now)) = pending.pop() {
        if row_lo_now >= row_hi_now {
            continue;
        }
        let mid = row_lo_now + (row_hi_now - row_lo_now) / 2;
        let (v, j) = leftmost_min(cost, n_nodes, prev, weight, mid, opt_lo_now, opt_hi_now);
        cells[mid - row_lo] = (v, j as u32);
        pending.push((row_lo_now, mid, opt_lo_now, j));
        pending.push((mid + 1, row_hi_now, j, opt_hi_now));
    }
}
