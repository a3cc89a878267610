//! Hamming distances in pure Rust.
//!
//! * [`text`]: the distance between a pattern and every window of a text (exact by counting,
//!   by one real FFT per letter, or by Abrahamson's frequent/infrequent split; k-bounded by
//!   kangaroo jumps; (1 + eps)-approximate), with the method chosen by measured crossovers.
//! * [`binary`]: packed binary codes: all-pairs distances, top-k and radius search, with the
//!   popcount kernel picked at run time (AVX-512 VPOPCNTDQ, AVX2, NEON or scalar).

pub mod binary;
pub mod text;
