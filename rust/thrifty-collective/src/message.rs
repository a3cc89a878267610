//! The control protocol between peers and the coordinator.
//!
//! Every control message travels in one `Control` frame (see `frame`), encoded with postcard.
//! The protocol, in the order things happen:
//!
//! 1. A peer connects, authenticates (`auth`), and sends [`ToCoordinator::Hello`]. The
//!    coordinator answers [`FromCoordinator::Welcome`] (or `Refused`). The peer is *pending*.
//! 2. Both sides send `Heartbeat` every `heartbeat_interval_ms`; either side declares the
//!    other lost after `heartbeat_timeout_ms` without any frame, or at once on EOF.
//! 3. Topology vote. Members of the current view and pending peers send `UpdateTopology`.
//!    When every live member of the current view has asked (or there are no members), the
//!    coordinator decides:
//!    - nothing changed (no pending peer asked, the epoch is not broken): it answers
//!      `ViewCommitted { epoch }` with the current epoch; peers keep their mesh;
//!    - otherwise it forms a new [`View`] (epoch + 1): the live members plus every pending
//!      peer that asked, in ring order, and sends `View` to each of them. Each peer builds
//!      its mesh for that epoch and answers `MeshReady`. When all are ready the coordinator
//!      sends `ViewCommitted`; if one fails or is lost, it forms the next view from those left
//!      and sends `View` again.
//! 4. Every collective ends in a vote. Each participant sends [`Vote`] once its data phase
//!    ends (ok or not). The coordinator commits when every participant voted ok with the same
//!    descriptor, and aborts as soon as one votes not ok, the descriptors differ, or a
//!    participant is lost. Every participant receives the same [`Decision`].
//! 5. When a member of the current epoch is lost, the coordinator sends `Broken` to the
//!    others and aborts every undecided vote of that epoch: in-flight collectives fail with
//!    `PeerLost`, and no collective can run until the next topology update.
//! 6. Coordinator failover. A coordinator keeps no state that the peers do not also hold,
//!    so any coordinator can take over: a peer that loses its coordinator fails its
//!    collectives with `PeerLost`, and its next `update_topology()` dials the addresses it
//!    was given, in order, and says `Hello` with a [`Resume`]: the epoch and members it last
//!    knew. A coordinator that has not yet committed a view waits (up to one heartbeat
//!    timeout) for every member named in a `Resume` to arrive and ask before it forms its
//!    first view, and numbers it past every resumed epoch, so no link of an old mesh can be
//!    taken for one of the new.
//! 7. Coordinators told of each other (`fellows`) keep one world: one that has not formed a
//!    view yet asks each fellow `WhoLeads` before it takes a peer in, and when a fellow
//!    answers `Leader` with a live view, it answers the peer `Redirect` to that fellow. So a
//!    restarted primary sends newcomers and strays to the standby the world moved to.

use serde::{Deserialize, Serialize};
use thrifty_core::CoreError;

/// A peer's identity: random, chosen by the peer, stable for the life of its communicator.
pub type PeerId = u64;

/// One member of a view: who it is and where the others dial it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: PeerId,
    /// `host:port` of the peer's peer-to-peer listener, as the other peers should dial it.
    pub addr: String,
}

/// The membership of one epoch. `members` is the ring order; a peer's rank is its index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub epoch: u64,
    pub members: Vec<Member>,
}

impl View {
    /// The rank of `id` in this view.
    pub fn rank_of(&self, id: PeerId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }
}

/// One participant's vote on the outcome of a collective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub epoch: u64,
    /// The collective's sequence number within the epoch; every participant counts alike.
    pub seq: u64,
    /// Who takes part, in the order the payloads come back; every participant sends the same.
    pub participants: Vec<PeerId>,
    /// What was called, e.g. `all_reduce f32[1000] sum int8/64`; all must match to commit.
    pub descriptor: String,
    pub ok: bool,
    /// Why not ok (empty when ok).
    pub reason: String,
    /// Why not ok, as a kind the caller can act on.
    pub kind: AbortKind,
    /// A small payload gathered from every participant and returned with a commit
    /// (barrier: empty; scalars; shared-state summaries).
    pub payload: Vec<u8>,
}

/// Why a collective was aborted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// A participant or a link was lost: update the topology and retry.
    PeerLost,
    /// A participant ran past its deadline.
    Timeout,
    /// Participants called different collectives, or the same one with different shapes.
    Mismatch,
    /// A participant rejected its own input (non-finite values under quantization, ...).
    PeerError,
}

