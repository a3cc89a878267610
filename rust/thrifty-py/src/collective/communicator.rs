//! The `Communicator` binding and `PendingOp`, the handle of a queued all-reduce.
//!
//! Every method queues one job on the communicator's worker thread and waits for it with the
//! GIL released; a job that borrows arrays holds a strong reference to each until it ends.

use std::sync::Mutex;

use pyo3::prelude::*;
use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::communicator::{
    Communicator as CoreCommunicator, CommunicatorOptions, OpStats, StateArray,
};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::worker::{Pending, Worker};
use thrifty_core::{CoreError, CoreResult};

use super::buffer::buffer;
use super::results::{PyOpStats, PyPairAverage, PySyncReport};
use super::{seconds, WAIT_SLICE};
use crate::call::run;
use crate::errors::BindResult;
use crate::options::Wrap;

type Job<T> = Box<dyn FnOnce(&mut CoreCommunicator) -> CoreResult<T> + Send>;

/// `job`, holding `arrays` (the ones its raw pointers point into) until it ends.
fn holding<T>(
    arrays: Vec<Py<PyAny>>,
    job: impl FnOnce(&mut CoreCommunicator) -> CoreResult<T> + Send + 'static,
) -> Job<T> {
    Box::new(move |comm| {
        let result = job(comm);
        drop(arrays);
        result
    })
}

/// Wait for `pending` with the GIL released, in slices, checking for signals in between:
/// Ctrl-C raises `KeyboardInterrupt` (the job runs on, holding the arrays it touches).
fn wait<T: Send>(py: Python<'_>, pending: &mut Pending<T>) -> BindResult<T> {
    loop {
        if let Some(result) = run(py, || Ok(pending.wait_timeout(WAIT_SLICE)))? {
            return Ok(result?);
        }
        py.check_signals()?;
    }
}

/// Communicator(coordinator, secret=None, connections=4, timeout_s=60.0, bind_host="0.0.0.0",
/// bind_port=0, advertise_host=None, shared_memory=False): one peer, its collectives run on
/// its own thread.
#[pyclass(module = "thrifty._native", name = "Communicator", frozen)]
pub(super) struct PyCommunicator {
    worker: Worker,
}

impl PyCommunicator {
    /// Queue `job` and wait for it (GIL released, Ctrl-C honoured).
    fn call<T: Send + 'static>(
        &self,
        py: Python<'_>,
        job: impl FnOnce(&mut CoreCommunicator) -> CoreResult<T> + Send + 'static,
    ) -> BindResult<T> {
        let mut pending = self.worker.submit(job);
        wait(py, &mut pending)
    }
}

