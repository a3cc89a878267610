//! The coordinator's state machine alone: no socket, thread or clock. Each test feeds it
//! admissions, messages, losses and the passage of time, and reads what it queued for each
//! peer. (`tests/coordinator.rs` runs the same protocol over TCP.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use thrifty_collective::coordinator::votes::Votes;
use thrifty_collective::message::{
    AbortKind, Decision, FromCoordinator, PeerId, Resume, ToCoordinator, View, Vote,
};

const GRACE: Duration = Duration::from_secs(5);

/// A state machine and the peers' mailboxes.
struct Machine {
    votes: Votes,
    now: Instant,
    /// Each peer's current connection.
    serials: HashMap<PeerId, u64>,
    next_serial: u64,
    inboxes: HashMap<PeerId, Vec<FromCoordinator>>,
    /// Peers whose connection the coordinator must drop, in order.
    dropped: Vec<PeerId>,
}

impl Machine {
    fn new() -> Self {
        Self {
            votes: Votes::new(GRACE),
            now: Instant::now(),
            serials: HashMap::new(),
            next_serial: 0,
            inboxes: HashMap::new(),
            dropped: Vec::new(),
        }
    }

    /// File what the state machine queued.
    fn collect(&mut self) {
        for (id, message) in self.votes.take_outgoing() {
            self.inboxes.entry(id).or_default().push(message);
        }
        self.dropped.extend(self.votes.take_departed());
    }

    fn join(&mut self, id: PeerId) -> Option<Instant> {
        self.join_at(id, &format!("10.0.0.{id}:7000"), None)
    }

    fn join_at(&mut self, id: PeerId, p2p_addr: &str, resume: Option<Resume>) -> Option<Instant> {
        self.next_serial += 1;
        self.serials.insert(id, self.next_serial);
        let grace_ends = self.votes.admit(
            id,
            self.next_serial,
            p2p_addr.into(),
            resume.as_ref(),
            self.now,
        );
        self.collect();
        grace_ends
    }

    /// `message` from `id` on its current connection; whether that connection stays.
    fn say(&mut self, id: PeerId, message: ToCoordinator) -> bool {
        let stays = self.votes.handle(id, self.serials[&id], message, self.now);
        self.collect();
        stays
    }

    fn ask(&mut self, id: PeerId) {
        assert!(self.say(id, ToCoordinator::UpdateTopology));
    }

    fn ready(&mut self, id: PeerId, epoch: u64, ok: bool) {
        let reason = if ok { "" } else { "no link to rank 0" };
        assert!(self.say(
            id,
            ToCoordinator::MeshReady {
                epoch,
                ok,
                reason: reason.into(),
            },
        ));
    }

    fn vote(&mut self, id: PeerId, vote: Vote) {
        assert!(self.say(id, ToCoordinator::Vote(vote)));
    }

    fn lose(&mut self, id: PeerId, why: &str) -> bool {
        let lost = self.votes.lose(id, self.serials[&id], why, self.now);
        self.collect();
        lost
    }

    fn tick(&mut self, after: Duration) {
        self.votes.tick(self.now + after);
        self.collect();
    }

    /// Everything queued for `id` since the last look.
    fn inbox(&mut self, id: PeerId) -> Vec<FromCoordinator> {
        self.inboxes.remove(&id).unwrap_or_default()
    }

    fn silent(&mut self, ids: &[PeerId]) -> bool {
        ids.iter().all(|id| self.inbox(*id).is_empty())
    }

    /// The one view queued for each of `ids` (the same for all).
    fn view_for(&mut self, ids: &[PeerId]) -> View {
        let views: Vec<View> = ids
            .iter()
            .map(|id| match self.inbox(*id).as_slice() {
                [FromCoordinator::View(view)] => view.clone(),
                other => panic!("peer {id} expected one View, got {other:?}"),
            })
            .collect();
        assert!(views.windows(2).all(|w| w[0] == w[1]));
        views[0].clone()
    }

