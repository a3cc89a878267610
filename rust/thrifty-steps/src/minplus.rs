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
//! On x86-64 the first pass is hand-written (four accumulators of four AVX2 or eight AVX-512
//! lanes, and a block minimum reduced horizontally only when it beats the best so far),
//! chosen at run time: AVX-512F, else AVX2, else the portable loop. The AVX2 pass measured
//! 13 % faster on the full DP at N = 2000, K = 50 than the autovectorised loop (AMD Zen 5);
//! the AVX-512 one measured no faster than AVX2 on that DP (Intel Emerald Rapids), where the
//! cost rows come from L2, but it is kept for the rows that do sit in L1. With the plain
//! BOSS weight `1.0` the multiplication is skipped, which changes no bit.
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
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { row_argmin_avx512::<UNIT>(row, next, weight) };
        }
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

/// The AVX-512 kernel: the AVX2 one with eight lanes per register, so a block of
/// [`BLOCK`] elements is two steps of four accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_argmin_avx512<const UNIT: bool>(
    row: &[f64],
    next: &[f64],
    weight: f64,
) -> (f64, usize) {
    use std::arch::x86_64::*;
    let whole = row.len() - row.len() % BLOCK;
    let mut best = f64::INFINITY;
    let mut best_block = 0;
    let mut best_vec = _mm512_set1_pd(f64::INFINITY);
    let w = _mm512_set1_pd(weight);
    let (r, n) = (row.as_ptr(), next.as_ptr());
    let term = |at: usize| {
        // SAFETY: `at + 8 <= whole <= row.len() == next.len()`, by the loop bounds below.
        let (c, d) = unsafe { (_mm512_loadu_pd(r.add(at)), _mm512_loadu_pd(n.add(at))) };
        if UNIT {
            _mm512_add_pd(c, d)
        } else {
            _mm512_add_pd(c, _mm512_mul_pd(w, d))
        }
    };
    for block in 0..whole / BLOCK {
        let base = block * BLOCK;
        let mut acc = [term(base), term(base + 8), term(base + 16), term(base + 24)];
        for step in 1..BLOCK / 32 {
            let at = base + step * 32;
            for (lane, acc) in acc.iter_mut().enumerate() {
                // `vminpd a, b` is `a < b ? a : b`, the compare-and-select of the portable code.
                *acc = _mm512_min_pd(term(at + 8 * lane), *acc);
            }
        }
        let block_min = _mm512_min_pd(_mm512_min_pd(acc[0], acc[1]), _mm512_min_pd(acc[2], acc[3]));
        // Strictly smaller only: an equal value in a later block is not the leftmost.
        if _mm512_cmp_pd_mask::<_CMP_LT_OQ>(block_min, best_vec) != 0 {
            let mut lanes = [0.0f64; 8];
            _mm512_storeu_pd(lanes.as_mut_ptr(), block_min);
            best = smallest(lanes);
            best_block = block;
            best_vec = _mm512_set1_pd(best);
        }
    }
    finish::<UNIT>(row, next, weight, whole, best, best_block)
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
mod tests {
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

    #[test]
    fn matches_a_scalar_scan_on_every_length_and_tie_pattern() {
        let mut state = 12345u64;
        let mut draw = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 5) as f64
        };
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
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(("avx512", |r, n, w| {
                    // SAFETY: AVX-512F support was checked when this kernel was listed.
                    unsafe {
                        if w == 1.0 {
                            row_argmin_avx512::<true>(r, n, w)
                        } else {
                            row_argmin_avx512::<false>(r, n, w)
                        }
                    }
                }));
            } else {
                eprintln!("skipping the AVX-512 kernel: this CPU lacks AVX-512F");
            }
        }
        all
    }

    #[test]
    fn every_kernel_matches_a_scalar_scan_on_lengths_ties_and_infinities() {
        let mut state = 99u64;
        let mut draw = |distinct: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % distinct
        };
        let kernels = kernels();
        for len in 1..=300 {
            // Few distinct values (ties everywhere), many, and some +inf in both inputs.
            for (distinct, inf_every) in [(2, 0), (3, 7), (1000, 0), (1000, 3), (1, 1)] {
                let mut value = |_| {
                    let x = draw(distinct);
                    if inf_every > 0 && x % inf_every == 0 {
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

    #[test]
    fn overflow_to_infinity_still_picks_the_first_index() {
        let row = [f64::MAX; 11];
        let next = [f64::INFINITY; 11];
        assert_eq!(row_argmin(&row, &next, 2.0), (f64::INFINITY, 0));
    }
}
