//! The public peer API: connect, vote on the topology, run collectives.
//!
//! Every collective runs the same way (`commit`): check that the mesh is whole, run the data
//! phase on the engine (the caller's buffer changes in place, each range backed up before its
//! first change), vote, and wait for the coordinator's decision. On commit the call returns;
//! on abort every changed byte is restored and the call raises, and the mesh is dropped: the
//! next collective needs `update_topology()`, which forms the next epoch from the survivors.
//!
//! This file holds the API's types; each file below adds the methods of one concept:
//! - `lifecycle`: create, connect, the topology vote, resume after a lost coordinator, close;
//! - `address`: which address the other peers dial;
//! - `commit`: what every collective shares, from the mesh check to the decision;
//! - `collectives`: all_reduce, broadcast, all_gather, barrier, all_gather_scalars,
//!   pair_average;
//! - `sync_state`: shared-state sync, and the transfers of its `TransferPlan`.

mod address;
mod collectives;
mod commit;
mod lifecycle;
mod sync_state;

use std::time::Duration;

use crate::auth::Secret;
use crate::control::Control;
use crate::dtype::DType;
use crate::mesh::{Listener, Mesh};
use crate::message::{PeerId, View};
use crate::quantized_all_reduce::QuantizedScratch;
use crate::step_schedule::StepScratch;

/// Settings of a communicator; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct CommunicatorOptions {
    /// TCP connections per peer pair; chunks are striped over them (fills long-fat links).
    pub connections: usize,
    /// The deadline of every blocking call.
    pub timeout: Duration,
    /// Host the peer-to-peer listener binds (port chosen by the OS unless `bind_port`).
    pub bind_host: String,
    pub bind_port: u16,
    /// Host the other peers should dial (behind NAT, the public address); default: the
    /// address this peer uses to reach the coordinator.
    pub advertise_host: Option<String>,
    /// Let links to peers on this host carry their bytes through shared memory instead of
    /// loopback TCP. Opt-in: a link takes it only when both ends allow it and both run
    /// under one kernel boot, in one network and pid namespace; any other link, and any
    /// link where setting it up fails, stays on TCP. Off by default until it has been
    /// through the long chaos soak; leave it off for traffic that must cross the network
    /// stack (shaped or captured loopback).
    pub shared_memory: bool,
}

impl Default for CommunicatorOptions {
    fn default() -> Self {
        Self {
            connections: 4,
            timeout: Duration::from_secs(60),
            bind_host: "0.0.0.0".into(),
            bind_port: 0,
            advertise_host: None,
            shared_memory: false,
        }
    }
}

/// Traffic and time of one collective, for bandwidth reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub seconds: f64,
}

/// One named array of the shared state.
pub struct StateArray<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: &'a mut [u8],
}

/// What `sync_state` did on this peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncReport {
    /// The revision every peer now holds.
    pub revision: u64,
    /// Names of the arrays this peer fetched (empty when it was up to date).
    pub fetched: Vec<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// For each fetched array, the rank it came from.
    pub sources: Vec<(String, usize)>,
    /// xxh3-128 of the whole winning state (hex).
    pub state_hash: String,
    /// How many peers had to fetch something.
    pub peers_out_of_date: usize,
    pub world_size: usize,
}

/// Who this peer averaged with in `pair_average`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairInfo {
    /// Ranks of the group, this peer included, in ring order.
    pub group: Vec<usize>,
    pub stats: OpStats,
}

/// Buffers a communicator keeps from one collective to the next.
#[derive(Default)]
struct Scratch {
    steps: StepScratch,
    quantized: QuantizedScratch,
}

/// One peer: its control connection, its listener, and the mesh of the current epoch.
pub struct Communicator {
    /// The coordinator first, then its standbys.
    coordinators: Vec<String>,
    /// Where the other peers dial this one (set by `connect`).
    p2p_addr: String,
    secret: Secret,
    options: CommunicatorOptions,
    id: PeerId,
    listener: Option<Listener>,
    control: Option<Control>,
    view: Option<View>,
    mesh: Option<Mesh>,
    /// Collectives run in the current epoch; every member counts alike.
    seq: u64,
    /// Why the mesh cannot be used until the next topology update.
    stale: Option<String>,
    scratch: Scratch,
    last_revision: Option<u64>,
}

impl Communicator {
    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn rank(&self) -> Option<usize> {
        self.view.as_ref().and_then(|v| v.rank_of(self.id))
    }

    /// How many links of the current mesh carry their bytes through shared memory.
    pub fn shared_memory_links(&self) -> usize {
        self.mesh
            .as_ref()
            .map_or(0, |m| m.links.iter().filter(|l| l.shm.is_some()).count())
    }

    pub fn world_size(&self) -> usize {
        self.view.as_ref().map_or(0, |v| v.members.len())
    }

    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.epoch)
    }

    /// The members' ids in ring (rank) order.
    pub fn members(&self) -> Vec<PeerId> {
        self.view
            .as_ref()
            .map(|v| v.members.iter().map(|m| m.id).collect())
            .unwrap_or_default()
    }
}