    /// The one decision queued for each of `ids` (the same for all).
    fn decision_for(&mut self, ids: &[PeerId]) -> Decision {
        let decisions: Vec<Decision> = ids
            .iter()
            .map(|id| match self.inbox(*id).as_slice() {
                [FromCoordinator::Decision(decision)] => decision.clone(),
                other => panic!("peer {id} expected one Decision, got {other:?}"),
            })
            .collect();
        assert!(decisions.windows(2).all(|w| w[0] == w[1]));
        decisions[0].clone()
    }

    /// Every member of the view queued for `ids` builds its mesh; the committed epoch.
    fn commit_view(&mut self, ids: &[PeerId]) -> u64 {
        let view = self.view_for(ids);
        self.commit_view_after(ids, view.epoch)
    }

    /// `ids`, the members of the view of `epoch` already received, build their meshes.
    fn commit_view_after(&mut self, ids: &[PeerId], epoch: u64) -> u64 {
        for id in ids {
            self.ready(*id, epoch, true);
        }
        for id in ids {
            assert_eq!(self.inbox(*id), [FromCoordinator::ViewCommitted { epoch }]);
        }
        epoch
    }
}

fn ids(view: &View) -> Vec<PeerId> {
    view.members.iter().map(|m| m.id).collect()
}

/// A machine with a committed view of peers 1..=n; its epoch.
fn world(n: PeerId) -> (Machine, u64) {
    let mut machine = Machine::new();
    machine.join(1);
    machine.ask(1);
    let mut epoch = machine.commit_view(&[1]);
    if n > 1 {
        let all: Vec<PeerId> = (1..=n).collect();
        for id in 2..=n {
            machine.join(id);
            machine.ask(id);
        }
        machine.ask(1);
        epoch = machine.commit_view(&all);
    }
    assert_eq!(
        machine.votes.snapshot().members,
        (1..=n).collect::<Vec<_>>()
    );
    (machine, epoch)
}

fn vote(epoch: u64, seq: u64, participants: &[PeerId], descriptor: &str, payload: &[u8]) -> Vote {
    Vote {
        epoch,
        seq,
        participants: participants.to_vec(),
        descriptor: descriptor.into(),
        ok: true,
        reason: String::new(),
        kind: AbortKind::PeerLost,
        payload: payload.to_vec(),
    }
}

fn failed(vote: Vote, kind: AbortKind, reason: &str) -> Vote {
    Vote {
        ok: false,
        kind,
        reason: reason.into(),
        payload: Vec::new(),
        ..vote
    }
}

const SUM: &str = "all_reduce float32[4] sum";

#[test]
fn a_pending_peer_becomes_a_member_at_the_next_topology_vote() {
    let mut m = Machine::new();
    m.join(1);
    assert_eq!(m.votes.snapshot().pending, [1]);
    assert_eq!(m.votes.snapshot().epoch, 0);
    // With no members yet, the first peer to ask is decided on at once.
    m.ask(1);
    assert_eq!(m.votes.snapshot().forming, Some(1));
    let first = m.commit_view(&[1]);
    assert_eq!(first, 1);
    assert_eq!(m.votes.snapshot().members, [1]);
    assert!(m.votes.snapshot().pending.is_empty());

    m.join(2);
    m.ask(2);
    // The vote waits for the member.
    assert!(m.silent(&[1, 2]));
    let snapshot = m.votes.snapshot();
    assert_eq!((snapshot.pending, snapshot.asked), (vec![2], vec![2]));
    m.ask(1);
    let view = m.view_for(&[1, 2]);
    assert_eq!((view.epoch, ids(&view)), (2, vec![1, 2]));
    m.ready(2, 2, true);
    assert!(m.silent(&[1, 2]), "committed before every member was ready");
    m.ready(1, 2, true);
    for id in [1, 2] {
        assert_eq!(m.inbox(id), [FromCoordinator::ViewCommitted { epoch: 2 }]);
    }
    let snapshot = m.votes.snapshot();
    assert_eq!(snapshot.members, [1, 2]);
    assert!(snapshot.pending.is_empty() && snapshot.asked.is_empty());
    assert_eq!(snapshot.forming, None);
}

