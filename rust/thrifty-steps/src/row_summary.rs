//! What the pruned DP keeps of each cost row: its block minima, which bound whole blocks of
//! columns, and a list of its cheapest entries in (nearly) ascending order, which the
//! threshold scan reads. One pass over the row, which also validates it, yields both.
//!
//! **The list.** A row keeps about [`KEEP`] entries: every entry up to a threshold, cut to
//! about the [`KEEP`] cheapest when the threshold takes in too many. The threshold is
//! guessed from the row before (rows of a cost matrix change little from one to the next),
//! and from the row's own block minima when that guess takes in too few. The entries are
//! ordered by a counting sort into [`BINS`] bins of value, not sorted: within a bin they keep
//! the row's order. The scan needs no more, because each chunk of the list records a floor,
//! the least value from that chunk to the end of the list and of the entries left out
//! (`rest`): whatever the order, no later entry is below a chunk's floor.
//!
//! **The layout.** A list is a run of [`Chunk`]s of eight entries, each two cache lines:
//! the values, their columns and the chunk's floor side by side. The scan reads a short
//! prefix of every row's list at every layer, so a chunk that arrives whole, with the
//! next one fetched by the adjacent-line prefetcher, matters more than a compact list.

use crate::minplus::PRUNE_BLOCK;

/// Entries a row's list keeps, about. On uniform random costs at N = 2000, K = 50 (Intel
/// Emerald Rapids, two threads) a cell reads about 36 of them whatever the length; with 96
/// the list settles all but 255 of the 83,761 cells it is tried on, with 128 all but 20, but
/// 96 ran 4 % faster (shorter lists are cheaper to build and leave more of L2 to the rest),
/// and 64 no faster than 96.
pub(crate) const KEEP: usize = 96;

/// Rows shorter than this keep no list: their block-pruned scan is short anyway.
pub(crate) const MIN_ROW: usize = 256;

/// Entries per chunk: one AVX-512 register of values.
pub(crate) const CHUNK: usize = 8;

/// Block minima that the fallback threshold guess is taken from.
const SAMPLE: usize = 16;

/// Value bins of the counting sort that orders a list.
const BINS: usize = 32;

/// Eight entries of a list and their floor.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Chunk {
    pub(crate) values: [f64; CHUNK],
    /// Columns relative to the summarised row's first column; padding entries are `+inf` at
    /// the row's first column of the list.
    pub(crate) columns: [u32; CHUNK],
    /// At most every value of this chunk and of the chunks after it, and the row's `rest`.
    pub(crate) floor: f64,
}

/// One row's list, as the scan reads it.
#[derive(Clone, Copy)]
pub(crate) struct RowList<'a> {
    pub(crate) chunks: &'a [Chunk],
    /// At most every entry of the row that the list left out.
    pub(crate) rest: f64,
}

/// The summaries of a run of consecutive rows, each row cut to the same columns.
pub(crate) struct RowSummaries {
    keep: usize,
    min_row: usize,
    /// Blocks per row: `row.len().div_ceil(PRUNE_BLOCK)` of the rows pushed.
    width: usize,
    /// `minima[r * width + b]`: the least entry of row `r` in block `b`, over the columns the
    /// row was summarised from (`+inf` for blocks wholly before them).
    minima: Vec<f64>,
    /// `offsets[r]..offsets[r + 1]`: row `r`'s chunks.
    offsets: Vec<usize>,
    chunks: Vec<Chunk>,
    rest: Vec<f64>,
    /// The last list's cut value and row length, from which the next row's threshold is
    /// guessed.
    hint: Option<(f64, usize)>,
    // Scratch, reused from row to row.
    found: Vec<f64>,
    found_columns: Vec<u32>,
    sample: Vec<f64>,
    bins: Vec<u8>,
}

