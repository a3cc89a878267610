//! Every method of `text_to_pattern` against a direct reference.

use proptest::prelude::*;
use thrifty_hamming::text::{text_to_pattern, text_to_patterns, Method, Options};

mod common;

use common::reference;

fn capped(d: &[i32], k: u32) -> Vec<i32> {
    d.iter().map(|&x| x.min(k as i32 + 1)).collect()
}

const EXACT: [Method; 4] = [Method::Auto, Method::Naive, Method::Fft, Method::Abrahamson];

fn opts(method: Method, k: Option<u32>) -> Options {
    Options {
        method,
        k,
        eps: None,
        seed: 0,
    }
}

/// A text and a pattern no longer than it, over `alphabet` symbols spread over the u32 range
/// when `huge` (so nothing may index by symbol).
fn case() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
    (1usize..5, any::<bool>(), 1usize..300)
        .prop_flat_map(|(alphabet, huge, n)| {
            let symbol = (0..alphabet as u32).prop_map(move |s| {
                if huge {
                    u32::MAX - s.wrapping_mul(0x9E37_79B9)
                } else {
                    s
                }
            });
            let text = proptest::collection::vec(symbol.clone(), n);
            (text, 1..=n, proptest::collection::vec(symbol, n))
        })
        .prop_map(|(text, m, mut pattern)| {
            pattern.truncate(m);
            (text, pattern)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn exact_methods_equal_the_reference((text, pattern) in case()) {
        let want = reference(&text, &pattern);
        for method in EXACT {
            prop_assert_eq!(&text_to_pattern(&text, &pattern, &opts(method, None)).unwrap(), &want, "{:?}", method);
        }
    }

    #[test]
    fn k_bounded_methods_cap_at_k_plus_one((text, pattern) in case(), k in 0u32..12) {
        let want = capped(&reference(&text, &pattern), k);
        for method in EXACT.into_iter().chain([Method::Kangaroo]) {
            prop_assert_eq!(&text_to_pattern(&text, &pattern, &opts(method, Some(k))).unwrap(), &want, "{:?}", method);
        }
    }

    #[test]
    fn patterns_share_a_text((text, pattern) in case(), cut in 0usize..300, k in proptest::option::of(0u32..8)) {
        let other: Vec<u32> = text[cut % text.len()..].iter().rev().copied().collect();
        // Two of the same length, which share the text's block transforms.
        let patterns = [&pattern[..], &other[..], &pattern[..1], &text[..pattern.len()]];
        for method in EXACT.into_iter().chain([Method::Kangaroo]) {
            let k = if method == Method::Kangaroo { Some(k.unwrap_or(3)) } else { k };
            let o = opts(method, k);
            let together = text_to_patterns(&text, &patterns, &o).unwrap();
            let alone: Vec<Vec<i32>> = patterns.iter().map(|p| text_to_pattern(&text, p, &o).unwrap()).collect();
            prop_assert_eq!(together, alone);
        }
    }
}

#[test]
fn wide_alphabets_and_long_patterns() {
    // More than 254 and more than 65534 pattern letters switch the naive kernel's symbol width;
    // long patterns make the u8 counters flush.
    let mut x = 7u64;
    let mut next = |modulus: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % modulus) as u32
    };
    for (n, m, sigma) in [(3000, 700, 3), (3000, 1000, 400), (70_000, 69_990, 1 << 30)] {
        let text: Vec<u32> = (0..n).map(|_| next(sigma)).collect();
        let mut pattern = text[n - m..].to_vec();
        for i in (0..m).step_by(5) {
            pattern[i] = next(sigma);
        }
        let want = reference(&text, &pattern);
        // One FFT per letter over 65 535 letters would only test patience.
        let methods: &[Method] = if sigma > 1000 {
            &[Method::Naive, Method::Abrahamson]
        } else {
            &[Method::Naive, Method::Fft, Method::Abrahamson]
        };
        for &method in methods {
            assert_eq!(
                text_to_pattern(&text, &pattern, &opts(method, None)).unwrap(),
                want,
                "{method:?} n={n} m={m} sigma={sigma}"
            );
        }
        assert_eq!(
            text_to_pattern(&text, &pattern, &opts(Method::Kangaroo, Some(40))).unwrap(),
            capped(&want, 40)
        );
    }
}

#[test]
fn edge_sizes() {
    let text = [5u32, 5, 6, 5];
    for method in EXACT {
        assert_eq!(
            text_to_pattern(&text, &[5], &opts(method, None)).unwrap(),
            vec![0, 0, 1, 0]
        );
        assert_eq!(
            text_to_pattern(&text, &[5, 6, 6, 5], &opts(method, None)).unwrap(),
            vec![1]
        );
        assert_eq!(
            text_to_pattern(&text, &[9, 9], &opts(method, None)).unwrap(),
            vec![2, 2, 2]
        );
    }
    assert_eq!(
        text_to_pattern(&text, &[6, 5], &opts(Method::Kangaroo, Some(0))).unwrap(),
        vec![1, 1, 0]
    );
    assert_eq!(
        text_to_pattern(&text, &[9, 9], &opts(Method::Naive, Some(u32::MAX))).unwrap(),
        vec![2, 2, 2]
    );
}

/// Sizes whose FFT blocks did not divide evenly among the tasks cut for the thread pool: the
/// last tasks started past the final block and the block loop panicked ("capacity overflow").
/// The cut depends on the thread count, so every case runs on pools of several sizes.
#[test]
fn fft_blocks_that_leave_tasks_empty() {
    let repeat =
        |cycle: &[u32], n: usize| -> Vec<u32> { cycle.iter().copied().cycle().take(n).collect() };
    let cycle = repeat(&[1, 2, 1, 3], 2000);
    let mut cases: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![5; 1000], vec![5; 3]),
        (cycle.clone(), cycle[7..107].to_vec()),
    ];
    for (n, m) in [(512, 6), (1813, 98), (4096, 100), (4098, 162)] {
        let text: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761) >> 29)
            .collect();
        let pattern = text[n / 3..n / 3 + m].iter().rev().copied().collect();
        cases.push((text, pattern));
    }
    for threads in [1, 2, 3, 8, 16] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (text, pattern) in &cases {
                let want = reference(text, pattern);
                for method in EXACT {
                    let got = text_to_pattern(text, pattern, &opts(method, None)).unwrap();
                    assert_eq!(
                        got,
                        want,
                        "{method:?} n={} m={} threads={threads}",
                        text.len(),
                        pattern.len()
                    );
                }
            }
        });
    }
}
