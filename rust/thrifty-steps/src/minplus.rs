//! The min-plus row kernel: the inner loop of the BOSS dynamic programme.
//!
//! Every DP cell is `min_j row[j] + w * next[j]` over a contiguous run of one cost-matrix row
//! and the previous layer, so nearly all the solver's time is spent here.
//!
//! The minimum is found first, with [`LANES`] independent accumulators: `min` is exact and
//! order-free, so the lanes change nothing in the result, yet they break the loop-carried
//! dependency and let LLVM keep whole vectors in registers. The first pass also remembers
//! the first block of [`BLOCK`] elements in which the minimum was reached, so a second pass
//! only searches that one block for the first index whose value equals the minimum (searching
//! the whole row instead costed half again as much as the first pass on random costs).
//!
//! On x86-64 the first pass is hand-written (four accumulators of four AVX2 lanes, and a
//! block minimum reduced horizontally only when it beats the best so far), chosen at run
//! time: AVX2, else the portable loop. It measured 13 % faster on the full DP at N = 2000,
//! K = 50 than the autovectorised loop (AMD Zen 5). An AVX-512 version of it measured no
//! faster on that DP, where the cost rows come from L2, and slower on short rows (Intel
//! Emerald Rapids), so only the pruned scan below uses AVX-512. With the plain BOSS weight
//! `1.0` the multiplication is skipped, which changes no bit.
//!
//! [`pruned_row_argmin`] is the same minimum over a sub-range, for the full DP on large
//! matrices (the `pruned` module, which calls it for the cells that the threshold scan of
//! their row's cheapest entries leaves unsettled): given a lower bound per block of
//! [`PRUNE_BLOCK`] columns (block minima of the cost row and of the layer below), it skips
//! every block that cannot hold the leftmost minimiser. Its bounds are computed with the same
//! two operations as the terms, and rounding is monotone, so the skipping is exact. On
//! random costs it looks at about 7 % of the blocks, but the time per cell that remains is
//! mostly fixed overhead, so it saves less than that suggests.
//!
//! Both passes evaluate `row[j] + w * next[j]` with the same two IEEE operations (Rust never
//! fuses them into an FMA), so the second pass finds the minimum bit for bit and the argmin
//! is the leftmost one, whatever the lane count, the instruction set, or the sub-range a
//! caller scans. That is what keeps the SIMD, the parallel and the Monge paths in exact
//! agreement.

/// Width of the independent accumulators of the portable kernel: four SSE2 registers.
const LANES: usize = 8;

/// Leftmost minimiser of `row[j] + weight * next[j]`: returns `(value, j)`.
///
/// `row` and `next` have the same, non-zero length. No value may be NaN (the callers validate
/// the costs, and the weight and DP values are positive, finite or `+inf`).
#[inline]
pub(crate) fn row_argmin(row: &[f64], next: &[f64], weight: f64) -> (f64, usize) {
    debug_assert!(!row.is_empty(), "min-plus over an empty range");
    debug_assert_eq!(row.len(), next.len());
    // `1.0 * x == x` for every x (infinities and signed zeros included), so with the plain
    // BOSS weight the multiplication can be dropped without changing a bit, which saves one
    // of the three floating-point operations per element.
    if weight == 1.0 {
        row_argmin_dispatch::<true>(row, next, weight)
    } else {
        row_argmin_dispatch::<false>(row, next, weight)
    }
}

#[inline(always)]
fn row_argmin_dispatch<const UNIT: bool>(row: &[f64], next: &[f64], weight: f64) -> (f64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        // The default x86-64 target only has SSE2 (two f64 lanes); AVX2 doubles that. The
        // detection result is cached by std, so checking it per row costs one load.
        // No AVX-512 first pass: one with eight lanes per register measured no faster on the
        // N = 2000 DP (the cost rows come from L2) and 10 % slower at N = 100 (short rows,
        // where its wider blocks leave more to the scalar tail), Intel Emerald Rapids.
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { row_argmin_avx2::<UNIT>(row, next, weight) };
        }
    }
    row_argmin_portable::<UNIT>(row, next, weight)
}

