//! A communicator's life: create, connect, vote on the topology (building the mesh of each
//! new view), resume after a lost coordinator, close.

use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use super::address::{advertised_host, host_port};
use super::{Communicator, CommunicatorOptions, Scratch};
use crate::auth::Secret;
use crate::control::{Control, ViewEvent};
use crate::mesh::{Listener, Mesh};
use crate::message::{PeerId, Resume, View};

/// The most a mesh build waits for a member before reporting failure, so the coordinator
/// can form the next view without the member that never came.
const MESH_PATIENCE: Duration = Duration::from_secs(10);

/// A fresh peer identity: random, so no two peers need to agree on one.
fn random_id() -> CoreResult<PeerId> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| CoreError::Internal(format!("no randomness: {e}")))?;
    Ok(u64::from_le_bytes(bytes))
}

impl Communicator {
    /// `coordinator` is `host:port`, or several separated by commas: the standbys a peer
    /// falls back on, in order, when it loses its coordinator. Nothing connects until
    /// [`Communicator::connect`].
    pub fn new(
        coordinator: &str,
        secret: Secret,
        options: CommunicatorOptions,
    ) -> CoreResult<Self> {
        let coordinators: Vec<String> = coordinator
            .split(',')
            .map(|a| a.trim().to_owned())
            .collect();
        if coordinators.iter().any(String::is_empty) {
            return Err(CoreError::invalid(
                "coordinator",
                format!("must be host:port (or several, comma-separated), got {coordinator:?}"),
            ));
        }
        if options.connections == 0 || options.connections > 64 {
            return Err(CoreError::invalid(
                "connections",
                format!("must be in 1..=64, got {}", options.connections),
            ));
        }
        if options.timeout.is_zero() {
            return Err(CoreError::invalid("timeout_s", "must be positive"));
        }
        Ok(Self {
            coordinators,
            p2p_addr: String::new(),
            secret,
            options,
            id: random_id()?,
            listener: None,
            control: None,
            view: None,
            mesh: None,
            seq: 0,
            stale: Some("not connected: call connect() and update_topology()".into()),
            scratch: Scratch::default(),
            last_revision: None,
        })
    }

    /// Start the peer-to-peer listener and register with the coordinator (as pending).
    pub fn connect(&mut self) -> CoreResult<()> {
        if self.control.is_some() {
            return Ok(());
        }
        let listener = Listener::bind(
            &self.options.bind_host,
            self.options.bind_port,
            self.id,
            self.secret.clone(),
        )?;
        listener.set_shared_memory(self.options.shared_memory);
        let host = advertised_host(&self.options, &self.coordinators[0])?;
        let p2p = host_port(&host, listener.port());
        let control = Control::connect_first(
            &self.coordinators,
            &self.secret,
            self.id,
            &p2p,
            self.options.timeout,
        )?;
        self.listener = Some(listener);
        self.control = Some(control);
        self.p2p_addr = p2p;
        self.stale = Some("no topology yet: call update_topology()".into());
        Ok(())
    }

    pub(super) fn control(&self) -> CoreResult<&Control> {
        self.control.as_ref().ok_or_else(|| {
            CoreError::invalid("communicator", "is not connected: call connect() first")
        })
    }

    /// Vote on the topology: blocks until every member has asked, admits every pending peer,
    /// and rebuilds the mesh when the membership changed.
    pub fn update_topology(&mut self) -> CoreResult<()> {
        let deadline = Instant::now() + self.options.timeout;
        let connections = self.options.connections;
        if self.control()?.coordinator_lost() {
            self.resume()?;
        }
        self.control()?.request_update()?;
        let mut pending: Option<(View, Mesh)> = None;
        loop {
            let event = self.control()?.next_view_event(deadline)?;
            match event {
                ViewEvent::Build(view) => {
                    self.mesh = None;
                    pending = None;
                    let listener = self.listener.as_ref().ok_or_else(|| {
                        CoreError::Internal("connected without a listener".into())
                    })?;
                    let patience = deadline.min(Instant::now() + MESH_PATIENCE);
                    let control = self.control()?;
                    let superseded = || control.view_event_pending();
                    match listener.build_mesh(&view, connections, patience, &superseded) {
                        Ok(mesh) => {
                            self.control()?.mesh_ready(view.epoch, true, "")?;
                            pending = Some((view, mesh));
                        }
                        Err(error) => {
                            log::warn!("mesh for epoch {} failed: {error}", view.epoch);
                            self.control()?
                                .mesh_ready(view.epoch, false, &error.to_string())?;
                        }
                    }
                }
                ViewEvent::Committed(epoch) => {
                    if let Some((view, mesh)) = pending.take() {
                        if view.epoch == epoch {
                            self.view = Some(view);
                            self.mesh = Some(mesh);
                            self.seq = 0;
                            self.stale = None;
                            return Ok(());
                        }
                    }
                    let current = self.view.as_ref().map(|v| v.epoch);
                    if current == Some(epoch) && self.mesh.is_some() {
                        self.stale = None;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The coordinator is gone: find it again (or a standby) and say what we knew, so the
    /// members of the lost view come together again in the first view there.
    fn resume(&mut self) -> CoreResult<()> {
        let resume = Resume {
            epoch: self.epoch(),
            members: self.members(),
        };
        self.mesh = None;
        self.stale = Some("the coordinator was lost: call update_topology()".into());
        if let Some(old) = self.control.take() {
            old.close();
        }
        let control = Control::reconnect(
            &self.coordinators,
            &self.secret,
            self.id,
            &self.p2p_addr,
            self.options.timeout,
            &resume,
        )?;
        self.control = Some(control);
        Ok(())
    }

    /// Drop the mesh, say `Leave` to the coordinator, and stop listening. Idempotent.
    pub fn close(&mut self) {
        self.mesh = None;
        if let Some(control) = self.control.take() {
            control.close();
        }
        if let Some(mut listener) = self.listener.take() {
            listener.close();
        }
        self.stale = Some("closed".into());
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        self.close();
    }
}
