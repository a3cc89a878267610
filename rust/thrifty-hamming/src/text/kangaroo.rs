//! k-bounded distances by kangaroo jumps (Landau and Vishkin; Galil and Giancarlo): from each
//! mismatch, jump over the longest common extension of text and pattern to the next one, and
//! stop after k + 1 mismatches: O(k) LCE queries per window.

use thrifty_core::parallel;

use super::alphabet::{DenseText, ABSENT};
use super::lce::Lce;

/// Windows per task.
const BLOCK: usize = 4096;

/// One LCE structure over `T $0 P1 $1 P2 $2 ...`, shared by all the patterns. The separators
/// are distinct and absent from the text, so no extension runs past the end of a string.
pub(crate) struct Kangaroo<'a> {
    text: &'a [u32],
    joined: Vec<u32>,
    starts: Vec<usize>,
    lce: Lce,
}

impl<'a> Kangaroo<'a> {
    pub fn new(text: &'a DenseText<'_>, patterns: &[Vec<u32>]) -> Kangaroo<'a> {
        let sigma = text.sigma() as u32;
        // sigma stands for "absent from the text"; separators follow it.
        let mut joined = text.codes.to_vec();
        joined.push(sigma + 1);
        let mut starts = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            starts.push(joined.len());
            joined.extend(p.iter().map(|&c| if c == ABSENT { sigma } else { c }));
            joined.push(sigma + 2 + i as u32);
        }
        let alpha = sigma as usize + 2 + patterns.len();
        let lce = Lce::new(&joined, alpha);
        Kangaroo {
            text: &text.codes[..],
            joined,
            starts,
            lce,
        }
    }

    /// Distances of pattern `which` (of length `m`), with those above `k` reported as `k + 1`.
    pub fn distances(&self, which: usize, m: usize, k: usize) -> Vec<i32> {
        let windows = self.text.len() - m + 1;
        let p0 = self.starts[which];
        let pattern = &self.joined[p0..p0 + m];
        let blocks = windows.div_ceil(BLOCK);
        let parts = parallel::map_indices(blocks, |b| {
            let lo = b * BLOCK;
            (lo..(lo + BLOCK).min(windows))
                .map(|i| {
                    let mut mismatches = 0;
                    let mut j = 0;
                    while j < m {
                        if self.text[i + j] != pattern[j] {
                            mismatches += 1;
                            if mismatches > k {
                                break;
                            }
                            j += 1;
                        } else {
                            j += self.lce.lce(i + j, p0 + j);
                        }
                    }
                    mismatches as i32
                })
                .collect::<Vec<i32>>()
        });
        parts.concat()
    }
}
