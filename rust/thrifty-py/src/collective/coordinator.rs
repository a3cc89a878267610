//! The `Coordinator` binding: starts the core's coordinator (membership and commit votes,
//! served from its own threads) and reads its state.

use pyo3::prelude::*;
use thrifty_collective::auth::Secret;
use thrifty_collective::coordinator::{Coordinator as CoreCoordinator, CoordinatorOptions};

use super::results::PyCoordinatorSnapshot;
use super::seconds;
use crate::call::run;
use crate::errors::BindResult;

/// Coordinator(bind, secret=None, heartbeat_interval_s=0.5, heartbeat_timeout_s=5.0,
/// handshake_timeout_s=5.0): membership and commit votes, served from background threads.
#[pyclass(module = "thrifty._native", name = "Coordinator", frozen)]
pub(super) struct PyCoordinator {
    inner: CoreCoordinator,
}

#[pymethods]
impl PyCoordinator {
    #[new]
    #[pyo3(signature = (
        bind,
        secret=None,
        heartbeat_interval_s=0.5,
        heartbeat_timeout_s=5.0,
        handshake_timeout_s=5.0,
        fellows=Vec::new(),
    ))]
    fn new(
        py: Python<'_>,
        bind: String,
        secret: Option<String>,
        heartbeat_interval_s: f64,
        heartbeat_timeout_s: f64,
        handshake_timeout_s: f64,
        fellows: Vec<String>,
    ) -> BindResult<Self> {
        let options = CoordinatorOptions {
            heartbeat_interval: seconds(heartbeat_interval_s, "heartbeat_interval_s")?,
            heartbeat_timeout: seconds(heartbeat_timeout_s, "heartbeat_timeout_s")?,
            handshake_timeout: seconds(handshake_timeout_s, "handshake_timeout_s")?,
            fellows,
        };
        let inner = run(py, move || {
            let secret = Secret::from_arg_or_env(secret.as_deref())?;
            CoreCoordinator::start(&bind, secret, options)
        })?;
        Ok(Self { inner })
    }

    /// The `host:port` actually bound.
    fn address(&self) -> String {
        self.inner.address()
    }

    /// Stop serving and join every thread. Idempotent.
    fn close(&self, py: Python<'_>) -> BindResult<()> {
        run(py, || {
            self.inner.close();
            Ok(())
        })
    }

    /// What the coordinator knows now.
    fn snapshot(&self, py: Python<'_>) -> BindResult<PyCoordinatorSnapshot> {
        let s = run(py, || Ok(self.inner.snapshot()))?;
        Ok(PyCoordinatorSnapshot {
            epoch: s.epoch,
            members: s.members,
            pending: s.pending,
            broken: s.broken,
            forming: s.forming,
            asked: s.asked,
        })
    }
}