impl RowSummaries {
    /// Summaries of about `rows` rows, `width * PRUNE_BLOCK` columns long at most, with lists
    /// of about `keep` entries for rows of at least `min_row` columns (see [`KEEP`] and
    /// [`MIN_ROW`]).
    pub(crate) fn new(rows: usize, width: usize, keep: usize, min_row: usize) -> Self {
        let keep = keep.max(1);
        // Reserved up front: growing by reallocation would copy megabytes at N = 2000.
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        RowSummaries {
            keep,
            min_row: min_row.max(1),
            width,
            minima: Vec::with_capacity(rows * width),
            offsets,
            chunks: Vec::with_capacity(rows * (keep.div_ceil(CHUNK) + 2)),
            rest: Vec::with_capacity(rows),
            hint: None,
            found: Vec::new(),
            found_columns: Vec::new(),
            sample: Vec::new(),
            bins: Vec::new(),
        }
    }

    /// Row `r`'s block minima.
    #[inline]
    pub(crate) fn minima(&self, r: usize) -> &[f64] {
        &self.minima[r * self.width..(r + 1) * self.width]
    }

    /// Row `r`'s list (empty for rows too short to keep one).
    #[inline]
    pub(crate) fn list(&self, r: usize) -> RowList<'_> {
        RowList {
            chunks: &self.chunks[self.offsets[r]..self.offsets[r + 1]],
            rest: self.rest[r],
        }
    }

    /// Summarises `row[first..]`. `Err(j)` names the first column `j >= first` whose entry is
    /// not finite or is negative; the row is then not added.
    pub(crate) fn push(&mut self, row: &[f64], first: usize) -> Result<(), usize> {
        debug_assert!(first < row.len() && row.len().div_ceil(PRUNE_BLOCK) <= self.width);
        let len = row.len() - first;
        let listed = len >= self.min_row;
        // Rows of a cost matrix change slowly: about as many entries as the last row kept lie
        // below its cut scaled by the lengths (exactly so for uniform costs), with a margin.
        let guess = match self.hint {
            Some((cut, hint_len)) if listed => cut * (hint_len as f64 / len as f64) * 1.15,
            // Costs are >= 0: nothing is collected.
            _ => -1.0,
        };
        let start = self.minima.len();
        self.minima.resize(start + self.width, f64::INFINITY);
        let minima = &mut self.minima[start..];
        if !summarise(
            row,
            first,
            guess,
            minima,
            &mut self.found,
            &mut self.found_columns,
        ) {
            self.minima.truncate(start);
            let bad = row[first..]
                .iter()
                .position(|x| !(x.is_finite() && *x >= 0.0))
                .expect("the pass found an entry that is not finite or is negative");
            return Err(first + bad);
        }
        if !listed {
            // An empty list whose `rest` no cell can beat: every cell of the row scans.
            self.rest.push(0.0);
            self.offsets.push(self.chunks.len());
            return Ok(());
        }
        let blocks =
            &self.minima[start + first / PRUNE_BLOCK..start + row.len().div_ceil(PRUNE_BLOCK)];
        let least = blocks.iter().fold(f64::INFINITY, |m, &x| m.min(x));
        let mut threshold = guess;
        let wanted = (self.keep / 2).max(1);
        if self.found.len() < wanted && self.found.len() < len {
            // The guess took in too few: guess again from the row's block minima, raising the
            // threshold while it still does (a short list makes cells fall back to the block
            // scan; one too long costs only the cut).
            threshold = threshold.max(guess_from_minima(blocks, self.keep, &mut self.sample));
            for _ in 0..3 {
                // The row is in cache now; the minima come out the same again.
                let minima = &mut self.minima[start..];
                summarise(
                    row,
                    first,
                    threshold,
                    minima,
                    &mut self.found,
                    &mut self.found_columns,
                );
                if self.found.len() >= wanted || self.found.len() == len {
                    break;
                }
                threshold *= 4.0;
            }
        }
        let rest = self.write_list(least, threshold, first as u32);
        self.hint = Some((rest, len));
        Ok(())
    }

    /// Appends the row's list: `self.found` ordered by a counting sort into [`BINS`] bins of
    /// equal width between `least` and `threshold` (stable within a bin), the bins from the
    /// cheapest up until about `keep` entries are kept, as chunks padded with `+inf` at
    /// column `pad`, each with its floor. Returns `rest`, at most every entry of the row left
    /// out.
    fn write_list(&mut self, least: f64, threshold: f64, pad: u32) -> f64 {
        let scale = BINS as f64 / (threshold - least);
        self.bins.clear();
        let mut count = [0u32; BINS];
        for &x in &self.found {
            // `as` saturates, and NaN (from a range of width zero) goes to bin 0.
            let b = ((x - least) * scale).min((BINS - 1) as f64) as u8;
            self.bins.push(b);
            count[usize::from(b)] += 1;
        }
        let mut kept_bins = 0;
        let mut kept = 0;
        while kept_bins < BINS && kept < self.keep {
            kept += count[kept_bins] as usize;
            kept_bins += 1;
        }
        let slots = kept.div_ceil(CHUNK) * CHUNK;
        // Where each bin's next entry goes. The bins left out all point at one slot of a
        // spare chunk past the list, so that the loop below has no branch on whether an
        // entry is kept (about one in five is not: a branch would often guess wrong).
        let mut next = [slots; BINS];
        next[0] = 0;
        for b in 1..kept_bins {
            next[b] = next[b - 1] + count[b - 1] as usize;
        }
        let start = self.chunks.len();
        self.chunks.resize(
            start + slots / CHUNK + 1,
            Chunk {
                values: [f64::INFINITY; CHUNK],
                columns: [pad; CHUNK],
                floor: f64::INFINITY,
            },
        );
        let chunks = &mut self.chunks[start..];
        // Left out: the entries of the bins after the kept ones, and those above the
        // threshold (none when the whole row was taken in, which `threshold` then bounds).
        let mut rest = threshold;
        for ((&x, &column), &b) in self.found.iter().zip(&self.found_columns).zip(&self.bins) {
            let b = usize::from(b);
            let kept = b < kept_bins;
            let at = next[b];
            next[b] += usize::from(kept);
            chunks[at / CHUNK].values[at % CHUNK] = x;
            chunks[at / CHUNK].columns[at % CHUNK] = column;
            rest = if !kept && x < rest { x } else { rest };
        }
        self.chunks.truncate(start + slots / CHUNK);
        let chunks = &mut self.chunks[start..];
        let mut floor = rest;
        for chunk in chunks.iter_mut().rev() {
            floor = chunk
                .values
                .iter()
                .fold(floor, |m, &x| if x < m { x } else { m });
            chunk.floor = floor;
        }
        self.rest.push(rest);
        self.offsets.push(self.chunks.len());
        rest
    }
}

