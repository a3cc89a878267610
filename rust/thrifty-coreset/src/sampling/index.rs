//! Compact indices: u32 while n < 2^32 halves the memory of alias tables and permutations.

/// An unsigned index type a table or permutation can store.
pub trait Index: Copy + Send + Sync + 'static {
    /// The largest n (exclusive) whose indices fit.
    const LIMIT: u64;
    fn from_u64(value: u64) -> Self;
    fn to_u64(self) -> u64;
}

impl Index for u32 {
    const LIMIT: u64 = 1 << 32;
    #[inline]
    fn from_u64(value: u64) -> Self {
        value as u32
    }
    #[inline]
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
}

impl Index for u64 {
    const LIMIT: u64 = u64::MAX;
    #[inline]
    fn from_u64(value: u64) -> Self {
        value
    }
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
}
