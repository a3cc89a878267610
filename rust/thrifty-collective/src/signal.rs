//! How the control plane tells a running data phase to stop.
//!
//! The engine polls sockets without holding any lock; the coordinator's abort arrives on the
//! control reader thread. An [`OpSignal`] carries the abort across: the reader raises it and
//! wakes the engine's poll at once, so a survivor does not wait for a socket timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::message::AbortKind;

/// A one-shot abort flag with a reason, and an optional waker for the engine's poll.
#[derive(Default)]
pub struct OpSignal {
    raised: AtomicBool,
    reason: Mutex<Option<(AbortKind, String)>>,
    waker: Mutex<Option<Arc<mio::Waker>>>,
}

impl OpSignal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Raise the flag (the first reason wins) and wake the engine.
    pub fn raise(&self, kind: AbortKind, reason: impl Into<String>) {
        {
            let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some((kind, reason.into()));
            }
        }
        self.raised.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waker) = waker {
            // A failed wake only delays the abort until the next poll timeout.
            let _ = waker.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<(AbortKind, String)> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wake this poll when the signal is raised; cleared with `None`.
    pub fn set_waker(&self, waker: Option<Arc<mio::Waker>>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}
