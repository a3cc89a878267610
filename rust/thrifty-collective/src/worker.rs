//! Asynchronous collectives: one thread owns the communicator and runs jobs in the order
//! they were submitted, so `all_reduce_async` overlaps with the caller's compute while every
//! peer still sees the same sequence of collectives.
//!
//! After each job the worker publishes the communicator's [`Membership`], before the job's
//! result is handed over: whoever has a job's result reads a membership at least that new. A
//! job that panics fails with [`CoreError::Internal`], and the worker goes on with the next.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use thrifty_core::{CoreError, CoreResult};

use crate::communicator::Communicator;
use crate::message::PeerId;

type Job = Box<dyn FnOnce(&mut Communicator, &Mutex<Membership>) + Send>;

/// What callers may read without waiting for queued jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub id: PeerId,
    pub rank: Option<usize>,
    pub world_size: usize,
    pub epoch: u64,
}

impl Membership {
    /// The membership `comm` holds now.
    pub fn of(comm: &Communicator) -> Self {
        Self {
            id: comm.id(),
            rank: comm.rank(),
            world_size: comm.world_size(),
            epoch: comm.epoch(),
        }
    }
}

/// The thread that owns a [`Communicator`].
pub struct Worker {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    membership: Arc<Mutex<Membership>>,
}

/// A submitted job; [`Pending::wait`] returns its result.
pub struct Pending<T> {
    receiver: mpsc::Receiver<CoreResult<T>>,
    done: Option<CoreResult<T>>,
    /// The result was handed out by `wait_timeout`.
    taken: bool,
}

fn stopped() -> CoreError {
    CoreError::Internal("the collective worker stopped before finishing the job".into())
}

impl Worker {
    pub fn spawn(mut comm: Communicator) -> CoreResult<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let membership = Arc::new(Mutex::new(Membership::of(&comm)));
        let shared = Arc::clone(&membership);
        let thread = std::thread::Builder::new()
            .name("thrifty-collective".into())
            .spawn(move || {
                for job in receiver {
                    job(&mut comm, &shared);
                }
                comm.close();
            })
            .map_err(|e| CoreError::Internal(format!("cannot start the worker thread: {e}")))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            membership,
        })
    }

    /// Queue `job`; it runs after every job submitted before it.
    pub fn submit<T, F>(&self, job: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Communicator) -> CoreResult<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let boxed: Job = Box::new(move |comm, membership| {
            let result = catch_unwind(AssertUnwindSafe(|| job(comm)))
                .unwrap_or_else(|payload| Err(CoreError::panicked(&*payload)));
            // Published first, so that the caller never reads an older membership than the
            // result it holds (a rank read right after `update_topology()`, say).
            *membership.lock().unwrap_or_else(|e| e.into_inner()) = Membership::of(comm);
            // The caller may have dropped its handle; the job still ran in order.
            let _ = tx.send(result);
        });
        let sent = match &*self.sender.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(sender) => sender.send(boxed).is_ok(),
            None => false,
        };
        let done = if sent {
            None
        } else {
            Some(Err(CoreError::invalid("communicator", "is closed")))
        };
        Pending {
            receiver: rx,
            done,
            taken: false,
        }
    }

    /// The membership as of the last finished job.
    pub fn membership(&self) -> Membership {
        self.membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Finish the queued jobs, close the communicator and join the thread. Idempotent.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Pending<T> {
    /// Block until the job has run and return its result.
    pub fn wait(mut self) -> CoreResult<T> {
        loop {
            if let Some(result) = self.wait_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    /// Wait at most `timeout` for the job: its result once it has run, `None` while it has
    /// not. A caller that must stay responsive (to signals, say) waits in slices with this.
    /// The result is handed out once; a later call waits for nothing and says so.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<CoreResult<T>> {
        if self.taken {
            return Some(Err(CoreError::Internal(
                "the result of this job was already taken".into(),
            )));
        }
        let result = match self.done.take() {
            Some(done) => done,
            None => match self.receiver.recv_timeout(timeout) {
                Ok(result) => result,
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
            },
        };
        self.taken = true;
        Some(result)
    }

    /// Whether the job has finished (its result is kept for `wait`).
    pub fn is_done(&mut self) -> bool {
        if self.done.is_some() || self.taken {
            return true;
        }
        match self.receiver.recv_timeout(Duration::ZERO) {
            Ok(result) => {
                self.done = Some(result);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.done = Some(Err(stopped()));
                true
            }
        }
    }
}
