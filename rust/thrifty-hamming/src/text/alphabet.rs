//! Dense letter codes: the text's symbols renamed 0..sigma once, shared by every pattern.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The code a pattern symbol gets when the text never contains it: it can never match.
pub(crate) const ABSENT: u32 = u32::MAX;

/// Symbols below this bound (or below 2n) are their own codes: a table of that size is cheaper
/// than hashing every text symbol, which would cost more than a small-pattern naive count.
const IDENTITY_BOUND: usize = 1 << 16;

/// A text whose symbols are renamed to `0..sigma`.
///
/// Small symbols keep their values (codes that do not occur have count 0); others are renamed
/// in order of first appearance through a hash map.
pub(crate) struct DenseText<'a> {
    pub codes: Cow<'a, [u32]>,
    /// How often each code occurs in the text (Abrahamson's cost model needs it).
    pub counts: Vec<u32>,
    index: Option<HashMap<u32, u32, BuildHasherDefault<Mix>>>,
}

impl<'a> DenseText<'a> {
    pub fn new(text: &'a [u32]) -> DenseText<'a> {
        let largest = text.iter().copied().max().unwrap_or(0) as usize;
        // Never up to ABSENT itself: a text of 2^31 symbols or more would otherwise keep
        // u32::MAX as its own code, the code that means "not in the text".
        if largest < IDENTITY_BOUND.max(2 * text.len()).min(ABSENT as usize) {
            return DenseText::from_codes(Cow::Borrowed(text), largest + 1);
        }
        let mut index: HashMap<u32, u32, BuildHasherDefault<Mix>> = HashMap::default();
        let mut counts: Vec<u32> = Vec::new();
        let codes = text
            .iter()
            .map(|&s| {
                let next = counts.len() as u32;
                let c = *index.entry(s).or_insert(next);
                if c == next {
                    counts.push(0);
                }
                counts[c as usize] += 1;
                c
            })
            .collect();
        DenseText {
            codes: Cow::Owned(codes),
            counts,
            index: Some(index),
        }
    }

    /// A text whose codes are already below `sigma` (the colourings of "approx").
    pub fn from_codes(codes: Cow<'a, [u32]>, sigma: usize) -> DenseText<'a> {
        let mut counts = vec![0u32; sigma];
        for &c in codes.iter() {
            counts[c as usize] += 1;
        }
        DenseText {
            codes,
            counts,
            index: None,
        }
    }

    /// The size of the code range (codes of count 0 included).
    pub fn sigma(&self) -> usize {
        self.counts.len()
    }

    /// The pattern in the text's codes; symbols the text lacks become [`ABSENT`].
    pub fn pattern_codes(&self, pattern: &[u32]) -> Vec<u32> {
        pattern
            .iter()
            .map(|&s| match &self.index {
                Some(index) => index.get(&s).copied().unwrap_or(ABSENT),
                None if (s as usize) < self.sigma() && self.counts[s as usize] > 0 => s,
                None => ABSENT,
            })
            .collect()
    }
}

/// The distinct codes of a pattern that occur in the text, ascending.
pub(crate) fn pattern_letters(pattern_codes: &[u32]) -> Vec<u32> {
    let mut letters: Vec<u32> = pattern_codes
        .iter()
        .copied()
        .filter(|&c| c != ABSENT)
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters
}

/// splitmix64's finaliser as a hasher for u32 keys: a bijection on 64 bits, so distinct
/// symbols never collide before bucketing, and several times faster than SipHash. The keys
/// are the caller's own data, so flooding resistance buys nothing here.
#[derive(Default)]
pub(crate) struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, x: u32) {
        self.0 = u64::from(x);
    }
}
