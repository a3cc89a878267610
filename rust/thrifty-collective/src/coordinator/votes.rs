//! The coordinator's state machine: membership, topology votes, and the commit vote of every
//! collective (the protocol of `message`, points 3 to 6).
//!
//! It touches no socket, thread or clock. The coordinator feeds it what happens (a peer
//! admitted, a message from a peer, a peer lost, time passing), each with the time it
//! happened, and sends what it queues: messages per peer ([`Votes::take_outgoing`]) and the
//! peers whose connection must be dropped ([`Votes::take_departed`]).
//!
//! A peer is known by its id and by the serial of its connection: a lost peer may come back
//! under the same id, and what its old connection still says must not act on the new one.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::time::{Duration, Instant};

use super::ballot_box::{
    abort, abort_message, with_voter, Ballot, BallotBox, BallotKey, MAX_BALLOTS,
};
use super::roster::Roster;
use crate::message::{
    AbortKind, Decision, FromCoordinator, Member, PeerId, Resume, ToCoordinator, View, Vote,
};

const TOPOLOGY_CHANGED: &str = "the topology changed; call update_topology()";

/// What the coordinator knows right now, for tests, the CLI and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorSnapshot {
    /// The last committed epoch (0 before the first view).
    pub epoch: u64,
    /// The committed view's members, in ring order (a lost member stays until the next view).
    pub members: Vec<PeerId>,
    /// Connected peers outside the committed view, oldest first.
    pub pending: Vec<PeerId>,
    /// Why the committed epoch can run no collective, if it cannot.
    pub broken: Option<String>,
    /// The epoch of a view being built right now, if any.
    pub forming: Option<u64>,
    /// Who asked for a topology update that is not decided yet (sorted): with `members`,
    /// tells whom the vote still waits for.
    pub asked: Vec<PeerId>,
}

/// The membership and every vote of one coordinator.
pub struct Votes {
    /// How long the first view waits for the members a resuming peer names.
    resume_grace: Duration,
    /// Live peers: members of the committed view and pending ones.
    peers: Roster,
    /// The committed view.
    view: View,
    /// Why the committed epoch needs a new topology vote before it can be trusted again.
    broken: Option<String>,
    /// Members of the committed epoch whose links are gone (lost, or dropped after an abort).
    /// A collective among the others may still finish; one that names any of these cannot.
    unusable: HashSet<PeerId>,
    forming: Option<Forming>,
    /// Epochs only grow, and a failed attempt uses one up, so a stale `MeshReady` or vote
    /// can never be mistaken for a current one.
    next_epoch: u64,
    /// Who asked for a topology update since the last decision.
    asked: HashSet<PeerId>,
    /// Members of a previous coordinator's view, named by resuming peers: the first view
    /// waits for them until `resume_until`.
    resuming: HashSet<PeerId>,
    resume_until: Option<Instant>,
    ballots: BallotBox,
    /// Messages to send, in order.
    outgoing: Vec<(PeerId, FromCoordinator)>,
    /// Peers removed since the last `take_departed`, whose connections must be dropped.
    departed: Vec<PeerId>,
}

impl Votes {
    /// `resume_grace`: how long the first view waits for the members of a previous
    /// coordinator's view that resuming peers name (the coordinator uses its heartbeat
    /// timeout).
    pub fn new(resume_grace: Duration) -> Self {
        Self {
            resume_grace,
            peers: Roster::default(),
            view: View {
                epoch: 0,
                members: Vec::new(),
            },
            broken: None,
            unusable: HashSet::new(),
            forming: None,
            next_epoch: 1,
            asked: HashSet::new(),
            resuming: HashSet::new(),
            resume_until: None,
            ballots: BallotBox::default(),
            outgoing: Vec::new(),
            departed: Vec::new(),
        }
    }

    /// Take a newly connected peer in, as pending, on connection `serial`. A `resume` (the
    /// peer comes from another coordinator) may start a grace period for the first view:
    /// then the returned instant is when it ends, and [`Votes::tick`] should run then.
    pub fn admit(
        &mut self,
        id: PeerId,
        serial: u64,
        p2p_addr: String,
        resume: Option<&Resume>,
        now: Instant,
    ) -> Option<Instant> {
        let grace_ends = resume.and_then(|resume| self.resume(resume, now));
        self.peers.admit(id, serial, p2p_addr);
        grace_ends
    }

