//! What the coordinator's threads share: the state machine, every connection's outbox, and
//! the threads to join. One mutex guards it all, and the state machine only queues: no
//! socket write happens under the lock, so a peer that stops reading cannot stall the others.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::options::CoordinatorOptions;
use super::votes::Votes;
use crate::auth::Secret;
use crate::message::{FromCoordinator, PeerId};

pub(super) struct Shared {
    pub(super) secret: Secret,
    pub(super) options: CoordinatorOptions,
    pub(super) closed: AtomicBool,
    pub(super) hub: Mutex<Hub>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(super) fn new(secret: Secret, options: CoordinatorOptions) -> Self {
        let hub = Hub {
            closed: false,
            sockets: HashMap::new(),
            next_serial: 0,
            outboxes: HashMap::new(),
            votes: Votes::new(options.heartbeat_timeout),
        };
        Self {
            secret,
            options,
            closed: AtomicBool::new(false),
            hub: Mutex::new(hub),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a thread that `close` will join.
    pub(super) fn spawn(
        &self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let handle = thread::Builder::new().name(name).spawn(body)?;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        // Finished threads need no join; pruning keeps a long-lived coordinator's list short.
        threads.retain(|h| !h.is_finished());
        threads.push(handle);
        Ok(())
    }

    /// Join every thread started by `spawn`, including those started meanwhile.
    pub(super) fn join_threads(&self) {
        // A connection thread may start a writer before it ends: repeat until none is left.
        loop {
            let handles =
                std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }

    pub(super) fn lose(&self, id: PeerId, serial: u64, why: &str) {
        let mut hub = self.lock();
        hub.votes.lose(id, serial, why, Instant::now());
        hub.apply();
    }
}

/// What the coordinator's threads share: the state machine, and the connections it speaks
/// through.
pub(super) struct Hub {
    pub(super) closed: bool,
    /// Every open connection, authenticated or not, so `close` can cut them all.
    pub(super) sockets: HashMap<u64, TcpStream>,
    pub(super) next_serial: u64,
    /// Each connected peer's writer queue, and a clone of its socket to cut it with.
    pub(super) outboxes: HashMap<PeerId, (Sender<FromCoordinator>, TcpStream)>,
    pub(super) votes: Votes,
}

impl Hub {
    /// Cut every connection and forget every peer; false when already closed.
    pub(super) fn close(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        for socket in self.sockets.values() {
            // Unblocks the connection's reader at once; an error means it is gone.
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.votes.disconnect_all();
        // Dropping the outboxes ends the writers.
        self.apply();
        true
    }

    /// Carry out what the state machine queued: drop the connections of the peers it
    /// removed, then hand every message to its peer's writer.
    pub(super) fn apply(&mut self) {
        for id in self.votes.take_departed() {
            if let Some((_, socket)) = self.outboxes.remove(&id) {
                // Unblocks its reader; its writer ends when it finds the outbox gone.
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        for (id, message) in self.votes.take_outgoing() {
            if let Some((outbox, _)) = self.outboxes.get(&id) {
                // A closed outbox means the writer is ending; nothing is left to tell it.
                let _ = outbox.send(message);
            }
        }
    }
}
