//! The ballot box of the commit votes: the collectives not yet decided, and the decisions
//! kept so that a late (or repeated) vote is answered the same.
//!
//! It only keeps the votes; [`Votes`](super::votes::Votes) decides.

use std::collections::{HashMap, VecDeque};

use crate::message::{AbortKind, Decision, FromCoordinator, PeerId, Vote};

/// Decided outcomes kept so that a late (or repeated) vote gets the same decision.
pub const DECIDED_KEPT: usize = 1024;
/// Undecided collectives at once; beyond this a peer is misbehaving, and memory is bounded.
pub const MAX_BALLOTS: usize = 4096;

/// A collective of one epoch is the `seq`-th of every peer taking part; subgroup collectives
/// (`pair_average`) run side by side under one `seq`, told apart by their lowest member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BallotKey {
    pub epoch: u64,
    pub seq: u64,
    pub group: PeerId,
}

impl BallotKey {
    pub fn of(vote: &Vote, from: PeerId) -> Self {
        Self {
            epoch: vote.epoch,
            seq: vote.seq,
            group: vote.participants.iter().copied().min().unwrap_or(from),
        }
    }
}

/// `participants` and the voter, who must hear the decision even if it left itself out.
pub fn with_voter(participants: &[PeerId], from: PeerId) -> Vec<PeerId> {
    let mut to = participants.to_vec();
    if !to.contains(&from) {
        to.push(from);
    }
    to
}

/// The decision that aborts the collective of `key`.
pub fn abort(key: BallotKey, kind: AbortKind, reason: &str) -> Decision {
    Decision {
        epoch: key.epoch,
        seq: key.seq,
        commit: false,
        kind,
        reason: reason.to_owned(),
        payloads: Vec::new(),
    }
}

pub fn abort_message(key: BallotKey, kind: AbortKind, reason: &str) -> FromCoordinator {
    FromCoordinator::Decision(abort(key, kind, reason))
}

/// The votes so far on one collective.
pub struct Ballot {
    pub participants: Vec<PeerId>,
    pub descriptor: String,
    /// Who set `participants` and `descriptor`, to name in a mismatch.
    pub first: PeerId,
    pub payloads: HashMap<PeerId, Vec<u8>>,
}

/// The open ballots and the kept decisions of one coordinator.
#[derive(Default)]
pub struct BallotBox {
    open: HashMap<BallotKey, Ballot>,
    decided: HashMap<BallotKey, Decision>,
    decided_order: VecDeque<BallotKey>,
}

impl BallotBox {
    /// The decision already taken on `key`, if it is still kept.
    pub fn decision(&self, key: &BallotKey) -> Option<&Decision> {
        self.decided.get(key)
    }

    pub fn ballot(&self, key: &BallotKey) -> Option<&Ballot> {
        self.open.get(key)
    }

    pub fn ballot_mut(&mut self, key: &BallotKey) -> Option<&mut Ballot> {
        self.open.get_mut(key)
    }

    /// Whether no further ballot may be opened.
    pub fn is_full(&self) -> bool {
        self.open.len() >= MAX_BALLOTS
    }

    pub fn open(&mut self, key: BallotKey, ballot: Ballot) {
        self.open.insert(key, ballot);
    }

    /// Close the ballot of `key` undecided, handing back its votes.
    pub fn take(&mut self, key: &BallotKey) -> Option<Ballot> {
        self.open.remove(key)
    }

    /// An open ballot of the same collective, other than `key`, that shares a participant:
    /// its key and its participants.
    pub fn overlapping(
        &self,
        key: BallotKey,
        participants: &[PeerId],
    ) -> Option<(BallotKey, Vec<PeerId>)> {
        self.open
            .iter()
            .find(|(k, ballot)| {
                (k.epoch, k.seq) == (key.epoch, key.seq)
                    && **k != key
                    && ballot
                        .participants
                        .iter()
                        .any(|id| participants.contains(id))
            })
            .map(|(k, ballot)| (*k, ballot.participants.clone()))
    }

    /// The open ballots that `matches`.
    pub fn matching(&self, matches: impl Fn(&BallotKey, &Ballot) -> bool) -> Vec<BallotKey> {
        self.open
            .iter()
            .filter(|(k, ballot)| matches(k, ballot))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Close the ballot of `key` (if open) with `decision`, and keep the decision for late
    /// votes, forgetting the oldest beyond [`DECIDED_KEPT`].
    pub fn record(&mut self, key: BallotKey, decision: Decision) {
        self.open.remove(&key);
        if self.decided.insert(key, decision).is_none() {
            self.decided_order.push_back(key);
        }
        while self.decided_order.len() > DECIDED_KEPT {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
    }
}
