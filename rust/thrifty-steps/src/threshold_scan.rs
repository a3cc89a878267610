//! The threshold scan: one DP cell from its row's cheapest entries, stopping early.
//!
//! A cell `min_j c[i][j] + w * d[j]` over `j` in `i+1..=hi` has every term at least
//! `c[i][j] + w * D`, where `D` is the least `d[j]` in the range. Taking the row's entries
//! cheapest first (the row's list, see [`crate::row_summary`]), the scan stops at the first
//! chunk whose floor `f` has `f + w * D` above the best term found so far: every entry from
//! there on, in the list or left out of it, is dearer still. The rest of the row is never
//! read. When the list runs out before that, and the entries it left out could still tie or
//! win, the cell is unsettled and the caller scans the row.
//!
//! Exactness: the stopping test is computed with the same two IEEE operations as the terms,
//! and rounding is monotone, so every skipped term is strictly above the best (not even a
//! tie, which a smaller column could win). Among the entries looked at, ties go to the
//! smaller column. The result is the plain scan's, bit for bit.

use crate::row_summary::{RowList, CHUNK};

/// What a cell learnt from its row's list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scan {
    /// The cell's leftmost minimiser, `(value, column)`, and its position in the list.
    Settled(f64, usize, usize),
    /// The list does not settle the cell; the best term it found has this value (`+inf` when
    /// none), a seed for the scan of the whole row.
    Unsettled(f64),
}

/// The threshold scan of one cell over `list`, whose columns index `below`.
///
/// `weighted_least` is `weight * D` for the least `D` of `below` over the cell's range.
/// Columns of the list past the range must have `below = +inf`. `seed` is a position in the
/// list whose term is likely small (the row's last minimiser): starting from it lets the
/// scan stop sooner.
#[inline]
pub(crate) fn threshold_scan(
    list: &RowList<'_>,
    below: &[f64],
    weight: f64,
    weighted_least: f64,
    seed: usize,
) -> Scan {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU supports AVX-512F and VL, checked just above.
            return unsafe { scan_avx512(list, below, weight, weighted_least, seed) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { scan_avx2(list, below, weight, weighted_least, seed) };
        }
    }
    scan_portable(list, below, weight, weighted_least, seed)
}

/// The term at position `at` of the list, as `(value, column, position)`.
#[inline(always)]
fn term_at(list: &RowList<'_>, below: &[f64], weight: f64, at: usize) -> (f64, usize, usize) {
    let chunk = &list.chunks[at / CHUNK];
    let column = chunk.columns[at % CHUNK] as usize;
    (
        chunk.values[at % CHUNK] + weight * below[column],
        column,
        at,
    )
}