    /// Whether a peer of this id is connected (on any connection).
    pub fn is_connected(&self, id: PeerId) -> bool {
        self.peers.contains(id)
    }

    /// Whether connection `serial` is the one peer `id` is connected on.
    pub fn is_current(&self, id: PeerId, serial: u64) -> bool {
        self.peers.is_current(id, serial)
    }

    /// The committed epoch (0 before the first view).
    pub fn epoch(&self) -> u64 {
        self.view.epoch
    }

    /// Act on one message from peer `id` on connection `serial`; false once that connection
    /// is not (or no longer) the peer's, and its reader should stop.
    pub fn handle(
        &mut self,
        id: PeerId,
        serial: u64,
        message: ToCoordinator,
        now: Instant,
    ) -> bool {
        if !self.is_current(id, serial) {
            return false;
        }
        match message {
            ToCoordinator::Heartbeat => {}
            ToCoordinator::Hello { .. } | ToCoordinator::WhoLeads => {
                self.remove(id, "sent a greeting twice", false, now);
                return false;
            }
            ToCoordinator::Leave => {
                self.remove(id, "left", true, now);
                return false;
            }
            ToCoordinator::UpdateTopology => self.on_update_topology(id, now),
            ToCoordinator::MeshReady { epoch, ok, reason } => {
                self.on_mesh_ready(id, epoch, ok, &reason, now);
            }
            ToCoordinator::Vote(vote) => self.on_vote(id, vote),
        }
        true
    }

    /// Peer `id`'s connection `serial` is gone (closed, silent past the heartbeat timeout,
    /// or unable to take a frame): apply what its loss means. False when that connection
    /// was not the peer's current one, which changes nothing.
    pub fn lose(&mut self, id: PeerId, serial: u64, why: &str, now: Instant) -> bool {
        if !self.is_current(id, serial) {
            return false;
        }
        self.remove(id, why, false, now);
        true
    }

    /// Time has passed: a resume grace period may be over, and the vote it held back decided.
    pub fn tick(&mut self, now: Instant) {
        self.decide_topology(now);
    }

    /// The coordinator closed: forget every peer. Their connections are already cut, and
    /// no message can reach them, so nothing of a loss is applied.
    pub fn disconnect_all(&mut self) {
        self.departed.extend(self.peers.clear());
        self.outgoing.clear();
    }

    /// The messages queued since the last call, in order, each with its recipient.
    pub fn take_outgoing(&mut self) -> Vec<(PeerId, FromCoordinator)> {
        mem::take(&mut self.outgoing)
    }

    /// The peers removed since the last call, whose connections must be dropped.
    pub fn take_departed(&mut self) -> Vec<PeerId> {
        mem::take(&mut self.departed)
    }

    /// What `WhoLeads` is answered.
    pub fn leadership(&self) -> FromCoordinator {
        let live = self
            .view
            .members
            .iter()
            .filter(|m| self.peers.contains(m.id))
            .count();
        FromCoordinator::Leader {
            epoch: self.view.epoch,
            live: u32::try_from(live).unwrap_or(u32::MAX),
        }
    }