/// The AVX2 kernel: the first pass is written with intrinsics (four independent accumulators
/// of four lanes, and a block minimum that is only reduced horizontally when some lane of it
/// beats the best so far), the rest is the portable code compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_argmin_avx2<const UNIT: bool>(
    row: &[f64],
    next: &[f64],
    weight: f64,
) -> (f64, usize) {
    use std::arch::x86_64::*;
    let whole = row.len() - row.len() % BLOCK;
    let mut best = f64::INFINITY;
    let mut best_block = 0;
    let mut best_vec = _mm256_set1_pd(f64::INFINITY);
    let w = _mm256_set1_pd(weight);
    let (r, n) = (row.as_ptr(), next.as_ptr());
    let term = |at: usize| {
        // SAFETY: `at + 4 <= whole <= row.len() == next.len()`, by the loop bounds below.
        let (c, d) = unsafe { (_mm256_loadu_pd(r.add(at)), _mm256_loadu_pd(n.add(at))) };
        if UNIT {
            _mm256_add_pd(c, d)
        } else {
            _mm256_add_pd(c, _mm256_mul_pd(w, d))
        }
    };
    for block in 0..whole / BLOCK {
        let base = block * BLOCK;
        let mut acc = [term(base), term(base + 4), term(base + 8), term(base + 12)];
        for step in 1..BLOCK / 16 {
            let at = base + step * 16;
            for (lane, acc) in acc.iter_mut().enumerate() {
                // `minpd a, b` is `a < b ? a : b`, the compare-and-select of the portable code.
                *acc = _mm256_min_pd(term(at + 4 * lane), *acc);
            }
        }
        let block_min = _mm256_min_pd(_mm256_min_pd(acc[0], acc[1]), _mm256_min_pd(acc[2], acc[3]));
        // Strictly smaller only: an equal value in a later block is not the leftmost.
        if _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(block_min, best_vec)) != 0 {
            let mut lanes = [0.0f64; 4];
            _mm256_storeu_pd(lanes.as_mut_ptr(), block_min);
            best = smallest(lanes);
            best_block = block;
            best_vec = _mm256_set1_pd(best);
        }
    }
    finish::<UNIT>(row, next, weight, whole, best, best_block)
}

/// Columns per block of [`pruned_row_argmin`]: each block has one precomputed lower bound.
pub(crate) const PRUNE_BLOCK: usize = 16;

/// Leftmost minimiser of `row[j] + weight * next[j]` over `j` in `lo..=hi`, skipping the
/// blocks of [`PRUNE_BLOCK`] columns that cannot hold it.
///
/// `row` and `next` are indexed by column. For every block `b` that meets `lo..=hi`,
/// `row_min[b]` and `next_min[b]` must be at most every `row[j]`, resp. `next[j]`, with `j`
/// in that block and in `lo..=hi`. Returns the minimiser when its value is `<= seed`, and
/// otherwise `None` or some `(value, j)` with `value > seed`, so a caller that already holds
/// a candidate of value `seed` from columns after `hi` (which lose ties) loses nothing.
///
/// A block is skipped when `bound = row_min[b] + weight * next_min[b]`, computed with the
/// same two IEEE operations as the terms, exceeds `seed` or is `>=` the best value found in
/// an earlier block. Rounding is monotone and `weight > 0`, so every term of the block is
/// `>= bound`: it cannot be smaller than the best so far, and an equal value in a later
/// block is not the leftmost. The result is therefore the unpruned scan's, bit for bit.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pruned_row_argmin(
    row: &[f64],
    next: &[f64],
    row_min: &[f64],
    next_min: &[f64],
    lo: usize,
    hi: usize,
    weight: f64,
    seed: f64,
) -> Option<(f64, usize)> {
    debug_assert!(lo <= hi && hi < row.len() && hi < next.len());
    debug_assert!(hi / PRUNE_BLOCK < row_min.len() && hi / PRUNE_BLOCK < next_min.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above; the slices are long
            // enough, as asserted.
            return unsafe {
                if weight == 1.0 {
                    pruned_avx512::<true>(row, next, row_min, next_min, lo, hi, weight, seed)
                } else {
                    pruned_avx512::<false>(row, next, row_min, next_min, lo, hi, weight, seed)
                }
            };
        }
    }
    pruned_portable(row, next, row_min, next_min, lo, hi, weight, seed)
}

