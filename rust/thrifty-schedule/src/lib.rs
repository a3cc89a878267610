//! Schedules: which compression level each layer gets (L-GreCo, arXiv 2210.17357) and when
//! simultaneous gradient play on a game provably contracts (Small-Gain Nash, arXiv 2512.06791).
//!
//! Nothing here knows about Python; the binding crate maps [`thrifty_core::CoreError`] to
//! exceptions.

pub mod lgreco;
pub mod small_gain;
mod symmetric;
