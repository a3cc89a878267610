//! Bindings for `thrifty-collective`: the coordinator, the communicator and its async handles.
//!
//! A communicator lives on its own thread (`worker::Worker`). Every call queues one job there
//! and waits for it through `call::run`, in slices, so the GIL is released while it waits,
//! Ctrl-C interrupts the wait, a core error becomes its exception, and the order of
//! collectives is the order of the calls. A job borrows the caller's arrays through their raw
//! pointers: the binding checks each array here, and the job keeps a strong reference to it
//! until it has finished, since an interrupted caller may drop the array meanwhile.
//!
//! The bindings are split by what they wrap: `coordinator` and `communicator` (with its
//! `PendingOp` handle), the result records they return in `results`, and in `buffer` the
//! checks that let a job borrow an array.

mod buffer;
mod communicator;
mod coordinator;
mod results;

use std::time::Duration;

use pyo3::prelude::*;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_core::CoreError;

use crate::call::run;
use crate::errors::BindResult;
use crate::options::{export, Wrap};
use buffer::buffer;
use communicator::{PendingOp, PyCommunicator};
use coordinator::PyCoordinator;
use results::{PyCoordinatorSnapshot, PyOpStats, PyPairAverage, PySyncReport};

/// How long a blocking wait keeps the GIL released before it checks for signals.
const WAIT_SLICE: Duration = Duration::from_millis(50);

fn seconds(value: f64, argument: &'static str) -> BindResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        CoreError::invalid(
            argument,
            format!("must be a finite number of seconds >= 0, got {value}"),
        )
        .into()
    })
}

/// NoLoCo's seeded groups of `step` over ranks `0..world_size`, each sorted by rank.
#[pyfunction]
#[pyo3(signature = (world_size, step, group_size=2))]
fn pairing_groups(
    py: Python<'_>,
    world_size: usize,
    step: u64,
    group_size: usize,
) -> BindResult<Vec<Vec<usize>>> {
    run(py, || {
        thrifty_collective::pairing::groups(world_size, step, group_size)
    })
}

/// xxh3-128 (hex) of an array's dtype, shape and bytes, as `sync_state` hashes it.
#[pyfunction]
fn state_hash(py: Python<'_>, array: &Bound<'_, PyAny>, dtype: Wrap<DType>) -> BindResult<String> {
    let dtype = dtype.0;
    let (bytes, shape) = buffer(array, "array", dtype, false)?;
    // SAFETY: the caller holds `array` for this whole call; the slice is read only.
    let data = unsafe { bytes.bytes() };
    let hash = run(py, || {
        Ok(thrifty_collective::shared_state::hash_array(
            dtype, &shape, data,
        ))
    })?;
    Ok(format!("{hash:032x}"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCoordinator>()?;
    m.add_class::<PyCommunicator>()?;
    m.add_class::<PendingOp>()?;
    m.add_class::<PyOpStats>()?;
    m.add_class::<PyCoordinatorSnapshot>()?;
    m.add_class::<PySyncReport>()?;
    m.add_class::<PyPairAverage>()?;
    export::<DType>(m, "DTYPES")?;
    export::<ReduceOp>(m, "REDUCE_OPS")?;
    export::<Quantization>(m, "QUANTIZATIONS")?;
    m.add_function(wrap_pyfunction!(pairing_groups, m)?)?;
    m.add_function(wrap_pyfunction!(state_hash, m)?)?;
    Ok(())
}
