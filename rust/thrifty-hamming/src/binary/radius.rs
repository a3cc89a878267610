//! Fixed-radius search over packed codes, returned as CSR.

use thrifty_core::{parallel, CoreResult};

use super::block::Codes;
use super::kernel::Kernel;
use super::scan::scan;
use super::task_grid::TaskGrid;
use super::validate;

impl Kernel {
    /// [`radius`](super::radius) with this kernel.
    pub fn radius(
        self,
        queries: &[u8],
        db: &[u8],
        bytes_per_code: usize,
        r: u32,
    ) -> CoreResult<(Vec<i64>, Vec<i64>, Vec<i32>)> {
        self.check()?;
        validate::bytes_per_code(bytes_per_code)?;
        let nq = validate::rows("queries", queries, bytes_per_code)?;
        let nb = validate::rows("db", db, bytes_per_code)?;
        let mut offsets = vec![0i64; nq + 1];
        if nq == 0 || nb == 0 {
            return Ok((offsets, Vec::new(), Vec::new()));
        }
        let queries = Codes::new(queries, bytes_per_code);
        let db = Codes::new(db, bytes_per_code);
        let grid = TaskGrid::new(nq, nb);

        let per_task: Vec<Vec<Vec<(u32, usize)>>> =
            parallel::map_indices(grid.query_blocks * grid.db_chunks, |task| {
                let (query_range, db_range) = grid.ranges(task, nq, nb);
                let first = query_range.start;
                let mut hits: Vec<Vec<(u32, usize)>> =
                    query_range.clone().map(|_| Vec::new()).collect();
                scan(
                    self,
                    queries,
                    query_range,
                    db,
                    db_range,
                    |q, start, d, bound| {
                        if bound > r {
                            return;
                        }
                        let hits = &mut hits[q - first];
                        for (j, &d) in d.iter().enumerate() {
                            if d <= r {
                                hits.push((d, start + j));
                            }
                        }
                    },
                );
                hits
            });

        let mut indices = Vec::new();
        let mut distances = Vec::new();
        let mut q = 0;
        for tasks in per_task.chunks(grid.db_chunks) {
            for i in 0..tasks[0].len() {
                // Chunks are in database order, so the concatenation is in index order.
                let mut all: Vec<(u32, usize)> =
                    tasks.iter().flat_map(|t| t[i].iter().copied()).collect();
                all.sort_unstable();
                for (d, j) in all {
                    distances.push(d as i32);
                    indices.push(j as i64);
                }
                q += 1;
                offsets[q] = indices.len() as i64;
            }
        }
        Ok((offsets, indices, distances))
    }
}
