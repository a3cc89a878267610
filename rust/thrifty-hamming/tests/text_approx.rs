//! The (1 + eps)-approximation: never above the truth, rarely far below, fixed by the seed.

use thrifty_hamming::text::{text_to_pattern, text_to_patterns, Method, Options};

mod common;

use common::reference;

fn random(len: usize, sigma: u64, state: &mut u64) -> Vec<u32> {
    (0..len)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*state >> 33) % sigma) as u32
        })
        .collect()
}

#[test]
fn bounds_hold_over_many_seeds() {
    let mut state = 1;
    let text = random(400, 1000, &mut state);
    let mut pattern = text[100..160].to_vec();
    for (i, p) in random(60, 1000, &mut state).into_iter().enumerate() {
        if i % 3 == 0 {
            pattern[i] = p;
        }
    }
    let truth = reference(&text, &pattern);
    let eps = 0.25;
    let (mut below, mut total) = (0usize, 0usize);
    for seed in 0..60 {
        let o = Options {
            method: Method::Approx,
            k: None,
            eps: Some(eps),
            seed,
        };
        let got = text_to_pattern(&text, &pattern, &o).unwrap();
        assert_eq!(got, text_to_pattern(&text, &pattern, &o).unwrap(), "seeded");
        for (&g, &d) in got.iter().zip(&truth) {
            assert!(g <= d, "overestimate {g} > {d}");
            total += 1;
            if f64::from(g) < (1.0 - eps) * f64::from(d) {
                below += 1;
            }
        }
    }
    // The guarantee allows a failure rate of 1/(4n) per position; allow some slack.
    assert!(below * 200 <= total, "{below} of {total} below (1 - eps) d");
}

#[test]
fn k_caps_and_sharing() {
    let mut state = 9;
    let text = random(300, 50, &mut state);
    let patterns = [&text[10..40], &text[200..290]];
    let o = Options {
        method: Method::Approx,
        k: Some(5),
        eps: Some(0.5),
        seed: 3,
    };
    let together = text_to_patterns(&text, &patterns, &o).unwrap();
    for (p, got) in patterns.iter().zip(&together) {
        assert_eq!(got, &text_to_pattern(&text, p, &o).unwrap());
        let truth = reference(&text, p);
        for (&g, &d) in got.iter().zip(&truth) {
            assert!(g <= 6 && g <= d);
        }
    }
}

#[test]
fn fine_eps_is_exact() {
    let mut state = 5;
    let text = random(500, 30, &mut state);
    let pattern = random(20, 30, &mut state);
    for eps in [1e-9, 0.01] {
        let o = Options {
            method: Method::Approx,
            k: None,
            eps: Some(eps),
            seed: 11,
        };
        assert_eq!(
            text_to_pattern(&text, &pattern, &o).unwrap(),
            reference(&text, &pattern)
        );
    }
}