#[pymethods]
impl PyCommunicator {
    #[new]
    #[pyo3(signature = (
        coordinator,
        secret=None,
        connections=4,
        timeout_s=60.0,
        bind_host="0.0.0.0".to_owned(),
        bind_port=0,
        advertise_host=None,
        shared_memory=false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        coordinator: String,
        secret: Option<String>,
        connections: usize,
        timeout_s: f64,
        bind_host: String,
        bind_port: u16,
        advertise_host: Option<String>,
        shared_memory: bool,
    ) -> BindResult<Self> {
        let options = CommunicatorOptions {
            connections,
            timeout: seconds(timeout_s, "timeout_s")?,
            bind_host,
            bind_port,
            advertise_host,
            shared_memory,
        };
        let worker = run(py, move || {
            let secret = Secret::from_arg_or_env(secret.as_deref())?;
            Worker::spawn(CoreCommunicator::new(&coordinator, secret, options)?)
        })?;
        Ok(Self { worker })
    }

    /// Start the peer-to-peer listener and register with the coordinator (as pending).
    fn connect(&self, py: Python<'_>) -> BindResult<()> {
        self.call(py, |comm| comm.connect())
    }

    /// Vote on the topology; blocks until it is decided and the mesh is built.
    fn update_topology(&self, py: Python<'_>) -> BindResult<()> {
        self.call(py, |comm| comm.update_topology())
    }

    #[getter]
    fn rank(&self) -> Option<usize> {
        self.worker.membership().rank
    }

    #[getter]
    fn world_size(&self) -> usize {
        self.worker.membership().world_size
    }

    #[getter]
    fn epoch(&self) -> u64 {
        self.worker.membership().epoch
    }

    #[getter]
    fn id(&self) -> u64 {
        self.worker.membership().id
    }

    /// How many links of the current mesh go through shared memory (queued behind the
    /// collectives already called, like them).
    fn shared_memory_links(&self, py: Python<'_>) -> BindResult<usize> {
        self.call(py, |comm| Ok(comm.shared_memory_links()))
    }

    /// all_reduce(array, dtype, op="sum", quantize=None, block=64) -> OpStats
    #[pyo3(signature = (array, dtype, op=Wrap(ReduceOp::Sum), quantize=None, block=64))]
    fn all_reduce(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        dtype: Wrap<DType>,
        op: Wrap<ReduceOp>,
        quantize: Option<Wrap<Quantization>>,
        block: usize,
    ) -> BindResult<PyOpStats> {
        let job = all_reduce_job(array, dtype.0, op.0, quantize.map(|q| q.0), block)?;
        self.call(py, job).map(Into::into)
    }

    /// all_reduce_async(...) -> PendingOp: the same, queued; the handle keeps the array alive.
    #[pyo3(signature = (array, dtype, op=Wrap(ReduceOp::Sum), quantize=None, block=64))]
    fn all_reduce_async(
        &self,
        array: &Bound<'_, PyAny>,
        dtype: Wrap<DType>,
        op: Wrap<ReduceOp>,
        quantize: Option<Wrap<Quantization>>,
        block: usize,
    ) -> BindResult<PendingOp> {
        let job = all_reduce_job(array, dtype.0, op.0, quantize.map(|q| q.0), block)?;
        Ok(PendingOp {
            state: Mutex::new(OpState::Running(self.worker.submit(job))),
            array: array.clone().unbind(),
        })
    }

    /// broadcast(array, dtype, root) -> OpStats
    fn broadcast(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        dtype: Wrap<DType>,
        root: usize,
    ) -> BindResult<PyOpStats> {
        let dtype = dtype.0;
        let (bytes, _) = buffer(array, "array", dtype, true)?;
        let job = holding(vec![array.clone().unbind()], move |comm| {
            // SAFETY: the job holds `array` until it ends.
            comm.broadcast(unsafe { bytes.bytes_mut() }, dtype, root)
        });
        self.call(py, job).map(Into::into)
    }

    /// all_gather(array, dtype, out) -> OpStats; `out` holds every rank's array, rank by
    /// rank.
    fn all_gather(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        dtype: Wrap<DType>,
        out: &Bound<'_, PyAny>,
    ) -> BindResult<PyOpStats> {
        let dtype = dtype.0;
        let (bytes, _) = buffer(array, "array", dtype, false)?;
        let (into, _) = buffer(out, "out", dtype, true)?;
        if into.len > 0 && bytes.len > 0 {
            let (a, o) = (bytes.ptr as usize, into.ptr as usize);
            if a < o + into.len && o < a + bytes.len {
                return Err(CoreError::invalid("out", "must not share memory with array").into());
            }
        }
        let arrays = vec![array.clone().unbind(), out.clone().unbind()];
        let job = holding(arrays, move |comm| {
            // SAFETY: the job holds both arrays until it ends; they do not overlap.
            comm.all_gather(unsafe { bytes.bytes() }, dtype, unsafe { into.bytes_mut() })
        });
        self.call(py, job).map(Into::into)
    }

    fn barrier(&self, py: Python<'_>) -> BindResult<()> {
        self.call(py, |comm| comm.barrier())
    }

    /// Every rank's `values`, rank by rank.
    fn all_gather_scalars(&self, py: Python<'_>, values: Vec<f64>) -> BindResult<Vec<Vec<f64>>> {
        self.call(py, move |comm| comm.all_gather_scalars(&values))
    }

    /// pair_average(array, dtype, step, group_size=2) -> PairAverage
    #[pyo3(signature = (array, dtype, step, group_size=2))]
    fn pair_average(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        dtype: Wrap<DType>,
        step: u64,
        group_size: usize,
    ) -> BindResult<PyPairAverage> {
        let dtype = dtype.0;
        let (bytes, _) = buffer(array, "array", dtype, true)?;
        let job = holding(vec![array.clone().unbind()], move |comm| {
            // SAFETY: the job holds `array` until it ends.
            comm.pair_average(unsafe { bytes.bytes_mut() }, dtype, step, group_size)
        });
        let info = self.call(py, job)?;
        Ok(PyPairAverage {
            group: info.group,
            stats: Py::new(py, PyOpStats::from(info.stats))?,
        })
    }

    /// sync_state([(name, array, dtype), ...], revision) -> SyncReport
    fn sync_state<'py>(
        &self,
        py: Python<'py>,
        arrays: Vec<(String, Bound<'py, PyAny>, Wrap<DType>)>,
        revision: u64,
    ) -> BindResult<PySyncReport> {
        let mut entries = Vec::with_capacity(arrays.len());
        for (name, array, dtype) in &arrays {
            let dtype = dtype.0;
            let (bytes, shape) = buffer(array, "named_arrays", dtype, true)?;
            entries.push((name.clone(), dtype, shape, bytes));
        }
        let mut ranges: Vec<(usize, usize)> = entries
            .iter()
            .filter(|e| e.3.len > 0)
            .map(|e| (e.3.ptr as usize, e.3.ptr as usize + e.3.len))
            .collect();
        ranges.sort_unstable();
        if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(CoreError::invalid("named_arrays", "two arrays share memory").into());
        }
        let held = arrays.iter().map(|(_, a, _)| a.clone().unbind()).collect();
        let job = holding(held, move |comm| {
            let mut state: Vec<StateArray<'_>> = entries
                .into_iter()
                .map(|(name, dtype, shape, bytes)| StateArray {
                    name,
                    dtype,
                    shape,
                    // SAFETY: the job holds every array until it ends, and no two of them
                    // overlap.
                    data: unsafe { bytes.bytes_mut() },
                })
                .collect();
            comm.sync_state(&mut state, revision)
        });
        let r = self.call(py, job)?;
        Ok(PySyncReport {
            revision: r.revision,
            fetched: r.fetched,
            bytes_received: r.bytes_received,
            bytes_sent: r.bytes_sent,
            sources: r.sources,
            state_hash: r.state_hash,
            peers_out_of_date: r.peers_out_of_date,
            world_size: r.world_size,
        })
    }

    /// Finish the queued collectives, leave, and stop the worker thread. Idempotent.
    fn close(&self, py: Python<'_>) -> BindResult<()> {
        run(py, || {
            self.worker.close();
            Ok(())
        })
    }
}

