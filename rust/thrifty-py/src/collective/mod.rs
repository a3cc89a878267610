//! Bindings for `thrifty-collective`: the coordinator, the communicator and its async handles.
//!
//! A communicator lives on its own thread (`worker::Worker`). Every call queues one job there
//! and waits for it through `call::run`, in slices, so the GIL is released while it waits,
//! Ctrl-C interrupts the wait, a core error becomes its exception, and the order of
//! collectives is the order of the calls. A job borrows the caller's arrays through their raw
//! pointers: the binding checks each array here, and the job keeps a strong reference to it
//! until it has finished, since an interrupted caller may drop the array meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::communicator::{
    Communicator as CoreCommunicator, CommunicatorOptions, OpStats, StateArray,
};
use thrifty_collective::coordinator::{Coordinator as CoreCoordinator, CoordinatorOptions};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::worker::{Pending, Worker};
use thrifty_core::{CoreError, CoreResult};

use crate::arrays::type_name;
use crate::call::run;
use crate::errors::{BindResult, ThriftyErr};
use crate::options::{export, Wrap};

/// How long a blocking wait keeps the GIL released before it checks for signals.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// What one collective moved, and how long it took.
#[pyclass(module = "thrifty._native", name = "OpStats", frozen, get_all)]
struct PyOpStats {
    bytes_sent: u64,
    bytes_received: u64,
    seconds: f64,
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
struct PyCoordinatorSnapshot {
    epoch: u64,
    members: Vec<u64>,
    pending: Vec<u64>,
    broken: Option<String>,
    forming: Option<u64>,
    asked: Vec<u64>,
}

/// What `sync_state` did (see `SyncReport` in the core).
#[pyclass(module = "thrifty._native", name = "SyncReport", frozen, get_all)]
struct PySyncReport {
    revision: u64,
    fetched: Vec<String>,
    bytes_received: u64,
    bytes_sent: u64,
    sources: Vec<(String, usize)>,
    state_hash: String,
    peers_out_of_date: usize,
    world_size: usize,
}

/// Whom `pair_average` averaged with (ranks in ring order, this peer included), and its stats.
#[pyclass(module = "thrifty._native", name = "PairAverage", frozen, get_all)]
struct PyPairAverage {
    group: Vec<usize>,
    stats: Py<PyOpStats>,
}

fn seconds(value: f64, argument: &'static str) -> BindResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        CoreError::invalid(
            argument,
            format!("must be a finite number of seconds >= 0, got {value}"),
        )
        .into()
    })
}

/// The caller's array as raw bytes, to be rebuilt into a slice inside a job.
#[derive(Clone, Copy)]
struct RawBytes {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pointer is only dereferenced inside one job, while the binding holds a strong
// reference to the array it points into (so it is neither freed nor resized).
unsafe impl Send for RawBytes {}

impl RawBytes {
    /// # Safety
    /// The array must stay alive and unresized until the returned slice is dropped, and no
    /// mutable slice of it may be live at the same time.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller's contract above; `buffer` checked contiguity and alignment.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// The array must stay alive and unresized until the returned slice is dropped, and no
    /// other slice of it may be live at the same time.
    unsafe fn bytes_mut<'a>(self) -> &'a mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: the caller's contract above; `buffer` checked contiguity and alignment.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Whether an array of NumPy kind `kind` can hold elements of `dtype`: bfloat16 arrives as
/// an int16 view (NumPy has no bfloat16) or as ml_dtypes' bfloat16, never as float16.
fn kind_fits(dtype: DType, kind: u8) -> bool {
    match dtype {
        DType::F32 | DType::F64 | DType::F16 => kind == b'f',
        DType::I32 | DType::I64 => kind == b'i',
        DType::BF16 => kind != b'f' && kind != b'O',
    }
}

/// Check `array` (a C-contiguous, aligned NumPy array of `dtype`, writable when `writable`)
/// and return its bytes, with its shape.
fn buffer(
    array: &Bound<'_, PyAny>,
    argument: &'static str,
    dtype: DType,
    writable: bool,
) -> BindResult<(RawBytes, Vec<usize>)> {
    let untyped = array.cast::<PyUntypedArray>().map_err(|_| {
        ThriftyErr::dtype(
            argument,
            format!("expected a numpy array, got {}", type_name(array)),
        )
    })?;
    let descr = untyped.dtype();
    if descr.itemsize() != dtype.size()
        || !kind_fits(dtype, descr.kind())
        || descr.is_native_byteorder() == Some(false)
    {
        return Err(ThriftyErr::dtype(
            argument,
            format!(
                "expected {} elements in native byte order, got an array of dtype {}",
                dtype.name(),
                descr.str().map(|s| s.to_string()).unwrap_or_default()
            ),
        ));
    }
    if !untyped.is_c_contiguous() {
        return Err(ThriftyErr::dtype(
            argument,
            "expected a C-contiguous array, got a strided view (use numpy.ascontiguousarray)",
        ));
    }
    if !untyped.is_aligned() {
        return Err(ThriftyErr::dtype(
            argument,
            format!("expected an array aligned to {} bytes", dtype.size()),
        ));
    }
    // SAFETY: `as_array_ptr` points to the live array object `untyped` borrows.
    let (ptr, flags) = unsafe {
        let fields = &*numpy::npyffi::_PyArray_GET_ITEM_DATA(untyped.as_array_ptr().cast_const());
        (fields.data.cast::<u8>(), fields.flags)
    };
    if writable && flags & numpy::npyffi::NPY_ARRAY_WRITEABLE == 0 {
        return Err(ThriftyErr::dtype(
            argument,
            "expected a writable array (the result is written in place), got a read-only one",
        ));
    }
    let shape = untyped.shape().to_vec();
    let len = shape.iter().product::<usize>() * dtype.size();
    Ok((RawBytes { ptr, len }, shape))
}

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

/// Coordinator(bind, secret=None, heartbeat_interval_s=0.5, heartbeat_timeout_s=5.0,
/// handshake_timeout_s=5.0): membership and commit votes, served from background threads.
#[pyclass(module = "thrifty._native", name = "Coordinator", frozen)]
struct PyCoordinator {
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

/// Communicator(coordinator, secret=None, connections=4, timeout_s=60.0, bind_host="0.0.0.0",
/// bind_port=0, advertise_host=None): one peer, its collectives run on its own thread.
#[pyclass(module = "thrifty._native", name = "Communicator", frozen)]
struct PyCommunicator {
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
    ) -> BindResult<Self> {
        let options = CommunicatorOptions {
            connections,
            timeout: seconds(timeout_s, "timeout_s")?,
            bind_host,
            bind_port,
            advertise_host,
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
struct PendingOp {
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