#[allow(clippy::too_many_arguments)]
fn pruned_portable(
    row: &[f64],
    next: &[f64],
    row_min: &[f64],
    next_min: &[f64],
    lo: usize,
    hi: usize,
    weight: f64,
    seed: f64,
) -> Option<(f64, usize)> {
    let mut best: Option<(f64, usize)> = None;
    for b in lo / PRUNE_BLOCK..=hi / PRUNE_BLOCK {
        let bound = row_min[b] + weight * next_min[b];
        if bound > seed || best.is_some_and(|(value, _)| bound >= value) {
            continue;
        }
        let start = (b * PRUNE_BLOCK).max(lo);
        let end = (b * PRUNE_BLOCK + PRUNE_BLOCK - 1).min(hi);
        let (value, at) = row_argmin(&row[start..=end], &next[start..=end], weight);
        if best.is_none_or(|(best, _)| value < best) {
            best = Some((value, start + at));
        }
    }
    best
}

/// [`pruned_row_argmin`] with AVX-512: the bounds of eight blocks are tested at once, and a
/// block of 16 columns is two registers.
///
/// Each of the eight lanes keeps its own minimum and the first column that reached it
/// (columns reach a lane in increasing order, and only a strictly smaller value replaces
/// it), and the lanes are reduced once per group of blocks, not once per block, so that a
/// block that lowers the minimum costs no horizontal reduction and no branch (it measured
/// the same as reducing per improving block on the N = 2000 DP, on a loaded machine). The
/// threshold for skipping is therefore a minimum reached before the current group, which
/// may be stale; a stale one only lets more blocks through.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn pruned_avx512<const UNIT: bool>(
    row: &[f64],
    next: &[f64],
    row_min: &[f64],
    next_min: &[f64],
    lo: usize,
    hi: usize,
    weight: f64,
    seed: f64,
) -> Option<(f64, usize)> {
    use std::arch::x86_64::*;
    const _: () = assert!(
        PRUNE_BLOCK.is_multiple_of(8),
        "the kernel scans a block as whole registers"
    );
    let w = _mm512_set1_pd(weight);
    let inf = _mm512_set1_pd(f64::INFINITY);
    let seed_vec = _mm512_set1_pd(seed);
    let term = |c: __m512d, d: __m512d| {
        if UNIT {
            _mm512_add_pd(c, d)
        } else {
            _mm512_add_pd(c, _mm512_mul_pd(w, d))
        }
    };
    // Lanes of the 8 columns from `base` that lie in `lo..=hi`.
    let lanes_in_range = |base: usize| -> __mmask8 {
        let from = lo.saturating_sub(base).min(8);
        let to = (hi + 1).saturating_sub(base).min(8);
        ((0xffu32 << from) & !(0xffu32 << to)) as __mmask8
    };
    let iota = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    let (first, last) = (lo / PRUNE_BLOCK, hi / PRUNE_BLOCK);
    let mut lane_min = inf;
    let mut lane_at = _mm512_set1_epi64(i64::MAX);
    // The smallest value reached in the groups before this one.
    let mut reached = inf;
    let mut group = first;
    while group <= last {
        let count = (last + 1 - group).min(8);
        let in_group = (0xffu32 >> (8 - count)) as __mmask8;
        // SAFETY: lanes `0..count` lie below `last + 1 <= row_min.len(), next_min.len()`, and
        // masked-off lanes are not read.
        let bounds = unsafe {
            term(
                _mm512_maskz_loadu_pd(in_group, row_min.as_ptr().wrapping_add(group)),
                _mm512_maskz_loadu_pd(in_group, next_min.as_ptr().wrapping_add(group)),
            )
        };
        let mut open = _mm512_mask_cmp_pd_mask::<_CMP_LE_OQ>(in_group, bounds, seed_vec)
            & _mm512_cmp_pd_mask::<_CMP_LT_OQ>(bounds, reached);
        if open != 0 {
            while open != 0 {
                let block = group + open.trailing_zeros() as usize;
                open &= open - 1;
                let base = block * PRUNE_BLOCK;
                for half in (base..base + PRUNE_BLOCK).step_by(8) {
                    let lanes = lanes_in_range(half);
                    // SAFETY: only lanes in `lo..=hi` are read, and `hi < row.len(),
                    // next.len()`; the others load as +inf, which never replaces a minimum.
                    let t = unsafe {
                        term(
                            _mm512_mask_loadu_pd(inf, lanes, row.as_ptr().wrapping_add(half)),
                            _mm512_mask_loadu_pd(inf, lanes, next.as_ptr().wrapping_add(half)),
                        )
                    };
                    let lower = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(t, lane_min);
                    lane_min = _mm512_mask_mov_pd(lane_min, lower, t);
                    let columns = _mm512_add_epi64(_mm512_set1_epi64(half as i64), iota);
                    lane_at = _mm512_mask_mov_epi64(lane_at, lower, columns);
                }
            }
            reached = _mm512_set1_pd(_mm512_reduce_min_pd(lane_min));
        }
        group += 8;
    }
    let mut values = [0.0f64; 8];
    let mut columns = [0i64; 8];
    _mm512_storeu_pd(values.as_mut_ptr(), lane_min);
    _mm512_storeu_epi64(columns.as_mut_ptr(), lane_at);
    let best = smallest(values);
    if best == f64::INFINITY {
        // Nothing finite was reached: either every term is +inf, and `lo` is the leftmost
        // minimiser, or every block was skipped for exceeding `seed`, and any column will do.
        return Some((term_scalar(row[lo], next[lo], weight), lo));
    }
    let at = values
        .iter()
        .zip(columns)
        .filter(|&(&value, _)| value == best)
        .map(|(_, column)| column)
        .min()
        .expect("the smallest lane holds the minimum") as usize;
    // Recomputed from the index, as in `finish`, so that the value does not depend on which
    // of +0.0 / -0.0 a lane kept.
    Some((term_scalar(row[at], next[at], weight), at))
}

