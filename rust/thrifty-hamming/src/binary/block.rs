//! Codes as 64-bit words, and database blocks transposed to word-major order.
//!
//! Kernels see a block as `words` rows of [`BLOCK`] `u64`s: row `w` holds word `w` of every
//! code in the block. That layout lets one vector register carry the same word of 4, 8 or
//! 16 codes, so a query's distances come out of vertical operations only. Codes whose width
//! is not a multiple of 8 bytes are zero-padded in the last word on both sides, which adds
//! nothing to any XOR popcount.

/// Database codes per block. 256 codes of 1024 bits are 32 KiB: the block plus one row of
/// distances stays within L1/L2 while every query of a query block is run against it.
pub(crate) const BLOCK: usize = 256;

/// Widest code (in bytes) that is transposed into blocks: a block is `BLOCK` codes and a
/// query block up to 256 more, so wider codes would need megabytes to gigabytes of copies.
/// Wider codes are compared in place instead (see `scan`), where the popcounts of a single
/// pair already dwarf any loop overhead.
pub(crate) const MAX_BLOCKED_BYTES: usize = 4096;

/// A borrowed matrix of packed codes.
#[derive(Clone, Copy)]
pub(crate) struct Codes<'a> {
    bytes: &'a [u8],
    pub(crate) bytes_per_code: usize,
    /// `u64` words per code, the last one zero-padded.
    pub(crate) words: usize,
    /// Number of codes.
    pub(crate) len: usize,
}

impl<'a> Codes<'a> {
    /// `bytes` must already hold a whole number of codes (see `validate::rows`).
    pub(crate) fn new(bytes: &'a [u8], bytes_per_code: usize) -> Self {
        Codes {
            bytes,
            bytes_per_code,
            words: bytes_per_code.div_ceil(8),
            len: bytes.len() / bytes_per_code,
        }
    }

    pub(crate) fn code(&self, i: usize) -> &'a [u8] {
        &self.bytes[i * self.bytes_per_code..(i + 1) * self.bytes_per_code]
    }

    /// Writes code `i` as `words` little-endian words (the byte order is irrelevant to a
    /// popcount as long as queries and database agree).
    pub(crate) fn load_words(&self, i: usize, out: &mut [u64]) {
        let code = self.code(i);
        for (word, chunk) in out.iter_mut().zip(code.chunks(8)) {
            *word = read_word(chunk);
        }
    }

    /// Transposes codes `start..start + n` (`n <= BLOCK`) into `block` (`words * BLOCK`
    /// long, row `w` = word `w` of each code). Columns `n..` keep stale values; callers
    /// ignore their distances.
    pub(crate) fn load_block(&self, start: usize, n: usize, block: &mut [u64]) {
        debug_assert!(n <= BLOCK && start + n <= self.len);
        let bytes = &self.bytes[start * self.bytes_per_code..(start + n) * self.bytes_per_code];
        if self.bytes_per_code.is_multiple_of(8) {
            // Fast path: no partial word, so every word is a plain 8-byte load.
            for (j, code) in bytes.chunks_exact(self.bytes_per_code).enumerate() {
                for (w, chunk) in code.chunks_exact(8).enumerate() {
                    let word: [u8; 8] = chunk.try_into().expect("chunks_exact(8)");
                    block[w * BLOCK + j] = u64::from_le_bytes(word);
                }
            }
        } else {
            for (j, code) in bytes.chunks_exact(self.bytes_per_code).enumerate() {
                for (w, chunk) in code.chunks(8).enumerate() {
                    block[w * BLOCK + j] = read_word(chunk);
                }
            }
        }
    }
}

fn read_word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(word)
}
