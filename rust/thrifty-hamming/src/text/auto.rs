//! What "auto" picks: the cheapest method under a cost model with measured constants.
//!
//! Each method's running time is modelled by its operation count times a constant, and the
//! constants were measured on the development machine (release build, 2 threads; see the
//! ignored `timing_grid` test in `tests/text_timing.rs`). Crossovers follow from the model:
//!
//! Measured 2026-11-29, n = 10^6, uniform random text and pattern, seconds (one run each,
//! on a 2-core machine shared with a CI run, so expect +-30 % noise; `kangaroo` with k = 8,
//! `approx` with eps = 0.5):
//!
//! ("auto picks" is [`choose_method`] with sigma = the pattern's distinct letters, ~82 for
//! m = 100 over 256 symbols.)
//!
//! | m      | sigma | naive  | fft    | abrahamson | kangaroo | approx | auto picks  |
//! |--------|-------|--------|--------|------------|----------|--------|-------------|
//! | 100    | 4     | 0.034  | 0.098  | 0.146      | 1.39     | 0.39   | naive       |
//! | 100    | 26    | 0.012  | 0.41   | 0.040      | 0.50     | 0.16   | naive       |
//! | 100    | 256   | 0.010  | 0.48   | 0.016      | 0.28     | 0.17   | abrahamson  |
//! | 1000   | 4     | 0.068  | 0.052  | 0.150      | 0.75     | 0.64   | naive       |
//! | 1000   | 26    | 0.048  | 0.40   | 0.101      | 0.41     | 1.06   | naive       |
//! | 1000   | 256   | 0.061  | 3.42   | 0.061      | 0.68     | 0.61   | abrahamson  |
//! | 10000  | 4     | 0.40   | 0.081  | 0.095      | 1.04     | 1.57   | fft         |
//! | 10000  | 26    | 0.54   | 0.44   | 0.37       | 0.70     | 3.22   | fft         |
//! | 10000  | 256   | 1.31   | 4.06   | 0.146      | 0.50     | 2.06   | abrahamson  |
//!
//! The constants below are read off this table (wall-clock nanoseconds on 2 threads):
//! naive ~0.035-0.055 ns per cell at m >= 1000 (u8 codes, AVX2 when present); the FFT
//! ~0.4-0.7 ns per `L log2 L` per letter; the scan ~3-4 ns per vote once it dominates; the
//! suffix array ~0.4 s for N = 10^6 (about 20 ns per `N log2 N`) and an LCE query ~100-150 ns
//! (random access into several arrays of N words). Consequences: naive wins up to m ~ 1000;
//! at m = 10^4 the FFT wins for small alphabets and the scan for large ones; kangaroo's suffix
//! array alone costs as much as the best exact method at n = 10^6, so it is picked only for
//! very long patterns with large alphabets and a tiny k; approx is predicted to win only where
//! sigma exceeds its colour count and the exact methods are slow, which the even-spread model
//! behind [`choose_method`] never sees on these sizes.

use super::approx;
use super::fft;
use super::Method;

/// Nanoseconds per (window, pattern position) of the vectorised naive count over u8 codes.
const NAIVE_NS: f64 = 0.045;
/// Extra factor when the pattern has too many letters for u8 codes (u16 lanes are half as many).
const NAIVE_WIDE: f64 = 2.0;
/// Nanoseconds per `L log2 L` of one letter's forward FFT on one block (indicator included).
const FFT_NS: f64 = 0.65;
/// Nanoseconds per vote of the infrequent-letter scan (a scattered increment).
const SCAN_NS: f64 = 3.5;
/// Nanoseconds per `N log2 N` of the suffix array and LCP over text and pattern.
const SUFFIX_NS: f64 = 20.0;
/// Nanoseconds per LCE query (two rank look-ups and a range minimum).
const LCE_NS: f64 = 120.0;
/// The FFT path's fixed cost (inverse transforms, pattern spectra), in letters' worth.
pub(crate) const FFT_FIXED_LETTERS: usize = 2;

/// Modelled nanoseconds of one letter's FFT correlation for a text of `n`, pattern of `m`.
pub(crate) fn fft_letter_cost(n: usize, m: usize) -> f64 {
    let l = fft::block_len(n, m) as f64;
    fft::block_count(n, m) as f64 * l * l.log2().max(1.0) * FFT_NS
}

/// Modelled nanoseconds of `votes` scan increments.
pub(crate) fn scan_cost(votes: f64) -> f64 {
    votes * SCAN_NS
}

/// Modelled nanoseconds of each exact method, `None` where it does not apply.
fn exact_costs(n: usize, m: usize, sigma: usize, k: Option<u32>) -> [(Method, Option<f64>); 4] {
    let windows = (n - m + 1) as f64;
    let (nf, mf, sf) = (n as f64, m as f64, sigma.max(1) as f64);
    let wide = if sigma < 254 { 1.0 } else { NAIVE_WIDE };
    let naive = NAIVE_NS * wide * windows * mf;
    let per_fft = fft_letter_cost(n, m);
    let fft = (sf + FFT_FIXED_LETTERS as f64) * per_fft;
    // Letters spread evenly: each occurs n / sigma times in the text and m / sigma in the
    // pattern, so all of them fall on the same side of the split.
    let scan_letter = scan_cost((nf / sf) * (mf / sf));
    let abrahamson = if scan_letter <= per_fft {
        sf * scan_letter
    } else {
        fft
    };
    let kangaroo = k.map(|k| {
        let total = nf + mf + 2.0;
        SUFFIX_NS * total * total.log2() + LCE_NS * windows * (f64::from(k) + 1.0).min(mf)
    });
    [
        (Method::Naive, Some(naive)),
        (Method::Fft, Some(fft)),
        (Method::Abrahamson, Some(abrahamson)),
        (Method::Kangaroo, kangaroo),
    ]
}

fn cheapest(costs: &[(Method, Option<f64>)]) -> (Method, f64) {
    costs
        .iter()
        .filter_map(|&(method, cost)| cost.map(|c| (method, c)))
        .fold((Method::Naive, f64::INFINITY), |best, x| {
            if x.1 < best.1 {
                x
            } else {
                best
            }
        })
}

/// What "auto" picks for a text of `n`, a pattern of `m` with `sigma` distinct letters (those
/// that also occur in the text), and the caller's `k` and `eps`.
///
/// Never returns [`Method::Auto`]; returns [`Method::Kangaroo`] only with `k`, and
/// [`Method::Approx`] only with `eps`, when it beats every exact method.
/// Sizes that no call accepts (`m = 0`, `m > n`) get [`Method::Naive`].
pub fn choose_method(n: usize, m: usize, sigma: usize, k: Option<u32>, eps: Option<f64>) -> Method {
    if m == 0 || m > n {
        return Method::Naive;
    }
    let (exact, exact_cost) = cheapest(&exact_costs(n, m, sigma, k));
    match eps {
        Some(eps) if eps > 0.0 && eps < 1.0 && approx::colours(eps) < sigma => {
            let coloured = cheapest(&exact_costs(n, m, approx::colours(eps), None)[..3]).1;
            if approx::repetitions(n) as f64 * coloured < exact_cost {
                Method::Approx
            } else {
                exact
            }
        }
        _ => exact,
    }
}

/// The exact method that runs on the coloured strings of "approx".
pub(crate) fn choose_exact(n: usize, m: usize, sigma: usize) -> Method {
    cheapest(&exact_costs(n, m, sigma, None)[..3]).0
}