/// Whether `a` beats `b`: a smaller term, or an equal one at a smaller column.
#[inline(always)]
fn beats(a: (f64, usize, usize), b: (f64, usize, usize)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// What the scan found, given whether it stopped before the list's end.
#[inline(always)]
fn conclude(
    list: &RowList<'_>,
    weighted_least: f64,
    best: (f64, usize, usize),
    stopped: bool,
) -> Scan {
    // Entries left out are >= `rest`, so their terms are >= `rest + w * D`: when that is
    // above the best they cannot even tie. A stop before the end implies it (`rest` is at
    // least every chunk's floor), and `+inf` never settles (the leftmost column then wins).
    if best.0 < f64::INFINITY && (stopped || list.rest + weighted_least > best.0) {
        Scan::Settled(best.0, best.1, best.2)
    } else {
        Scan::Unsettled(best.0)
    }
}

/// The scan one entry at a time, for CPUs without AVX2 (and the reference the others are
/// tested against).
#[inline(always)]
fn scan_portable(
    list: &RowList<'_>,
    below: &[f64],
    weight: f64,
    weighted_least: f64,
    seed: usize,
) -> Scan {
    let mut best = term_at(list, below, weight, seed);
    for (c, chunk) in list.chunks.iter().enumerate() {
        if chunk.floor + weighted_least > best.0 {
            return conclude(list, weighted_least, best, true);
        }
        for lane in 0..CHUNK {
            let term = term_at(list, below, weight, c * CHUNK + lane);
            if beats(term, best) {
                best = term;
            }
        }
    }
    conclude(list, weighted_least, best, false)
}

/// [`scan_avx512`] with AVX2: a chunk is two registers of four lanes, one gather each, and
/// the lanes keep their best term, column and position the same way (32-bit columns compare
/// as signed integers, which they fit).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(
    list: &RowList<'_>,
    below: &[f64],
    weight: f64,
    weighted_least: f64,
    seed: usize,
) -> Scan {
    use std::arch::x86_64::*;
    assert!(below.len() <= i32::MAX as usize, "columns must fit in i32");
    let seeded = term_at(list, below, weight, seed);
    let w = _mm256_set1_pd(weight);
    let mut lane_min = [_mm256_set1_pd(f64::INFINITY); 2];
    let mut lane_at = [_mm_set1_epi32(i32::MAX); 2];
    let mut lane_position = [_mm_set1_epi32(-1); 2];
    let mut position = [_mm_setr_epi32(0, 1, 2, 3), _mm_setr_epi32(4, 5, 6, 7)];
    let mut checked = lane_min;
    let mut stopped = false;
    let size = _mm_set1_epi32(below.len() as i32);
    for chunk in list.chunks {
        let bound = chunk.floor + weighted_least;
        let bound_vec = _mm256_set1_pd(bound);
        let below_bound = _mm256_movemask_pd(_mm256_or_pd(
            _mm256_cmp_pd::<_CMP_LT_OQ>(checked[0], bound_vec),
            _mm256_cmp_pd::<_CMP_LT_OQ>(checked[1], bound_vec),
        ));
        if bound > seeded.0 || below_bound != 0 {
            stopped = true;
            break;
        }
        checked = lane_min;
        for half in 0..2 {
            // SAFETY: the chunk holds eight values and eight columns.
            let (values, columns) = unsafe {
                (
                    _mm256_loadu_pd(chunk.values.as_ptr().add(4 * half)),
                    _mm_loadu_si128(chunk.columns.as_ptr().add(4 * half).cast()),
                )
            };
            // A column past `below` would be a bug of the list, caught before the gather.
            let inside = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(columns, size)));
            assert_eq!(inside, 0b1111, "a column lies past the layer below");
            // SAFETY: every column indexes `below`, as asserted just above.
            let gathered = unsafe { _mm256_i32gather_pd::<8>(below.as_ptr(), columns) };
            let terms = _mm256_add_pd(values, _mm256_mul_pd(w, gathered));
            let smaller_column = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_cmplt_epi32(
                columns,
                lane_at[half],
            )));
            let lower = _mm256_or_pd(
                _mm256_cmp_pd::<_CMP_LT_OQ>(terms, lane_min[half]),
                _mm256_and_pd(
                    _mm256_cmp_pd::<_CMP_EQ_OQ>(terms, lane_min[half]),
                    smaller_column,
                ),
            );
            // The 64-bit lane mask, narrowed to the four 32-bit lanes of the columns.
            let lower_narrow = _mm_castps_si128(_mm256_castps256_ps128(_mm256_permutevar8x32_ps(
                _mm256_castpd_ps(lower),
                _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6),
            )));
            lane_min[half] = _mm256_blendv_pd(lane_min[half], terms, lower);
            lane_at[half] = _mm_blendv_epi8(lane_at[half], columns, lower_narrow);
            lane_position[half] =
                _mm_blendv_epi8(lane_position[half], position[half], lower_narrow);
            position[half] = _mm_add_epi32(position[half], _mm_set1_epi32(CHUNK as i32));
        }
    }
    let mut values = [0.0f64; CHUNK];
    let mut columns = [0i32; CHUNK];
    let mut positions = [0i32; CHUNK];
    for half in 0..2 {
        // SAFETY: each array holds two registers' worth.
        unsafe {
            _mm256_storeu_pd(values.as_mut_ptr().add(4 * half), lane_min[half]);
            _mm_storeu_si128(columns.as_mut_ptr().add(4 * half).cast(), lane_at[half]);
            _mm_storeu_si128(
                positions.as_mut_ptr().add(4 * half).cast(),
                lane_position[half],
            );
        }
    }
    let mut best = seeded;
    for lane in 0..CHUNK {
        let found = (
            values[lane],
            columns[lane] as usize,
            positions[lane] as usize,
        );
        if beats(found, best) {
            best = found;
        }
    }
    conclude(list, weighted_least, best, stopped)
}