    /// What the coordinator knows right now.
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        CoordinatorSnapshot {
            epoch: self.view.epoch,
            members: self.view.members.iter().map(|m| m.id).collect(),
            pending: self.peers.pending(&self.view),
            broken: self.broken.clone(),
            forming: self.forming.as_ref().map(|f| f.view.epoch),
            asked: {
                let mut asked: Vec<PeerId> = self.asked.iter().copied().collect();
                asked.sort_unstable();
                asked
            },
        }
    }

    fn send(&mut self, id: PeerId, message: FromCoordinator) {
        // Whoever is gone has nothing left to be told.
        if self.peers.contains(id) {
            self.outgoing.push((id, message));
        }
    }

    /// Remove a peer and apply what its loss means; `left` marks a clean goodbye.
    fn remove(&mut self, id: PeerId, why: &str, left: bool, now: Instant) {
        let Some(p2p_addr) = self.peers.remove(id) else {
            return;
        };
        self.departed.push(id);
        if left {
            log::info!("peer {id} ({}) left", p2p_addr);
        } else {
            log::warn!("dropping peer {id} ({}): {why}", p2p_addr);
        }
        self.asked.remove(&id);
        if let Some(rank) = self.view.rank_of(id) {
            let epoch = self.view.epoch;
            let reason = format!("peer {id} (rank {rank}, {}) lost: {why}", p2p_addr);
            log::info!("epoch {epoch} broken: {reason}");
            if self.broken.is_none() {
                self.broken = Some(reason.clone());
            }
            self.unusable.insert(id);
            let members: Vec<PeerId> = self.view.members.iter().map(|m| m.id).collect();
            for member in members {
                self.send(
                    member,
                    FromCoordinator::Broken {
                        epoch,
                        lost: id,
                        reason: reason.clone(),
                    },
                );
            }
            self.abort_ballots(
                |key, ballot| key.epoch == epoch && ballot.participants.contains(&id),
                AbortKind::PeerLost,
                &reason,
            );
        } else {
            log::info!("pending peer {id} removed");
        }
        let in_forming = self
            .forming
            .as_ref()
            .is_some_and(|f| f.view.rank_of(id).is_some());
        if in_forming {
            self.reform();
        }
        self.decide_topology(now);
    }

    fn on_update_topology(&mut self, id: PeerId, now: Instant) {
        let building = self
            .forming
            .as_ref()
            .is_some_and(|f| f.view.rank_of(id).is_some());
        if building {
            // Its view is on the way; asking again changes nothing.
            return;
        }
        self.asked.insert(id);
        self.decide_topology(now);
    }

    /// A peer resumes from another coordinator: number past its epoch, and, before this
    /// coordinator's first view, wait for its old members. Returns when the grace period
    /// ends, if this started one.
    fn resume(&mut self, resume: &Resume, now: Instant) -> Option<Instant> {
        self.next_epoch = self.next_epoch.max(resume.epoch.saturating_add(1));
        if self.view.epoch != 0 {
            return None;
        }
        self.resuming.extend(resume.members.iter().copied());
        if self.resume_until.is_some() {
            return None;
        }
        let grace = self.resume_grace;
        log::info!(
            "peers are resuming from another coordinator (epoch {}): waiting up to {:.1} s for \
             {} member(s)",
            resume.epoch,
            grace.as_secs_f64(),
            resume.members.len()
        );
        let until = now + grace;
        self.resume_until = Some(until);
        Some(until)
    }

    /// Whether the first view should still wait for members of a previous coordinator.
    fn awaiting_resumers(&self, now: Instant) -> bool {
        let Some(until) = self.resume_until else {
            return false;
        };
        self.view.epoch == 0
            && now < until
            && self.resuming.iter().any(|id| !self.asked.contains(id))
    }

    /// Decide the topology vote once every live member has asked.
    fn decide_topology(&mut self, now: Instant) {
        if self.forming.is_some() || self.asked.is_empty() || self.awaiting_resumers(now) {
            return;
        }
        let live: Vec<PeerId> = self
            .view
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| self.peers.contains(*id))
            .collect();
        if !live.iter().all(|id| self.asked.contains(id)) {
            return;
        }
        let pending: Vec<PeerId> = self
            .asked
            .iter()
            .copied()
            .filter(|id| self.view.rank_of(*id).is_none())
            .collect();
        let unchanged =
            pending.is_empty() && self.broken.is_none() && live.len() == self.view.members.len();
        if unchanged {
            let epoch = self.view.epoch;
            for id in &live {
                self.send(*id, FromCoordinator::ViewCommitted { epoch });
            }
            self.asked.clear();
            return;
        }
        let mut candidates = live;
        candidates.extend(pending);
        self.form(candidates);
    }

    /// Send out a view of `candidates` (all live) in ring order.
    fn form(&mut self, mut candidates: Vec<PeerId>) {
        candidates.retain(|id| self.peers.contains(*id));
        if candidates.is_empty() {
            self.forming = None;
            return;
        }
        self.peers.ring_order(&mut candidates);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let view = View {
            epoch,
            members: candidates
                .iter()
                .map(|id| Member {
                    id: *id,
                    addr: self.peers.p2p_addr(*id).to_owned(),
                })
                .collect(),
        };
        // The peers drop their meshes for the new view, so nothing of an older epoch can
        // finish any more.
        self.abort_ballots(|_, _| true, AbortKind::PeerLost, TOPOLOGY_CHANGED);
        log::info!(
            "forming epoch {epoch} with {} member(s): {:?}",
            candidates.len(),
            candidates
        );
        for id in &candidates {
            self.send(*id, FromCoordinator::View(view.clone()));
        }
        self.forming = Some(Forming {
            view,
            ready: HashSet::new(),
        });
    }

    /// The view being built failed: build the next one from those of it still here.
    fn reform(&mut self) {
        if let Some(forming) = self.forming.take() {
            let left: Vec<PeerId> = forming.view.members.iter().map(|m| m.id).collect();
            self.form(left);
        }
    }

    fn on_mesh_ready(&mut self, id: PeerId, epoch: u64, ok: bool, reason: &str, now: Instant) {
        let Some(forming) = self.forming.as_mut() else {
            return;
        };
        // A stale answer to a view that was already replaced.
        if forming.view.epoch != epoch || forming.view.rank_of(id).is_none() {
            return;
        }
        if !ok {
            log::warn!("peer {id} could not build the mesh of epoch {epoch}: {reason}");
            // The one reporting is usually the victim of a missing link, not its cause, so it
            // stays; whoever died is lost by then or soon, and drops out of a later attempt.
            self.reform();
            return;
        }
        forming.ready.insert(id);
        if forming.ready.len() < forming.view.members.len() {
            return;
        }
        let Some(forming) = self.forming.take() else {
            return;
        };
        let epoch = forming.view.epoch;
        log::info!(
            "epoch {epoch} committed: {} member(s) in ring order {:?}",
            forming.view.members.len(),
            forming
                .view
                .members
                .iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        );
        for member in &forming.view.members {
            self.asked.remove(&member.id);
            self.send(member.id, FromCoordinator::ViewCommitted { epoch });
        }
        self.view = forming.view;
        self.broken = None;
        self.resuming.clear();
        self.resume_until = None;
        self.unusable.clear();
        // Peers who asked while this view was being built wait for the members' next vote.
        self.decide_topology(now);
    }

    fn on_vote(&mut self, from: PeerId, vote: Vote) {
        let key = BallotKey::of(&vote, from);
        if let Some(decision) = self.ballots.decision(&key) {
            self.send(from, FromCoordinator::Decision(decision.clone()));
            return;
        }
        let stale =
            self.forming.is_some() || vote.epoch != self.view.epoch || self.view.members.is_empty();
        if stale {
            let to = with_voter(&vote.participants, from);
            self.conclude(key, &to, abort(key, AbortKind::PeerLost, TOPOLOGY_CHANGED));
            return;
        }
        let cut_off = with_voter(&vote.participants, from)
            .iter()
            .any(|id| self.unusable.contains(id));
        if let (true, Some(broken)) = (cut_off, self.broken.clone()) {
            let reason = format!("{broken}; call update_topology()");
            let to = with_voter(&vote.participants, from);
            self.conclude(key, &to, abort(key, AbortKind::PeerLost, &reason));
            return;
        }
        let Some(rank) = self.view.rank_of(from) else {
            // Not recorded: a stray vote must not decide a collective of the members.
            let reason = format!("peer {from} is not a member of epoch {}", vote.epoch);
            self.send(from, abort_message(key, AbortKind::Mismatch, &reason));
            return;
        };
        if !vote.participants.contains(&from) {
            let reason =
                format!("rank {rank} (peer {from}) voted on a collective it does not take part in");
            self.send(from, abort_message(key, AbortKind::Mismatch, &reason));
            return;
        }
        if let Some((other, theirs)) = self.ballots.overlapping(key, &vote.participants) {
            // Two groups of one collective that share a peer but differ: the peers disagree
            // on the grouping (a different `step`, say), and neither group could finish.
            let reason = format!(
                "participant lists differ: rank {rank} (peer {from}) sent {:?}, another peer \
                 sent {:?}",
                vote.participants, theirs
            );
            self.conclude(other, &theirs, abort(other, AbortKind::Mismatch, &reason));
            let to = with_voter(&vote.participants, from);
            self.conclude(key, &to, abort(key, AbortKind::Mismatch, &reason));
            return;
        }
        let Some(ballot) = self.ballots.ballot_mut(&key) else {
            self.open_ballot(key, from, rank, vote);
            return;
        };
        if ballot.payloads.contains_key(&from) {
            return;
        }
        let first = ballot.first;
        let first_rank = self.view.rank_of(first).unwrap_or(usize::MAX);
        if ballot.participants != vote.participants {
            let reason = format!(
                "participant lists differ: rank {first_rank} (peer {first}) sent {:?}, \
                 rank {rank} (peer {from}) sent {:?}",
                ballot.participants, vote.participants
            );
            let to = with_voter(&ballot.participants, from);
            self.conclude(key, &to, abort(key, AbortKind::Mismatch, &reason));
            return;
        }
        if ballot.descriptor != vote.descriptor {
            let reason = format!(
                "collectives differ: rank {first_rank} (peer {first}) called `{}`, \
                 rank {rank} (peer {from}) called `{}`",
                ballot.descriptor, vote.descriptor
            );
            self.conclude(
                key,
                &vote.participants,
                abort(key, AbortKind::Mismatch, &reason),
            );
            return;
        }
        if !vote.ok {
            let reason = format!("rank {rank} (peer {from}): {}", vote.reason);
            self.conclude(key, &vote.participants, abort(key, vote.kind, &reason));
            return;
        }
        ballot.payloads.insert(from, vote.payload);
        if ballot.payloads.len() == ballot.participants.len() {
            self.commit(key);
        }
    }

    fn open_ballot(&mut self, key: BallotKey, from: PeerId, rank: usize, vote: Vote) {
        let mut seen = HashSet::new();
        let invalid = vote
            .participants
            .iter()
            .find(|id| !seen.insert(**id) || self.view.rank_of(**id).is_none());
        if let Some(bad) = invalid {
            let reason = format!(
                "rank {rank} (peer {from}) named participants {:?}: peer {bad} is repeated or \
                 not a member of epoch {}",
                vote.participants, key.epoch
            );
            self.conclude(
                key,
                &vote.participants,
                abort(key, AbortKind::Mismatch, &reason),
            );
            return;
        }
        if self.ballots.is_full() {
            let reason = format!("more than {MAX_BALLOTS} collectives in flight");
            self.send(from, abort_message(key, AbortKind::PeerError, &reason));
            return;
        }
        if !vote.ok {
            let reason = format!("rank {rank} (peer {from}): {}", vote.reason);
            self.conclude(key, &vote.participants, abort(key, vote.kind, &reason));
            return;
        }
        let alone = vote.participants.len() == 1;
        let mut payloads = HashMap::new();
        payloads.insert(from, vote.payload);
        self.ballots.open(
            key,
            Ballot {
                participants: vote.participants,
                descriptor: vote.descriptor,
                first: from,
                payloads,
            },
        );
        if alone {
            self.commit(key);
        }
    }

    fn commit(&mut self, key: BallotKey) {
        let Some(mut ballot) = self.ballots.take(&key) else {
            return;
        };
        let payloads = ballot
            .participants
            .iter()
            .map(|id| ballot.payloads.remove(id).unwrap_or_default())
            .collect();
        let decision = Decision {
            epoch: key.epoch,
            seq: key.seq,
            commit: true,
            kind: AbortKind::PeerLost,
            reason: String::new(),
            payloads,
        };
        self.conclude(key, &ballot.participants, decision);
    }

    /// Abort every undecided collective whose key matches.
    fn abort_ballots(
        &mut self,
        matches: impl Fn(&BallotKey, &Ballot) -> bool,
        kind: AbortKind,
        reason: &str,
    ) {
        for key in self.ballots.matching(matches) {
            if let Some(ballot) = self.ballots.ballot(&key) {
                let participants = ballot.participants.clone();
                self.conclude(key, &participants, abort(key, kind, reason));
            }
        }
    }

    /// Record `decision` and send it to every participant still here.
    fn conclude(&mut self, key: BallotKey, participants: &[PeerId], decision: Decision) {
        if !decision.commit {
            log::info!(
                "collective {} of epoch {} aborted: {}",
                key.seq,
                key.epoch,
                decision.reason
            );
            // Every participant drops its links after an abort, so the epoch cannot carry
            // another collective: the next topology vote must form a new one rather than
            // answer "unchanged" to peers that no longer hold a mesh.
            let current = self.forming.is_none() && key.epoch == self.view.epoch;
            if current {
                if self.broken.is_none() {
                    self.broken = Some(format!("collective {} aborted", key.seq));
                }
                self.unusable.extend(participants.iter().copied());
            }
        }
        let mut sent = HashSet::new();
        for id in participants {
            if sent.insert(*id) {
                self.send(*id, FromCoordinator::Decision(decision.clone()));
            }
        }
        self.ballots.record(key, decision);
    }
}

/// A view sent out and not yet committed.
struct Forming {
    view: View,
    ready: HashSet<PeerId>,
}
