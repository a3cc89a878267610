//! All-pairs Hamming distances between two sets of packed codes.

use thrifty_core::{CoreError, CoreResult};

use super::block::Codes;
use super::kernel::Kernel;
use super::scan::scan;
use super::task_grid::{for_each, TaskGrid};
use super::validate;

impl Kernel {
    /// [`cdist`](super::cdist) with this kernel.
    pub fn cdist(
        self,
        a: &[u8],
        b: &[u8],
        bytes_per_code: usize,
        out: &mut [i32],
    ) -> CoreResult<()> {
        self.check()?;
        validate::bytes_per_code(bytes_per_code)?;
        let na = validate::rows("a", a, bytes_per_code)?;
        let nb = validate::rows("b", b, bytes_per_code)?;
        let expected = validate::product("out", na, nb)?;
        if out.len() != expected {
            return Err(CoreError::shape(
                "out",
                format!(
                    "expected na x nb = {na} x {nb} = {expected} elements, got {}",
                    out.len()
                ),
            ));
        }
        if na == 0 || nb == 0 {
            return Ok(());
        }
        let a = Codes::new(a, bytes_per_code);
        let b = Codes::new(b, bytes_per_code);
        let grid = TaskGrid::new(na, nb);

        // Each task owns the same columns of every row of its query block: the rows are cut
        // into column pieces and the pieces regrouped by column chunk, all borrow-checked.
        let mut tasks: Vec<(usize, usize, Vec<&mut [i32]>)> = Vec::new();
        for (qb, rows) in out.chunks_mut(grid.query_block * nb).enumerate() {
            let first = tasks.len();
            for c in 0..grid.db_chunks {
                tasks.push((qb, c, Vec::with_capacity(grid.query_block)));
            }
            for row in rows.chunks_mut(nb) {
                for (c, piece) in row.chunks_mut(grid.db_chunk).enumerate() {
                    tasks[first + c].2.push(piece);
                }
            }
        }
        for_each(tasks, |(qb, c, mut pieces)| {
            let (query_range, db_range) = grid.ranges(qb * grid.db_chunks + c, na, nb);
            let (first_query, first_code) = (query_range.start, db_range.start);
            scan(self, a, query_range, b, db_range, |q, start, d, _| {
                let piece = &mut pieces[q - first_query][start - first_code..][..d.len()];
                for (o, &d) in piece.iter_mut().zip(d) {
                    *o = d as i32;
                }
            });
        });
        Ok(())
    }
}
