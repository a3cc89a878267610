//! Top-k throughput of packed binary-code search, for comparison with faiss
//! `IndexBinaryFlat`: 1M x 256-bit and 200k x 1024-bit codes, 1000 queries, k = 10 (and
//! 10 queries over 1M codes, where the work is split across the database instead).
//!
//! `cargo run --release -p thrifty-hamming --example binary_throughput [-- --all-kernels]`
//!
//! Prints, per kernel, the best of a few runs in pairs/s and in GB/s of database scanned
//! (queries x database bytes / time, which is how flat-index scans are usually compared).

use std::time::Instant;

use thrifty_hamming::binary::{self, Kernel};

/// Uniform random bytes (splitmix64), so that results do not depend on a `rand` version.
fn random_codes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// This process's user + system CPU seconds (Linux `/proc/self/stat`), to tell our own work
/// from time lost to other processes on a shared machine.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn measure(kernel: Kernel, nb: usize, bits: usize, nq: usize, k: usize, repeats: usize) {
    let width = bits / 8;
    let db = random_codes(nb * width, 1);
    let queries = random_codes(nq * width, 2);
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut checksum = 0i64;
    for _ in 0..repeats {
        let cpu = cpu_seconds();
        let start = Instant::now();
        let (distances, indices) = kernel.topk(&queries, &db, width, k).expect("valid input");
        best = best.min(start.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu, cpu_seconds()) {
            best_cpu = best_cpu.min(after - before);
        }
        checksum = indices.iter().sum::<i64>() + distances.iter().map(|&d| d as i64).sum::<i64>();
    }
    let pairs = (nq * nb) as f64;
    println!(
        "{:>17}  {nb:>8} x {bits:>4}-bit  {nq} queries  k={k}:  {:7.3} s  {:6.2} G pairs/s  {:6.1} GB/s scanned  \
         ({:.2} G pairs per CPU-second; checksum {checksum})",
        kernel.name(),
        best,
        pairs / best / 1e9,
        pairs * width as f64 / best / 1e9,
        pairs / best_cpu / 1e9,
    );
}

fn main() {
    let all = std::env::args().any(|a| a == "--all-kernels");
    let kernels = if all {
        Kernel::available()
    } else {
        vec![Kernel::detected()]
    };
    println!(
        "detected kernel: {}; threads: {}",
        binary::kernel(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for kernel in kernels {
        measure(kernel, 1_000_000, 256, 1000, 10, 3);
        measure(kernel, 200_000, 1024, 1000, 10, 3);
        // Few queries: the database is cut into chunks across threads and merged.
        measure(kernel, 1_000_000, 256, 10, 10, 3);
    }
}
