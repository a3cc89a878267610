//! Counting matches directly, arranged so that LLVM vectorises the inner loop.
//!
//! The loop order is "pattern position outside, windows inside": for a fixed `j`, the windows
//! `s..s + B` compare the contiguous text slice `T[s + j..s + j + B]` against one broadcast
//! symbol, which is a straight SIMD compare-and-add. The text is first recoded to the narrowest
//! type that can name the pattern's letters (u8 for up to 254 letters), so one vector holds as
//! many symbols as possible, and the counters are as narrow as the symbols, flushed into u32
//! totals before they can overflow.

use std::ops::{Add, AddAssign};

use thrifty_core::parallel;

use super::alphabet::{pattern_letters, DenseText, ABSENT};

/// Windows per block: the block's text slice and counters stay in L1.
const BLOCK: usize = 4096;

/// Matches between the pattern and each window of the text, `text.len() - m + 1` of them.
pub(crate) fn matches(text: &DenseText, pattern: &[u32]) -> Vec<u32> {
    let letters = pattern_letters(pattern);
    if letters.len() < 254 {
        let (t, p) = recode::<u8>(text, pattern, &letters);
        count::<u8, u8>(&t, &p, u8::MAX as usize)
    } else if letters.len() < 65534 {
        let (t, p) = recode::<u16>(text, pattern, &letters);
        count::<u16, u16>(&t, &p, u16::MAX as usize)
    } else {
        count::<u32, u32>(&text.codes, pattern, usize::MAX)
    }
}

/// Text and pattern over `0..q` for the pattern's letters, with one code for "a text letter the
/// pattern lacks" and another for "a pattern letter the text lacks", so those never match.
fn recode<S: TryFrom<usize> + Copy>(
    text: &DenseText,
    pattern: &[u32],
    letters: &[u32],
) -> (Vec<S>, Vec<S>) {
    let narrow = |v: usize| S::try_from(v).ok().expect("code fits by construction");
    let q = letters.len();
    let not_in_pattern = narrow(q + 1);
    let mut table = vec![not_in_pattern; text.sigma()];
    for (i, &c) in letters.iter().enumerate() {
        table[c as usize] = narrow(i);
    }
    let t = text.codes.iter().map(|&c| table[c as usize]).collect();
    let p = pattern
        .iter()
        .map(|&c| {
            if c == ABSENT {
                narrow(q)
            } else {
                table[c as usize]
            }
        })
        .collect();
    (t, p)
}

/// The counting kernel; `flush` is how many pattern positions a counter of type `C` survives.
pub(crate) fn count<S, C>(text: &[S], pattern: &[S], flush: usize) -> Vec<u32>
where
    S: Copy + PartialEq + Sync,
    C: Copy + Default + From<bool> + Add<Output = C> + AddAssign + Into<u32>,
{
    let m = pattern.len();
    let windows = text.len() - m + 1;
    let blocks = windows.div_ceil(BLOCK);
    let per_block = parallel::map_indices(blocks, |b| {
        let start = b * BLOCK;
        let len = BLOCK.min(windows - start);
        let text = &text[start..start + len + m - 1];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { block_avx2::<S, C>(text, pattern, flush) };
        }
        block::<S, C>(text, pattern, flush)
    });
    per_block.concat()
}

/// The same kernel compiled for AVX2: twice the lanes of the SSE2 baseline build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2<S, C>(text: &[S], pattern: &[S], flush: usize) -> Vec<u32>
where
    S: Copy + PartialEq,
    C: Copy + Default + From<bool> + Add<Output = C> + AddAssign + Into<u32>,
{
    block::<S, C>(text, pattern, flush)
}

/// Matches of the windows starting in `text[..text.len() - m + 1]`.
// Inlined so that the AVX2 copy gets its own vectorisation of the loops.
#[inline(always)]
fn block<S, C>(text: &[S], pattern: &[S], flush: usize) -> Vec<u32>
where
    S: Copy + PartialEq,
    C: Copy + Default + From<bool> + Add<Output = C> + AddAssign + Into<u32>,
{
    let m = pattern.len();
    let len = text.len() - m + 1;
    let mut total = vec![0u32; len];
    let mut counter = vec![C::default(); len];
    for chunk in (0..m).step_by(flush.min(m)) {
        counter.fill(C::default());
        let end = chunk.saturating_add(flush).min(m);
        // Four pattern positions per pass over the counters: the pass is bound by loads and
        // stores, and this shares one counter load and store among four compares.
        let mut j = chunk;
        while j + 4 <= end {
            let (p0, p1, p2, p3) = (pattern[j], pattern[j + 1], pattern[j + 2], pattern[j + 3]);
            let t0 = &text[j..j + len];
            let t1 = &text[j + 1..j + 1 + len];
            let t2 = &text[j + 2..j + 2 + len];
            let t3 = &text[j + 3..j + 3 + len];
            for ((((c, &a), &b), &d), &e) in counter.iter_mut().zip(t0).zip(t1).zip(t2).zip(t3) {
                *c += C::from(a == p0) + C::from(b == p1) + C::from(d == p2) + C::from(e == p3);
            }
            j += 4;
        }
        for (j, &p) in pattern.iter().enumerate().take(end).skip(j) {
            for (c, &t) in counter.iter_mut().zip(&text[j..j + len]) {
                *c += C::from(t == p);
            }
        }
        for (t, &c) in total.iter_mut().zip(&counter) {
            *t += c.into();
        }
    }
    total
}
