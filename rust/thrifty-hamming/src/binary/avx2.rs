//! AVX2 kernel: popcount by nibble lookup (`VPSHUFB`) and `VPSADBW` (Muła, Kurz, Lemire,
//! arXiv:1611.07612), on the same word-major blocks as the other kernels.
//!
//! Byte counts (at most 8 per byte per word) are summed as bytes over up to 31 words before
//! one `VPSADBW` widens them, so the widening costs little even for wide codes.

use std::arch::x86_64::*;

use super::block::BLOCK;

/// Words whose byte counts can be summed in a `u8` lane: 31 * 8 = 248 <= 255.
const BYTE_SUM_WORDS: usize = 31;

/// # Safety
/// The CPU must have AVX2; `block` must hold `words * BLOCK` words and `query` `words` words.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn distances(
    words: usize,
    block: &[u64],
    query: &[u64],
    dist: &mut [u32; BLOCK],
) -> u32 {
    match words {
        4 => fixed::<4>(block, query, dist),
        8 => fixed::<8>(block, query, dist),
        16 => fixed::<16>(block, query, dist),
        _ => any_width(words, block, query, dist),
    }
}

/// Per-byte popcounts of `x`.
#[target_feature(enable = "avx2")]
#[inline]
fn popcount_bytes(x: __m256i) -> __m256i {
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let lo = _mm256_and_si256(x, low_nibbles);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low_nibbles);
    _mm256_add_epi8(
        _mm256_shuffle_epi8(table, lo),
        _mm256_shuffle_epi8(table, hi),
    )
}

/// Eight codes' `u64` sums (codes 0-3 in `a`, 4-7 in `b`, each below 2^31) as `u32`s.
#[target_feature(enable = "avx2")]
#[inline]
fn pack_sums(a: __m256i, b: __m256i) -> __m256i {
    let interleaved = _mm256_or_si256(a, _mm256_slli_epi64::<32>(b));
    _mm256_permutevar8x32_epi32(interleaved, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7))
}

#[target_feature(enable = "avx2")]
#[inline]
fn horizontal_min(v: __m256i) -> u32 {
    let m = _mm_min_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let m = _mm_min_epu32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_min_epu32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    _mm_cvtsi128_si32(m) as u32
}

/// Distances of the 8 codes in columns `j..j + 8` to `query`.
///
/// # Safety
/// `base` must point at `query.len() * BLOCK` readable words and `j + 8 <= BLOCK`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn eight(base: *const u64, j: usize, query: &[u64]) -> __m256i {
    let zero = _mm256_setzero_si256();
    let mut total_a = zero;
    let mut total_b = zero;
    for (group, qs) in query.chunks(BYTE_SUM_WORDS).enumerate() {
        let mut bytes_a = zero;
        let mut bytes_b = zero;
        for (i, &q) in qs.iter().enumerate() {
            let w = group * BYTE_SUM_WORDS + i;
            // Loop-invariant in `j`: hoisted out of the block loop when registers allow.
            let q = _mm256_set1_epi64x(q as i64);
            // SAFETY: w < query.len() and j + 8 <= BLOCK, inside the block.
            let row = unsafe { base.add(w * BLOCK + j) };
            let a = unsafe { _mm256_loadu_si256(row.cast()) };
            let b = unsafe { _mm256_loadu_si256(row.add(4).cast()) };
            bytes_a = _mm256_add_epi8(bytes_a, popcount_bytes(_mm256_xor_si256(a, q)));
            bytes_b = _mm256_add_epi8(bytes_b, popcount_bytes(_mm256_xor_si256(b, q)));
        }
        total_a = _mm256_add_epi64(total_a, _mm256_sad_epu8(bytes_a, zero));
        total_b = _mm256_add_epi64(total_b, _mm256_sad_epu8(bytes_b, zero));
    }
    pack_sums(total_a, total_b)
}

/// 256-, 512- and 1024-bit codes: a constant word count lets the word loop unroll.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn fixed<const W: usize>(block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let query: &[u64; W] = query[..W].try_into().expect("W words");
    // SAFETY: forwarded from `distances`.
    unsafe { scan(block, query, dist) }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn any_width(words: usize, block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    // SAFETY: forwarded from `distances`.
    unsafe { scan(block, &query[..words], dist) }
}

/// # Safety
/// `block` must hold `query.len() * BLOCK` words.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn scan(block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let base = block.as_ptr();
    let mut min = _mm256_set1_epi32(-1);
    for j in (0..BLOCK).step_by(8) {
        // SAFETY: the caller guarantees `block` holds `query.len() * BLOCK` words.
        let d = unsafe { eight(base, j, query) };
        // SAFETY: j + 8 <= BLOCK.
        unsafe { _mm256_storeu_si256(dist.as_mut_ptr().add(j).cast(), d) };
        min = _mm256_min_epu32(min, d);
    }
    horizontal_min(min)
}
