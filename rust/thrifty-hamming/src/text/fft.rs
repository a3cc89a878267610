//! Matches contributed by chosen letters, by real FFT correlation over text blocks.
//!
//! For a letter c, the matches at window i are `sum_j [T[i+j] = c][P[j] = c]`, a correlation of
//! two indicator vectors. The text is cut into overlapping blocks of FFT length L ~ 2m
//! (overlap-save): block b covers `T[s..s+L]` and yields the `L - m + 1` windows starting in
//! it, so the FFT size follows m rather than n. The products of all letters are summed in the
//! frequency domain, so a block costs one forward FFT per letter and a single inverse FFT.

use std::ops::Range;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use thrifty_core::parallel;

const ONE_BITS: u64 = 0x3FF0_0000_0000_0000;

/// The FFT length for a pattern of `m` over a text of `n`: a power of two at least 2m (so at
/// least half of each block yields windows), but no longer than one block covering the text.
pub(crate) fn block_len(n: usize, m: usize) -> usize {
    (2 * m)
        .next_power_of_two()
        .max(64)
        .min(n.next_power_of_two())
}

/// How many blocks of [`block_len`] cover the `n - m + 1` windows.
pub(crate) fn block_count(n: usize, m: usize) -> usize {
    let l = block_len(n, m);
    (n - m + 1).div_ceil(l - m + 1)
}

/// Bytes of pattern spectra held at once; more letters than fit are done in batches, so a
/// huge alphabet costs time (which "auto" avoids) rather than all the memory there is.
const SPECTRA_BYTES: usize = 256 << 20;

/// Matches per window counting only the letters (text codes) in `letters`.
pub(crate) fn matches(text: &[u32], pattern: &[u32], letters: &[u32]) -> Vec<u32> {
    let per_letter = spectrum_bytes(text.len(), pattern.len());
    in_batches(text, pattern, letters, (SPECTRA_BYTES / per_letter).max(1))
}

/// [`matches`] for several patterns of one length, pattern i counting `letters[i]`: each text
/// block's transform of a letter is computed once and used by every pattern holding it.
pub(crate) fn matches_shared(
    text: &[u32],
    patterns: &[&[u32]],
    letters: &[&[u32]],
) -> Vec<Vec<u32>> {
    let m = patterns.first().map_or(1, |p| p.len());
    debug_assert!(patterns.iter().all(|p| p.len() == m));
    let pairs: usize = letters.iter().map(|l| l.len()).sum();
    if pairs.saturating_mul(spectrum_bytes(text.len(), m)) <= SPECTRA_BYTES {
        return batch_matches(text, patterns, letters);
    }
    patterns
        .iter()
        .zip(letters)
        .map(|(p, l)| matches(text, p, l))
        .collect()
}

/// Bytes of one letter's pattern spectrum.
fn spectrum_bytes(n: usize, m: usize) -> usize {
    (block_len(n, m) / 2 + 1) * std::mem::size_of::<Complex<f64>>()
}

/// [`matches`] with at most `batch` letters' spectra at once.
fn in_batches(text: &[u32], pattern: &[u32], letters: &[u32], batch: usize) -> Vec<u32> {
    let windows = text.len() - pattern.len() + 1;
    let mut total = vec![0u32; windows];
    for group in letters.chunks(batch) {
        let mut part = batch_matches(text, &[pattern], &[group]);
        let part = part.pop().expect("one pattern in, one out");
        if letters.len() <= batch {
            return part;
        }
        for (t, x) in total.iter_mut().zip(part) {
            *t += x;
        }
    }
    total
}

fn batch_matches(text: &[u32], patterns: &[&[u32]], letters: &[&[u32]]) -> Vec<Vec<u32>> {
    let n = text.len();
    let m = patterns.first().map_or(1, |p| p.len());
    let windows = n - m + 1;
    let mut union: Vec<u32> = letters.iter().flat_map(|l| l.iter().copied()).collect();
    union.sort_unstable();
    union.dedup();
    if union.is_empty() {
        return vec![vec![0; windows]; patterns.len()];
    }
    let l = block_len(n, m);
    let step = l - m + 1;
    let blocks = windows.div_ceil(step);
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(l);
    let inverse = planner.plan_fft_inverse(l);

    // One spectrum per (pattern, letter) pair, of the reversed pattern's indicator, so that
    // convolution becomes correlation.
    let pairs: Vec<(usize, u32)> = letters
        .iter()
        .enumerate()
        .flat_map(|(p, ls)| ls.iter().map(move |&c| (p, c)))
        .collect();
    let spectra: Vec<Vec<Complex<f64>>> = parallel::map_indices(pairs.len(), |i| {
        let (p, c) = pairs[i];
        let mut input = forward.make_input_vec();
        for (j, &x) in patterns[p].iter().enumerate() {
            input[m - 1 - j] = f64::from(u8::from(x == c));
        }
        let mut out = forward.make_output_vec();
        forward
            .process(&mut input, &mut out)
            .expect("buffers come from the plan");
        out
    });
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); union.len()];
    for (i, &(_, c)) in pairs.iter().enumerate() {
        let u = union
            .binary_search(&c)
            .expect("the union holds every letter");
        uses[u].push(i);
    }

    let kernel = Kernel {
        forward,
        inverse,
        spectra: &spectra,
        pairs: &pairs,
        union: &union,
        uses: &uses,
        patterns: patterns.len(),
        text,
        m,
        l,
        step,
        windows,
    };
    // A few tasks per thread so that scratch buffers are reused across blocks.
    let parts = parallel::map_ranges(blocks, parallel::threads() * 4, |r| kernel.blocks(r));
    let mut out: Vec<Vec<u32>> = (0..patterns.len())
        .map(|_| Vec::with_capacity(windows))
        .collect();
    for part in parts {
        for (o, p) in out.iter_mut().zip(part) {
            o.extend(p);
        }
    }
    out
}

