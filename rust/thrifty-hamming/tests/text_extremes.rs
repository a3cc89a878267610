//! Text-to-pattern distances at the extremes of the code's switches, where a property test
//! would spend too long drawing: the most pattern letters each naive symbol width holds,
//! pattern spectra past the FFT's 256 MiB budget, and arguments at the ends of their ranges.

use std::collections::HashSet;

use thrifty_hamming::text::{text_to_pattern, text_to_patterns, Method, Options};

mod common;

use common::{capped, options, reference};

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(seed: u64, i: usize) -> u64 {
    splitmix64(seed ^ splitmix64(i as u64))
}

/// A text and a pattern sharing exactly `letters` distinct symbols `0..letters`; the text
/// also holds symbols the pattern lacks, and the pattern symbols the text lacks.
fn with_letters(letters: u32, m: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let n = m + 9;
    let letter = |z: u64| (z >> 8) as u32 % letters;
    let mut pattern: Vec<u32> = (0..m)
        .map(|j| match hash(seed, j) {
            _ if j < letters as usize => j as u32,
            z if z.is_multiple_of(7) => u32::MAX - (z % 3) as u32,
            z => letter(z),
        })
        .collect();
    pattern.rotate_left((seed % m as u64) as usize);
    let text: Vec<u32> = (0..n)
        .map(|i| match hash(seed ^ 1, i) {
            _ if i < letters as usize => i as u32,
            z if z.is_multiple_of(5) => 1_000_000 + (z % 11) as u32,
            z => letter(z),
        })
        .collect();
    (text, pattern)
}

/// The naive count narrows symbols to u8 below 254 pattern letters and to u16 below 65534;
/// the letters the text lacks and the text letters the pattern lacks get codes of their own,
/// which must still fit. Long patterns flush the narrow counters.
#[test]
fn naive_symbol_width_switches() {
    for (letters, m) in [
        (252, 600),
        (253, 600),
        (254, 600),
        (255, 600),
        (65_533, 65_540),
        (65_534, 65_540),
        (65_535, 65_540),
    ] {
        let (text, pattern) = with_letters(letters, m, u64::from(letters));
        let in_text: HashSet<u32> = text.iter().copied().collect();
        let shared: HashSet<u32> = pattern
            .iter()
            .copied()
            .filter(|s| in_text.contains(s))
            .collect();
        assert_eq!(shared.len(), letters as usize);
        let want = reference(&text, &pattern);
        for method in [Method::Naive, Method::Auto, Method::Abrahamson] {
            for k in [None, Some(5)] {
                let got = text_to_pattern(&text, &pattern, &options(method, k, None)).unwrap();
                assert_eq!(
                    got,
                    capped(&want, k),
                    "{method:?} letters={letters} k={k:?}"
                );
            }
        }
    }
}

/// Pattern spectra beyond 256 MiB are computed in batches, and patterns of one length whose
/// letters together pass it stop sharing block transforms: at L = 2^14 a letter's spectrum
/// takes 131 088 bytes, so 2047 letters fit.
#[test]
fn fft_spectra_in_batches() {
    // The FFT length: a power of two at least 2m, at most n.next_power_of_two() = 2^14.
    let (n, m) = (16_384, 16_000);
    let text: Vec<u32> = (0..n).map(|i| (hash(3, i) % 2200) as u32).collect();
    // 2200 letters: two batches; 1100 letters: one; together: one pattern at a time.
    let wide: Vec<u32> = text[200..200 + m].iter().rev().copied().collect();
    let narrow: Vec<u32> = text[100..100 + m].iter().map(|&s| s % 1100).collect();
    let letters = |p: &[u32]| {
        let mut l = p.to_vec();
        l.sort_unstable();
        l.dedup();
        l.len()
    };
    assert!(letters(&wide) > 2047 && letters(&narrow) == 1100);
    let patterns: [&[u32]; 2] = [&wide, &narrow];
    let o = options(Method::Fft, None, None);
    let together = text_to_patterns(&text, &patterns, &o).unwrap();
    for (p, got) in patterns.iter().zip(&together) {
        assert_eq!(got, &reference(&text, p));
    }
    assert_eq!(together[1], text_to_pattern(&text, &narrow, &o).unwrap());
}

/// Arguments at the ends of their ranges: one-symbol texts, m = n, the largest symbols, k and
/// eps at their extremes, the largest seed. Every call answers; exact ones equal the count.
#[test]
fn extreme_arguments_are_answered() {
    let top = u32::MAX;
    let cases: [(Vec<u32>, Vec<u32>); 6] = [
        (vec![0], vec![0]),
        (vec![top], vec![top]),
        (vec![top], vec![0]),
        (vec![top, 0, top - 1, top], vec![top, top - 1]),
        (vec![top, 0, top - 1, top], vec![top, 0, top - 1, top]),
        ((0..70_000).collect(), (0..70_000).rev().collect()),
    ];
    let every = [
        Method::Auto,
        Method::Naive,
        Method::Fft,
        Method::Abrahamson,
        Method::Kangaroo,
    ];
    for (text, pattern) in &cases {
        let want = reference(text, pattern);
        for k in [Some(0), Some(1), Some(u32::MAX)] {
            for method in every {
                if method == Method::Fft && pattern.len() > 1000 {
                    continue;
                }
                let got = text_to_pattern(text, pattern, &options(method, k, None)).unwrap();
                assert_eq!(
                    got,
                    capped(&want, k),
                    "{method:?} k={k:?} m={}",
                    pattern.len()
                );
            }
        }
        // The smallest eps asks for more colours than there are symbols: exact. The largest
        // below 1 gives 5 colours: never above the count.
        for (eps, exact) in [
            (f64::MIN_POSITIVE, true),
            (5e-324, true),
            (1.0 - 1e-16, false),
        ] {
            for seed in [0, u64::MAX] {
                let o = Options {
                    method: Method::Approx,
                    k: None,
                    eps: Some(eps),
                    seed,
                };
                let got = text_to_pattern(text, pattern, &o).unwrap();
                if exact {
                    assert_eq!(got, want, "eps {eps}");
                } else {
                    assert!(got.iter().zip(&want).all(|(g, d)| (0..=*d).contains(g)));
                }
            }
        }
    }
}
