//! The portable kernel: `u64::count_ones`, and the reference the vector kernels must match.

use super::block::BLOCK;

pub(crate) fn distances(
    words: usize,
    block: &[u64],
    query: &[u64],
    dist: &mut [u32; BLOCK],
) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT.
            return unsafe { distances_popcnt(words, block, query, dist) };
        }
    }
    distances_any(words, block, query, dist)
}

/// The same code built with `POPCNT` enabled: without it `count_ones` on the baseline
/// x86-64 target is a dozen-instruction bit trick.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn distances_popcnt(
    words: usize,
    block: &[u64],
    query: &[u64],
    dist: &mut [u32; BLOCK],
) -> u32 {
    distances_any(words, block, query, dist)
}

#[inline(always)]
fn distances_any(words: usize, block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    match words {
        4 => fixed::<4>(block, query, dist),
        8 => fixed::<8>(block, query, dist),
        16 => fixed::<16>(block, query, dist),
        _ => any_width(words, block, query, dist),
    }
}

/// 256-, 512- and 1024-bit codes: the query's words stay in registers and each code's sum
/// is finished before it is stored.
#[inline(always)]
fn fixed<const W: usize>(block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let query: [u64; W] = query[..W].try_into().expect("W words");
    let rows: [&[u64]; W] = std::array::from_fn(|w| &block[w * BLOCK..(w + 1) * BLOCK]);
    let mut min = u32::MAX;
    for (j, d) in dist.iter_mut().enumerate() {
        let mut sum = 0;
        for w in 0..W {
            sum += (rows[w][j] ^ query[w]).count_ones();
        }
        *d = sum;
        min = min.min(sum);
    }
    min
}

/// Any width: one pass per word, accumulating into the distances.
#[inline(always)]
fn any_width(words: usize, block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    dist.fill(0);
    for (row, &q) in block.chunks_exact(BLOCK).take(words).zip(query) {
        for (d, &x) in dist.iter_mut().zip(row) {
            *d += (x ^ q).count_ones();
        }
    }
    dist.iter().copied().min().unwrap_or(u32::MAX)
}

/// The distance between two codes of equal length, read in place (for codes too wide to
/// block).
pub(crate) fn distance_bytes(a: &[u8], b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT.
            return unsafe { distance_bytes_popcnt(a, b) };
        }
    }
    distance_bytes_any(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn distance_bytes_popcnt(a: &[u8], b: &[u8]) -> u32 {
    distance_bytes_any(a, b)
}

#[inline(always)]
fn distance_bytes_any(a: &[u8], b: &[u8]) -> u32 {
    let (a_words, a_tail) = a.split_at(a.len() / 8 * 8);
    let (b_words, b_tail) = b.split_at(b.len() / 8 * 8);
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("chunks_exact(8)"));
    let words: u32 = a_words
        .chunks_exact(8)
        .zip(b_words.chunks_exact(8))
        .map(|(x, y)| (word(x) ^ word(y)).count_ones())
        .sum();
    let tail: u32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| (x ^ y).count_ones())
        .sum();
    words + tail
}
