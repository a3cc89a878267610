//! Inverse-CDF draws with replacement for one-shot sampling: no table to build, only the
//! partial sums of one checking pass over the scores (one float64 per 64 scores).
//!
//! The cumulative sum is never materialised. Scores are summed in blocks of
//! [`BLOCK`](super::totals::BLOCK) (each left to right from 0.0), blocks in chunks of
//! [`CHUNK`](super::totals::CHUNK) (block sums left to right), chunks left to right into
//! offsets; the cumulative value at the end of score `j` (of block `b`, chunk `c`) is
//! `V_j = O_c + (R_b + q_j)`, with `O_c` the chunk's offset, `R_b` the block's partial sum
//! within the chunk and `q_j` the running sum within the block, each addition rounded.
//! Rounding to nearest is monotone, so `V` is non-decreasing; at the end of a block it equals
//! the next block's start and at the end of a chunk the next chunk's offset, bit for bit,
//! because the same additions produced both. The intervals `[V_{j-1}, V_j)` therefore tile
//! `[0, total)` exactly, a zero score gets an empty interval (it is never drawn), and a draw
//! `t = u * total` lands in exactly one interval whatever the level it is located at. (For a
//! total so small that `t` could be subnormal, `V` and `t` are both compared scaled by 2^1000,
//! which is exact.)
//!
//! Exactness: score `j` is drawn with probability `(V_j - V_{j-1}) / total`, up to the
//! 2^-53 grid of `u`. Neighbouring boundaries share the roundings made before them (the
//! chunk offset, the block's partial sum), so their difference is `s_j` up to the few
//! roundings of its own last additions: an absolute error of a few units in the last place
//! of the total (a few 1e-16 of the total), plus a relative error of about 1e-16 per addition
//! inside its block and chunk (at most 64 + 1024). The same order as the thresholds of an
//! alias table; a float32 cumulative sum (`torch.multinomial`) rounds at 6e-8. The
//! chunking is fixed, so the sums, and hence the draws, do not depend on the thread count.
//!
//! Locating: each target is bucketed by chunk (a binary search over n / 2^16 offsets, in
//! cache), and each chunk's targets are sorted and found in one forward walk over its block
//! sums and the blocks they hit. A binary search per draw (over the block sums, then a
//! rescan of its block) gives the same draws but is bound by memory latency, each step a
//! likely cache miss: measured at n = 10^7, m = 10^5 on 2 cores, 55 ms for the draws against
//! 12 ms sorted. The targets are put back in draw order afterwards, so the draws come back
//! i.i.d. in order, like `torch.multinomial`'s, not sorted.

use super::alias::DRAW_CHUNK;
use super::rng::{stream, unit, Purpose};
use super::totals::{Partials, BLOCK, CHUNK};
use thrifty_core::CoreResult;

/// Totals below this (2^-969) would put some targets `u * total` among the subnormal numbers,
/// whose grid is coarser than that of `u` (2^-53 of the total): a total of 3 subnormal units,
/// from scores 1 and 2 units, gave the first score 1/5 of the draws instead of 1/3.
const SUBNORMAL_TOTAL: f64 = f64::MIN_POSITIVE * (1u64 << 53) as f64;

/// What such totals are scaled by: 2^1000 (the shortest decimal that reads back as it), so
/// that every scaled sum is normal and below 2^31.
const SUBNORMAL_SCALE: f64 = 1.0715086071862673e301;

/// The power of two that the cumulative sums and the targets are compared at: 1, unless the
/// total is below [`SUBNORMAL_TOTAL`]. Scaling by a power of two is exact there (no result
/// overflows or is subnormal) and monotone, so the intervals still tile `[0, total)`.
fn target_scale(total: f64) -> f64 {
    debug_assert_eq!(SUBNORMAL_SCALE, 2f64.powi(1000));
    if total < SUBNORMAL_TOTAL {
        SUBNORMAL_SCALE
    } else {
        1.0
    }
}

/// Locate the draws `targets` (pairs of target `t` in `[O_c, O_{c+1})` and draw number)
/// that fall in chunk `c`: sorted by `t`, they are found in one forward walk over the
/// chunk's block sums and the scores of the blocks they hit, in address order.
fn locate_in_chunk(
    scores: &[f64],
    partials: &Partials,
    scale: f64,
    c: usize,
    targets: &mut [(f64, usize)],
) -> Vec<(usize, u64)> {
    targets.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let offset = partials.offsets[c];
    let before = &partials.blocks[c];
    let chunk = &scores[c * CHUNK..scores.len().min((c + 1) * CHUNK)];
    let block_of = |b: usize| &chunk[b * BLOCK..chunk.len().min((b + 1) * BLOCK)];
    // The current block b, item j within it, and q its running sum through j, so that
    // item j's interval ends at V_j = O_c + (R_b + q).
    let (mut b, mut j) = (0, 0);
    let mut block = block_of(0);
    let mut q = block[0];
    let mut found = Vec::with_capacity(targets.len());
    for &(t, draw) in targets.iter() {
        // Move to the last block starting at or before t (R_0 = 0, so block 0 starts at O_c).
        let ahead = before[b + 1..].partition_point(|&r| (offset + r) * scale <= t);
        if ahead > 0 {
            b += ahead;
            j = 0;
            block = block_of(b);
            q = block[0];
        }
        // The block ends where the next one starts (or at O_{c+1}), above t: j stays in it.
        while (offset + (before[b] + q)) * scale <= t {
            j += 1;
            q += block[j];
        }
        found.push((draw, (c * CHUNK + b * BLOCK + j) as u64));
    }
    found
}

