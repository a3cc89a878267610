//! How a buffer is cut into one slice per participant and each slice into chunks.
//!
//! Boundaries fall on multiples of `align` elements (the quantization block, or 1), so a
//! chunk can be encoded on its own. Every slice has the same number of chunks, so chunk `k`
//! of every slice travels on stripe `k % connections` and the pipelines line up.

use std::ops::Range;

#[derive(Clone, Debug)]
pub struct Layout {
    len: usize,
    align: usize,
    /// Slice boundaries in units of `align` elements.
    unit_bounds: Vec<usize>,
    chunks: usize,
}

/// `n * part / parts` without overflow (the quotient is at most `n` when `part <= parts`).
fn share(n: usize, part: usize, parts: usize) -> usize {
    (n as u128 * part as u128 / parts as u128) as usize
}

fn split(range: Range<usize>, parts: usize, part: usize) -> Range<usize> {
    let n = range.end - range.start;
    range.start + share(n, part, parts)..range.start + share(n, part + 1, parts)
}

impl Layout {
    /// `len` elements over `parts` slices; chunks of about `chunk_elems` elements.
    pub fn new(len: usize, parts: usize, align: usize, chunk_elems: usize) -> Self {
        let parts = parts.max(1);
        let align = align.max(1);
        let units = len.div_ceil(align);
        let unit_bounds: Vec<usize> = (0..=parts).map(|j| share(units, j, parts)).collect();
        let widest = (0..parts)
            .map(|j| unit_bounds[j + 1] - unit_bounds[j])
            .max()
            .unwrap_or(0);
        let chunk_units = chunk_elems.div_ceil(align).max(1);
        let chunks = widest.div_ceil(chunk_units).max(1);
        Self {
            len,
            align,
            unit_bounds,
            chunks,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> usize {
        self.unit_bounds.len() - 1
    }

    pub fn chunks(&self) -> usize {
        self.chunks
    }

    fn to_elements(&self, units: Range<usize>) -> Range<usize> {
        // The last unit may be partial, so `units.end * align` can pass `len`, and `usize`.
        let element = |unit: usize| unit.saturating_mul(self.align).min(self.len);
        element(units.start)..element(units.end)
    }

    /// Elements of slice `j`.
    pub fn slice(&self, j: usize) -> Range<usize> {
        self.to_elements(self.unit_bounds[j]..self.unit_bounds[j + 1])
    }

    /// Elements of chunk `k` of slice `j` (possibly empty).
    pub fn chunk(&self, j: usize, k: usize) -> Range<usize> {
        let units = split(self.unit_bounds[j]..self.unit_bounds[j + 1], self.chunks, k);
        self.to_elements(units)
    }

    /// The largest chunk, in elements.
    pub fn max_chunk(&self) -> usize {
        (0..self.parts())
            .flat_map(|j| (0..self.chunks).map(move |k| (j, k)))
            .map(|(j, k)| self.chunk(j, k).len())
            .max()
            .unwrap_or(0)
    }
}

/// Scale an element range to bytes.
pub fn bytes(range: Range<usize>, elem: usize) -> Range<usize> {
    range.start * elem..range.end * elem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_every_slice_and_respect_alignment() {
        for &(len, parts, align, chunk) in &[
            (0, 3, 1, 4),
            (1, 4, 1, 4),
            (7, 3, 1, 2),
            (100_003, 6, 64, 4096),
            (1000, 5, 7, 100),
        ] {
            let layout = Layout::new(len, parts, align, chunk);
            let mut next = 0;
            for j in 0..parts {
                let slice = layout.slice(j);
                assert_eq!(slice.start, next);
                let mut inner = slice.start;
                for k in 0..layout.chunks() {
                    let c = layout.chunk(j, k);
                    assert_eq!(c.start, inner);
                    assert!(c.start.is_multiple_of(align) || c.start == len);
                    inner = c.end;
                }
                assert_eq!(inner, slice.end);
                next = slice.end;
            }
            assert_eq!(next, len);
        }
    }
}
