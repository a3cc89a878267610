//! Bellman-optimal few-step sampling schedules (BOSS, arXiv 2312.16414), in pure Rust.
//!
//! A diffusion or flow sampler integrates on a fine time grid `t_0 < ... < t_N`. BOSS picks
//! the `K` of those `N` steps to keep: it builds a cost matrix `c[i][j]` (the error of one
//! jump from node `i` to node `j`, measured against a teacher trajectory) and solves for the
//! cheapest path `0 = p_0 < ... < p_K = N` by dynamic programming.
//!
//! - [`optimal_path`] / [`optimal_paths`] solve that DP exactly, with a SIMD min-plus kernel,
//!   rows in parallel, and an `O(K N log N)` divide-and-conquer when the matrix is Monge
//!   ([`is_monge`], [`Strategy`]).
//! - [`accumulate_jump_errors`] builds the cost matrix from teacher states and velocities
//!   ([`jump_errors`] into a new matrix); it is the CPU twin of the CUDA kernel, so both
//!   must agree.
//!
//! Errors are [`CoreError`]s that name the offending argument. Parallel work goes through
//! [`thrifty_core::parallel`], which falls back to one thread in a forked child.

mod jump_error;
mod minplus;
mod monge;
mod path;
mod pruned;
mod row_summary;
mod threshold_scan;
mod validate;

pub use jump_error::{accumulate_jump_errors, jump_errors, Float, Jumps, Metric};
pub use monge::is_monge;
pub use path::{
    optimal_path, optimal_path_with, optimal_paths, optimal_paths_with, Path, Strategy,
};
pub use thrifty_core::{CoreError, CoreResult};
