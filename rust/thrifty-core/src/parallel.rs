//! Fork-safe use of rayon's global pool.
//!
//! A process that forks after rayon has started its workers gets a child whose pool has no
//! threads behind it: the first parallel call there blocks for ever (PyTorch's DataLoader
//! workers fork by default). Like `tokenizers`, we remember that a fork happened and run
//! sequentially in the child instead.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

static FORKED_AFTER_POOL_USE: AtomicBool = AtomicBool::new(false);
static POOL_USED: AtomicBool = AtomicBool::new(false);

/// Record that the process has just forked. Call from a `pthread_atfork` child handler.
pub fn note_fork() {
    if POOL_USED.load(Ordering::SeqCst) {
        FORKED_AFTER_POOL_USE.store(true, Ordering::SeqCst);
    }
}

/// Whether parallel work may go to rayon's global pool in this process.
///
/// Calling it counts as using the pool: a later fork makes it return `false` in the child.
pub fn enabled() -> bool {
    if FORKED_AFTER_POOL_USE.load(Ordering::SeqCst) {
        return false;
    }
    POOL_USED.store(true, Ordering::SeqCst);
    true
}

/// Run `f(i)` for every `i` in `0..n`, on the pool where that is safe, else on this thread.
pub fn for_each_index<F>(n: usize, f: F)
where
    F: Fn(usize) + Sync + Send,
{
    if enabled() && n > 1 {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

/// Map every `i` in `0..n` through `f` into a vector, in index order.
pub fn map_indices<T, F>(n: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync + Send,
{
    if enabled() && n > 1 {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// Run `f(t)` for every `t` in `0..n`, each on its own task, the highest `t` started first.
///
/// For pipelines where `f(t)` waits, spinning, for progress that `f(u)` with `u > t` makes
/// (and never the other way round). That cannot deadlock: the pool splits `0..n` in halves
/// and runs the upper half first on the thread that splits, so a task that some thread is
/// waiting in only ever waits for tasks that are finished, running, or queued behind a
/// running one on a thread that is not waiting. Without the pool, the tasks run one after
/// another from the highest, so nothing ever waits.
pub fn for_each_descending<F>(n: usize, f: F)
where
    F: Fn(usize) + Sync + Send,
{
    fn split<F: Fn(usize) + Sync + Send>(range: Range<usize>, f: &F) {
        if range.len() == 1 {
            f(range.start);
        } else if range.len() > 1 {
            let mid = range.start + range.len() / 2;
            rayon::join(|| split(mid..range.end, f), || split(range.start..mid, f));
        }
    }
    if enabled() && n > 1 {
        split(0..n, &f);
    } else {
        (0..n).rev().for_each(f);
    }
}

/// The threads parallel work gets here: rayon's current pool, or one where it is not safe.
pub fn threads() -> usize {
    if enabled() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Cut `0..n` into at most `pieces` contiguous ranges of near-equal length, none empty, in
/// order. Callers size `pieces` from the thread count, so the cut must hold for any count
/// against any `n`: rounding the piece length up can leave fewer pieces than asked for, and
/// the ones past the end must not exist rather than be empty or reversed.
pub fn ranges(n: usize, pieces: usize) -> Vec<Range<usize>> {
    let per = n.div_ceil(pieces.max(1)).max(1);
    (0..n.div_ceil(per))
        .map(|i| i * per..((i + 1) * per).min(n))
        .collect()
}

/// Map each range of [`ranges`]`(n, pieces)` through `f`, in order.
pub fn map_ranges<T, F>(n: usize, pieces: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> T + Sync + Send,
{
    let cut = ranges(n, pieces);
    map_indices(cut.len(), |i| f(cut[i].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn visits_every_index_once() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for_each_index(hits.len(), |i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn ranges_cover_once_in_order_and_none_is_empty() {
        for n in 0..200 {
            for pieces in 0..40 {
                let cut = ranges(n, pieces);
                assert!(cut.len() <= pieces.max(1), "n {n} pieces {pieces}");
                assert!(cut.iter().all(|r| r.start < r.end), "n {n} pieces {pieces}");
                let flat: Vec<usize> = cut.into_iter().flatten().collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n {n} pieces {pieces}");
            }
        }
        // The cut that a block count of 9 with 8 wanted tasks gave before: tasks of 2 blocks,
        // the fifth would have started past the end.
        assert_eq!(ranges(9, 8).len(), 5);
    }

    #[test]
    fn descending_tasks_may_wait_for_higher_ones() {
        // Each task waits until every higher one has finished: with the highest started
        // first this completes on any pool size, and every task runs once.
        for n in [0, 1, 2, 3, 7, 16] {
            let done: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
            for_each_descending(n, |t| {
                while !done[t + 1..].iter().all(|d| d.load(Ordering::Acquire)) {
                    std::hint::spin_loop();
                }
                assert!(!done[t].swap(true, Ordering::AcqRel), "task {t} ran twice");
            });
            assert!(done.iter().all(|d| d.load(Ordering::Acquire)));
        }
    }

    #[test]
    fn map_keeps_order() {
        assert_eq!(map_indices(5, |i| i * i), vec![0, 1, 4, 9, 16]);
    }
}
