//! The loop every search shares: a range of queries against a range of the database, one
//! resident database block at a time.

use std::ops::Range;

use super::block::{Codes, BLOCK, MAX_BLOCKED_BYTES};
use super::kernel::Kernel;
use super::scalar;

/// Calls `visit(query, db_start, distances, lower_bound)` for every query in `query_range`
/// and every block of `db_range`, in increasing database order. `distances[j]` is the
/// distance to database code `db_start + j`; `lower_bound` is at most every one of them (it
/// may be lower, since it also covers the unused columns of a short last block).
pub(crate) fn scan(
    kernel: Kernel,
    queries: Codes<'_>,
    query_range: Range<usize>,
    db: Codes<'_>,
    db_range: Range<usize>,
    mut visit: impl FnMut(usize, usize, &[u32], u32),
) {
    if db.bytes_per_code > MAX_BLOCKED_BYTES {
        return scan_in_place(queries, query_range, db, db_range, visit);
    }
    let words = db.words;
    let mut query_words = vec![0u64; query_range.len() * words];
    for (i, out) in query_words.chunks_exact_mut(words).enumerate() {
        queries.load_words(query_range.start + i, out);
    }
    // Zero-filled, so the stale columns of a short first block are harmless codes.
    let mut block = vec![0u64; words * BLOCK];
    let mut distances = [0u32; BLOCK];
    let mut start = db_range.start;
    while start < db_range.end {
        let n = BLOCK.min(db_range.end - start);
        db.load_block(start, n, &mut block);
        for (i, query) in query_words.chunks_exact(words).enumerate() {
            let bound = kernel.distances(words, &block, query, &mut distances);
            visit(query_range.start + i, start, &distances[..n], bound);
        }
        start += n;
    }
}

/// [`scan`] for codes too wide to copy into blocks: each pair is compared where it lies.
fn scan_in_place(
    queries: Codes<'_>,
    query_range: Range<usize>,
    db: Codes<'_>,
    db_range: Range<usize>,
    mut visit: impl FnMut(usize, usize, &[u32], u32),
) {
    let mut distances = [0u32; BLOCK];
    let mut start = db_range.start;
    while start < db_range.end {
        let n = BLOCK.min(db_range.end - start);
        for q in query_range.clone() {
            let query = queries.code(q);
            for (j, d) in distances[..n].iter_mut().enumerate() {
                *d = scalar::distance_bytes(query, db.code(start + j));
            }
            let bound = distances[..n].iter().copied().min().unwrap_or(u32::MAX);
            visit(q, start, &distances[..n], bound);
        }
        start += n;
    }
}
