//! k-nearest-neighbour search over packed codes.

use thrifty_core::{parallel, CoreError, CoreResult};

use super::block::Codes;
use super::kernel::Kernel;
use super::scan::scan;
use super::select::Best;
use super::task_grid::TaskGrid;
use super::validate;

impl Kernel {
    /// [`topk`](super::topk) with this kernel.
    pub fn topk(
        self,
        queries: &[u8],
        db: &[u8],
        bytes_per_code: usize,
        k: usize,
    ) -> CoreResult<(Vec<i32>, Vec<i64>)> {
        self.check()?;
        validate::bytes_per_code(bytes_per_code)?;
        let nq = validate::rows("queries", queries, bytes_per_code)?;
        let nb = validate::rows("db", db, bytes_per_code)?;
        if k == 0 {
            return Err(CoreError::invalid("k", "must be positive, got 0"));
        }
        let k = k.min(nb);
        if nq == 0 || k == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        // Reserved before the scan: a result too large to hold is an error at once, not an
        // abort after the work (k = nb over a million one-byte codes asks for terabytes).
        let results = validate::product("k", nq, k)?;
        let what = format!("{nq} queries x {k} nearest codes");
        let mut distances: Vec<i32> = validate::reserve("k", results, &what)?;
        let mut indices: Vec<i64> = validate::reserve("k", results, &what)?;
        let queries = Codes::new(queries, bytes_per_code);
        let db = Codes::new(db, bytes_per_code);
        let grid = TaskGrid::new(nq, nb);

        let per_task: Vec<Vec<Vec<(u32, usize)>>> =
            parallel::map_indices(grid.query_blocks * grid.db_chunks, |task| {
                let (query_range, db_range) = grid.ranges(task, nq, nb);
                let first = query_range.start;
                let mut best: Vec<Best> = query_range.clone().map(|_| Best::new(k)).collect();
                scan(
                    self,
                    queries,
                    query_range,
                    db,
                    db_range,
                    |q, start, d, bound| {
                        best[q - first].offer(start, d, bound);
                    },
                );
                best.into_iter().map(Best::into_sorted).collect()
            });

        for tasks in per_task.chunks(grid.db_chunks) {
            for i in 0..tasks[0].len() {
                let merged = if let [only] = tasks {
                    only[i].clone()
                } else {
                    // Each chunk kept its own k best; the overall k best are among them.
                    let mut all: Vec<(u32, usize)> =
                        tasks.iter().flat_map(|t| t[i].iter().copied()).collect();
                    all.sort_unstable();
                    all.truncate(k);
                    all
                };
                debug_assert_eq!(merged.len(), k);
                for (d, j) in merged {
                    distances.push(d as i32);
                    indices.push(j as i64);
                }
            }
        }
        Ok((distances, indices))
    }
}
