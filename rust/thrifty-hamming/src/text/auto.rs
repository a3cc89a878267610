//! What "auto" picks: the cheapest method under a cost model with measured constants.
//!
//! Each method's running time is modelled by its operation count times a constant, and the
//! constants were measured on the development machine (release build, 2 threads; see the
//! ignored `timing_grid` test in `tests/text_timing.rs`). Crossovers follow from the model:
//!
//! Measured 2026-11-29 on the development machine (2 cores, AVX2/AVX-512; other jobs
//! running, so single runs vary by up to 2x between sessions; the constants come from the
//! quieter session below). n = 10^6, uniform random text and pattern, seconds, one run each
//! (`kangaroo` with k = 8, `approx` with eps = 0.5); "best" is auto's best of three further
//! runs; "picks" is [`choose_method`] with sigma = the pattern's distinct letters (~82 for
//! m = 100 over 256 symbols):
//!
//! | m     | sigma | naive  | fft    | abrahamson | kangaroo | approx | auto   | best   | picks      |
//! |-------|-------|--------|--------|------------|----------|--------|--------|--------|------------|
//! | 100   | 4     | 0.0120 | 0.0249 | 0.0216     | 0.396    | 0.105  | 0.0057 | 0.0043 | naive      |
//! | 100   | 26    | 0.0047 | 0.0812 | 0.0144     | 0.300    | 0.103  | 0.0049 | 0.0041 | naive      |
//! | 100   | 256   | 0.0053 | 0.225  | 0.0120     | 0.248    | 0.101  | 0.0057 | 0.0040 | naive      |
//! | 1000  | 4     | 0.0130 | 0.0205 | 0.0209     | 0.333    | 0.207  | 0.0128 | 0.0115 | naive      |
//! | 1000  | 26    | 0.0141 | 0.127  | 0.0429     | 0.275    | 0.202  | 0.0160 | 0.0151 | naive      |
//! | 1000  | 256   | 0.0142 | 1.014  | 0.0142     | 0.185    | 0.186  | 0.0187 | 0.0131 | abrahamson |
//! | 10000 | 4     | 0.0968 | 0.0247 | 0.0230     | 0.338    | 0.314  | 0.0241 | 0.0230 | fft        |
//! | 10000 | 26    | 0.0974 | 0.0941 | 0.106      | 0.294    | 0.512  | 0.0864 | 0.0802 | naive      |
//! | 10000 | 256   | 0.197  | 1.097  | 0.0794     | 0.184    | 0.494  | 0.0501 | 0.0402 | abrahamson |
//!
//! A later run under heavier load from other jobs was 1.5-3x slower in every cell, with the
//! same picks.
//!
//! Constants read off this table (wall-clock nanoseconds on 2 threads): naive 0.010 ns per
//! (window, pattern position) at m >= 1000 with u8 codes and AVX2, twice that with u16 codes;
//! the FFT 0.15-0.2 ns per `L log2 L` per letter per block; the scan ~2 ns per vote (a
//! scattered increment) once it dominates; the suffix array ~0.18 s for N = 10^6 (9 ns per
//! `N log2 N`) and ~25 ns per kangaroo jump. Consequences: naive wins up to m ~ 10^4 over
//! small alphabets except the smallest (sigma = 4 at m = 10^4 goes to the FFT, where 6 FFTs
//! per block beat 10^4 compares per window); large alphabets go to Abrahamson's scan;
//! kangaroo's suffix array alone costs as much as the best exact method at n = 10^6, so it is
//! picked only for long patterns over large alphabets with a tiny k (for instance m = 2 * 10^5,
//! sigma = 256, k = 0); approx wins only where every exact method is slow and sigma exceeds its
//! colour count (for instance m = 10^5, sigma = 256, eps = 0.5).

use super::approx;
use super::fft;
use super::Method;

/// Nanoseconds per (window, pattern position) of the vectorised naive count over u8 codes.
const NAIVE_NS: f64 = 0.010;
/// Extra factor when the pattern has too many letters for u8 codes (u16 lanes are half as
/// many, and the measured cost is twice as high).
const NAIVE_WIDE: f64 = 2.0;
/// Nanoseconds per `L log2 L` of one letter's forward FFT on one block (indicator included).
const FFT_NS: f64 = 0.19;
/// Nanoseconds per vote of the infrequent-letter scan (a scattered increment).
const SCAN_NS: f64 = 2.0;
/// Nanoseconds per `N log2 N` of the suffix array and LCP over text and pattern.
const SUFFIX_NS: f64 = 9.0;
/// Nanoseconds per LCE query (two rank look-ups and a range minimum).
const LCE_NS: f64 = 25.0;
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