/// A threshold that about `keep` entries are below: the [`SAMPLE`]-th smallest block
/// minimum, scaled up as if the values near the row's minimum were uniformly spread (then
/// the `s`-th smallest block minimum has about `s` entries below it).
fn guess_from_minima(blocks: &[f64], keep: usize, sample: &mut Vec<f64>) -> f64 {
    sample.clear();
    sample.extend_from_slice(blocks);
    let s = SAMPLE.min(blocks.len());
    let (_, at, _) = sample.select_nth_unstable_by(s - 1, f64::total_cmp);
    *at * (keep as f64 / s as f64)
}

/// One pass over `row[first..]`: whether every entry is finite and `>= 0`; the minimum of
/// each block of [`PRUNE_BLOCK`] columns into `minima` (over columns `>= first`); and every
/// entry `<= threshold` with its column into `found`, `found_columns`, in column order.
fn summarise(
    row: &[f64],
    first: usize,
    threshold: f64,
    minima: &mut [f64],
    found: &mut Vec<f64>,
    found_columns: &mut Vec<u32>,
) -> bool {
    // Room for a whole register past the last entry, which the AVX-512 pass may store.
    found.resize(row.len() - first + CHUNK, 0.0);
    found_columns.resize(row.len() - first + CHUNK, 0);
    let pass: Pass = {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY (of the call below): the CPU supports AVX-512F, checked just above;
                // `found` and `found_columns` have room for every entry and one register more.
                |r, f, t, m, v, c| unsafe { summarise_avx512(r, f, t, m, v, c) }
            } else if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY (of the call below): the CPU supports AVX2, checked just above.
                |r, f, t, m, v, c| unsafe { summarise_avx2(r, f, t, m, v, c) }
            } else {
                summarise_portable
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            summarise_portable
        }
    };
    let (valid, count) = pass(row, first, threshold, minima, found, found_columns);
    found.truncate(count);
    found_columns.truncate(count);
    valid
}