struct Kernel<'a> {
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    spectra: &'a [Vec<Complex<f64>>],
    pairs: &'a [(usize, u32)],
    union: &'a [u32],
    /// For each letter of `union`, the indices of its (pattern, letter) pairs.
    uses: &'a [Vec<usize>],
    patterns: usize,
    text: &'a [u32],
    m: usize,
    l: usize,
    step: usize,
    windows: usize,
}

impl Kernel<'_> {
    /// Matches of the windows of `blocks`, per pattern.
    fn blocks(&self, blocks: Range<usize>) -> Vec<Vec<u32>> {
        let mut out: Vec<Vec<u32>> = (0..self.patterns)
            .map(|_| Vec::with_capacity(blocks.len() * self.step))
            .collect();
        let mut input = self.forward.make_input_vec();
        let mut spectrum = self.forward.make_output_vec();
        let mut accs: Vec<Vec<Complex<f64>>> = (0..self.patterns)
            .map(|_| self.forward.make_output_vec())
            .collect();
        let mut real = self.inverse.make_output_vec();
        let mut scratch = self.forward.make_scratch_vec();
        let mut inv_scratch = self.inverse.make_scratch_vec();
        for b in blocks {
            let s = b * self.step;
            let segment = &self.text[s..(s + self.l).min(self.text.len())];
            for acc in &mut accs {
                acc.fill(Complex::default());
            }
            for (&c, uses) in self.union.iter().zip(self.uses) {
                // A mask rather than a branch: on a random text `t == c` is unpredictable,
                // and compiled as a jump it cost more than the FFTs themselves.
                for (x, &t) in input.iter_mut().zip(segment) {
                    *x = f64::from_bits(u64::from(t == c).wrapping_neg() & ONE_BITS);
                }
                input[segment.len()..].fill(0.0);
                self.forward
                    .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                    .expect("buffers come from the plan");
                for &i in uses {
                    let acc = &mut accs[self.pairs[i].0];
                    for ((a, x), y) in acc.iter_mut().zip(&spectrum).zip(&self.spectra[i]) {
                        *a += x * y;
                    }
                }
            }
            let count = self.step.min(self.windows - s);
            let scale = 1.0 / self.l as f64;
            for (acc, out) in accs.iter_mut().zip(&mut out) {
                // Rounding error leaves tiny imaginary parts where a real signal has none; the
                // inverse transform rejects them.
                acc[0].im = 0.0;
                if let Some(last) = acc.last_mut() {
                    last.im = 0.0;
                }
                self.inverse
                    .process_with_scratch(acc, &mut real, &mut inv_scratch)
                    .expect("buffers come from the plan");
                out.extend(
                    real[self.m - 1..self.m - 1 + count]
                        .iter()
                        .map(|&v| (v * scale).round().max(0.0) as u32),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_add_up() {
        let text: Vec<u32> = (0..500u32).map(|i| (i * 7 + i / 3) % 11).collect();
        let pattern: Vec<u32> = (0..40u32).map(|i| (i * 5) % 11).collect();
        let letters: Vec<u32> = (0..11).collect();
        let whole = in_batches(&text, &pattern, &letters, 11);
        assert_eq!(in_batches(&text, &pattern, &letters, 2), whole);
        assert_eq!(in_batches(&text, &pattern, &letters, 1), whole);
        let want: Vec<u32> = (0..=460)
            .map(|i| {
                pattern
                    .iter()
                    .zip(&text[i..])
                    .filter(|(p, t)| p == t)
                    .count() as u32
            })
            .collect();
        assert_eq!(whole, want);
        let other: Vec<u32> = pattern.iter().rev().copied().collect();
        let shared = matches_shared(
            &text,
            &[&pattern, &other, &pattern],
            &[&letters, &letters[3..], &[]],
        );
        assert_eq!(shared[0], want);
        assert_eq!(shared[1], in_batches(&text, &other, &letters[3..], 11));
        assert_eq!(shared[2], vec![0; 461]);
    }
}
