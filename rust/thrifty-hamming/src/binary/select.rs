//! Keeping the k best (distance, index) pairs of one query while its database is scanned.
//!
//! Distances arrive in increasing index order, so a candidate that ties the current k-th
//! distance can never displace it: only a strictly smaller distance is kept. Candidates are
//! appended without ordering and cut back to k with a linear-time selection when the buffer
//! fills, which costs O(1) amortised per kept candidate; once the bound has settled, whole
//! blocks are skipped on the kernel's lower bound alone.

/// The k best candidates seen so far (possibly more, until the next cut).
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
            found: Vec::with_capacity(Self::capacity(k)),
        }
    }

    /// Slack beyond k so that cuts are rare but the buffer stays small.
    fn capacity(k: usize) -> usize {
        2 * k + 64
    }

    /// Offers database codes `start..start + distances.len()`.
    #[inline]
    pub(crate) fn offer(&mut self, start: usize, distances: &[u32], lower_bound: u32) {
        if lower_bound >= self.bound {
            return;
        }
        for (j, &d) in distances.iter().enumerate() {
            if d < self.bound {
                self.found.push((d, start + j));
                if self.found.len() >= Self::capacity(self.k) {
                    self.cut();
                }
            }
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