/// The signature of every version of the summarising pass.
type Pass = fn(&[f64], usize, f64, &mut [f64], &mut [f64], &mut [u32]) -> (bool, usize);

/// For each mask of four lanes, the 32-bit halves of the kept lanes in order: the
/// permutation that packs a register of four `f64`'s kept entries to its front, from the same
/// order as [`PACK`].
const PACK_HALVES: [[u32; CHUNK]; 16] = {
    let mut table = [[0u32; CHUNK]; 16];
    let mut mask = 0;
    while mask < 16 {
        let mut k = 0;
        while k < 4 {
            table[mask][2 * k] = 2 * PACK[mask][k] as u32;
            table[mask][2 * k + 1] = 2 * PACK[mask][k] as u32 + 1;
            k += 1;
        }
        mask += 1;
    }
    table
};

/// [`summarise_portable`] four columns at a time, as [`summarise_avx512`] does eight: lanes
/// out of the range read as `+inf`, and the kept entries are packed by a permutation from a
/// table and stored as a whole register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn summarise_avx2(
    row: &[f64],
    first: usize,
    threshold: f64,
    minima: &mut [f64],
    found: &mut [f64],
    found_columns: &mut [u32],
) -> (bool, usize) {
    use std::arch::x86_64::*;
    const LANES: usize = 4;
    const _: () = assert!(PRUNE_BLOCK == 4 * LANES, "a block is four registers");
    let zero = _mm256_setzero_pd();
    let inf = _mm256_set1_pd(f64::INFINITY);
    let limit = _mm256_set1_pd(threshold);
    let mut bad = 0;
    let mut count = 0;
    for (b, columns) in blocks_from(first, row.len()) {
        let whole = columns.len() == PRUNE_BLOCK;
        let mut least = inf;
        for at in (b * PRUNE_BLOCK..(b + 1) * PRUNE_BLOCK).step_by(LANES) {
            // Lanes out of the range read as +inf.
            let (x, lanes) = if whole {
                // SAFETY: the block lies in the range, so in `row`.
                (unsafe { _mm256_loadu_pd(row.as_ptr().add(at)) }, 0b1111)
            } else {
                let lane = |l: usize| match columns.contains(&(at + l)) {
                    true => row[at + l],
                    false => f64::INFINITY,
                };
                let lanes =
                    (0..LANES).fold(0, |m, l| m | (i32::from(columns.contains(&(at + l))) << l));
                (_mm256_setr_pd(lane(0), lane(1), lane(2), lane(3)), lanes)
            };
            // Ordered comparisons: NaN fails both, so it counts as bad.
            let valid = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GE_OQ>(x, zero),
                _mm256_cmp_pd::<_CMP_LT_OQ>(x, inf),
            );
            bad |= lanes & !_mm256_movemask_pd(valid);
            least = _mm256_min_pd(x, least);
            let keep = (_mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LE_OQ>(x, limit)) & lanes) as usize;
            // SAFETY: the table rows are eight u32 and eight u8; `count + 4 <= found.len()`,
            // since `count` is at most the entries before this register and `found` has a
            // register of room past the last entry.
            unsafe {
                let halves = _mm256_loadu_si256(PACK_HALVES[keep].as_ptr().cast());
                let packed = _mm256_permutevar8x32_epi32(_mm256_castpd_si256(x), halves);
                _mm256_storeu_pd(found.as_mut_ptr().add(count), _mm256_castsi256_pd(packed));
                let order = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes([
                    PACK[keep][0],
                    PACK[keep][1],
                    PACK[keep][2],
                    PACK[keep][3],
                ])));
                _mm_storeu_si128(
                    found_columns.as_mut_ptr().add(count).cast(),
                    _mm_add_epi32(_mm_set1_epi32(at as i32), order),
                );
            }
            count += keep.count_ones() as usize;
        }
        let half = _mm_min_pd(
            _mm256_castpd256_pd128(least),
            _mm256_extractf128_pd::<1>(least),
        );
        minima[b] = _mm_cvtsd_f64(_mm_min_sd(half, _mm_unpackhi_pd(half, half)));
    }
    (bad == 0, count)
}