#[test]
fn a_peer_that_asks_while_a_view_is_built_waits_for_the_members_next_vote() {
    let (mut m, epoch) = world(1);
    m.join(2);
    m.ask(2);
    m.ask(1);
    let view = m.view_for(&[1, 2]);
    m.join(3);
    m.ask(3);
    // Asking again while its view is on the way changes nothing.
    m.ask(2);
    assert!(m.silent(&[1, 2, 3]));
    m.ready(1, view.epoch, true);
    m.ready(2, view.epoch, true);
    assert_eq!(
        m.inbox(1),
        [FromCoordinator::ViewCommitted { epoch: epoch + 1 }]
    );
    assert_eq!(
        m.inbox(2),
        [FromCoordinator::ViewCommitted { epoch: epoch + 1 }]
    );
    assert!(m.silent(&[3]));
    assert_eq!(m.votes.snapshot().asked, [3]);
    m.ask(1);
    m.ask(2);
    assert_eq!(ids(&m.view_for(&[1, 2, 3])), [1, 2, 3]);
}

#[test]
fn an_unchanged_topology_commits_the_same_epoch_without_a_view() {
    let (mut m, epoch) = world(2);
    m.ask(2);
    assert!(m.silent(&[1, 2]));
    m.ask(1);
    for id in [1, 2] {
        assert_eq!(m.inbox(id), [FromCoordinator::ViewCommitted { epoch }]);
    }
    assert!(m.votes.snapshot().asked.is_empty());
}

#[test]
fn ring_order_groups_peers_by_host_then_by_admission() {
    let mut m = Machine::new();
    m.join_at(1, "10.0.0.2:7000", None);
    m.ask(1);
    m.commit_view(&[1]);
    m.join_at(2, "10.0.0.1:7000", None);
    m.join_at(3, "10.0.0.2:7001", None);
    m.join_at(4, "10.0.0.1:7001", None);
    for id in [2, 3, 4] {
        m.ask(id);
    }
    m.ask(1);
    assert_eq!(ids(&m.view_for(&[1, 2, 3, 4])), [2, 4, 1, 3]);

    let mut m = Machine::new();
    m.join_at(1, "[fe80::2]:7000", None);
    m.ask(1);
    m.commit_view(&[1]);
    m.join_at(2, "[fe80::1]:7000", None);
    m.join_at(3, "[fe80::2]:7001", None);
    for id in [2, 3] {
        m.ask(id);
    }
    m.ask(1);
    assert_eq!(ids(&m.view_for(&[1, 2, 3])), [2, 1, 3]);
}

#[test]
fn a_member_that_leaves_breaks_the_epoch_and_the_next_view_is_smaller() {
    let (mut m, epoch) = world(3);
    assert!(
        !m.say(3, ToCoordinator::Leave),
        "a goodbye ends the connection"
    );
    assert_eq!(m.dropped, [3]);
    for id in [1, 2] {
        match m.inbox(id).as_slice() {
            [FromCoordinator::Broken {
                epoch: broken,
                lost: 3,
                reason,
            }] => {
                assert_eq!(*broken, epoch);
                assert!(reason.contains("peer 3 (rank 2") && reason.contains("left"));
            }
            other => panic!("expected Broken, got {other:?}"),
        }
    }
    assert!(m.silent(&[3]), "a peer that left is told nothing more");
    let snapshot = m.votes.snapshot();
    assert_eq!(
        snapshot.members,
        [1, 2, 3],
        "the view stays until the next one"
    );
    assert!(snapshot.broken.is_some());
    // A broken epoch cannot be committed unchanged: the survivors get a new view.
    m.ask(1);
    m.ask(2);
    let next = m.commit_view(&[1, 2]);
    assert_eq!(next, epoch + 1);
    let snapshot = m.votes.snapshot();
    assert_eq!(snapshot.members, [1, 2]);
    assert_eq!(snapshot.broken, None);
}