/// `m` independent draws from `scores` by inverse CDF, seeded by `seed`, in draw order: what
/// [`sample`](super::sample) with replacement returns when `m < n / ALIAS_DIVISOR`.
/// Errors name `scores` (as [`totals`](super::totals())) or `m` (too large for memory).
///
/// The targets `t = u * total` are drawn in chunks of [`DRAW_CHUNK`], each from its own
/// stream, bucketed by score chunk, and located chunk by chunk in parallel (sorted within a
/// chunk, so that the scores are read forward and each touched block once per run of
/// targets), then put back in draw order: the draws are i.i.d. in the order returned.
pub fn draw(scores: &[f64], m: usize, seed: u64) -> CoreResult<Vec<u64>> {
    let (_, partials) = super::totals::partials(scores)?;
    sample(scores, &partials, m, seed)
}

/// `m` independent draws from `scores` (already checked, with their `partials`), seeded by
/// `seed`, in draw order.
pub(crate) fn sample(
    scores: &[f64],
    partials: &Partials,
    m: usize,
    seed: u64,
) -> CoreResult<Vec<u64>> {
    let offsets = &partials.offsets;
    let total = *offsets.last().expect("offsets end with the total");
    let scale = target_scale(total);
    let scaled_total = total * scale;
    let chunks = offsets.len() - 1;
    // Reserved first, so that too many draws for memory fail here, naming m.
    let mut bucketed: Vec<(f64, usize)> = super::reserve(m, "m")?;
    let mut drawn: Vec<u64> = super::reserve(m, "m")?;
    let draw_chunks = m.div_ceil(DRAW_CHUNK);
    let targets = thrifty_core::parallel::map_indices(draw_chunks, |k| {
        let mut rng = stream(seed, 0, Purpose::InverseCdf, k as u64);
        let count = DRAW_CHUNK.min(m - k * DRAW_CHUNK);
        (0..count)
            .map(|_| loop {
                // u * total rounds up to total for u near 1 (about once in 2^53 draws):
                // drawing again keeps every interval's probability proportional to its width.
                let t = unit(&mut rng) * scaled_total;
                if t < scaled_total {
                    // The chunk c with O_c <= t < O_{c+1}: it has positive mass.
                    let c = offsets.partition_point(|&o| o * scale <= t) - 1;
                    break (t, c as u32);
                }
            })
            .collect::<Vec<(f64, u32)>>()
    });
    // Bucket the draws by chunk (a counting sort), keeping each one's draw number.
    let mut starts = vec![0usize; chunks + 1];
    for &(_, c) in targets.iter().flatten() {
        starts[c as usize + 1] += 1;
    }
    for c in 0..chunks {
        starts[c + 1] += starts[c];
    }
    let mut next = starts.clone();
    bucketed.resize(m, (0.0, 0));
    for (draw, &(t, c)) in targets.iter().flatten().enumerate() {
        bucketed[next[c as usize]] = (t, draw);
        next[c as usize] += 1;
    }
    drop(targets);
    // Each task takes its own bucket; the slices are disjoint.
    let buckets: Vec<std::sync::Mutex<&mut [(f64, usize)]>> = {
        let mut rest = bucketed.as_mut_slice();
        let mut out = Vec::with_capacity(chunks);
        for c in 0..chunks {
            let (bucket, tail) = rest.split_at_mut(starts[c + 1] - starts[c]);
            out.push(std::sync::Mutex::new(bucket));
            rest = tail;
        }
        out
    };
    let found = thrifty_core::parallel::map_indices(chunks, |c| {
        let mut bucket = buckets[c].lock().unwrap_or_else(|e| e.into_inner());
        if bucket.is_empty() {
            Vec::new()
        } else {
            locate_in_chunk(scores, partials, scale, c, &mut bucket)
        }
    });
    drawn.resize(m, 0);
    for (draw, index) in found.into_iter().flatten() {
        drawn[draw] = index;
    }
    Ok(drawn)
}
