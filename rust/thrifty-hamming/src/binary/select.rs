//! Keeping the k best (distance, index) pairs of one query while its database is scanned.
//!
//! Distances arrive in increasing index order, so a candidate that ties the current k-th
//! distance can never displace it: only a strictly smaller distance is kept. Candidates are
//! appended without ordering and cut back to k with a linear-time selection after any block
//! that left more than k + k/4 of them: each cut then removes at least a fifth of what it
//! looks at (O(1) amortised per kept candidate) while the bound stays that of the true k-th
//! best of everything seen so far, give or take k/4 places. A loose bound is expensive: a
//! block is skipped on the kernel's lower bound alone only when that exceeds the bound, and
//! cutting only when the buffer reached 2k + 64 made 256-bit top-10 scans 15% slower.

/// The k best candidates seen so far (possibly a few more, until the next cut).
pub(crate) struct Best {
    k: usize,
    /// Candidates at or above it cannot enter the top k.
    bound: u32,
    found: Vec<(u32, usize)>,
}

impl Best {
    /// `k >= 1`.
    pub(crate) fn new(k: usize) -> Best {
        Best {
            k,
            bound: u32::MAX,
            found: Vec::new(),
        }
    }

    /// Offers database codes `start..start + distances.len()`.
    #[inline]
    pub(crate) fn offer(&mut self, start: usize, distances: &[u32], lower_bound: u32) {
        let bound = self.bound;
        if lower_bound >= bound {
            return;
        }
        for (j, &d) in distances.iter().enumerate() {
            if d < bound {
                self.found.push((d, start + j));
            }
        }
        if self.found.len() > self.k + self.k / 4 {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let k = self.k;
        self.found.select_nth_unstable(k - 1);
        self.found.truncate(k);
        self.bound = self.found[k - 1].0;
    }

    /// The best min(k, seen) candidates, ordered by (distance, index).
    pub(crate) fn into_sorted(mut self) -> Vec<(u32, usize)> {
        self.found.sort_unstable();
        self.found.truncate(self.k);
        self.found
    }
}
