//! What "auto" picks on the grid the cost model was calibrated on.

use thrifty_hamming::text::{choose_method, Method};

#[test]
fn choices_follow_the_measured_crossovers() {
    let n = 1_000_000;
    // Small patterns are counted directly; small alphabets go to the FFT as patterns grow,
    // large alphabets to Abrahamson's scan.
    assert_eq!(choose_method(n, 100, 4, None, None), Method::Naive);
    assert_eq!(choose_method(n, 10_000, 4, None, None), Method::Fft);
    assert_eq!(
        choose_method(n, 10_000, 256, None, None),
        Method::Abrahamson
    );
    assert_eq!(choose_method(n, 100, 26, None, None), Method::Naive);
    // Kangaroo pays for its suffix array only on long patterns with a tiny k.
    assert_eq!(
        choose_method(n, 200_000, 256, Some(0), None),
        Method::Kangaroo
    );
    assert_ne!(
        choose_method(n, 200_000, 256, Some(5_000), None),
        Method::Kangaroo
    );
    assert_ne!(
        choose_method(n, 10_000, 26, Some(2), None),
        Method::Kangaroo
    );
    for m in [1, 100, 1000, 10_000] {
        for sigma in [1, 4, 26, 256, 100_000] {
            let c = choose_method(n, m, sigma, None, None);
            assert!(![Method::Auto, Method::Kangaroo, Method::Approx].contains(&c));
        }
    }
    // Sizes no call accepts still get an answer.
    assert_eq!(choose_method(5, 0, 1, None, None), Method::Naive);
    assert_eq!(choose_method(5, 6, 1, None, None), Method::Naive);
}

#[test]
fn approx_only_where_it_pays() {
    let n = 1_000_000;
    // With no more letters than colours, colouring cannot save anything.
    assert_ne!(choose_method(n, 1000, 4, None, Some(0.1)), Method::Approx);
    assert_ne!(
        choose_method(n, 100_000, 8, None, Some(0.5)),
        Method::Approx
    );
    // Never without eps, never where an exact method is already fast.
    for m in [100, 10_000, 100_000] {
        for sigma in [4, 256, 100_000] {
            assert_ne!(choose_method(n, m, sigma, None, None), Method::Approx);
        }
    }
    assert_ne!(choose_method(n, 100, 256, None, Some(0.5)), Method::Approx);
    // Long patterns over a few hundred letters: 11 colourings of 8 colours beat the exact
    // methods (see the table in src/text/auto.rs).
    assert_eq!(
        choose_method(n, 100_000, 256, None, Some(0.5)),
        Method::Approx
    );
}
