//! Shared foundations of thrifty's pure-Rust cores: the error type every core returns, and
//! fork-safe access to the rayon thread pool.
//!
//! Nothing here knows about Python; the binding crate maps [`CoreError`] to exceptions.

mod error;
pub mod parallel;

pub use error::{CoreError, CoreResult};
