//! NEON kernel: `CNT` counts bits per byte; byte counts are summed over up to 31 words
//! before pairwise adds widen them to one `u64` per code.

use std::arch::aarch64::*;

use super::block::BLOCK;

/// Words whose byte counts can be summed in a `u8` lane: 31 * 8 = 248 <= 255.
const BYTE_SUM_WORDS: usize = 31;

/// # Safety
/// The CPU must have NEON; `block` must hold `words * BLOCK` words and `query` `words` words.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn distances(
    words: usize,
    block: &[u64],
    query: &[u64],
    dist: &mut [u32; BLOCK],
) -> u32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        match words {
            4 => scan(block, &query[..4], dist),
            8 => scan(block, &query[..8], dist),
            16 => scan(block, &query[..16], dist),
            _ => scan(block, &query[..words], dist),
        }
    }
}

/// Distances of the 2 codes in columns `j..j + 2`.
///
/// # Safety
/// `base` must point at `query.len() * BLOCK` readable words and `j + 2 <= BLOCK`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn two(base: *const u64, j: usize, query: &[u64]) -> uint64x2_t {
    let mut total = vdupq_n_u64(0);
    for (group, qs) in query.chunks(BYTE_SUM_WORDS).enumerate() {
        let mut bytes = vdupq_n_u8(0);
        for (i, &q) in qs.iter().enumerate() {
            let w = group * BYTE_SUM_WORDS + i;
            // SAFETY: w < query.len() and j + 2 <= BLOCK, inside the block.
            let x = unsafe { vld1q_u64(base.add(w * BLOCK + j)) };
            let x = veorq_u64(x, vdupq_n_u64(q));
            bytes = vaddq_u8(bytes, vcntq_u8(vreinterpretq_u8_u64(x)));
        }
        total = vaddq_u64(total, vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(bytes))));
    }
    total
}

/// # Safety
/// `block` must hold `query.len() * BLOCK` words.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn scan(block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let base = block.as_ptr();
    let mut min = vdupq_n_u32(u32::MAX);
    for j in (0..BLOCK).step_by(4) {
        // SAFETY: the caller guarantees the block's size; j + 4 <= BLOCK.
        let (a, b) = unsafe { (two(base, j, query), two(base, j + 2, query)) };
        // Sums are below 2^31 (validated), so narrowing keeps them whole.
        let d = vcombine_u32(vmovn_u64(a), vmovn_u64(b));
        // SAFETY: j + 4 <= BLOCK.
        unsafe { vst1q_u32(dist.as_mut_ptr().add(j), d) };
        min = vminq_u32(min, d);
    }
    vminvq_u32(min)
}
