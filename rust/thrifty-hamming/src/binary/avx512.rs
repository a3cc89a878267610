//! AVX-512 kernel: `VPOPCNTQ` counts the bits of 8 codes' words in one instruction.
//!
//! Sixteen codes per step, in two registers of eight `u64` sums; the sums (at most
//! `64 * words`, validated to fit 31 bits) are packed to `u32` with one two-source permute.

use std::arch::x86_64::*;

use super::block::BLOCK;

/// # Safety
/// The CPU must have AVX-512F and AVX-512 VPOPCNTDQ; `block` must hold `words * BLOCK` words
/// and `query` `words` words.
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
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

/// The even 32-bit lanes of two vectors of `u64`: their low halves, in order.
#[target_feature(enable = "avx512f")]
#[inline]
fn pack_low_halves(lo: __m512i, hi: __m512i) -> __m512i {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    _mm512_permutex2var_epi32(lo, even, hi)
}

/// 256-, 512- and 1024-bit codes: the broadcast query words stay in registers.
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
unsafe fn fixed<const W: usize>(block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let mut broadcast = [_mm512_setzero_si512(); W];
    for (b, &q) in broadcast.iter_mut().zip(query) {
        *b = _mm512_set1_epi64(q as i64);
    }
    let base = block.as_ptr();
    let mut min = _mm512_set1_epi32(-1);
    for j in (0..BLOCK).step_by(16) {
        let mut lo = _mm512_setzero_si512();
        let mut hi = _mm512_setzero_si512();
        for (w, &q) in broadcast.iter().enumerate() {
            // SAFETY: w < W <= words and j + 16 <= BLOCK, inside `block`.
            let row = unsafe { base.add(w * BLOCK + j) };
            let a = unsafe { _mm512_loadu_si512(row.cast()) };
            let b = unsafe { _mm512_loadu_si512(row.add(8).cast()) };
            lo = _mm512_add_epi64(lo, _mm512_popcnt_epi64(_mm512_xor_si512(a, q)));
            hi = _mm512_add_epi64(hi, _mm512_popcnt_epi64(_mm512_xor_si512(b, q)));
        }
        let d = pack_low_halves(lo, hi);
        // SAFETY: j + 16 <= BLOCK.
        unsafe { _mm512_storeu_si512(dist.as_mut_ptr().add(j).cast(), d) };
        min = _mm512_min_epu32(min, d);
    }
    _mm512_reduce_min_epu32(min)
}

/// Any width: the query word is broadcast from memory at each use.
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
unsafe fn any_width(words: usize, block: &[u64], query: &[u64], dist: &mut [u32; BLOCK]) -> u32 {
    let base = block.as_ptr();
    let mut min = _mm512_set1_epi32(-1);
    for j in (0..BLOCK).step_by(16) {
        let mut lo = _mm512_setzero_si512();
        let mut hi = _mm512_setzero_si512();
        for (w, &q) in query[..words].iter().enumerate() {
            let q = _mm512_set1_epi64(q as i64);
            // SAFETY: w < words and j + 16 <= BLOCK, inside `block`.
            let row = unsafe { base.add(w * BLOCK + j) };
            let a = unsafe { _mm512_loadu_si512(row.cast()) };
            let b = unsafe { _mm512_loadu_si512(row.add(8).cast()) };
            lo = _mm512_add_epi64(lo, _mm512_popcnt_epi64(_mm512_xor_si512(a, q)));
            hi = _mm512_add_epi64(hi, _mm512_popcnt_epi64(_mm512_xor_si512(b, q)));
        }
        let d = pack_low_halves(lo, hi);
        // SAFETY: j + 16 <= BLOCK.
        unsafe { _mm512_storeu_si512(dist.as_mut_ptr().add(j).cast(), d) };
        min = _mm512_min_epu32(min, d);
    }
    _mm512_reduce_min_epu32(min)
}
