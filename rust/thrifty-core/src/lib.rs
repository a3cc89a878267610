//! Shared foundations of thrifty's pure-Rust cores: the error type every core returns, named
//! options, and fork-safe access to the rayon thread pool.
//!
//! Nothing here knows about Python; the binding crate maps [`CoreError`] to exceptions.

mod choice;
mod error;
pub mod parallel;

pub use choice::Choice;
pub use error::{CoreError, CoreResult};
