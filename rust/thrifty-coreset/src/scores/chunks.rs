//! Fixed-size chunks of rows mapped on rayon's pool through `thrifty_core::parallel`, which
//! runs them on the calling thread in a child forked after the pool started (a PyTorch
//! DataLoader worker), where the pool has no threads and would block for ever.

use std::ops::Range;

use thrifty_core::parallel;

/// `f` over `0..n` in chunks of `chunk` indices, results concatenated in index order. The
/// chunking is fixed, so results never depend on the thread count.
pub(crate) fn map_chunks<T, F>(n: usize, chunk: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> Vec<T> + Sync + Send,
{
    let parts = parallel::map_indices(n.div_ceil(chunk), |c| {
        let lo = c * chunk;
        f(lo..n.min(lo + chunk))
    });
    let mut out = Vec::with_capacity(n);
    for part in parts {
        out.extend(part);
    }
    out
}