#[test]
fn a_lost_member_aborts_the_collectives_that_name_it_and_no_others() {
    let (mut m, epoch) = world(4);
    m.vote(2, vote(epoch, 1, &[2, 3], SUM, &[]));
    // A pair that does not depend on the lost peer.
    m.vote(1, vote(epoch, 1, &[1, 4], SUM, &[]));
    assert!(m.silent(&[1, 2, 3, 4]));
    assert!(m.lose(3, "silent for 5.0 s (heartbeat timeout)"));
    assert_eq!(m.dropped, [3]);
    for id in [1, 2, 4] {
        let inbox = m.inbox(id);
        assert!(
            matches!(&inbox[0], FromCoordinator::Broken { lost: 3, reason, .. }
                if reason.contains("heartbeat timeout")),
            "{inbox:?}"
        );
        let decisions = &inbox[1..];
        if id == 2 {
            match decisions {
                [FromCoordinator::Decision(d)] => {
                    assert_eq!((d.seq, d.commit, d.kind), (1, false, AbortKind::PeerLost));
                    assert!(d.reason.contains("peer 3"), "{}", d.reason);
                }
                other => panic!("expected one Decision, got {other:?}"),
            }
        } else {
            assert!(decisions.is_empty(), "{inbox:?}");
        }
    }
    m.vote(4, vote(epoch, 1, &[1, 4], SUM, &[]));
    let pair = m.decision_for(&[1, 4]);
    assert!(pair.commit, "{pair:?}");
    // A new collective that names the lost peer cannot run.
    m.vote(1, vote(epoch, 2, &[1, 3, 4], SUM, &[]));
    let cut = m.decision_for(&[1]);
    assert_eq!((cut.commit, cut.kind), (false, AbortKind::PeerLost));
    assert!(
        cut.reason.contains("call update_topology()"),
        "{}",
        cut.reason
    );
}

#[test]
fn a_dropped_link_while_a_view_is_built_leaves_the_peer_out_of_the_next_attempt() {
    let (mut m, epoch) = world(1);
    m.join(2);
    m.join(3);
    m.ask(2);
    m.ask(3);
    m.ask(1);
    let view = m.view_for(&[1, 2, 3]);
    m.ready(1, view.epoch, true);
    assert!(m.lose(2, "connection closed"));
    let retry = m.view_for(&[1, 3]);
    assert_eq!((retry.epoch, ids(&retry)), (epoch + 2, vec![1, 3]));
    // The answer to the replaced view is stale.
    m.ready(3, view.epoch, true);
    assert!(m.silent(&[1, 3]));
    m.ready(1, retry.epoch, true);
    m.ready(3, retry.epoch, true);
    assert_eq!(
        m.inbox(3),
        [FromCoordinator::ViewCommitted { epoch: epoch + 2 }]
    );
}

#[test]
fn a_failed_mesh_forms_the_next_view_from_the_same_peers() {
    let (mut m, epoch) = world(1);
    m.join(2);
    m.ask(2);
    m.ask(1);
    let view = m.view_for(&[1, 2]);
    m.ready(2, view.epoch, false);
    let retry = m.view_for(&[1, 2]);
    assert_eq!((retry.epoch, ids(&retry)), (epoch + 2, vec![1, 2]));
    assert_eq!(m.commit_view_after(&[1, 2], retry.epoch), epoch + 2);
}

