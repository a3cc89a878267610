//! The measurements behind "auto" (ignored: it times, it asserts nothing about time).
//!
//! `cargo test --release -p thrifty-hamming --test text_timing -- --ignored --nocapture`
//! prints, for n = 10^6 and each (m, sigma), the seconds of every method, and the constants
//! of the cost model in `src/text/auto.rs` implied by each measurement.

use std::time::Instant;

use thrifty_core::Choice;
use thrifty_hamming::text::{choose_method, text_to_pattern, Method, Options};

fn random(len: usize, sigma: u64, state: &mut u64) -> Vec<u32> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state % sigma) as u32
        })
        .collect()
}

fn seconds(text: &[u32], pattern: &[u32], options: Options) -> f64 {
    let start = Instant::now();
    let d = text_to_pattern(text, pattern, &options).unwrap();
    let t = start.elapsed().as_secs_f64();
    assert_eq!(d.len(), text.len() - pattern.len() + 1);
    t
}

#[test]
#[ignore]
fn timing_grid() {
    let n = 1_000_000usize;
    let mut state = 0x2545_F491_4F6C_DD1D;
    let threads = rayon::current_num_threads();
    println!("threads {threads}");
    for m in [100usize, 1000, 10_000] {
        for sigma in [4u64, 26, 256] {
            let text = random(n, sigma, &mut state);
            let pattern = random(m, sigma, &mut state);
            let o = |method| Options {
                method,
                k: None,
                eps: None,
                seed: 1,
            };
            let naive = seconds(&text, &pattern, o(Method::Naive));
            let fft = seconds(&text, &pattern, o(Method::Fft));
            let abrahamson = seconds(&text, &pattern, o(Method::Abrahamson));
            let auto = seconds(&text, &pattern, o(Method::Auto));
            // The single runs above include page faults on fresh output buffers and a shared
            // machine's noise; the best of three more is the steady state.
            let auto_best = (0..3)
                .map(|_| seconds(&text, &pattern, o(Method::Auto)))
                .fold(f64::INFINITY, f64::min);
            let kangaroo = seconds(
                &text,
                &pattern,
                Options {
                    k: Some(8),
                    ..o(Method::Kangaroo)
                },
            );
            let approx = seconds(
                &text,
                &pattern,
                Options {
                    eps: Some(0.5),
                    ..o(Method::Approx)
                },
            );
            let mut letters = pattern.clone();
            letters.sort_unstable();
            letters.dedup();
            let picked = choose_method(n, m, letters.len(), None, None).name();
            println!(
                "m {m:>5} sigma {sigma:>3}: naive {naive:.4} fft {fft:.4} abrahamson {abrahamson:.4} \
                 kangaroo(k=8) {kangaroo:.4} approx(0.5) {approx:.4} | auto {auto:.4} best-of-3 {auto_best:.4} ({picked})"
            );
            // Constants of the cost model implied by this cell (ns per unit, times threads).
            let windows = (n - m + 1) as f64;
            let l = (2 * m).next_power_of_two().max(64) as f64;
            let blocks = (windows / (l - m as f64 + 1.0)).ceil();
            let per_letter = blocks * l * l.log2();
            let votes = windows * m as f64 / sigma as f64;
            println!(
                "    naive {:.4} ns/cell, fft {:.3} ns/(L log L), scan {:.3} ns/vote",
                naive * 1e9 / (windows * m as f64),
                fft * 1e9 / ((sigma as f64 + 2.0) * per_letter),
                abrahamson * 1e9 / votes,
            );
        }
    }
}