/// The blocks of [`PRUNE_BLOCK`] columns that meet `first..len`, each as `(block, columns)`.
fn blocks_from(first: usize, len: usize) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    (first / PRUNE_BLOCK..len.div_ceil(PRUNE_BLOCK)).map(move |b| {
        (
            b,
            (b * PRUNE_BLOCK).max(first)..((b + 1) * PRUNE_BLOCK).min(len),
        )
    })
}

#[inline(always)]
fn summarise_portable(
    row: &[f64],
    first: usize,
    threshold: f64,
    minima: &mut [f64],
    found: &mut [f64],
    found_columns: &mut [u32],
) -> (bool, usize) {
    let mut bad = false;
    let mut count = 0;
    for (b, columns) in blocks_from(first, row.len()) {
        let mut least = f64::INFINITY;
        for j in columns {
            let x = row[j];
            // False for NaN too.
            bad |= !(0.0..f64::INFINITY).contains(&x);
            least = if x < least { x } else { least };
            // Branch-free: every entry goes to the next free slot, and the count only moves
            // past the kept ones (whether an entry is kept is a coin toss for a branch).
            found[count] = x;
            found_columns[count] = j as u32;
            count += usize::from(x <= threshold);
        }
        minima[b] = least;
    }
    (!bad, count)
}

