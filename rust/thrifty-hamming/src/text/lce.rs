//! Exact longest common extensions: suffix array, LCP array and a range-minimum structure.
//!
//! Rolling hashes would answer LCE queries with a (small) chance of error; kangaroo promises
//! exact distances, so we pay for a suffix array instead: prefix doubling with radix sort,
//! O(N log N), Kasai's LCP in O(N), and a sparse table over blocks of the LCP array (a sparse
//! table over every entry would cost N log N words of memory).

/// LCP entries per block of the range-minimum structure.
const RMQ_BLOCK: usize = 32;

/// Answers `lce(a, b)`: the length of the longest common prefix of the suffixes at `a` and `b`.
pub(crate) struct Lce {
    rank: Vec<u32>,
    lcp: Vec<u32>,
    /// `table[level][b]`: the minimum of blocks `b..b + 2^level` of `lcp`.
    table: Vec<Vec<u32>>,
}

impl Lce {
    /// For a string over `0..alpha`.
    pub fn new(s: &[u32], alpha: usize) -> Lce {
        let sa = suffix_array(s, alpha);
        let mut rank = vec![0u32; s.len()];
        for (r, &i) in sa.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        let lcp = kasai(s, &sa, &rank);
        let mut table = vec![lcp
            .chunks(RMQ_BLOCK)
            .map(|c| c.iter().copied().min().unwrap_or(0))
            .collect::<Vec<u32>>()];
        let mut width = 1;
        while 2 * width <= table[0].len() {
            let prev = table.last().expect("level 0 exists");
            let next = (0..prev.len() - width)
                .map(|b| prev[b].min(prev[b + width]))
                .collect();
            table.push(next);
            width *= 2;
        }
        Lce { rank, lcp, table }
    }

    /// The longest common extension of the suffixes at `a != b`.
    pub fn lce(&self, a: usize, b: usize) -> usize {
        let (ra, rb) = (self.rank[a] as usize, self.rank[b] as usize);
        let (lo, hi) = if ra < rb { (ra + 1, rb) } else { (rb + 1, ra) };
        self.range_min(lo, hi) as usize
    }

    /// The minimum of `lcp[lo..=hi]`.
    fn range_min(&self, lo: usize, hi: usize) -> u32 {
        let (bl, bh) = (lo / RMQ_BLOCK, hi / RMQ_BLOCK);
        if bh <= bl + 1 {
            return self.lcp[lo..=hi].iter().copied().min().unwrap_or(0);
        }
        let edges = self.lcp[lo..(bl + 1) * RMQ_BLOCK]
            .iter()
            .chain(&self.lcp[bh * RMQ_BLOCK..=hi])
            .copied()
            .min()
            .unwrap_or(u32::MAX);
        let (first, count) = (bl + 1, bh - bl - 1);
        let level = (usize::BITS - 1 - count.leading_zeros()) as usize;
        let row = &self.table[level];
        edges.min(row[first]).min(row[first + count - (1 << level)])
    }
}

/// The suffix array of `s` (symbols in `0..alpha`), by prefix doubling with radix sort.
pub(crate) fn suffix_array(s: &[u32], alpha: usize) -> Vec<u32> {
    let n = s.len();
    if n == 0 {
        return Vec::new();
    }
    let mut count = vec![0usize; alpha.max(n) + 1];
    let mut rank: Vec<u32> = s.to_vec();
    let mut sa: Vec<u32> = (0..n as u32).collect();
    let mut order = vec![0u32; n];
    let mut next = vec![0u32; n];
    counting_sort(&sa.clone(), &rank, &mut sa, &mut count);
    // Ranks of the first symbol alone.
    rerank(&sa, &mut next, |a, b| rank[a] == rank[b]);
    std::mem::swap(&mut rank, &mut next);
    let mut k = 1;
    while (rank[sa[n - 1] as usize] as usize) < n - 1 {
        // Order by the second key (rank at i + k, empty first), then stably by the first.
        let mut p = 0;
        for i in n.saturating_sub(k)..n {
            order[p] = i as u32;
            p += 1;
        }
        for &i in &sa {
            if i as usize >= k {
                order[p] = i - k as u32;
                p += 1;
            }
        }
        counting_sort(&order, &rank, &mut sa, &mut count);
        let second = |i: usize| if i + k < n { rank[i + k] + 1 } else { 0 };
        rerank(&sa, &mut next, |a, b| {
            rank[a] == rank[b] && second(a) == second(b)
        });
        std::mem::swap(&mut rank, &mut next);
        k *= 2;
    }
    sa
}

/// Stable counting sort of `input` by `key[i]` into `out`.
fn counting_sort(input: &[u32], key: &[u32], out: &mut [u32], count: &mut [usize]) {
    count.fill(0);
    for &i in input {
        count[key[i as usize] as usize + 1] += 1;
    }
    for r in 1..count.len() {
        count[r] += count[r - 1];
    }
    for &i in input {
        let slot = &mut count[key[i as usize] as usize];
        out[*slot] = i;
        *slot += 1;
    }
}

/// Dense ranks along `sa`, a new rank wherever `same` says neighbours differ.
fn rerank(sa: &[u32], rank: &mut [u32], same: impl Fn(usize, usize) -> bool) {
    rank[sa[0] as usize] = 0;
    for w in 1..sa.len() {
        let (a, b) = (sa[w - 1] as usize, sa[w] as usize);
        rank[b] = rank[a] + u32::from(!same(a, b));
    }
}

/// Kasai et al.: `lcp[r]` is the LCP of the suffixes ranked `r - 1` and `r` (`lcp[0] = 0`).
fn kasai(s: &[u32], sa: &[u32], rank: &[u32]) -> Vec<u32> {
    let n = s.len();
    let mut lcp = vec![0u32; n];
    let mut h = 0usize;
    for i in 0..n {
        let r = rank[i] as usize;
        if r == 0 {
            h = 0;
            continue;
        }
        let j = sa[r - 1] as usize;
        while i + h < n && j + h < n && s[i + h] == s[j + h] {
            h += 1;
        }
        lcp[r] = h as u32;
        h = h.saturating_sub(1);
    }
    lcp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_sa(s: &[u32]) -> Vec<u32> {
        let mut sa: Vec<u32> = (0..s.len() as u32).collect();
        sa.sort_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
        sa
    }

    #[test]
    fn suffix_array_matches_sorting() {
        let mut x = 12345u64;
        for len in [1usize, 2, 3, 7, 50, 300] {
            for alpha in [1usize, 2, 5] {
                let s: Vec<u32> = (0..len)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 33) % alpha as u64) as u32
                    })
                    .collect();
                assert_eq!(suffix_array(&s, alpha), naive_sa(&s), "{s:?}");
                let lce = Lce::new(&s, alpha);
                for a in 0..len {
                    for b in 0..len {
                        if a != b {
                            let want = s[a..]
                                .iter()
                                .zip(&s[b..])
                                .take_while(|(p, q)| p == q)
                                .count();
                            assert_eq!(lce.lce(a, b), want);
                        }
                    }
                }
            }
        }
    }
}
