//! An 8-byte-aligned byte buffer, so a buffer of any element type can be viewed in it.
//!
//! Staging buffers (backups, received frames, encoded chunks, fetched arrays) are reused
//! from one collective to the next: `resize` keeps the allocation, so a collective neither
//! allocates nor zeroes (and page-faults) megabytes every time.

#[derive(Default)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    pub fn with_len(len: usize) -> Self {
        let mut buf = Self::default();
        buf.resize(len);
        buf
    }

    /// Set the length, keeping the allocation when it is large enough.
    pub fn resize(&mut self, len: usize) {
        let words = len.div_ceil(8);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
        self.len = len;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}