/// For each mask of eight lanes, the kept lanes in order, then zeros: the permutation that
/// packs a register's kept entries to its front.
const PACK: [[u8; CHUNK]; 1 << CHUNK] = {
    let mut table = [[0u8; CHUNK]; 1 << CHUNK];
    let mut mask = 0;
    while mask < 1 << CHUNK {
        let (mut lane, mut kept) = (0, 0);
        while lane < CHUNK {
            if mask >> lane & 1 == 1 {
                table[mask][kept] = lane as u8;
                kept += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// [`summarise_portable`] a register of eight columns at a time: masked loads at the ends of
/// the range, and the kept entries packed to the front of a register that is stored whole
/// (the free slots after the kept ones take the rest, overwritten next). The packing is a
/// permutation from a table, not `vcompresspd`: with the compress instructions, LLVM fails
/// to compile the crate when it is linked with `-C linker-plugin-lto` (release doctests).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn summarise_avx512(
    row: &[f64],
    first: usize,
    threshold: f64,
    minima: &mut [f64],
    found: &mut [f64],
    found_columns: &mut [u32],
) -> (bool, usize) {
    use std::arch::x86_64::*;
    const _: () = assert!(PRUNE_BLOCK == 2 * CHUNK, "a block is two registers");
    let zero = _mm512_setzero_pd();
    let inf = _mm512_set1_pd(f64::INFINITY);
    let limit = _mm512_set1_pd(threshold);
    let mut bad: __mmask8 = 0;
    let mut count = 0;
    // One register of the eight columns from `at`, of which `lanes` are in the range:
    // validated, its kept entries packed and stored, and returned for the block minimum
    // (+inf in the lanes out of the range).
    let mut register = |at: usize, lanes: __mmask8| {
        // SAFETY: only lanes in the range are read, and those lie in `row`.
        let x = unsafe { _mm512_mask_loadu_pd(inf, lanes, row.as_ptr().wrapping_add(at)) };
        // Ordered comparisons: NaN fails both, so it counts as bad.
        let valid =
            _mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, zero) & _mm512_cmp_pd_mask::<_CMP_LT_OQ>(x, inf);
        bad |= lanes & !valid;
        let keep = _mm512_mask_cmp_pd_mask::<_CMP_LE_OQ>(lanes, x, limit);
        // SAFETY: a table row is eight bytes; `count + 8 <= found.len()`, since `count` is
        // at most the entries before this register and `found` has a register of room past
        // the last entry.
        unsafe {
            let order = _mm_loadl_epi64(PACK[usize::from(keep)].as_ptr().cast());
            _mm512_storeu_pd(
                found.as_mut_ptr().add(count),
                _mm512_permutexvar_pd(_mm512_cvtepu8_epi64(order), x),
            );
            _mm256_storeu_si256(
                found_columns.as_mut_ptr().add(count).cast(),
                _mm256_add_epi32(_mm256_set1_epi32(at as i32), _mm256_cvtepu8_epi32(order)),
            );
        }
        count += keep.count_ones() as usize;
        x
    };
    for (b, columns) in blocks_from(first, row.len()) {
        let at = b * PRUNE_BLOCK;
        let least = if columns.len() == PRUNE_BLOCK {
            // A whole block: no lane is out of the range.
            _mm512_min_pd(register(at, 0xff), register(at + CHUNK, 0xff))
        } else {
            let lanes = |from: usize| {
                let start = columns.start.saturating_sub(from).min(CHUNK);
                let end = columns.end.saturating_sub(from).min(CHUNK);
                ((0xffu32 << start) & !(0xffu32 << end)) as __mmask8
            };
            _mm512_min_pd(
                register(at, lanes(at)),
                register(at + CHUNK, lanes(at + CHUNK)),
            )
        };
        minima[b] = _mm512_reduce_min_pd(least);
    }
    (bad == 0, count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use crate::minplus::tests::draws;

    /// A row of `len` costs with `distinct` values in [0, 1), zeros of both signs among them.
    pub(crate) fn row(draw: &mut impl FnMut(u64) -> u64, len: usize, distinct: u64) -> Vec<f64> {
        (0..len)
            .map(|_| match draw(distinct) {
                0 if draw(2) == 0 => -0.0,
                x => x as f64 / distinct as f64,
            })
            .collect()
    }

    /// Every pass this CPU can run, by name.
    fn passes() -> Vec<(&'static str, Pass)> {
        let mut all: Vec<(&'static str, Pass)> = vec![("portable", summarise_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(("avx2", |r, f, t, m, v, c| {
                    // SAFETY: AVX2 support was checked when this pass was listed.
                    unsafe { summarise_avx2(r, f, t, m, v, c) }
                }));
            } else {
                eprintln!("skipping the AVX2 pass: this CPU lacks AVX2");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(("avx512", |r, f, t, m, v, c| {
                    // SAFETY: AVX-512F support was checked when this pass was listed.
                    unsafe { summarise_avx512(r, f, t, m, v, c) }
                }));
            } else {
                eprintln!("skipping the AVX-512 pass: this CPU lacks AVX-512F");
            }
        }
        all
    }

    #[test]
    fn every_pass_validates_takes_block_minima_and_collects_like_a_plain_loop() {
        let mut draw = draws(11);
        for len in 1..=100 {
            for _ in 0..6 {
                let distinct = [2, 7, 1000][draw(3) as usize];
                let mut row = row(&mut draw, len, distinct);
                let first = draw(len as u64) as usize;
                if draw(4) == 0 {
                    let at = first + draw((len - first) as u64) as usize;
                    row[at] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5][draw(4) as usize];
                }
                let threshold = [-1.0, 0.0, 0.3, 2.0][draw(4) as usize];
                let valid = row[first..].iter().all(|x| x.is_finite() && *x >= 0.0);
                let blocks = len.div_ceil(PRUNE_BLOCK);
                let mut minima = vec![f64::INFINITY; blocks];
                for (j, &x) in row.iter().enumerate().skip(first) {
                    minima[j / PRUNE_BLOCK] = minima[j / PRUNE_BLOCK].min(x);
                }
                let kept: Vec<(u64, u32)> = (first..len)
                    .filter(|&j| row[j] <= threshold)
                    .map(|j| (row[j].to_bits(), j as u32))
                    .collect();
                for (name, pass) in passes() {
                    let mut got_minima = vec![f64::INFINITY; blocks];
                    let mut values = vec![0.0; len + CHUNK];
                    let mut columns = vec![0; len + CHUNK];
                    let (ok, count) = pass(
                        &row,
                        first,
                        threshold,
                        &mut got_minima,
                        &mut values,
                        &mut columns,
                    );
                    let context = format!("{name}: len {len}, first {first}, row {row:?}");
                    assert_eq!(ok, valid, "{context}");
                    if valid {
                        let got: Vec<(u64, u32)> = (0..count)
                            .map(|t| (values[t].to_bits(), columns[t]))
                            .collect();
                        assert_eq!(got, kept, "{context}");
                        // Block minima compare as numbers (-0.0 == 0.0).
                        assert_eq!(got_minima, minima, "{context}");
                    }
                }
            }
        }
    }

    /// Checks what a list promises: its entries are the row's, at distinct columns from
    /// `first` on; every entry left out is >= `rest`; every chunk's floor is at most each
    /// value from it to the end and `rest`; padding is +inf at column `first`.
    pub(crate) fn check_list(list: &RowList<'_>, row: &[f64], first: usize) {
        let mut listed = vec![false; row.len()];
        for (c, chunk) in list.chunks.iter().enumerate() {
            let later = list.chunks[c..].iter().flat_map(|chunk| chunk.values);
            assert!(later.chain([list.rest]).all(|x| chunk.floor <= x));
            for (&value, &column) in chunk.values.iter().zip(&chunk.columns) {
                let column = column as usize;
                if value == f64::INFINITY {
                    assert_eq!(column, first);
                    continue;
                }
                assert!(column >= first && !listed[column], "column {column}");
                assert_eq!(value.to_bits(), row[column].to_bits());
                listed[column] = true;
            }
        }
        for j in first..row.len() {
            assert!(listed[j] || row[j] >= list.rest, "left out {j}: {}", row[j]);
        }
    }

    #[test]
    fn lists_keep_their_promises_on_ties_zeros_and_short_rows() {
        let mut draw = draws(5);
        for keep in [1, 3, 8, 20, 128] {
            for min_row in [1, 10, 50] {
                let width = 300usize.div_ceil(PRUNE_BLOCK);
                let mut summaries = RowSummaries::new(40, width, keep, min_row);
                let mut rows = Vec::new();
                for _ in 0..40 {
                    let len = 1 + draw(300) as usize;
                    let distinct = [1, 2, 5, 1 << 20][draw(4) as usize];
                    let row = row(&mut draw, len, distinct);
                    let first = draw(len as u64) as usize;
                    summaries.push(&row, first).expect("the rows are valid");
                    rows.push((row, first));
                }
                for (r, (row, first)) in rows.iter().enumerate() {
                    let list = summaries.list(r);
                    if row.len() - first < min_row {
                        assert!(list.chunks.is_empty());
                    } else {
                        check_list(&list, row, *first);
                        assert!(!list.chunks.is_empty());
                    }
                    let mut minima = vec![f64::INFINITY; width];
                    for (j, &x) in row.iter().enumerate().skip(*first) {
                        minima[j / PRUNE_BLOCK] = minima[j / PRUNE_BLOCK].min(x);
                    }
                    assert_eq!(summaries.minima(r), &minima[..]);
                }
            }
        }
    }

    #[test]
    fn a_bad_entry_is_named_and_its_row_left_out() {
        let mut summaries = RowSummaries::new(1, 4, 8, 4);
        let mut row = vec![0.5; 40];
        row[3] = f64::NAN;
        row[17] = -1.0;
        row[30] = f64::INFINITY;
        assert_eq!(summaries.push(&row, 0), Err(3));
        assert_eq!(summaries.push(&row, 4), Err(17));
        assert_eq!(summaries.push(&row, 18), Err(30));
        assert_eq!(summaries.push(&row, 31), Ok(()));
        // Column 31 opens block 1 (columns 16 to 31); block 3 lies past the row.
        assert_eq!(
            summaries.minima(0),
            &[f64::INFINITY, 0.5, 0.5, f64::INFINITY]
        );
        check_list(&summaries.list(0), &row, 31);
    }
}
