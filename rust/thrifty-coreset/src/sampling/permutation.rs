//! Uniform random permutations of `0..n`, in parallel and independent of the thread count.
//!
//! Every element goes to one of `B` buckets uniformly at random, the buckets are laid end to
//! end, and each is shuffled by Fisher-Yates. Any permutation then has probability
//! `sum over bucket sizes of B^-n * prod(1 / k_b!) = 1 / n!`: the result is uniform. The
//! buckets are sized to fit in cache, which is what makes this faster than one Fisher-Yates
//! over the whole array (a cache miss per swap) even on one thread.

use rayon::prelude::*;
use thrifty_core::{CoreError, CoreResult};

use super::index::Index;
use super::rng::{below, stream, Purpose};

/// Elements per bucket, on average: a bucket of u32 fits in L2.
const BUCKET: u64 = 1 << 16;
/// Elements per chunk of the bucketing pass, each chunk on its own stream.
const CHUNK: u64 = 1 << 20;

/// A uniform permutation of `0..n` for `(seed, salt)`; `salt` numbers the permutations of one
/// seed (RS2's passes over the data). Fails when `n` does not fit in `I`.
pub fn permutation<I: Index>(n: u64, seed: u64, salt: u64) -> CoreResult<Vec<I>> {
    if n > I::LIMIT {
        return Err(CoreError::invalid(
            "n",
            format!("must be at most {} for this index type, got {n}", I::LIMIT),
        ));
    }
    if usize::try_from(n).is_err() {
        return Err(CoreError::invalid(
            "n",
            format!("must fit in memory, got {n}"),
        ));
    }
    let buckets = n.div_ceil(BUCKET).max(1);
    let chunks = n.div_ceil(CHUNK) as usize;
    // Each chunk sorts its elements by bucket (a counting sort) and reports the counts.
    let sorted: Vec<(Vec<I>, Vec<u32>)> = thrifty_core::parallel::map_indices(chunks, |c| {
        let start = c as u64 * CHUNK;
        let end = n.min(start + CHUNK);
        let mut rng = stream(seed, salt, Purpose::PermutationBuckets, c as u64);
        let labels: Vec<u32> = (start..end)
            .map(|_| below(&mut rng, buckets) as u32)
            .collect();
        let mut counts = vec![0u32; buckets as usize];
        for &b in &labels {
            counts[b as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(buckets as usize);
        let mut running = 0u32;
        for &count in &counts {
            offsets.push(running);
            running += count;
        }
        let mut out = vec![I::from_u64(0); (end - start) as usize];
        for (value, &b) in (start..end).zip(&labels) {
            let slot = &mut offsets[b as usize];
            out[*slot as usize] = I::from_u64(value);
            *slot += 1;
        }
        (out, counts)
    });
    let sizes: Vec<usize> = (0..buckets as usize)
        .map(|b| sorted.iter().map(|(_, counts)| counts[b] as usize).sum())
        .collect();
    // Where bucket b starts inside each chunk's sorted run.
    let starts: Vec<Vec<usize>> = sorted
        .iter()
        .map(|(_, counts)| {
            let mut running = 0usize;
            counts
                .iter()
                .map(|&count| {
                    let here = running;
                    running += count as usize;
                    here
                })
                .collect()
        })
        .collect();
    let mut result = vec![I::from_u64(0); n as usize];
    let mut slices: Vec<(usize, &mut [I])> = Vec::with_capacity(buckets as usize);
    let mut rest: &mut [I] = &mut result;
    for (b, &size) in sizes.iter().enumerate() {
        let (head, tail) = rest.split_at_mut(size);
        slices.push((b, head));
        rest = tail;
    }
    let fill = |(b, slice): (usize, &mut [I])| {
        let mut at = 0;
        for ((run, counts), chunk_starts) in sorted.iter().zip(&starts) {
            let count = counts[b] as usize;
            slice[at..at + count].copy_from_slice(&run[chunk_starts[b]..chunk_starts[b] + count]);
            at += count;
        }
        let mut rng = stream(seed, salt, Purpose::PermutationShuffle, b as u64);
        for i in (1..slice.len()).rev() {
            let j = below(&mut rng, i as u64 + 1) as usize;
            slice.swap(i, j);
        }
    };
    if thrifty_core::parallel::enabled() && slices.len() > 1 {
        slices.into_par_iter().for_each(fill);
    } else {
        slices.into_iter().for_each(fill);
    }
    Ok(result)
}
