//! The task grid: how a search is cut into tasks for the thread pool.
//!
//! The unit of work is (a block of queries) x (a chunk of the database). Many queries:
//! one chunk per query block, so the database is streamed once per query block and no
//! merging is needed. Few queries: the database is cut into chunks as well, so that every
//! thread has work, and per-chunk results are merged afterwards.

use std::ops::Range;

use thrifty_core::parallel;

use super::block::BLOCK;

/// Most queries run against one resident database block before it is replaced. Each query
/// block transposes and streams the whole database (or its chunk) once, and with 32 queries
/// per block that was still over a quarter of the time for 256-bit codes; at 125-250 it is
/// about 5%. Query blocks shrink below this when that is what keeps every thread busy...
const MAX_QUERY_BLOCK: usize = 256;

/// ...but not below this: smaller blocks would transpose the database more often than the
/// popcounts can hide, and cutting the database into chunks parallelises more cheaply.
const MIN_QUERY_BLOCK: usize = 32;

/// The smallest database chunk worth a task of its own (in codes).
const MIN_CHUNK: usize = 16 * BLOCK;

/// Tasks per thread to aim for, so that uneven tasks still balance.
const TASKS_PER_THREAD: usize = 4;

#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskGrid {
    /// Queries per task (the last task may have fewer).
    pub(crate) query_block: usize,
    /// Database codes per task, a multiple of [`BLOCK`] (the last chunk may be shorter).
    pub(crate) db_chunk: usize,
    pub(crate) query_blocks: usize,
    pub(crate) db_chunks: usize,
}

impl TaskGrid {
    /// The grid for `nq` queries against `nb` database codes, both non-zero.
    pub(crate) fn new(nq: usize, nb: usize) -> TaskGrid {
        let threads = parallel::threads();
        let wanted = TASKS_PER_THREAD * threads;
        let query_block = nq
            .div_ceil(wanted)
            .clamp(MIN_QUERY_BLOCK, MAX_QUERY_BLOCK)
            .min(nq);
        let query_blocks = nq.div_ceil(query_block);
        let db_chunks = if threads == 1 || query_blocks >= wanted {
            1
        } else {
            wanted
                .div_ceil(query_blocks)
                .min(nb.div_ceil(MIN_CHUNK))
                .max(1)
        };
        let db_chunk = nb.div_ceil(db_chunks).div_ceil(BLOCK) * BLOCK;
        TaskGrid {
            query_block,
            db_chunk,
            query_blocks,
            db_chunks: nb.div_ceil(db_chunk),
        }
    }
}

/// Runs `f` on every item, on the pool where that is fork-safe, else on this thread.
pub(crate) fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    if parallel::enabled() && items.len() > 1 {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    } else {
        items.into_iter().for_each(f);
    }
}

impl TaskGrid {
    /// The queries and database codes of task `task` (numbered query block major).
    pub(crate) fn ranges(&self, task: usize, nq: usize, nb: usize) -> (Range<usize>, Range<usize>) {
        let (qb, c) = (task / self.db_chunks, task % self.db_chunks);
        let queries = qb * self.query_block..((qb + 1) * self.query_block).min(nq);
        let codes = c * self.db_chunk..((c + 1) * self.db_chunk).min(nb);
        (queries, codes)
    }
}