#[test]
fn every_ok_vote_commits_with_the_payloads_in_participant_order() {
    let (mut m, epoch) = world(3);
    m.vote(3, vote(epoch, 1, &[1, 2, 3], "barrier", b"c"));
    m.vote(1, vote(epoch, 1, &[1, 2, 3], "barrier", b"a"));
    assert!(m.silent(&[1, 2, 3]), "decided before every vote was in");
    m.vote(2, vote(epoch, 1, &[1, 2, 3], "barrier", b"b"));
    let decision = m.decision_for(&[1, 2, 3]);
    assert!(decision.commit);
    assert_eq!((decision.epoch, decision.seq), (epoch, 1));
    assert_eq!(
        decision.payloads,
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    // A collective of one commits on its own vote.
    m.vote(2, vote(epoch, 2, &[2], "barrier", b"x"));
    assert_eq!(m.decision_for(&[2]).payloads, [b"x".to_vec()]);
    assert_eq!(m.votes.snapshot().broken, None);
}

#[test]
fn a_repeated_or_late_vote_gets_the_same_decision() {
    let (mut m, epoch) = world(2);
    m.vote(1, vote(epoch, 1, &[1, 2], SUM, b"1"));
    m.vote(2, vote(epoch, 1, &[1, 2], SUM, b"2"));
    let decision = m.decision_for(&[1, 2]);
    m.vote(2, vote(epoch, 1, &[1, 2], SUM, b"other"));
    assert_eq!(m.decision_for(&[2]), decision);
    assert!(m.silent(&[1]));
    // A second vote by the same peer on an open ballot is not counted twice.
    m.vote(1, vote(epoch, 2, &[1, 2], SUM, b"1"));
    m.vote(1, vote(epoch, 2, &[1, 2], SUM, b"1"));
    assert!(m.silent(&[1, 2]));
}

#[test]
fn a_failed_vote_aborts_every_participant_with_its_kind_and_breaks_the_epoch() {
    let (mut m, epoch) = world(2);
    m.vote(1, vote(epoch, 1, &[1, 2], SUM, &[]));
    let bad = failed(
        vote(epoch, 1, &[1, 2], SUM, &[]),
        AbortKind::PeerError,
        "array must be finite to quantize",
    );
    m.vote(2, bad);
    let decision = m.decision_for(&[1, 2]);
    assert_eq!(
        (decision.commit, decision.kind),
        (false, AbortKind::PeerError)
    );
    assert!(decision
        .reason
        .contains("rank 1 (peer 2): array must be finite"));
    assert_eq!(
        m.votes.snapshot().broken.as_deref(),
        Some("collective 1 aborted")
    );
    // The participants dropped their links: the next vote forms a new epoch.
    m.ask(1);
    m.ask(2);
    assert_eq!(m.commit_view(&[1, 2]), epoch + 1);
}

#[test]
fn a_first_vote_that_failed_aborts_at_once() {
    let (mut m, epoch) = world(2);
    let late = failed(
        vote(epoch, 1, &[1, 2], SUM, &[]),
        AbortKind::Timeout,
        "collective 1 ran past its deadline",
    );
    m.vote(1, late);
    let decision = m.decision_for(&[1, 2]);
    assert_eq!(
        (decision.commit, decision.kind),
        (false, AbortKind::Timeout)
    );
    assert!(decision.reason.contains("rank 0 (peer 1)"));
}

#[test]
fn different_descriptors_or_shapes_abort_with_a_mismatch_naming_both() {
    let (mut m, epoch) = world(2);
    m.vote(1, vote(epoch, 1, &[1, 2], "all_reduce float32[4] sum", &[]));
    m.vote(2, vote(epoch, 1, &[1, 2], "all_reduce float32[8] sum", &[]));
    let decision = m.decision_for(&[1, 2]);
    assert_eq!(
        (decision.commit, decision.kind),
        (false, AbortKind::Mismatch)
    );
    let reason = &decision.reason;
    assert!(reason.contains("float32[4]") && reason.contains("float32[8]"));
    assert!(reason.contains("rank 0 (peer 1)") && reason.contains("rank 1 (peer 2)"));

    let (mut m, epoch) = world(2);
    m.vote(1, vote(epoch, 1, &[1, 2], "barrier", &[]));
    m.vote(2, vote(epoch, 1, &[1, 2], "broadcast int64[3] root 0", &[]));
    assert_eq!(m.decision_for(&[1, 2]).kind, AbortKind::Mismatch);
}

#[test]
fn different_participant_lists_abort_with_a_mismatch() {
    let (mut m, epoch) = world(3);
    m.vote(1, vote(epoch, 1, &[1, 2, 3], SUM, &[]));
    m.vote(2, vote(epoch, 1, &[1, 3, 2], SUM, &[]));
    let decision = m.decision_for(&[1, 2, 3]);
    assert_eq!(
        (decision.commit, decision.kind),
        (false, AbortKind::Mismatch)
    );
    assert!(decision.reason.contains("participant lists differ"));
}

#[test]
fn disjoint_groups_share_a_sequence_number_and_overlapping_ones_abort() {
    let (mut m, epoch) = world(4);
    m.vote(1, vote(epoch, 1, &[1, 2], "pair_average", b"1"));
    m.vote(3, vote(epoch, 1, &[3, 4], "pair_average", b"3"));
    m.vote(4, vote(epoch, 1, &[3, 4], "pair_average", b"4"));
    assert!(m.decision_for(&[3, 4]).commit);
    m.vote(2, vote(epoch, 1, &[1, 2], "pair_average", b"2"));
    assert!(m.decision_for(&[1, 2]).commit);

    // Peer 2 takes part in both groups: the peers disagree on the grouping.
    m.vote(1, vote(epoch, 2, &[1, 2], "pair_average", &[]));
    m.vote(3, vote(epoch, 2, &[2, 3], "pair_average", &[]));
    let first = m.decision_for(&[1]);
    assert_eq!((first.commit, first.kind), (false, AbortKind::Mismatch));
    assert!(first.reason.contains("participant lists differ"));
    let inbox = m.inbox(2);
    assert_eq!(inbox.len(), 2, "peer 2 hears about both groups: {inbox:?}");
    assert_eq!(m.decision_for(&[3]).kind, AbortKind::Mismatch);
}

#[test]
fn a_vote_on_a_replaced_epoch_is_aborted_with_peer_lost() {
    let (mut m, epoch) = world(2);
    // Open when the next view forms: the peers drop their meshes, so it cannot finish.
    m.vote(1, vote(epoch, 1, &[1, 2], SUM, &[]));
    m.join(3);
    m.ask(3);
    m.ask(1);
    m.ask(2);
    let inbox = m.inbox(1);
    assert!(
        matches!(inbox.as_slice(), [FromCoordinator::Decision(d), FromCoordinator::View(v)]
            if !d.commit && d.kind == AbortKind::PeerLost
                && d.reason.contains("topology changed") && v.epoch == epoch + 1),
        "{inbox:?}"
    );
    // Still being built.
    m.vote(2, vote(epoch + 1, 1, &[1, 2, 3], SUM, &[]));
    let building = m.inbox(2);
    assert!(
        matches!(building.as_slice(),
            [FromCoordinator::Decision(_), FromCoordinator::View(_), FromCoordinator::Decision(d)]
            if d.kind == AbortKind::PeerLost && d.epoch == epoch + 1),
        "{building:?}"
    );
    m.inbox(1);
    m.inbox(3);
    m.commit_view_after(&[1, 2, 3], epoch + 1);
    // Of the epoch before.
    m.vote(3, vote(epoch, 2, &[1, 2, 3], SUM, &[]));
    let stale = m.decision_for(&[1, 2, 3]);
    assert_eq!((stale.commit, stale.kind), (false, AbortKind::PeerLost));
    assert_eq!(
        m.votes.snapshot().broken,
        None,
        "a stale vote breaks nothing"
    );
}

#[test]
fn a_vote_from_outside_the_view_or_naming_strangers_is_a_mismatch() {
    let (mut m, epoch) = world(2);
    m.join(3);
    m.vote(3, vote(epoch, 1, &[1, 2, 3], SUM, &[]));
    let stray = m.decision_for(&[3]);
    assert_eq!(stray.kind, AbortKind::Mismatch);
    assert!(stray.reason.contains("not a member"));
    assert!(
        m.silent(&[1, 2]),
        "a stray vote must not decide the members' collective"
    );

    let cases: [(&[PeerId], &str); 3] = [
        (&[1, 1], "repeated"),
        (&[1, 9], "peer 9"),
        (&[2], "does not take part"),
    ];
    for (participants, why) in cases {
        let (mut m, epoch) = world(2);
        m.vote(1, vote(epoch, 1, participants, SUM, &[]));
        let decision = m.decision_for(&[1]);
        assert_eq!(decision.kind, AbortKind::Mismatch, "{participants:?}");
        assert!(decision.reason.contains(why), "{}", decision.reason);
    }
}

#[test]
fn a_resuming_world_waits_for_its_members_then_goes_on_without_the_missing() {
    let mut m = Machine::new();
    let resume = Resume {
        epoch: 7,
        members: vec![1, 2, 3],
    };
    let grace_ends = m.join_at(1, "10.0.0.1:7000", Some(resume.clone()));
    assert_eq!(grace_ends, Some(m.now + GRACE));
    m.ask(1);
    assert!(
        m.silent(&[1]),
        "the first view waits for the resuming members"
    );
    assert_eq!(
        m.join_at(2, "10.0.0.2:7000", Some(resume)),
        None,
        "one grace period"
    );
    m.ask(2);
    m.tick(GRACE / 2);
    assert!(m.silent(&[1, 2]));
    m.tick(GRACE);
    let view = m.view_for(&[1, 2]);
    assert_eq!(
        (view.epoch, ids(&view)),
        (8, vec![1, 2]),
        "numbered past the resumed epoch"
    );
}

#[test]
fn a_resuming_world_forms_at_once_when_every_member_is_back() {
    let mut m = Machine::new();
    let resume = Resume {
        epoch: 3,
        members: vec![1, 2],
    };
    m.join_at(1, "10.0.0.1:7000", Some(resume.clone()));
    m.join_at(2, "10.0.0.2:7000", Some(resume));
    m.ask(2);
    assert!(m.silent(&[2]));
    m.ask(1);
    let view = m.view_for(&[1, 2]);
    assert_eq!((view.epoch, ids(&view)), (4, vec![1, 2]));
    // Once a view is committed, a late resumer only numbers the epochs past its own.
    m.commit_view_after(&[1, 2], 4);
    let late = Resume {
        epoch: 10,
        members: vec![3],
    };
    assert_eq!(m.join_at(3, "10.0.0.3:7000", Some(late)), None);
    m.ask(3);
    m.ask(1);
    m.ask(2);
    assert_eq!(m.view_for(&[1, 2, 3]).epoch, 11);
}

#[test]
fn what_a_replaced_connection_says_changes_nothing() {
    let (mut m, epoch) = world(2);
    let old = m.serials[&2];
    assert!(m.lose(2, "connection closed"));
    m.inbox(1);
    m.join(2);
    let new = m.serials[&2];
    assert_ne!(old, new);
    assert!(
        !m.votes.lose(2, old, "connection reset", m.now),
        "the old connection's loss is not the peer's"
    );
    assert!(!m.votes.handle(2, old, ToCoordinator::UpdateTopology, m.now));
    assert!(!m.votes.handle(2, old, ToCoordinator::Leave, m.now));
    m.collect();
    assert!(m.votes.is_connected(2) && m.votes.is_current(2, new));
    assert!(m.votes.snapshot().asked.is_empty());
    assert_eq!(m.dropped, [2], "only the first connection was dropped");
    // The new connection is the peer.
    m.ask(2);
    m.ask(1);
    assert_eq!(m.commit_view(&[1, 2]), epoch + 1);
}

#[test]
fn a_greeting_twice_drops_the_peer() {
    let (mut m, _) = world(2);
    let again = ToCoordinator::Hello {
        id: 2,
        p2p_addr: "10.0.0.2:7000".into(),
        resume: None,
    };
    assert!(!m.say(2, again));
    assert_eq!(m.dropped, [2]);
    assert!(!m.votes.is_connected(2));
    assert!(!m.say(1, ToCoordinator::WhoLeads));
    assert_eq!(m.dropped, [2, 1]);
}

#[test]
fn leadership_counts_the_connected_members_and_closing_forgets_every_peer() {
    let (mut m, epoch) = world(3);
    m.join(4);
    assert_eq!(
        m.votes.leadership(),
        FromCoordinator::Leader { epoch, live: 3 }
    );
    m.lose(2, "connection closed");
    assert_eq!(
        m.votes.leadership(),
        FromCoordinator::Leader { epoch, live: 2 }
    );
    m.dropped.clear();
    m.votes.disconnect_all();
    m.collect();
    m.dropped.sort_unstable();
    assert_eq!(m.dropped, [1, 3, 4]);
    assert!(m.votes.snapshot().pending.is_empty());
    assert_eq!(
        m.votes.leadership(),
        FromCoordinator::Leader { epoch, live: 0 }
    );
}
