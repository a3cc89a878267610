//! Random streams keyed by (seed, purpose, chunk), and the exact draws built on them.
//!
//! Every parallel loop here splits its work into chunks whose size depends only on the
//! problem, never on the number of threads, and each chunk draws from its own ChaCha8 stream.
//! The output is then the same for a seed whatever the thread count and on every platform.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Separates the streams of different samplers that share a seed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    WithReplacement = 1,
    WithoutReplacement = 2,
    PermutationBuckets = 3,
    PermutationShuffle = 4,
    InverseCdf = 5,
}

/// The stream of chunk `chunk` of a sampler for `purpose`, seeded by `seed` (and `salt`,
/// which tells apart the permutations of one seed).
pub(crate) fn stream(seed: u64, salt: u64, purpose: Purpose, chunk: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&salt.to_le_bytes());
    key[16..24].copy_from_slice(&(purpose as u64).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(chunk);
    rng
}

/// Uniform on [0, 1), on the 2^-53 grid.
#[inline]
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform on (0, 1], so that its logarithm is finite.
#[inline]
pub(crate) fn unit_open_zero(rng: &mut ChaCha8Rng) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard exponential variate, by inversion.
#[inline]
pub(crate) fn exponential(rng: &mut ChaCha8Rng) -> f64 {
    -unit_open_zero(rng).ln()
}

/// Uniform on `0..bound` without modulo bias (Lemire, arXiv 1805.10941).
#[inline]
pub(crate) fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    let mut low = product as u64;
    if low < bound {
        let threshold = bound.wrapping_neg() % bound;
        while low < threshold {
            product = u128::from(rng.next_u64()) * u128::from(bound);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}
