//! What the text tests share: the definition every method is checked against.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use thrifty_hamming::text::{Method, Options};

/// The Hamming distance of `pattern` to every window of `text`, counted directly.
pub fn reference(text: &[u32], pattern: &[u32]) -> Vec<i32> {
    (0..=text.len() - pattern.len())
        .map(|i| {
            pattern
                .iter()
                .zip(&text[i..])
                .filter(|(p, t)| p != t)
                .count() as i32
        })
        .collect()
}

/// `d` as a method bounded by `k` reports it: distances above `k` read as `k + 1`.
pub fn capped(d: &[i32], k: Option<u32>) -> Vec<i32> {
    match k {
        Some(k) => d
            .iter()
            .map(|&x| i64::from(x).min(i64::from(k) + 1) as i32)
            .collect(),
        None => d.to_vec(),
    }
}

/// Options with a fixed seed, so approximate methods are reproducible.
pub fn options(method: Method, k: Option<u32>, eps: Option<f64>) -> Options {
    Options {
        method,
        k,
        eps,
        seed: 17,
    }
}
