//! Asynchronous collectives: one thread owns the communicator and runs jobs in the order
//! they were submitted, so `all_reduce_async` overlaps with the caller's compute while every
//! peer still sees the same sequence of collectives.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use thrifty_core::{CoreError, CoreResult};

use crate::communicator::Communicator;
use crate::message::PeerId;

type Job = Box<dyn FnOnce(&mut Communicator) + Send>;

/// What callers may read without waiting for queued jobs: refreshed after every job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub id: PeerId,
    pub rank: Option<usize>,
    pub world_size: usize,
    pub epoch: u64,
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
}

fn membership_of(comm: &Communicator) -> Membership {
    Membership {
        id: comm.id(),
        rank: comm.rank(),
        world_size: comm.world_size(),
        epoch: comm.epoch(),
    }
}

impl Worker {
    pub fn spawn(mut comm: Communicator) -> CoreResult<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let membership = Arc::new(Mutex::new(membership_of(&comm)));
        let shared = Arc::clone(&membership);
        let thread = std::thread::Builder::new()
            .name("thrifty-collective".into())
            .spawn(move || {
                for job in receiver {
                    job(&mut comm);
                    *shared.lock().unwrap_or_else(|e| e.into_inner()) = membership_of(&comm);
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
        let boxed: Job = Box::new(move |comm| {
            // The caller may have dropped its handle; the job still ran in order.
            let _ = tx.send(job(comm));
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
        Pending { receiver: rx, done }
    }

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
        if let Some(done) = self.done.take() {
            return done;
        }
        self.receiver.recv().unwrap_or_else(|_| {
            Err(CoreError::Internal(
                "the collective worker stopped before finishing the job".into(),
            ))
        })
    }

    /// Whether the job has finished (its result is kept for `wait`).
    pub fn is_done(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        match self.receiver.recv_timeout(Duration::ZERO) {
            Ok(result) => {
                self.done = Some(result);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.done = Some(Err(CoreError::Internal(
                    "the collective worker stopped before finishing the job".into(),
                )));
                true
            }
        }
    }
}
