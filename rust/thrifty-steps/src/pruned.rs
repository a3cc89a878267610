//! The full DP on large matrices: each cell looks at its row's cheapest entries first, and
//! only the cells those do not settle scan the row, skipping blocks that cannot hold the
//! minimiser.
//!
//! Two exact prunings, tried in turn (see [`crate::threshold_scan`] and
//! [`minplus::pruned_row_argmin`]; both keep every result bit for bit):
//! - the **threshold scan**: a row's entries cheapest first, stopping at the first whose cost
//!   plus `w` times the least value of the layer below exceeds the best term so far;
//! - the **block-pruned scan**: each cost row is cut into blocks of
//!   [`minplus::PRUNE_BLOCK`] columns, each with a lower bound (its least cost plus `w` times
//!   the layer below's least over the same columns), and only blocks whose bound can still
//!   win are scanned.
//!
//! On uniform random costs at N = 2000, K = 50 the threshold scan settles all but 255 of the
//! 83,761 cells it is tried on, after about 36 entries each. On costs that rise steadily
//! along each row (smooth jump errors) a row's cheapest entries are its first ones and do not
//! settle cells; a band that finds most of a layer's cells unsettled stops trying the lists.
//!
//! **Bands.** The rows are cut into one band of consecutive rows per thread, and each band
//! runs every layer for its rows on its own. Cell `(k, i)` reads the layer below only at
//! columns `j > i`, so a band depends on the bands above it alone: it waits until they have
//! finished the layer below, and the highest band never waits. A band also builds the lists
//! and block minima of its own rows, which no other band reads. This replaces a barrier per
//! layer (and a dispatch to the thread pool per layer, which cost more than the cells at
//! N = 2000 once the threshold scan made them cheap) by one-way waits that rarely happen.

use crate::minplus::{self, PRUNE_BLOCK};
use crate::row_summary::{self, RowSummaries};
use crate::threshold_scan::{threshold_scan, Scan};
use crate::validate;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use thrifty_core::{parallel, CoreResult};

/// From this many nodes on, the full DP prunes.
///
/// Below it the plain scan's fixed costs are lower. Random costs (Intel Emerald Rapids,
/// AVX-512, two threads), pruned against plain: 0.10 against 0.08 ms at 200 nodes and
/// K = 10, equal at K = 50; 0.15 against 0.24 ms at 300 nodes and K = 10, 0.42 against
/// 0.81 at K = 50; 0.59 against 1.17 ms at 400 nodes and K = 50.
pub(crate) const MIN_NODES: usize = 256;

/// The sizes the pruned DP works with; the tests shrink them so that small matrices reach
/// every path (cut lists, fallbacks, many bands).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Entries a row's list keeps, about.
    pub(crate) keep: usize,
    /// Rows shorter than this keep no list.
    pub(crate) min_row: usize,
    /// Bands, or one per thread when `None`.
    pub(crate) bands: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            keep: row_summary::KEEP,
            min_row: row_summary::MIN_ROW,
            bands: None,
        }
    }
}

