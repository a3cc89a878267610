//! The result objects the collective bindings return: plain, frozen records of what a call
//! did, copied out of the core's types so that Python owns them.

use pyo3::prelude::*;
use thrifty_collective::communicator::OpStats;

/// What one collective moved, and how long it took.
#[pyclass(module = "thrifty._native", name = "OpStats", frozen, get_all)]
pub(super) struct PyOpStats {
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    pub(super) seconds: f64,
}

impl From<OpStats> for PyOpStats {
    fn from(s: OpStats) -> Self {
        Self {
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            seconds: s.seconds,
        }
    }
}

/// What the coordinator knows now (see `CoordinatorSnapshot` in the core).
#[pyclass(
    module = "thrifty._native",
    name = "CoordinatorSnapshot",
    frozen,
    get_all
)]
pub(super) struct PyCoordinatorSnapshot {
    pub(super) epoch: u64,
    pub(super) members: Vec<u64>,
    pub(super) pending: Vec<u64>,
    pub(super) broken: Option<String>,
    pub(super) forming: Option<u64>,
    pub(super) asked: Vec<u64>,
}

/// What `sync_state` did (see `SyncReport` in the core).
#[pyclass(module = "thrifty._native", name = "SyncReport", frozen, get_all)]
pub(super) struct PySyncReport {
    pub(super) revision: u64,
    pub(super) fetched: Vec<String>,
    pub(super) bytes_received: u64,
    pub(super) bytes_sent: u64,
    pub(super) sources: Vec<(String, usize)>,
    pub(super) state_hash: String,
    pub(super) peers_out_of_date: usize,
    pub(super) world_size: usize,
}

/// Whom `pair_average` averaged with (ranks in ring order, this peer included), and its stats.
#[pyclass(module = "thrifty._native", name = "PairAverage", frozen, get_all)]
pub(super) struct PyPairAverage {
    pub(super) group: Vec<usize>,
    pub(super) stats: Py<PyOpStats>,
}
