//! Packed binary codes: distances and search.