/// The full DP, with the same inputs and outputs as the plain one: `dp[(k - 1) * n_nodes +
/// i]` and `choices[..]` of layer 1 filled in, the others filled here for every row that can
/// still make `k` jumps (only row 0 of the top layer, the one that is read back).
///
/// The cost entries need not be validated: each row is checked just before it is
/// summarised, while it is in cache, and the first invalid entry in row-major order is
/// reported as [`validate::cost_entries`] would.
#[allow(clippy::too_many_arguments)]
pub(crate) fn full_by_bands(
    cost: &[f64],
    n_nodes: usize,
    k_max: usize,
    weight: f64,
    parallel: bool,
    tuning: Tuning,
    dp: &mut [f64],
    choices: &mut [u32],
) -> CoreResult<()> {
    let wanted = tuning
        .bands
        .unwrap_or(if parallel { parallel::threads() } else { 1 });
    let blocks = n_nodes.div_ceil(PRUNE_BLOCK);
    let mut below_min = vec![f64::INFINITY; k_max * blocks];
    let bands = cut_bands(n_nodes, wanted);
    let pipeline = Pipeline {
        cost,
        n_nodes,
        k_max,
        weight,
        tuning,
        blocks,
        progress: bands.iter().map(|_| AtomicUsize::new(0)).collect(),
        band_min: (0..k_max * bands.len())
            .map(|_| AtomicU64::new(f64::INFINITY.to_bits()))
            .collect(),
        failed: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        dp: Shared::new(dp),
        choices: Shared::new(choices),
        below_min: Shared::new(&mut below_min),
        bands,
    };
    let run = |t: usize| {
        let _abandon = AbandonOnPanic(&pipeline.failed);
        if let Err(bad) = pipeline.run_band(t) {
            pipeline.failed.store(true, Ordering::Release);
            pipeline.errors.lock().expect("no band panics").push(bad);
        }
    };
    if parallel {
        parallel::for_each_descending(pipeline.bands.len(), run);
    } else {
        (0..pipeline.bands.len()).rev().for_each(run);
    }
    let errors = pipeline.errors.into_inner().expect("no band panics");
    match errors.into_iter().min() {
        Some((i, j)) => Err(validate::entry_error(cost, n_nodes, i, j)),
        None => Ok(()),
    }
}

/// Marks the pipeline failed if its band panics, so that the bands below stop waiting for it
/// and the panic reaches the caller instead of a hang.
struct AbandonOnPanic<'a>(&'a AtomicBool);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// Band boundaries: `count` (at most) runs of consecutive columns `0..n_nodes`, cut at
/// multiples of [`PRUNE_BLOCK`] so that no block of the layer below is shared, with about
/// equal work each. A row's work is its list and block minima (its length) plus its cells
/// (about the same for every row), taken as `n_nodes`.
fn cut_bands(n_nodes: usize, count: usize) -> Vec<Range<usize>> {
    let blocks = n_nodes.div_ceil(PRUNE_BLOCK);
    let count = count.clamp(1, blocks);
    let work = |i: usize| (n_nodes - i + n_nodes) as f64;
    let total: f64 = (0..n_nodes).map(work).sum();
    let mut starts = vec![0];
    let mut done = 0.0;
    for i in 0..n_nodes {
        done += work(i);
        let boundary = (i + 1).next_multiple_of(PRUNE_BLOCK);
        let wanted = starts.len() as f64 * total / count as f64;
        let previous = *starts.last().expect("starts at 0");
        if starts.len() < count && done >= wanted && previous < boundary && boundary < n_nodes {
            starts.push(boundary);
        }
    }
    starts.push(n_nodes);
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// A table that the bands fill in disjoint parts and read once they are published.
struct Shared<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the bands' accesses follow the rules of `slice` and `set`, which the pipeline's
// progress counters (release on publish, acquire on wait) order.
unsafe impl<T: Send + Sync> Sync for Shared<'_, T> {}
unsafe impl<T: Send + Sync> Send for Shared<'_, T> {}

impl<'a, T: Copy> Shared<'a, T> {
    fn new(data: &'a mut [T]) -> Self {
        Shared {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _borrow: PhantomData,
        }
    }

    /// # Safety
    /// No thread may write inside `range` while the slice lives.
    unsafe fn slice(&self, range: Range<usize>) -> &[T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds, as asserted; no concurrent writes, as the caller guarantees.
        unsafe { std::slice::from_raw_parts(self.ptr.add(range.start), range.len()) }
    }

    /// # Safety
    /// No other thread may read or write `at` until this write is published.
    unsafe fn set(&self, at: usize, value: T) {
        assert!(at < self.len);
        // SAFETY: in bounds, as asserted; exclusive, as the caller guarantees.
        unsafe { self.ptr.add(at).write(value) }
    }
}

/// Everything the bands share.
struct Pipeline<'a> {
    cost: &'a [f64],
    n_nodes: usize,
    k_max: usize,
    weight: f64,
    tuning: Tuning,
    blocks: usize,
    bands: Vec<Range<usize>>,
    /// `progress[t]`: the layers band `t` has finished and published (1 once its rows are
    /// summarised and layer 1's minima taken).
    progress: Vec<AtomicUsize>,
    /// `band_min[(k - 1) * bands + t]`: the least `dp_k` over band `t`'s columns (f64 bits).
    band_min: Vec<AtomicU64>,
    failed: AtomicBool,
    /// The first invalid entry `(i, j)` that each failed band found.
    errors: Mutex<Vec<(usize, usize)>>,
    /// Band `t` writes rows `bands[t]` of each layer, and reads the layer below from its own
    /// first column on, once every band above has published it.
    dp: Shared<'a, f64>,
    choices: Shared<'a, u32>,
    /// `below_min[(k - 1) * blocks + b]`: the least `dp_k` over block `b`, written by the band
    /// that holds the block.
    below_min: Shared<'a, f64>,
}