/// The minimum of a slice without NaN (`+inf` when empty).
pub(crate) fn slice_min(x: &[f64]) -> f64 {
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut acc = [f64::INFINITY; LANES];
    for chunk in chunks {
        for lane in 0..LANES {
            acc[lane] = if chunk[lane] < acc[lane] {
                chunk[lane]
            } else {
                acc[lane]
            };
        }
    }
    tail.iter()
        .fold(smallest(acc), |m, &v| if v < m { v } else { m })
}

/// `r + weight * n`: bit for bit the value of every kernel's term, since `1.0 * n == n`.
#[inline(always)]
pub(crate) fn term_scalar(r: f64, n: f64, weight: f64) -> f64 {
    r + weight * n
}

/// `r + weight * n`, with the multiplication skipped when the weight is known to be 1.
#[inline(always)]
fn term<const UNIT: bool>(r: f64, n: f64, weight: f64) -> f64 {
    if UNIT {
        r + n
    } else {
        r + weight * n
    }
}

/// Elements per block of the first pass: the minimum is tracked per block, so that the
/// second pass only has to search one block.
const BLOCK: usize = 64;

// `inline(always)` so that the body is compiled inside `row_argmin_avx2` with its features.
#[inline(always)]
fn row_argmin_portable<const UNIT: bool>(row: &[f64], next: &[f64], weight: f64) -> (f64, usize) {
    let whole = row.len() - row.len() % BLOCK;
    // The smallest value seen, and the first block in which it was seen. A block minimum
    // rarely improves on the running one, so the branch is almost always predicted.
    let mut best = f64::INFINITY;
    let mut best_block = 0;
    let blocks = row[..whole]
        .chunks_exact(BLOCK)
        .zip(next[..whole].chunks_exact(BLOCK));
    for (block, (row_block, next_block)) in blocks.enumerate() {
        let block_min = smallest(lane_minima::<UNIT>(row_block, next_block, weight));
        // Strictly smaller only: an equal value in a later block is not the leftmost.
        if block_min < best {
            best = block_min;
            best_block = block;
        }
    }
    finish::<UNIT>(row, next, weight, whole, best, best_block)
}

