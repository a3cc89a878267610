//! `thrifty._native`: the thin PyO3 layer over thrifty's pure-Rust cores.
//!
//! Each core has one file of bindings; all of them borrow arrays through `arrays`, call the
//! core through `call::run` (GIL released, panics caught) and map errors through `errors`.

mod arrays;
mod call;
mod collective;
mod coreset;
mod errors;
mod hamming;
mod options;
mod schedule;
mod steps;

use pyo3::prelude::*;

extern "C" fn child_after_fork() {
    thrifty_core::parallel::note_fork();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // rayon's workers do not survive fork(); the child must run sequentially instead of
    // waiting for ever on a pool that has no threads (DataLoader workers fork by default).
    // SAFETY: registering a handler that only stores to an atomic is async-signal-safe.
    unsafe {
        libc::pthread_atfork(None, None, Some(child_after_fork));
    }
    // The cores log through `log` (a dropped connection and its reason, a lost peer). Printing
    // to stderr needs no GIL, unlike routing into Python's `logging` from background threads,
    // which could deadlock against a caller that holds the GIL. THRIFTY_LOG filters it
    // (`warn` by default; `info` shows every membership change, `off` silences it).
    let _ = env_logger::Builder::new()
        .parse_filters(&std::env::var("THRIFTY_LOG").unwrap_or_else(|_| "warn".into()))
        .format_timestamp(None)
        .try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    steps::register(m)?;
    collective::register(m)?;
    hamming::register(m)?;
    coreset::register(m)?;
    schedule::register(m)?;
    Ok(())
}
