//! Abrahamson's frequent/infrequent split, with the split chosen per letter by a cost model.
//!
//! A letter c occurring `t_c` times in the text and `p_c` times in the pattern costs
//! `t_c * p_c` increments to count by scanning (every text occurrence votes for the windows that
//! align it with every pattern occurrence), or one forward FFT per text block by correlation,
//! whatever its frequency. Abrahamson's threshold sqrt(m / log m) on `p_c` is the balance point
//! of these two costs when letters are spread evenly; with the text's real counts in hand we
//! instead put each letter on its cheaper side, using the constants measured in
//! [`super::auto`].

use thrifty_core::parallel;

use super::alphabet::{pattern_letters, DenseText};
use super::auto::{fft_letter_cost, scan_cost, FFT_FIXED_LETTERS};
use super::fft;

/// Windows per scan task: its counters stay in L2.
const SCAN_BLOCK: usize = 1 << 15;

/// Matches per window, by FFT for the letters worth it and by scanning for the rest.
pub(crate) fn matches(text: &DenseText, pattern: &[u32]) -> Vec<u32> {
    let (frequent, infrequent) = split(text, pattern);
    let mut total = fft::matches(&text.codes, pattern, &frequent);
    add_scan(text, pattern, &infrequent, &mut total);
    total
}

/// The pattern's letters as (by FFT, by scan).
pub(crate) fn split(text: &DenseText, pattern: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let (n, m) = (text.codes.len(), pattern.len());
    let letters = pattern_letters(pattern);
    let mut in_pattern = vec![0u32; text.sigma()];
    for &c in pattern {
        if let Some(x) = in_pattern.get_mut(c as usize) {
            *x += 1;
        }
    }
    let per_fft = fft_letter_cost(n, m);
    let (frequent, infrequent): (Vec<u32>, Vec<u32>) = letters.iter().partition(|&&c| {
        let votes = f64::from(text.counts[c as usize]) * f64::from(in_pattern[c as usize]);
        scan_cost(votes) > per_fft
    });
    // The first FFT letter also pays for the inverse transforms and the pattern spectra; if
    // only a couple of letters want the FFT, scanning them too is cheaper.
    if frequent.len() < FFT_FIXED_LETTERS {
        (Vec::new(), letters)
    } else {
        (frequent, infrequent)
    }
}

/// Adds the scanned matches of `letters` to `total`.
pub(crate) fn add_scan(text: &DenseText, pattern: &[u32], letters: &[u32], total: &mut [u32]) {
    if letters.is_empty() {
        return;
    }
    for (t, s) in total.iter_mut().zip(scan(text, pattern, letters)) {
        *t += s;
    }
}

/// Matches per window from the `letters` only, by voting from each text occurrence.
pub(crate) fn scan(text: &DenseText, pattern: &[u32], letters: &[u32]) -> Vec<u32> {
    let (n, m) = (text.codes.len(), pattern.len());
    let windows = n - m + 1;
    // Occurrences of each selected letter in the pattern, as ranges into one array.
    let sigma = text.sigma();
    let mut selected = vec![false; sigma];
    for &c in letters {
        selected[c as usize] = true;
    }
    let mut start = vec![0u32; sigma + 1];
    for &c in pattern {
        if (c as usize) < sigma && selected[c as usize] {
            start[c as usize + 1] += 1;
        }
    }
    for i in 0..sigma {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut offsets = vec![0u32; start[sigma] as usize];
    for (j, &c) in pattern.iter().enumerate() {
        if (c as usize) < sigma && selected[c as usize] {
            offsets[fill[c as usize] as usize] = j as u32;
            fill[c as usize] += 1;
        }
    }
    let blocks = windows.div_ceil(SCAN_BLOCK);
    let parts = parallel::map_indices(blocks, |b| {
        let lo = b * SCAN_BLOCK;
        let len = SCAN_BLOCK.min(windows - lo);
        let mut votes = vec![0u32; len];
        // Text position i votes for window i - j, which must lie in lo..lo + len.
        for i in lo..(lo + len + m - 1) {
            let c = text.codes[i] as usize;
            for &j in &offsets[start[c] as usize..start[c + 1] as usize] {
                let w = i.wrapping_sub(j as usize).wrapping_sub(lo);
                if w < len {
                    votes[w] += 1;
                }
            }
        }
        votes
    });
    parts.concat()
}
