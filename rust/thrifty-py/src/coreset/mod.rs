//! Bindings of `thrifty-coreset`: scores and regression in `scores`, samplers in `sampling`.

mod sampling;
mod scores;

use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    scores::register(m)?;
    sampling::register(m)?;
    Ok(())
}