/// The tail after the whole blocks, and the second pass: given the smallest value `best` of
/// the blocks before `whole` and the first block that reached it, the leftmost minimiser.
#[inline(always)]
fn finish<const UNIT: bool>(
    row: &[f64],
    next: &[f64],
    weight: f64,
    whole: usize,
    best: f64,
    best_block: usize,
) -> (f64, usize) {
    let (tail_row, tail_next) = (&row[whole..], &next[whole..]);
    let tail_min = if tail_row.is_empty() {
        f64::INFINITY
    } else {
        row_min::<UNIT>(tail_row, tail_next, weight)
    };
    // The tail comes after every block, so it wins only when strictly smaller. (All values
    // +inf: `best` stays +inf, block 0 is searched and its first element found.)
    let at = if whole > 0 && best <= tail_min {
        let span = best_block * BLOCK..(best_block + 1) * BLOCK;
        best_block * BLOCK + first_equal::<UNIT>(&row[span.clone()], &next[span], weight, best)
    } else {
        whole + first_equal::<UNIT>(tail_row, tail_next, weight, tail_min)
    };
    // Recomputed from the index so that the value depends on the argmin only (not on which
    // of +0.0 / -0.0 happened to win the lane reduction).
    (term::<UNIT>(row[at], next[at], weight), at)
}

#[inline(always)]
fn smallest<const L: usize>(lanes: [f64; L]) -> f64 {
    lanes
        .iter()
        .fold(f64::INFINITY, |m, &x| if x < m { x } else { m })
}

/// The minimum of each lane over a run whose length is a multiple of [`LANES`].
#[inline(always)]
fn lane_minima<const UNIT: bool>(row: &[f64], next: &[f64], weight: f64) -> [f64; LANES] {
    let mut acc = [f64::INFINITY; LANES];
    for (r, n) in row.chunks_exact(LANES).zip(next.chunks_exact(LANES)) {
        for lane in 0..LANES {
            let v = term::<UNIT>(r[lane], n[lane], weight);
            // A plain compare-and-select (not f64::min, whose NaN rule costs extra
            // instructions) maps onto one `minpd`.
            acc[lane] = if v < acc[lane] { v } else { acc[lane] };
        }
    }
    acc
}

#[inline(always)]
fn row_min<const UNIT: bool>(row: &[f64], next: &[f64], weight: f64) -> f64 {
    let whole = row.len() - row.len() % LANES;
    let acc = lane_minima::<UNIT>(&row[..whole], &next[..whole], weight);
    let mut min = f64::INFINITY;
    for (r, n) in row[whole..].iter().zip(&next[whole..]) {
        let v = term::<UNIT>(*r, *n, weight);
        if v < min {
            min = v;
        }
    }
    let lanes = smallest(acc);
    if lanes < min {
        lanes
    } else {
        min
    }
}