impl Pipeline<'_> {
    /// Runs band `t` through every layer; `Err((i, j))` names the first invalid entry of its
    /// rows.
    fn run_band(&self, t: usize) -> Result<(), (usize, usize)> {
        let n = self.n_nodes;
        let last = n - 1;
        let columns = self.bands[t].clone();
        let base = columns.start;
        let rows = base..columns.end.min(last);
        let first_block = base / PRUNE_BLOCK;
        let width = self.blocks - first_block;
        // The band's rows, in columns relative to `base` (a multiple of PRUNE_BLOCK, so
        // relative blocks are absolute ones shifted by `first_block`).
        let mut summaries =
            RowSummaries::new(rows.len(), width, self.tuning.keep, self.tuning.min_row);
        // Every band validates all its rows, even after another band failed, so that the
        // first invalid entry of all is among the ones reported.
        for i in rows.clone() {
            let row = &self.cost[i * n + base..(i + 1) * n];
            summaries
                .push(row, i + 1 - base)
                .map_err(|j| (i, base + j))?;
        }
        self.publish(t, 1);
        let mut least = vec![f64::INFINITY; columns.len() + 1];
        // Each row's last minimiser, as a position in its list: the next layer's is often the
        // same entry, and starting from its term lets the scan stop sooner.
        let mut winners = vec![0; rows.len()];
        // Whether cells try their row's list first: off for good once a layer finds that most
        // lists do not settle their cells.
        let mut use_lists = true;
        for k in 2..=self.k_max {
            let hi = last - k + 1;
            let layer_rows = if k == self.k_max { 1 } else { hi };
            if !self.wait_above(t, k - 1) {
                return Ok(());
            }
            // SAFETY: layer k - 1 from column `base` on is finished: this band wrote its part,
            // and every band above has published it (waited for just above). Nobody writes
            // layer k - 1 again.
            let (below, below_min, choices_below) = unsafe {
                (
                    self.dp.slice((k - 2) * n + base..(k - 1) * n),
                    self.below_min
                        .slice((k - 2) * self.blocks + first_block..(k - 1) * self.blocks),
                    self.choices.slice((k - 2) * n + base..(k - 1) * n),
                )
            };
            // `least[j - base]`: the least of `below` over columns `j..` (+inf past `hi`).
            let above = (t + 1..self.bands.len())
                .map(|u| self.band_min(k - 1, u))
                .fold(f64::INFINITY, f64::min);
            least[columns.len()] = above;
            for j in (0..columns.len()).rev() {
                least[j] = if below[j] < least[j + 1] {
                    below[j]
                } else {
                    least[j + 1]
                };
            }
            let mut unsettled = 0;
            let mut listed = 0;
            for (r, i) in (rows.start..rows.end.min(layer_rows)).enumerate() {
                let row = &self.cost[i * n + base..(i + 1) * n];
                let list = summaries.list(r);
                let has_list = !list.chunks.is_empty();
                let scan = if use_lists && has_list {
                    listed += 1;
                    let weighted_least = self.weight * least[i + 1 - base];
                    threshold_scan(&list, below, self.weight, weighted_least, winners[r])
                } else {
                    Scan::Unsettled(f64::INFINITY)
                };
                let (value, j) = match scan {
                    Scan::Settled(value, j, at) => {
                        winners[r] = at;
                        (value, j)
                    }
                    Scan::Unsettled(best) => {
                        unsettled += usize::from(has_list && use_lists);
                        // The layer below's choice is often this one's too, and its term, an
                        // upper bound of the cell, lets blocks be skipped from the start.
                        let guess = (choices_below[i - base] as usize).min(hi) - base;
                        let seed = minplus::term_scalar(row[guess], below[guess], self.weight);
                        minplus::pruned_row_argmin(
                            row,
                            below,
                            summaries.minima(r),
                            below_min,
                            i + 1 - base,
                            hi - base,
                            self.weight,
                            seed.min(best),
                        )
                        .expect("the seed is a term of the range, so the minimum is <= it")
                    }
                };
                // SAFETY: row `i` of layer k is this band's, and no band reads it before the
                // layer is published below.
                unsafe {
                    self.dp.set((k - 1) * n + i, value);
                    self.choices.set((k - 1) * n + i, (base + j) as u32);
                }
            }
            if use_lists && unsettled * 2 > listed {
                use_lists = false;
            }
            self.publish(t, k);
        }
        Ok(())
    }

    /// Takes layer `k`'s minima over band `t`'s columns (per block, and whole), then marks the
    /// layer published.
    fn publish(&self, t: usize, k: usize) {
        let n = self.n_nodes;
        let columns = self.bands[t].clone();
        // SAFETY: the band has written its rows of layer k, and no band writes them again.
        let layer = unsafe {
            self.dp
                .slice((k - 1) * n + columns.start..(k - 1) * n + columns.end)
        };
        for (c, chunk) in layer.chunks(PRUNE_BLOCK).enumerate() {
            let b = columns.start / PRUNE_BLOCK + c;
            // SAFETY: block `b` is this band's, and is read only once the layer is published.
            unsafe {
                self.below_min
                    .set((k - 1) * self.blocks + b, minplus::slice_min(chunk))
            };
        }
        let least = minplus::slice_min(layer);
        self.band_min[(k - 1) * self.bands.len() + t].store(least.to_bits(), Ordering::Relaxed);
        self.progress[t].store(k, Ordering::Release);
    }

    fn band_min(&self, k: usize, t: usize) -> f64 {
        f64::from_bits(self.band_min[(k - 1) * self.bands.len() + t].load(Ordering::Relaxed))
    }

    /// Waits until every band above `t` has published layer `k`; `false` when a band failed.
    fn wait_above(&self, t: usize, k: usize) -> bool {
        for progress in &self.progress[t + 1..] {
            let mut spins = 0u32;
            while progress.load(Ordering::Acquire) < k {
                if self.failed.load(Ordering::Relaxed) {
                    return false;
                }
                spins += 1;
                if spins < 1 << 12 {
                    std::hint::spin_loop();
                } else {
                    // A band above that has no core of its own (more bands than free cores)
                    // needs this one's.
                    std::thread::yield_now();
                }
            }
        }
        !self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_the_columns_once_cut_at_block_boundaries() {
        for n_nodes in [2, 15, 16, 17, 100, 257, 2001] {
            for count in 1..9 {
                let bands = cut_bands(n_nodes, count);
                assert!(
                    !bands.is_empty() && bands.len() <= count,
                    "{n_nodes} {count}"
                );
                assert_eq!(bands[0].start, 0);
                assert_eq!(bands.last().map(|band| band.end), Some(n_nodes));
                for pair in bands.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[0].start < pair[0].end);
                    assert_eq!(pair[1].start % PRUNE_BLOCK, 0);
                }
            }
        }
        // Two bands on 2001 nodes: the lower band's rows are longer, so it gets fewer.
        let bands = cut_bands(2001, 2);
        assert!(bands[0].len() < bands[1].len(), "{bands:?}");
    }

    #[test]
    fn a_band_that_panics_releases_the_bands_waiting_for_it() {
        let failed = AtomicBool::new(false);
        let outcome = std::panic::catch_unwind(|| {
            let _abandon = AbandonOnPanic(&failed);
            panic!("a band fails");
        });
        assert!(outcome.is_err());
        assert!(failed.load(Ordering::Acquire));
        // Dropped without a panic, the guard changes nothing.
        let calm = AtomicBool::new(false);
        drop(AbandonOnPanic(&calm));
        assert!(!calm.load(Ordering::Acquire));
    }
}