/// [`scan_portable`] a chunk at a time: eight values, their eight `below` gathered, one
/// stopping test. Each lane keeps its own best term, column and position (the list is in no
/// column order, so ties are settled by column in the lane too), and the stopping test asks
/// whether the seed or any lane is already below the chunk's floor term, which needs no
/// horizontal reduction. It asks the lanes as they were one chunk earlier: a stale minimum
/// is only larger, so it may stop a chunk later but never wrongly, and the test need not
/// wait for the last gather.
///
/// # Safety
/// The CPU must support AVX-512F and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn scan_avx512(
    list: &RowList<'_>,
    below: &[f64],
    weight: f64,
    weighted_least: f64,
    seed: usize,
) -> Scan {
    use std::arch::x86_64::*;
    let seeded = term_at(list, below, weight, seed);
    let w = _mm512_set1_pd(weight);
    let mut lane_min = _mm512_set1_pd(f64::INFINITY);
    let mut lane_at = _mm256_set1_epi32(-1);
    let mut lane_position = _mm256_set1_epi32(-1);
    let mut position = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let mut checked = lane_min;
    let mut stopped = false;
    let size = _mm256_set1_epi32(below.len() as i32);
    for chunk in list.chunks {
        let bound = chunk.floor + weighted_least;
        if bound > seeded.0 || _mm512_cmp_pd_mask::<_CMP_LT_OQ>(checked, _mm512_set1_pd(bound)) != 0
        {
            stopped = true;
            break;
        }
        checked = lane_min;
        // SAFETY: the chunk holds eight values and eight columns.
        let (values, columns) = unsafe {
            (
                _mm512_loadu_pd(chunk.values.as_ptr()),
                _mm256_loadu_si256(chunk.columns.as_ptr().cast()),
            )
        };
        // A column past `below` would be a bug of the list, caught here before the gather.
        assert_eq!(
            _mm256_cmplt_epu32_mask(columns, size),
            0xff,
            "a column lies past the layer below"
        );
        // SAFETY: every column indexes `below`, as asserted just above.
        let gathered = unsafe { _mm512_i32gather_pd::<8>(columns, below.as_ptr()) };
        let terms = _mm512_add_pd(values, _mm512_mul_pd(w, gathered));
        let lower = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(terms, lane_min)
            | (_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(terms, lane_min)
                & _mm256_cmplt_epu32_mask(columns, lane_at));
        lane_min = _mm512_mask_mov_pd(lane_min, lower, terms);
        lane_at = _mm256_mask_mov_epi32(lane_at, lower, columns);
        lane_position = _mm256_mask_mov_epi32(lane_position, lower, position);
        position = _mm256_add_epi32(position, _mm256_set1_epi32(CHUNK as i32));
    }
    // The least lane, and among the lanes that reach it the one with the smallest column.
    let least = _mm512_reduce_min_pd(lane_min);
    let ties = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(lane_min, _mm512_set1_pd(least));
    let at = _mm256_mask_mov_epi32(_mm256_set1_epi32(-1), ties, lane_at);
    let column = _mm512_reduce_min_epu32(_mm512_inserti64x4::<0>(_mm512_set1_epi32(-1), at));
    let lane = (ties & _mm256_cmpeq_epu32_mask(lane_at, _mm256_set1_epi32(column as i32)))
        .trailing_zeros();
    let mut positions = [0u32; CHUNK];
    // SAFETY: `positions` holds eight u32, one register.
    unsafe { _mm256_storeu_si256(positions.as_mut_ptr().cast(), lane_position) };
    let found = (
        least,
        column as usize,
        positions[(lane as usize).min(CHUNK - 1)] as usize,
    );
    let best = if beats(found, seeded) { found } else { seeded };
    conclude(list, weighted_least, best, stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minplus::PRUNE_BLOCK;
    use crate::row_summary::tests::{draws, row};
    use crate::row_summary::RowSummaries;

    type Kernel = fn(&RowList<'_>, &[f64], f64, f64, usize) -> Scan;

    /// Every scan this CPU can run, by name.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![
            ("dispatch", threshold_scan),
            ("portable", |l, b, w, d, s| scan_portable(l, b, w, d, s)),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(("avx2", |l, b, w, d, s| {
                    // SAFETY: AVX2 support was checked when this kernel was listed.
                    unsafe { scan_avx2(l, b, w, d, s) }
                }));
            } else {
                eprintln!("skipping the AVX2 scan: this CPU lacks AVX2");
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                all.push(("avx512", |l, b, w, d, s| {
                    // SAFETY: AVX-512F and VL support was checked when this kernel was listed.
                    unsafe { scan_avx512(l, b, w, d, s) }
                }));
            } else {
                eprintln!("skipping the AVX-512 scan: this CPU lacks AVX-512F or VL");
            }
        }
        all
    }

    #[test]
    fn every_scan_settles_only_on_the_leftmost_minimum() {
        let mut draw = draws(23);
        let mut settled = 0;
        let mut unsettled = 0;
        for _ in 0..3000 {
            let len = 1 + draw(200) as usize;
            let distinct = [1, 2, 4, 1 << 20][draw(4) as usize];
            let costs = row(&mut draw, len, distinct);
            let first = draw(len as u64) as usize;
            let keep = [1, 4, 9, 30][draw(4) as usize];
            let mut summaries = RowSummaries::new(1, len.div_ceil(PRUNE_BLOCK), keep, 1);
            summaries.push(&costs, first).expect("the row is valid");
            let list = summaries.list(0);
            // The layer below: +inf past `hi`, ties, and now and then +inf inside the range.
            let hi = first + draw((len - first) as u64) as usize;
            let below: Vec<f64> = (0..len)
                .map(|j| match draw(distinct.min(8) + 1) {
                    _ if j > hi => f64::INFINITY,
                    0 => f64::INFINITY,
                    x => x as f64 * 0.25,
                })
                .collect();
            for weight in [1.0, 0.5, 1.3] {
                let mut best = (f64::INFINITY, first);
                for j in first..=hi {
                    let term = costs[j] + weight * below[j];
                    if term < best.0 {
                        best = (term, j);
                    }
                }
                let least = below[first..=hi]
                    .iter()
                    .fold(f64::INFINITY, |m, &x| m.min(x));
                let seed = draw((list.chunks.len() * CHUNK) as u64) as usize;
                for (name, kernel) in kernels() {
                    let context =
                        format!("{name}: {costs:?} from {first} to {hi}, w {weight}, seed {seed}");
                    match kernel(&list, &below, weight, weight * least, seed) {
                        Scan::Settled(value, j, at) => {
                            settled += 1;
                            assert_eq!(
                                (value.to_bits(), j),
                                (best.0.to_bits(), best.1),
                                "{context}"
                            );
                            let chunk = &list.chunks[at / CHUNK];
                            assert_eq!(chunk.columns[at % CHUNK] as usize, j, "{context}");
                        }
                        Scan::Unsettled(found) => {
                            unsettled += 1;
                            assert!(found >= best.0, "{context}");
                        }
                    }
                }
            }
        }
        // Both outcomes are exercised.
        assert!(
            settled > 1000 && unsettled > 1000,
            "{settled} settled, {unsettled} not"
        );
    }
}