impl AbortKind {
    /// How a participant whose data phase failed with `error` reports it in its vote.
    pub fn of(error: &CoreError) -> Self {
        match error {
            CoreError::PeerLost(_) | CoreError::Authentication(_) => AbortKind::PeerLost,
            CoreError::Timeout(_) => AbortKind::Timeout,
            CoreError::Mismatch(_) => AbortKind::Mismatch,
            _ => AbortKind::PeerError,
        }
    }

    /// The error a collective aborted for this kind of reason fails with.
    pub fn error(self, reason: String) -> CoreError {
        match self {
            AbortKind::PeerLost => CoreError::PeerLost(reason),
            AbortKind::Timeout => CoreError::Timeout(reason),
            AbortKind::Mismatch => CoreError::Mismatch(reason),
            AbortKind::PeerError => CoreError::Aborted(reason),
        }
    }
}

/// The coordinator's verdict on one collective, identical for every participant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub epoch: u64,
    pub seq: u64,
    pub commit: bool,
    /// Why it was aborted (ignored on commit).
    pub kind: AbortKind,
    pub reason: String,
    /// On commit: every participant's payload, in the order of `Vote::participants`.
    pub payloads: Vec<Vec<u8>>,
}

/// What a peer knew when it lost its coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub epoch: u64,
    pub members: Vec<PeerId>,
}

/// Messages from a peer to the coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ToCoordinator {
    Hello {
        id: PeerId,
        p2p_addr: String,
        /// Set when the peer comes from another coordinator (or an earlier run of this one).
        resume: Option<Resume>,
    },
    Heartbeat,
    UpdateTopology,
    MeshReady {
        epoch: u64,
        ok: bool,
        reason: String,
    },
    Vote(Vote),
    /// A clean goodbye: treated like a loss, without waiting for the heartbeat timeout.
    Leave,
    /// From another coordinator, instead of `Hello`: does this one hold a live world?
    WhoLeads,
}

/// Messages from the coordinator to a peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FromCoordinator {
    Welcome {
        heartbeat_interval_ms: u64,
        heartbeat_timeout_ms: u64,
    },
    Refused {
        reason: String,
    },
    Heartbeat,
    /// Build the mesh for this view, then answer `MeshReady`.
    View(View),
    /// Every member of this epoch is ready: `update_topology()` returns.
    ViewCommitted {
        epoch: u64,
    },
    Decision(Decision),
    /// A member of this epoch was lost; collectives fail until the next topology update.
    /// Collectives already running fail only if `lost` takes part in them: a pair that does
    /// not depend on it may finish.
    Broken {
        epoch: u64,
        lost: PeerId,
        reason: String,
    },
    /// The answer to `WhoLeads`: this coordinator's committed epoch (0: none yet) and how
    /// many of its members are connected.
    Leader {
        epoch: u64,
        live: u32,
    },
    /// Instead of `Welcome`: the world lives at the coordinator `addr`; go there.
    Redirect {
        addr: String,
    },
}

/// The first message on a peer-to-peer link, after authentication: which mesh, which pair,
/// which stripe. The accepting side files the link under it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LinkHello {
    pub epoch: u64,
    pub from: PeerId,
    pub to: PeerId,
    pub stripe: u32,
    /// Where the dialing peer runs, when it would take shared memory for this link; the
    /// accepting side then answers one [`ShmOffer`].
    pub host: Option<HostId>,
}

/// What two peers compare to learn that they share a kernel and the namespaces that shared
/// memory and its hand-over need: the boot id names the kernel instance, the network
/// namespace scopes the abstract unix socket the region is handed over on, and the pid
/// namespace makes `pid` comparable with the socket's peer credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostId {
    pub boot_id: String,
    pub net_ns: String,
    pub pid_ns: String,
    pub pid: u32,
}

/// The accepting side's answer to a [`LinkHello`] that names a host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ShmOffer {
    /// Stay on TCP: another host, shared memory turned off, or it could not be set up.
    Decline,
    /// Connect to the abstract unix socket `socket`, held by process `pid`, to receive the
    /// region (rings of `ring_bytes` each way) and its doorbells.
    Offer {
        socket: String,
        pid: u32,
        ring_bytes: u64,
    },
}

/// The dialing side's last word on an [`ShmOffer::Offer`]: whether it mapped the region.
/// Both ends switch to shared memory only on `true`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShmAck {
    pub mapped: bool,
}