#[inline(always)]
fn first_equal<const UNIT: bool>(row: &[f64], next: &[f64], weight: f64, target: f64) -> usize {
    let row_chunks = row.chunks_exact(LANES);
    let next_chunks = next.chunks_exact(LANES);
    let (row_tail, next_tail) = (row_chunks.remainder(), next_chunks.remainder());
    let mut base = 0;
    for (r, n) in row_chunks.zip(next_chunks) {
        // Branch once per chunk, not per element, so the common "not here" case vectorises.
        let mut hit = false;
        for lane in 0..LANES {
            hit |= term::<UNIT>(r[lane], n[lane], weight) == target;
        }
        if hit {
            for lane in 0..LANES {
                if term::<UNIT>(r[lane], n[lane], weight) == target {
                    return base + lane;
                }
            }
        }
        base += LANES;
    }
    for (offset, (r, n)) in row_tail.iter().zip(next_tail).enumerate() {
        if term::<UNIT>(*r, *n, weight) == target {
            return base + offset;
        }
    }
    // Unreachable: `target` was computed from these very values by the same operations.
    debug_assert!(false, "min-plus minimum not found on the second pass");
    0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn scalar(row: &[f64], next: &[f64], weight: f64) -> (f64, usize) {
        let mut best = (f64::INFINITY, 0);
        for (j, (r, n)) in row.iter().zip(next).enumerate() {
            let v = r + weight * n;
            if v < best.0 {
                best = (v, j);
            }
        }
        best
    }

    /// A seeded stream of integers below `distinct` (an LCG: the tests need repeatable
    /// draws with chosen numbers of distinct values, i.e. chosen amounts of ties).
    pub(crate) fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |distinct| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % distinct
        }
    }

    #[test]
    fn matches_a_scalar_scan_on_every_length_and_tie_pattern() {
        let mut uniform = draws(12345);
        let mut draw = || uniform(5) as f64;
        for len in (1..70).chain([127, 128, 129, 200, 257, 640]) {
            for _ in 0..20 {
                let row: Vec<f64> = (0..len).map(|_| draw()).collect();
                let next: Vec<f64> = (0..len).map(|_| draw()).collect();
                for weight in [1.0, 0.5, 3.0] {
                    assert_eq!(row_argmin(&row, &next, weight), scalar(&row, &next, weight));
                    assert_eq!(
                        row_argmin_portable::<false>(&row, &next, weight),
                        scalar(&row, &next, weight)
                    );
                    if weight == 1.0 {
                        assert_eq!(
                            row_argmin_portable::<true>(&row, &next, weight),
                            scalar(&row, &next, weight)
                        );
                    }
                }
            }
        }
    }

    /// Every first-pass kernel this CPU can run, by name, each forced whatever the dispatch
    /// would pick.
    #[allow(clippy::type_complexity)]
    fn kernels() -> Vec<(&'static str, fn(&[f64], &[f64], f64) -> (f64, usize))> {
        let mut all: Vec<(&'static str, fn(&[f64], &[f64], f64) -> (f64, usize))> = vec![
            ("dispatch", row_argmin),
            ("portable", |r, n, w| {
                if w == 1.0 {
                    row_argmin_portable::<true>(r, n, w)
                } else {
                    row_argmin_portable::<false>(r, n, w)
                }
            }),
            // The general kernel must agree at weight 1 too, where the dispatch skips it.
            ("portable general", row_argmin_portable::<false>),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(("avx2", |r, n, w| {
                    // SAFETY: AVX2 support was checked when this kernel was listed.
                    unsafe {
                        if w == 1.0 {
                            row_argmin_avx2::<true>(r, n, w)
                        } else {
                            row_argmin_avx2::<false>(r, n, w)
                        }
                    }
                }));
            } else {
                eprintln!("skipping the AVX2 kernel: this CPU lacks AVX2");
            }
        }
        all
    }

    #[test]
    fn every_kernel_matches_a_scalar_scan_on_lengths_ties_and_infinities() {
        let mut draw = draws(99);
        let kernels = kernels();
        for len in 1..=300 {
            // Few distinct values (ties everywhere), many, and some +inf in both inputs.
            for (distinct, inf_every) in [(2, 0), (3, 7), (1000, 0), (1000, 3), (1, 1)] {
                let mut value = |_| {
                    let x = draw(distinct);
                    if inf_every > 0 && x.is_multiple_of(inf_every) {
                        f64::INFINITY
                    } else {
                        x as f64 * 0.125
                    }
                };
                let row: Vec<f64> = (0..len).map(&mut value).collect();
                let next: Vec<f64> = (0..len).map(&mut value).collect();
                for weight in [1.0, 0.5, 1.3, 3.0] {
                    let expected = scalar(&row, &next, weight);
                    for (name, kernel) in &kernels {
                        let got = kernel(&row, &next, weight);
                        assert_eq!(
                            (got.0.to_bits(), got.1),
                            (expected.0.to_bits(), expected.1),
                            "{name}, length {len}, weight {weight}"
                        );
                    }
                }
            }
        }
    }

    /// Block minima of `x` over `lo..=hi` only, loosened by `slack` (any lower bound will do).
    fn bounds(x: &[f64], lo: usize, hi: usize, slack: f64) -> Vec<f64> {
        let mut mins = vec![f64::INFINITY; x.len().div_ceil(PRUNE_BLOCK)];
        for j in lo..=hi {
            let m = &mut mins[j / PRUNE_BLOCK];
            *m = m.min(x[j] - slack);
        }
        mins
    }

    #[test]
    fn every_pruned_kernel_matches_the_plain_scan() {
        let mut draw = draws(7);
        #[allow(clippy::type_complexity)]
        let mut kernels: Vec<(
            &str,
            fn(&[f64], &[f64], &[f64], &[f64], usize, usize, f64, f64) -> Option<(f64, usize)>,
        )> = vec![
            ("dispatch", pruned_row_argmin),
            ("portable", pruned_portable),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(("avx512", |r, n, rm, nm, lo, hi, w, s| {
                    // SAFETY: AVX-512F support was checked when this kernel was listed.
                    unsafe {
                        if w == 1.0 {
                            pruned_avx512::<true>(r, n, rm, nm, lo, hi, w, s)
                        } else {
                            pruned_avx512::<false>(r, n, rm, nm, lo, hi, w, s)
                        }
                    }
                }));
            } else {
                eprintln!("skipping the pruned AVX-512 kernel: this CPU lacks AVX-512F");
            }
        }
        for len in 1..=300 {
            for (distinct, inf_every) in [(2, 0), (3, 5), (1000, 0), (1, 1)] {
                let mut value = |_| {
                    let x = draw(distinct);
                    if inf_every > 0 && x.is_multiple_of(inf_every) {
                        f64::INFINITY
                    } else {
                        x as f64 * 0.125
                    }
                };
                let row: Vec<f64> = (0..len).map(&mut value).collect();
                let next: Vec<f64> = (0..len).map(&mut value).collect();
                let lo = draw(len as u64) as usize;
                let hi = lo + draw((len - lo) as u64) as usize;
                let slack = [0.0, 0.25][draw(2) as usize];
                let (row_min, next_min) = (bounds(&row, lo, hi, slack), bounds(&next, lo, hi, 0.0));
                for weight in [1.0, 0.5, 1.3] {
                    let plain = row_argmin(&row[lo..=hi], &next[lo..=hi], weight);
                    let plain = (plain.0, lo + plain.1);
                    for seed in [f64::INFINITY, plain.0, plain.0 + 0.125, plain.0 - 0.125] {
                        for (name, kernel) in &kernels {
                            let got =
                                kernel(&row, &next, &row_min, &next_min, lo, hi, weight, seed);
                            let context =
                                format!("{name}, {lo}..={hi} of {len}, w {weight}, seed {seed}");
                            match got {
                                Some(got) if plain.0 <= seed => assert_eq!(
                                    (got.0.to_bits(), got.1),
                                    (plain.0.to_bits(), plain.1),
                                    "{context}"
                                ),
                                Some(got) => {
                                    assert!(got.0 > seed, "{context}")
                                }
                                None => assert!(plain.0 > seed, "{context}"),
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn overflow_to_infinity_still_picks_the_first_index() {
        let row = [f64::MAX; 11];
        let next = [f64::INFINITY; 11];
        assert_eq!(row_argmin(&row, &next, 2.0), (f64::INFINITY, 0));
    }
}
