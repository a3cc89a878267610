//! (1 + eps)-approximate distances by random colourings of the alphabet (after Karloff, and
//! Kopelowitz and Porat, arXiv:1512.04515, simplified to a max over colourings).
//!
//! Each repetition maps every symbol to one of `C = ceil(4 / eps)` colours by a seeded hash and
//! computes the exact distances of the coloured strings. Equal symbols get equal colours, so a
//! coloured distance `d'` never exceeds the true `d`; a mismatch is lost only when its two
//! symbols collide, which for a random colouring happens with probability `1 / C`, so
//! `E[d - d'] <= d eps / 4` and, by Markov, `P(d' < (1 - eps) d) <= 1/4`. The maximum over
//! `R = ceil(log4 n) + 1` independent repetitions therefore satisfies, **for each position**,
//!
//! `(1 - eps) d <= d' <= d` with probability at least `1 - 4^-R >= 1 - 1 / (4n)`,
//!
//! (hence all positions at once with probability at least 3/4, by a union bound). The colouring
//! is splitmix64 of (seed, repetition, symbol), which we treat as a random function; the
//! output is a deterministic function of the inputs and `seed`. When `C` reaches the size of
//! the text's code range, colouring could not lose less than nothing: the distances are exact.

use std::borrow::Cow;

use super::alphabet::DenseText;
use super::Exact;

/// Colours per repetition.
pub(crate) fn colours(eps: f64) -> usize {
    (4.0 / eps).ceil() as usize
}

/// Repetitions for a text of `n`: enough for a per-position failure probability below 1/(4n).
pub(crate) fn repetitions(n: usize) -> usize {
    let mut r = 1;
    let mut reach = 4usize;
    while reach < n {
        reach = reach.saturating_mul(4);
        r += 1;
    }
    r + 1
}

/// splitmix64's output function: a fixed, platform-independent 64-bit mixer.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The approximate distances (`m - matches`) of every pattern, before any k-capping;
/// `methods[i]` is the exact method that runs on the coloured strings for pattern i.
pub(crate) fn distances(
    text: &[u32],
    patterns: &[&[u32]],
    methods: &[Exact],
    eps: f64,
    seed: u64,
) -> Vec<Vec<i32>> {
    let c = colours(eps) as u64;
    let mut best: Vec<Vec<i32>> = patterns
        .iter()
        .map(|p| vec![0; text.len() - p.len() + 1])
        .collect();
    for rep in 0..repetitions(text.len()) as u64 {
        let key = splitmix64(seed ^ splitmix64(rep));
        let colour = |s: &u32| (splitmix64(key ^ u64::from(*s)) % c) as u32;
        let coloured =
            DenseText::from_codes(Cow::Owned(text.iter().map(colour).collect()), c as usize);
        for ((p, &method), best) in patterns.iter().zip(methods).zip(&mut best) {
            let pattern: Vec<u32> = p.iter().map(colour).collect();
            let matches = super::exact_matches(&coloured, &pattern, method);
            let m = p.len() as i32;
            for (b, x) in best.iter_mut().zip(matches) {
                *b = (*b).max(m - x as i32);
            }
        }
    }
    best
}
