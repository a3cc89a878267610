//! Rayon pools of several sizes. The FFT cuts its blocks into `4 x threads` tasks and the
//! binary searches size their query blocks and database chunks from the thread count, so a
//! result must be checked under pools of several sizes, not only the global one.

use std::sync::OnceLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

/// One thread (a single task where the split allows it), two and three (which divide few
/// block counts evenly), eight and sixteen (more threads than blocks for small inputs).
pub const THREADS: [usize; 5] = [1, 2, 3, 8, 16];

/// The pool of `threads` threads, one of [`THREADS`], built once per test binary.
pub fn pool(threads: usize) -> &'static ThreadPool {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        THREADS
            .iter()
            .map(|&t| {
                ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .expect("a thread pool")
            })
            .collect()
    });
    let i = THREADS
        .iter()
        .position(|&t| t == threads)
        .expect("a thread count from THREADS");
    &pools[i]
}
