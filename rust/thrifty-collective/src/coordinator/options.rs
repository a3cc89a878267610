//! The settings of a coordinator.

use std::time::Duration;

use thrifty_core::{CoreError, CoreResult};

/// Settings of a coordinator; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct CoordinatorOptions {
    /// How often each side sends a heartbeat on a quiet control connection.
    pub heartbeat_interval: Duration,
    /// A peer silent for this long is lost.
    pub heartbeat_timeout: Duration,
    /// The most a new connection may take to authenticate and say `Hello`.
    pub handshake_timeout: Duration,
    /// The other coordinators the peers were given (`host:port`), asked before this one
    /// takes a peer in while it has no world of its own (see `message`, point 7).
    pub fellows: Vec<String>,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            fellows: Vec::new(),
        }
    }
}

impl CoordinatorOptions {
    pub(super) fn validate(&self) -> CoreResult<()> {
        if self.heartbeat_interval.is_zero() {
            return Err(CoreError::invalid(
                "heartbeat_interval",
                "must be positive, got 0",
            ));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(CoreError::invalid(
                "heartbeat_timeout",
                format!(
                    "must exceed heartbeat_interval ({:?}), got {:?}",
                    self.heartbeat_interval, self.heartbeat_timeout
                ),
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err(CoreError::invalid(
                "handshake_timeout",
                "must be positive, got 0",
            ));
        }
        if self.fellows.iter().any(|f| f.trim().is_empty()) {
            return Err(CoreError::invalid(
                "fellows",
                "must be host:port strings, got an empty one",
            ));
        }
        Ok(())
    }
}
