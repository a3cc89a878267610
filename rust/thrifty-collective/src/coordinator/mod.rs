//! The coordinator: membership, topology votes, and the commit vote of every collective,
//! as the protocol of `message` describes them.
//!
//! - `votes` decides, touching no socket, thread or clock: who is connected (its `roster`),
//!   the topology votes, and the commit votes (kept in its `ballot_box`);
//! - `connection` moves its messages: one connection from accept to loss, with a reader
//!   that feeds the state machine and a writer that drains the peer's outbox and sends
//!   heartbeats;
//! - `shared` is what the threads share, behind one mutex;
//! - `fellows` asks the other coordinators whether one of them leads the world;
//! - `options` are the settings.

mod ballot_box;
mod connection;
mod fellows;
mod options;
mod roster;
mod shared;
pub mod votes;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::Secret;
pub use options::CoordinatorOptions;
use shared::Shared;
pub use votes::CoordinatorSnapshot;

/// A running coordinator; dropping it closes it.
pub struct Coordinator {
    shared: Arc<Shared>,
    address: String,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Coordinator {
    /// Bind (e.g. `"127.0.0.1:0"`) and serve from background threads at once.
    pub fn start(bind: &str, secret: Secret, options: CoordinatorOptions) -> CoreResult<Self> {
        options.validate()?;
        let listener = TcpListener::bind(bind)
            .map_err(|e| CoreError::invalid("bind", format!("cannot bind {bind:?}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CoreError::invalid("bind", format!("{bind:?} has no address: {e}")))?;
        // Non-blocking so the accept loop can notice `close` without a connection arriving.
        listener.set_nonblocking(true).map_err(|e| {
            CoreError::invalid("bind", format!("cannot poll the listener on {local}: {e}"))
        })?;
        let shared = Arc::new(Shared::new(secret, options));
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("thrifty-coordinator-accept".into())
                .spawn(move || connection::accept_loop(&shared, &listener))
                .map_err(|e| CoreError::Internal(format!("cannot start a thread: {e}")))?
        };
        log::info!("coordinator listening on {local}");
        Ok(Self {
            shared,
            address: local.to_string(),
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The `host:port` actually bound.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Stop accepting, drop every connection and join every thread. Idempotent.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if self.shared.lock().close() {
            log::info!("coordinator {} closed", self.address);
        }
        let accept = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = accept {
            let _ = handle.join();
        }
        self.shared.join_threads();
    }

    /// What the coordinator knows right now.
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        self.shared.lock().votes.snapshot()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.close();
    }
}
