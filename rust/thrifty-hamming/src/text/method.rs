//! The algorithm names a caller may ask for, and the options that go with them.

use thrifty_core::Choice;

/// Which algorithm computes the distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Pick from the sizes with [`choose_method`](super::choose_method).
    Auto,
    /// Count mismatches window by window: O(n m), vectorised.
    Naive,
    /// One real FFT correlation per letter of the pattern: O(sigma n log m).
    Fft,
    /// Abrahamson's split: FFT for frequent letters, a scan for the others.
    Abrahamson,
    /// Landau–Vishkin kangaroo jumps over longest common extensions: O(n k), needs `k`.
    Kangaroo,
    /// (1 + eps)-approximation by random colourings of the alphabet, needs `eps`.
    Approx,
}

impl Choice for Method {
    const ARGUMENT: &'static str = "method";
    const ALL: &'static [Method] = &[
        Method::Auto,
        Method::Naive,
        Method::Fft,
        Method::Abrahamson,
        Method::Kangaroo,
        Method::Approx,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Naive => "naive",
            Method::Fft => "fft",
            Method::Abrahamson => "abrahamson",
            Method::Kangaroo => "kangaroo",
            Method::Approx => "approx",
        }
    }
}

/// How to compute the distances.
///
/// * `k`: report distances above `k` as `k + 1` (every method honours it; kangaroo needs it).
/// * `eps`: in (0, 1); lets "auto" and requires "approx" to return a (1 - eps) lower estimate.
/// * `seed`: the colourings of "approx" derive from it alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub method: Method,
    pub k: Option<u32>,
    pub eps: Option<f64>,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: Method::Auto,
            k: None,
            eps: None,
            seed: 0,
        }
    }
}
