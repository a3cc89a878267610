//! Packed binary codes: all-pairs Hamming distances, top-k and radius search.
//!
//! Codes are rows of `bytes_per_code` bytes (any whole number of bytes; [`pack`] makes them
//! from 0/1 arrays the way `numpy.packbits` does). The distance between two codes is the
//! popcount of their XOR.
//!
//! Every search runs the same loop: a block of 256 database codes is transposed into
//! word-major order (word `w` of every code side by side), so that one vector register holds
//! the same word of several codes and a query's distances to the whole block come out of
//! vertical XOR, popcount and add with no horizontal reductions. The block stays in L1/L2
//! while every query of a query block (up to 256) is run against it, which is what keeps the
//! scan compute-bound rather than bound by memory and by the transposition.
//!
//! The popcount kernel is picked once per process from what the CPU offers ([`kernel`]);
//! every kernel gives bit-identical results, and [`Kernel`] lets tests and benchmarks force
//! one.

mod block;
mod cdist;
mod kernel;
mod pack;
mod radius;
mod scalar;
mod scan;
mod select;
mod task_grid;
mod topk;
mod validate;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

pub use kernel::Kernel;
pub use pack::pack;

use thrifty_core::CoreResult;

/// All pairs: `out[i * nb + j] = popcount(a_i XOR b_j)`; `out.len()` must be `na * nb`.
pub fn cdist(a: &[u8], b: &[u8], bytes_per_code: usize, out: &mut [i32]) -> CoreResult<()> {
    Kernel::detected().cdist(a, b, bytes_per_code, out)
}

/// [`cdist`] into a new row-major `na x nb` matrix. The matrix is reserved before the scan,
/// so that one too large for memory is an error naming `b` rather than an aborted process.
pub fn cdist_matrix(a: &[u8], b: &[u8], bytes_per_code: usize) -> CoreResult<Vec<i32>> {
    validate::bytes_per_code(bytes_per_code)?;
    let na = validate::rows("a", a, bytes_per_code)?;
    let nb = validate::rows("b", b, bytes_per_code)?;
    let cells = validate::product("b", na, nb)?;
    let mut out = validate::reserve::<i32>("b", cells, "the distance matrix")?;
    out.resize(cells, 0);
    cdist(a, b, bytes_per_code, &mut out)?;
    Ok(out)
}

/// The `k` nearest database codes of each query, ordered by (distance, index).
///
/// `k` is clamped to the number of database codes. Returns `(distances, indices)`, each of
/// length `nq * k'` with `k' = min(k, nb)`, row-major by query.
pub fn topk(
    queries: &[u8],
    db: &[u8],
    bytes_per_code: usize,
    k: usize,
) -> CoreResult<(Vec<i32>, Vec<i64>)> {
    Kernel::detected().topk(queries, db, bytes_per_code, k)
}

/// Every database code within distance `<= r` of each query, as CSR.
///
/// Returns `(offsets, indices, distances)`: query `i`'s hits are
/// `offsets[i]..offsets[i + 1]`, ordered by (distance, index); `offsets` has `nq + 1` entries.
pub fn radius(
    queries: &[u8],
    db: &[u8],
    bytes_per_code: usize,
    r: u32,
) -> CoreResult<(Vec<i64>, Vec<i64>, Vec<i32>)> {
    Kernel::detected().radius(queries, db, bytes_per_code, r)
}

/// The popcount kernel chosen at run time on this CPU: "avx512-vpopcntdq", "avx2", "neon" or
/// "scalar".
pub fn kernel() -> &'static str {
    Kernel::detected().name()
}