fn all_reduce_job(
    array: &Bound<'_, PyAny>,
    dtype: DType,
    op: ReduceOp,
    quantize: Option<Quantization>,
    block: usize,
) -> BindResult<Job<OpStats>> {
    let (bytes, _) = buffer(array, "array", dtype, true)?;
    // The job holds the array too: an async handle dropped before its job ran must not free
    // the memory the job writes.
    Ok(holding(vec![array.clone().unbind()], move |comm| {
        // SAFETY: the job holds the array until it ends.
        comm.all_reduce(unsafe { bytes.bytes_mut() }, dtype, op, quantize, block)
    }))
}

enum OpState {
    Running(Pending<OpStats>),
    Done(CoreResult<OpStats>),
}

/// A queued all-reduce: `wait()` blocks (GIL released) and returns its stats or raises.
#[pyclass(module = "thrifty._native", name = "PendingOp", frozen)]
pub(super) struct PendingOp {
    state: Mutex<OpState>,
    array: Py<PyAny>,
}

#[pymethods]
impl PendingOp {
    /// Block until the collective has finished (Ctrl-C interrupts the wait, not the
    /// collective); idempotent.
    fn wait(&self, py: Python<'_>) -> BindResult<PyOpStats> {
        loop {
            let finished = run(py, || {
                // Locked without the GIL: another thread may be waiting on the same handle.
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let OpState::Running(pending) = &mut *state {
                    match pending.wait_timeout(WAIT_SLICE) {
                        Some(result) => *state = OpState::Done(result),
                        None => return Ok(None),
                    }
                }
                match &*state {
                    OpState::Done(result) => result.clone().map(Some),
                    OpState::Running(_) => Err(CoreError::Internal(
                        "a collective handle lost its result".into(),
                    )),
                }
            })?;
            if let Some(done) = finished {
                return Ok(done.into());
            }
            py.check_signals()?;
        }
    }

    /// Whether the collective has finished (never blocks).
    fn done(&self) -> bool {
        match self.state.try_lock() {
            Ok(mut state) => match &mut *state {
                OpState::Running(pending) => pending.is_done(),
                OpState::Done(_) => true,
            },
            // Another thread holds it inside wait(): not done yet.
            Err(_) => false,
        }
    }

    /// The array the collective works on.
    #[getter]
    fn array(&self, py: Python<'_>) -> Py<PyAny> {
        self.array.clone_ref(py)
    }
}
