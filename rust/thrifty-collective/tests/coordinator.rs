//! The coordinator and the control client over real sockets on 127.0.0.1.
//!
//! Peers here answer `MeshReady` without building a mesh: these tests are about membership
//! and votes. Some peers speak the raw protocol, to die, go silent or send garbage exactly
//! when a test needs them to. Every wait has a deadline, so no test can hang.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::{client_handshake, Purpose, Secret};
use thrifty_collective::control::{Control, ViewEvent};
use thrifty_collective::coordinator::{Coordinator, CoordinatorOptions, CoordinatorSnapshot};
use thrifty_collective::frame::{
    recv_control, send_control, write_frame, FrameKind, MAX_CONTROL_FRAME, PROTOCOL_VERSION,
};
use thrifty_collective::message::{
    AbortKind, Decision, FromCoordinator, PeerId, Resume, ToCoordinator, View, Vote,
};
use thrifty_collective::signal::OpSignal;
use thrifty_core::CoreError;

/// The longest any single step may take before a test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(15);

fn secret() -> Secret {
    Secret::new(b"coordinator test secret".to_vec()).expect("secret")
}

fn soon() -> Instant {
    Instant::now() + PATIENCE
}

fn start() -> Coordinator {
    start_with(CoordinatorOptions::default())
}

fn start_with(options: CoordinatorOptions) -> Coordinator {
    Coordinator::start("127.0.0.1:0", secret(), options).expect("start")
}

fn fast_heartbeats() -> CoordinatorOptions {
    CoordinatorOptions {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(1),
        ..CoordinatorOptions::default()
    }
}

fn p2p(id: PeerId) -> String {
    format!("127.0.0.1:{}", 20_000 + id)
}

fn connect(coordinator: &Coordinator, id: PeerId) -> Control {
    connect_at(coordinator, id, &p2p(id))
}

fn connect_at(coordinator: &Coordinator, id: PeerId, p2p_addr: &str) -> Control {
    Control::connect(
        &coordinator.address(),
        &secret(),
        id,
        p2p_addr,
        Duration::from_secs(5),
    )
    .expect("connect")
}

/// Poll the coordinator until `done` holds; fails the test after `PATIENCE`.
fn wait_for(
    coordinator: &Coordinator,
    what: &str,
    done: impl Fn(&CoordinatorSnapshot) -> bool,
) -> CoordinatorSnapshot {
    let deadline = soon();
    loop {
        let snapshot = coordinator.snapshot();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}: {snapshot:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Finish a topology vote this peer has asked for: the view it built (if any) and the
/// committed epoch.
fn finish_update(control: &Control) -> (Option<View>, u64) {
    let mut built = None;
    loop {
        match control.next_view_event(soon()).expect("view event") {
            ViewEvent::Build(view) => {
                control
                    .mesh_ready(view.epoch, true, "")
                    .expect("mesh_ready");
                built = Some(view);
            }
            ViewEvent::Committed(epoch) => return (built, epoch),
        }
    }
}

fn update(control: &Control) -> (Option<View>, u64) {
    control.request_update().expect("request_update");
    finish_update(control)
}

/// Every peer asks at once; the outcome of each, in order.
fn update_all(controls: &[&Control]) -> Vec<(Option<View>, u64)> {
    thread::scope(|scope| {
        let handles: Vec<_> = controls
            .iter()
            .map(|c| scope.spawn(move || update(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("peer thread"))
            .collect()
    })
}

/// Admit `pending` (already connected) into the view of `members`: the pending ones ask
/// first, so that the vote, decided when the last member asks, includes all of them.
fn grow(
    coordinator: &Coordinator,
    members: &[&Control],
    pending: &[&Control],
    pending_ids: &[PeerId],
) -> Vec<(Option<View>, u64)> {
    for control in pending {
        control.request_update().expect("request_update");
    }
    wait_for(coordinator, "the pending peers to ask", |s| {
        pending_ids.iter().all(|id| s.asked.contains(id))
    });
    thread::scope(|scope| {
        let waiting: Vec<_> = pending
            .iter()
            .map(|c| scope.spawn(move || finish_update(c)))
            .collect();
        let asking: Vec<_> = members
            .iter()
            .map(|c| scope.spawn(move || update(c)))
            .collect();
        asking
            .into_iter()
            .chain(waiting)
            .map(|h| h.join().expect("peer thread"))
            .collect()
    })
}

/// A coordinator with a committed view of `n` peers (ids 1..=n); returns its epoch.
fn world(n: usize) -> (Coordinator, Vec<Control>, u64) {
    world_with(n, CoordinatorOptions::default())
}

fn world_with(n: usize, options: CoordinatorOptions) -> (Coordinator, Vec<Control>, u64) {
    let coordinator = start_with(options);
    let first = connect(&coordinator, 1);
    let (_, mut epoch) = update(&first);
    let rest: Vec<Control> = (2..=n as PeerId)
        .map(|id| connect(&coordinator, id))
        .collect();
    if n > 1 {
        let ids: Vec<PeerId> = (2..=n as PeerId).collect();
        let outcomes = grow(
            &coordinator,
            &[&first],
            &rest.iter().collect::<Vec<_>>(),
            &ids,
        );
        epoch = outcomes[0].1;
        assert!(outcomes
            .iter()
            .all(|(view, e)| *e == epoch && view.is_some()));
    }
    let mut controls = vec![first];
    controls.extend(rest);
    let snapshot = coordinator.snapshot();
    assert_eq!(snapshot.members.len(), n);
    assert_eq!(snapshot.epoch, epoch);
    (coordinator, controls, epoch)
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

fn decision(control: &Control, epoch: u64, seq: u64) -> Decision {
    control
        .await_decision(epoch, seq, soon())
        .expect("decision")
}

/// Wait until `signal` is raised, and return why.
fn raised(signal: &OpSignal) -> (AbortKind, String) {
    let deadline = soon();
    while !signal.is_raised() {
        assert!(Instant::now() < deadline, "the signal was never raised");
        thread::sleep(Duration::from_millis(5));
    }
    signal.reason().expect("a raised signal has a reason")
}

/// Wait until `control` has heard that `epoch` is broken, and return why.
fn broken(control: &Control, epoch: u64) -> String {
    let deadline = soon();
    loop {
        if let Some(reason) = control.broken(epoch) {
            return reason;
        }
        assert!(Instant::now() < deadline, "epoch {epoch} never broke");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A peer that speaks the protocol by hand.
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    fn tcp(coordinator: &Coordinator) -> TcpStream {
        let stream = TcpStream::connect(coordinator.address()).expect("tcp connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        stream
    }

    fn authenticated(coordinator: &Coordinator) -> Self {
        let mut stream = Self::tcp(coordinator);
        client_handshake(&mut stream, &secret(), Purpose::Control, soon()).expect("handshake");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        Self { stream }
    }

    fn hello(coordinator: &Coordinator, id: PeerId) -> Self {
        let mut peer = Self::authenticated(coordinator);
        peer.send(&ToCoordinator::Hello {
            id,
            p2p_addr: p2p(id),
            resume: None,
        });
        match peer.recv() {
            FromCoordinator::Welcome { .. } => peer,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    fn send(&mut self, message: &ToCoordinator) {
        send_control(&mut self.stream, message).expect("raw send");
    }

    /// The next message that is not a heartbeat.
    fn recv(&mut self) -> FromCoordinator {
        loop {
            match recv_control(&mut self.stream).expect("raw recv") {
                FromCoordinator::Heartbeat => {}
                other => return other,
            }
        }
    }

    /// Whether the coordinator closes this connection (rather than leaving it open).
    fn dropped_by_coordinator(&mut self) -> bool {
        dropped(&mut self.stream)
    }
}

/// Read until the other side closes: true on EOF or reset, false if it stays open.
fn dropped(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn header(version: u8, kind: u8, len: u32) -> Vec<u8> {
    let mut bytes = b"TH".to_vec();
    bytes.push(version);
    bytes.push(kind);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes
}

#[test]
fn bootstrap_admits_the_first_peer_alone_and_later_ones_when_the_members_ask() {
    let coordinator = start();
    let first = connect(&coordinator, 1);
    let (view, epoch) = update(&first);
    let view = view.expect("a first view is built");
    assert_eq!(epoch, view.epoch);
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.members[0].id, 1);
    assert_eq!(view.members[0].addr, p2p(1));

    let second = connect(&coordinator, 2);
    second.request_update().expect("request_update");
    wait_for(&coordinator, "peer 2 to ask", |s| s.asked == vec![2]);
    // The member has not asked, so the vote cannot be decided.
    let waited = second.next_view_event(Instant::now() + Duration::from_millis(300));
    assert!(matches!(waited, Err(CoreError::Timeout(_))), "{waited:?}");
    let snapshot = coordinator.snapshot();
    assert_eq!(snapshot.epoch, epoch);
    assert_eq!(snapshot.members, vec![1]);
    assert_eq!(snapshot.pending, vec![2]);

    let outcomes = thread::scope(|scope| {
        let waiting = scope.spawn(|| finish_update(&second));
        let asking = scope.spawn(|| update(&first));
        [
            asking.join().expect("first"),
            waiting.join().expect("second"),
        ]
    });
    for (view, committed) in &outcomes {
        let view = view.as_ref().expect("a new view is built");
        assert_eq!(view.epoch, *committed);
        assert!(*committed > epoch);
        assert_eq!(
            view.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
    let snapshot = coordinator.snapshot();
    assert_eq!(snapshot.members, vec![1, 2]);
    assert!(snapshot.pending.is_empty());
    assert_eq!(snapshot.broken, None);
}

#[test]
fn ring_order_groups_peers_by_host_then_by_age() {
    let coordinator = start();
    let first = connect_at(&coordinator, 1, "10.0.0.2:7000");
    update(&first);
    let others = [
        connect_at(&coordinator, 2, "10.0.0.1:7000"),
        connect_at(&coordinator, 3, "10.0.0.2:7001"),
        connect_at(&coordinator, 4, "10.0.0.1:7001"),
    ];
    let outcomes = grow(
        &coordinator,
        &[&first],
        &others.iter().collect::<Vec<_>>(),
        &[2, 3, 4],
    );
    for (view, _) in &outcomes {
        let ids: Vec<PeerId> = view
            .as_ref()
            .expect("view")
            .members
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![2, 4, 1, 3]);
    }
    assert_eq!(coordinator.snapshot().members, vec![2, 4, 1, 3]);
}

#[test]
fn an_unchanged_topology_commits_the_same_epoch_without_a_new_view() {
    let (_coordinator, controls, epoch) = world(2);
    let outcomes = update_all(&controls.iter().collect::<Vec<_>>());
    for (view, committed) in outcomes {
        assert_eq!(view, None);
        assert_eq!(committed, epoch);
    }
}

#[test]
fn votes_commit_with_every_payload_in_participant_order() {
    let (_coordinator, controls, epoch) = world(3);
    let participants = [3, 1, 2];
    for (i, control) in controls.iter().enumerate() {
        let id = i as PeerId + 1;
        control
            .vote(vote(epoch, 1, &participants, "barrier", &[id as u8; 3]))
            .expect("vote");
    }
    for control in &controls {
        let decision = decision(control, epoch, 1);
        assert!(decision.commit, "{decision:?}");
        assert_eq!(decision.payloads, vec![vec![3; 3], vec![1; 3], vec![2; 3]]);
    }
}

#[test]
fn one_failed_vote_aborts_every_participant_with_its_kind() {
    let (_coordinator, controls, epoch) = world(3);
    let participants = [1, 2, 3];
    let signals: Vec<Arc<OpSignal>> = controls
        .iter()
        .map(|c| {
            let signal = OpSignal::new();
            c.watch(epoch, 1, participants.to_vec(), Arc::clone(&signal));
            signal
        })
        .collect();
    controls[0]
        .vote(vote(epoch, 1, &participants, "all_reduce f32[4] sum", &[]))
        .expect("vote");
    let mut failed = vote(epoch, 1, &participants, "all_reduce f32[4] sum", &[]);
    failed.ok = false;
    failed.kind = AbortKind::PeerError;
    failed.reason = "input holds NaN".into();
    controls[1].vote(failed).expect("vote");
    // The third participant never votes: the abort reaches it anyway.
    for (control, signal) in controls.iter().zip(&signals) {
        let decision = decision(control, epoch, 1);
        assert!(!decision.commit);
        assert_eq!(decision.kind, AbortKind::PeerError);
        assert!(
            decision.reason.contains("input holds NaN"),
            "{}",
            decision.reason
        );
        assert!(decision.reason.contains("peer 2"), "{}", decision.reason);
        let (kind, reason) = raised(signal);
        assert_eq!(kind, AbortKind::PeerError);
        assert_eq!(reason, decision.reason);
    }
    for control in &controls {
        control.unwatch();
    }
}

#[test]
fn different_descriptors_abort_with_a_mismatch_naming_both() {
    let (_coordinator, controls, epoch) = world(2);
    controls[0]
        .vote(vote(epoch, 1, &[1, 2], "all_reduce f32[10] sum", &[]))
        .expect("vote");
    controls[1]
        .vote(vote(epoch, 1, &[1, 2], "all_reduce f32[11] sum", &[]))
        .expect("vote");
    for control in &controls {
        let decision = decision(control, epoch, 1);
        assert!(!decision.commit);
        assert_eq!(decision.kind, AbortKind::Mismatch);
        assert!(decision.reason.contains("f32[10]"), "{}", decision.reason);
        assert!(decision.reason.contains("f32[11]"), "{}", decision.reason);
        assert!(decision.reason.contains("rank"), "{}", decision.reason);
    }
}

#[test]
fn different_participant_lists_abort_with_a_mismatch() {
    let (_coordinator, controls, epoch) = world(3);
    controls[0]
        .vote(vote(epoch, 1, &[1, 2], "pair_average", &[]))
        .expect("vote");
    controls[1]
        .vote(vote(epoch, 1, &[1, 2, 3], "pair_average", &[]))
        .expect("vote");
    for control in &controls[..2] {
        let decision = decision(control, epoch, 1);
        assert!(!decision.commit);
        assert_eq!(decision.kind, AbortKind::Mismatch);
    }
}

#[test]
fn a_subset_vote_commits_without_the_other_members() {
    let (_coordinator, controls, epoch) = world(4);
    let pair = [4, 2];
    controls[1]
        .vote(vote(epoch, 7, &pair, "pair_average f32[8]", b"b"))
        .expect("vote");
    controls[3]
        .vote(vote(epoch, 7, &pair, "pair_average f32[8]", b"d"))
        .expect("vote");
    let first = decision(&controls[1], epoch, 7);
    assert!(first.commit, "{first:?}");
    assert_eq!(first.payloads, vec![b"d".to_vec(), b"b".to_vec()]);
    assert_eq!(decision(&controls[3], epoch, 7), first);

    // The other pair runs its own collective at the same time.
    controls[0]
        .vote(vote(epoch, 8, &[1, 3], "pair_average f32[8]", b"a"))
        .expect("vote");
    controls[2]
        .vote(vote(epoch, 8, &[1, 3], "pair_average f32[8]", b"c"))
        .expect("vote");
    assert!(decision(&controls[0], epoch, 8).commit);
    assert!(decision(&controls[2], epoch, 8).commit);

    // A repeated vote on a decided collective gets the same decision again.
    controls[1]
        .vote(vote(epoch, 7, &pair, "pair_average f32[8]", b"b"))
        .expect("vote");
    assert_eq!(decision(&controls[1], epoch, 7), first);
}

#[test]
fn a_vote_on_a_stale_epoch_is_aborted_with_peer_lost() {
    let (_coordinator, controls, epoch) = world(2);
    controls[0]
        .vote(vote(epoch - 1, 1, &[1, 2], "barrier", &[]))
        .expect("vote");
    let decision = decision(&controls[0], epoch - 1, 1);
    assert!(!decision.commit);
    assert_eq!(decision.kind, AbortKind::PeerLost);
    assert!(
        decision.reason.contains("update_topology"),
        "{}",
        decision.reason
    );
}

#[test]
fn a_lost_member_breaks_the_epoch_aborts_votes_and_leaves_a_smaller_view() {
    let coordinator = start();
    let a = connect(&coordinator, 1);
    update(&a);
    let b = connect(&coordinator, 2);
    let mut raw = RawPeer::hello(&coordinator, 3);
    b.request_update().expect("request_update");
    raw.send(&ToCoordinator::UpdateTopology);
    wait_for(&coordinator, "peers 2 and 3 to ask", |s| {
        s.asked == vec![2, 3]
    });
    let epoch = thread::scope(|scope| {
        let asking = scope.spawn(|| update(&a));
        let waiting = scope.spawn(|| finish_update(&b));
        let view = match raw.recv() {
            FromCoordinator::View(view) => view,
            other => panic!("expected a view, got {other:?}"),
        };
        raw.send(&ToCoordinator::MeshReady {
            epoch: view.epoch,
            ok: true,
            reason: String::new(),
        });
        assert_eq!(
            raw.recv(),
            FromCoordinator::ViewCommitted { epoch: view.epoch }
        );
        assert_eq!(asking.join().expect("a").1, view.epoch);
        assert_eq!(waiting.join().expect("b").1, view.epoch);
        view.epoch
    });

    let signals = [OpSignal::new(), OpSignal::new()];
    a.watch(epoch, 1, vec![1, 2, 3], Arc::clone(&signals[0]));
    b.watch(epoch, 1, vec![1, 2, 3], Arc::clone(&signals[1]));
    a.vote(vote(epoch, 1, &[1, 2, 3], "all_reduce f32[4] sum", &[]))
        .expect("vote");
    // Dies without a goodbye.
    raw.stream.shutdown(Shutdown::Both).expect("shutdown");
    drop(raw);

    for (control, signal) in [&a, &b].into_iter().zip(&signals) {
        let reason = broken(control, epoch);
        assert!(reason.contains("peer 3"), "{reason}");
        assert!(reason.contains("lost"), "{reason}");
        let decision = decision(control, epoch, 1);
        assert!(!decision.commit);
        assert_eq!(decision.kind, AbortKind::PeerLost);
        assert_eq!(raised(signal).0, AbortKind::PeerLost);
        control.unwatch();
    }
    assert!(coordinator.snapshot().broken.is_some());

    // The survivors dropped their links with the aborted collective: nothing more runs in
    // the broken epoch.
    a.vote(vote(epoch, 2, &[1, 2], "barrier", &[]))
        .expect("vote");
    let refused = decision(&a, epoch, 2);
    assert!(!refused.commit);
    assert_eq!(refused.kind, AbortKind::PeerLost);

    let outcomes = update_all(&[&a, &b]);
    for (view, committed) in &outcomes {
        let view = view.as_ref().expect("the survivors build a new view");
        assert!(*committed > epoch);
        assert_eq!(
            view.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
    let snapshot = coordinator.snapshot();
    assert_eq!(snapshot.members, vec![1, 2]);
    assert_eq!(snapshot.broken, None);

    let epoch = outcomes[0].1;
    a.vote(vote(epoch, 1, &[1, 2], "barrier", &[]))
        .expect("vote");
    b.vote(vote(epoch, 1, &[1, 2], "barrier", &[]))
        .expect("vote");
    assert!(decision(&a, epoch, 1).commit);
    assert!(decision(&b, epoch, 1).commit);
}

#[test]
fn a_member_that_leaves_breaks_the_epoch_for_the_others() {
    let (coordinator, mut controls, epoch) = world(3);
    let leaving = controls.pop().expect("three peers");
    leaving.close();
    drop(leaving);
    for control in &controls {
        let reason = broken(control, epoch);
        assert!(reason.contains("peer 3"), "{reason}");
    }
    let outcomes = update_all(&controls.iter().collect::<Vec<_>>());
    for (view, _) in outcomes {
        assert_eq!(view.expect("view").members.len(), 2);
    }
    assert_eq!(coordinator.snapshot().members, vec![1, 2]);
}

#[test]
fn a_peer_lost_while_its_view_is_built_is_left_out_of_the_next_attempt() {
    let coordinator = start();
    let a = connect(&coordinator, 1);
    update(&a);
    let mut raw = RawPeer::hello(&coordinator, 2);
    raw.send(&ToCoordinator::UpdateTopology);
    wait_for(&coordinator, "peer 2 to ask", |s| s.asked == vec![2]);
    a.request_update().expect("request_update");
    let first = match a.next_view_event(soon()).expect("event") {
        ViewEvent::Build(view) => view,
        other => panic!("expected a view, got {other:?}"),
    };
    assert_eq!(first.members.len(), 2);
    assert!(matches!(raw.recv(), FromCoordinator::View(_)));
    // Dies while the mesh is being built.
    drop(raw);
    a.mesh_ready(first.epoch, true, "").expect("mesh_ready");
    let (view, committed) = finish_update(&a);
    let view = view.expect("a second attempt");
    assert!(view.epoch > first.epoch);
    assert_eq!(committed, view.epoch);
    assert_eq!(
        view.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn a_wrong_secret_is_refused_with_an_authentication_error() {
    let coordinator = start();
    let wrong = Secret::new(b"not the secret".to_vec()).expect("secret");
    let result = Control::connect(
        &coordinator.address(),
        &wrong,
        1,
        &p2p(1),
        Duration::from_secs(5),
    );
    match result {
        Err(CoreError::Authentication(message)) => {
            assert!(message.contains("secret"), "{message}");
        }
        Err(other) => panic!("expected an authentication error, got {other}"),
        Ok(_) => panic!("a wrong secret was accepted"),
    }
    // The coordinator is unaffected.
    let good = connect(&coordinator, 1);
    assert_eq!(update(&good).0.expect("view").members.len(), 1);
}

#[test]
fn a_duplicate_live_id_is_refused() {
    let coordinator = start();
    let _first = connect(&coordinator, 9);
    let second = Control::connect(
        &coordinator.address(),
        &secret(),
        9,
        &p2p(9),
        Duration::from_secs(5),
    );
    match second {
        Err(error @ CoreError::InvalidValue { .. }) => {
            assert_eq!(error.argument(), Some("id"));
            assert!(error.to_string().contains("already connected"), "{error}");
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a duplicate id was admitted"),
    }
}

#[test]
fn garbage_never_crashes_the_coordinator_and_the_members_keep_working() {
    // A short handshake timeout drops the half frames quickly.
    let options = CoordinatorOptions {
        handshake_timeout: Duration::from_secs(1),
        ..CoordinatorOptions::default()
    };
    let (coordinator, controls, epoch) = world_with(2, options);

    let before_auth: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        header(PROTOCOL_VERSION, FrameKind::Auth as u8, u32::MAX),
        header(PROTOCOL_VERSION + 1, FrameKind::Auth as u8, 33),
        header(PROTOCOL_VERSION, 99, 33),
        header(PROTOCOL_VERSION, FrameKind::Control as u8, 3),
    ];
    for bytes in before_auth {
        let mut stream = RawPeer::tcp(&coordinator);
        stream.write_all(&bytes).expect("write");
        assert!(
            dropped(&mut stream),
            "kept a connection that sent {bytes:?}"
        );
    }
    // Half a frame, then the connection closes.
    let mut half = RawPeer::tcp(&coordinator);
    half.write_all(&header(PROTOCOL_VERSION, FrameKind::Auth as u8, 33)[..9])
        .expect("write");
    half.shutdown(Shutdown::Write).expect("shutdown");
    assert!(dropped(&mut half));

    // After authentication, before Hello.
    let mut early = RawPeer::authenticated(&coordinator);
    early.send(&ToCoordinator::UpdateTopology);
    assert!(early.dropped_by_coordinator());

    // After Hello: each of these peers is dropped, the others are not.
    let after_hello: Vec<Vec<u8>> = vec![
        header(
            PROTOCOL_VERSION,
            FrameKind::Control as u8,
            (MAX_CONTROL_FRAME + 1) as u32,
        ),
        header(PROTOCOL_VERSION + 1, FrameKind::Control as u8, 1),
        header(PROTOCOL_VERSION, 77, 1),
        b"\x00\x01garbage garbage garbage".to_vec(),
        header(PROTOCOL_VERSION, FrameKind::Control as u8, 100)[..7].to_vec(),
    ];
    for (i, bytes) in after_hello.into_iter().enumerate() {
        let mut peer = RawPeer::hello(&coordinator, 100 + i as PeerId);
        peer.stream.write_all(&bytes).expect("write");
        if i == 4 {
            peer.stream.shutdown(Shutdown::Write).expect("shutdown");
        }
        assert!(
            peer.dropped_by_coordinator(),
            "kept a peer that sent {bytes:?}"
        );
    }
    // A well-framed payload that does not decode, and a frame of the wrong kind.
    let mut malformed = RawPeer::hello(&coordinator, 200);
    write_frame(&mut malformed.stream, FrameKind::Control, 0, &[0xff; 40]).expect("write");
    assert!(malformed.dropped_by_coordinator());
    let mut data = RawPeer::hello(&coordinator, 201);
    write_frame(&mut data.stream, FrameKind::Data, 1, &[0; 8]).expect("write");
    assert!(data.dropped_by_coordinator());
    // A second Hello.
    let mut twice = RawPeer::hello(&coordinator, 202);
    twice.send(&ToCoordinator::Hello {
        id: 202,
        p2p_addr: p2p(202),
        resume: None,
    });
    assert!(twice.dropped_by_coordinator());

    let snapshot = wait_for(&coordinator, "the bad peers to be removed", |s| {
        s.pending.is_empty()
    });
    assert_eq!(snapshot.members, vec![1, 2]);
    assert_eq!(snapshot.epoch, epoch);
    assert_eq!(snapshot.broken, None);

    for control in &controls {
        control
            .vote(vote(epoch, 1, &[1, 2], "barrier", &[]))
            .expect("vote");
    }
    for control in &controls {
        assert!(decision(control, epoch, 1).commit);
    }
    let newcomer = connect(&coordinator, 3);
    let outcomes = grow(
        &coordinator,
        &controls.iter().collect::<Vec<_>>(),
        &[&newcomer],
        &[3],
    );
    assert!(outcomes
        .iter()
        .all(|(view, _)| view.as_ref().is_some_and(|v| v.members.len() == 3)));
}

#[test]
fn a_connection_that_never_authenticates_is_dropped() {
    let coordinator = start_with(fast_heartbeats());
    let mut idle = RawPeer::tcp(&coordinator);
    assert!(dropped(&mut idle));
    let mut no_hello = RawPeer::authenticated(&coordinator);
    assert!(no_hello.dropped_by_coordinator());
    let good = connect(&coordinator, 1);
    assert!(update(&good).0.is_some());
}

#[test]
fn a_silent_peer_is_declared_lost_after_the_heartbeat_timeout() {
    let coordinator = start_with(fast_heartbeats());
    let a = connect(&coordinator, 1);
    update(&a);
    let mut raw = RawPeer::hello(&coordinator, 2);
    raw.send(&ToCoordinator::UpdateTopology);
    wait_for(&coordinator, "peer 2 to ask", |s| s.asked == vec![2]);
    let epoch = thread::scope(|scope| {
        let asking = scope.spawn(|| update(&a));
        let view = match raw.recv() {
            FromCoordinator::View(view) => view,
            other => panic!("expected a view, got {other:?}"),
        };
        raw.send(&ToCoordinator::MeshReady {
            epoch: view.epoch,
            ok: true,
            reason: String::new(),
        });
        assert_eq!(asking.join().expect("a").1, view.epoch);
        view.epoch
    });
    // The raw peer now says nothing at all, though its socket stays open; the control
    // client's own heartbeats keep peer 1 alive meanwhile.
    let reason = broken(&a, epoch);
    assert!(reason.contains("peer 2"), "{reason}");
    assert!(reason.contains("heartbeat"), "{reason}");
    assert!(raw.dropped_by_coordinator());
    let snapshot = coordinator.snapshot();
    assert!(snapshot.pending.is_empty());
    assert!(a.broken(epoch).is_some());

    // A silent pending peer is simply removed.
    let _quiet = RawPeer::hello(&coordinator, 3);
    wait_for(&coordinator, "peer 3 to register", |s| s.pending == vec![3]);
    wait_for(&coordinator, "peer 3 to be dropped", |s| {
        s.pending.is_empty()
    });
    let (view, _) = update(&a);
    assert_eq!(view.expect("view").members.len(), 1);
}

#[test]
fn losing_the_coordinator_wakes_every_waiter_with_peer_lost() {
    let (coordinator, controls, epoch) = world(2);
    let signal = OpSignal::new();
    controls[0].watch(epoch, 1, vec![1, 2], Arc::clone(&signal));
    controls[0]
        .vote(vote(epoch, 1, &[1, 2], "barrier", &[]))
        .expect("vote");
    thread::scope(|scope| {
        let waiter = scope.spawn(|| controls[0].await_decision(epoch, 1, soon()));
        let viewer = scope.spawn(|| controls[1].next_view_event(soon()));
        coordinator.close();
        let waited = waiter.join().expect("waiter");
        assert!(
            matches!(&waited, Err(CoreError::PeerLost(m)) if m.contains("coordinator")),
            "{waited:?}"
        );
        let viewed = viewer.join().expect("viewer");
        assert!(matches!(viewed, Err(CoreError::PeerLost(_))), "{viewed:?}");
    });
    assert_eq!(raised(&signal).0, AbortKind::PeerLost);
    assert!(controls[1].broken(epoch).is_some());
    assert!(matches!(
        controls[1].request_update(),
        Err(CoreError::PeerLost(_))
    ));
    // Closing twice, and dropping afterwards, is harmless.
    coordinator.close();
    for control in &controls {
        control.close();
        control.close();
    }
}

#[test]
fn invalid_options_and_addresses_are_rejected() {
    let options = CoordinatorOptions {
        heartbeat_timeout: Duration::from_millis(100),
        heartbeat_interval: Duration::from_millis(200),
        ..CoordinatorOptions::default()
    };
    let error = Coordinator::start("127.0.0.1:0", secret(), options)
        .err()
        .expect("rejected");
    assert_eq!(error.argument(), Some("heartbeat_timeout"));
    let error = Coordinator::start("not an address", secret(), CoordinatorOptions::default())
        .err()
        .expect("rejected");
    assert_eq!(error.argument(), Some("bind"));
}

#[test]
fn disjoint_groups_share_a_sequence_number_and_overlapping_ones_abort() {
    let (_coordinator, controls, epoch) = world(4);
    // pair_average: two pairs run the same collective side by side.
    for (control, group) in controls.iter().zip([[1, 2], [1, 2], [3, 4], [3, 4]]) {
        control
            .vote(vote(epoch, 1, &group, "pair_average f32[8]", &[]))
            .expect("vote");
    }
    for control in &controls {
        assert!(decision(control, epoch, 1).commit);
    }
    // Peers that disagree on the grouping (a different step) cannot wait for each other.
    controls[0]
        .vote(vote(epoch, 2, &[1, 2], "pair_average f32[8]", &[]))
        .expect("vote");
    controls[1]
        .vote(vote(epoch, 2, &[2, 3], "pair_average f32[8]", &[]))
        .expect("vote");
    for control in &controls[..3] {
        let decision = decision(control, epoch, 2);
        assert!(!decision.commit);
        assert_eq!(decision.kind, AbortKind::Mismatch);
        assert!(decision.reason.contains("participant lists differ"));
    }
}

#[test]
fn a_standby_waits_for_resuming_members_then_goes_on_without_the_missing() {
    let standby = start_with(fast_heartbeats());
    let addrs = vec![standby.address()];
    let resume = Resume {
        epoch: 41,
        members: vec![1, 2, 3],
    };
    let resumed = |id: PeerId| {
        Control::reconnect(&addrs, &secret(), id, &p2p(id), PATIENCE, &resume).expect("resume")
    };
    let (a, b) = (resumed(1), resumed(2));
    // Peer 3 of the old view never comes back: the first view waits out the grace (one
    // heartbeat timeout), then forms from who is here, numbered past the old epoch.
    let started = Instant::now();
    let outcomes = update_all(&[&a, &b]);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    for (view, committed) in &outcomes {
        let view = view.as_ref().expect("a view");
        assert!(*committed > 41);
        assert_eq!(
            view.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
    // After the first view, nobody waits for the old members any more.
    let c = connect(&standby, 4);
    c.request_update().expect("request_update");
    wait_for(&standby, "the newcomer to ask", |s| s.asked.contains(&4));
    let started = Instant::now();
    let (view, _) = thread::scope(|scope| {
        let newcomer = scope.spawn(|| finish_update(&c));
        update_all(&[&a, &b]);
        newcomer.join().expect("newcomer")
    });
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(view.expect("view").members.len(), 3);
}

#[test]
fn reconnect_without_any_coordinator_gives_up_with_peer_lost_in_time() {
    let gone = start();
    let addrs = vec![gone.address()];
    gone.close();
    let resume = Resume {
        epoch: 1,
        members: vec![1],
    };
    let started = Instant::now();
    let result = Control::reconnect(
        &addrs,
        &secret(),
        1,
        &p2p(1),
        Duration::from_millis(800),
        &resume,
    );
    assert!(matches!(result, Err(CoreError::PeerLost(_))));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_coordinator_that_still_holds_us_is_waited_for_not_skipped_for_a_standby() {
    let (primary, standby) = (start(), start());
    let addrs = vec![primary.address(), standby.address()];
    // Our old connection, which the primary has not seen die yet.
    let old = connect(&primary, 1);
    let resume = Resume {
        epoch: 0,
        members: vec![],
    };
    let _back = thread::scope(|scope| {
        let resuming =
            scope.spawn(|| Control::reconnect(&addrs, &secret(), 1, &p2p(1), PATIENCE, &resume));
        thread::sleep(Duration::from_millis(500));
        assert!(standby.snapshot().pending.is_empty(), "went to the standby");
        old.close();
        resuming.join().expect("thread").expect("resumed")
    });
    wait_for(&primary, "peer 1 back at the primary", |s| {
        s.pending == vec![1]
    });
    assert!(standby.snapshot().pending.is_empty());
}

#[test]
fn a_coordinator_without_a_world_sends_peers_to_the_fellow_that_has_one() {
    let leader = start();
    let member = connect(&leader, 1);
    let (view, _) = update(&member);
    assert_eq!(view.expect("view").members.len(), 1);
    // A restarted primary, say, told of the standby the world moved to.
    let idle = start_with(CoordinatorOptions {
        fellows: vec![leader.address()],
        ..CoordinatorOptions::default()
    });
    let addrs = vec![idle.address()];
    let newcomer =
        Control::connect_first(&addrs, &secret(), 9, &p2p(9), PATIENCE).expect("redirected");
    wait_for(&leader, "the newcomer at the leader", |s| {
        s.pending == vec![9]
    });
    assert!(idle.snapshot().pending.is_empty());
    // Once the world is gone, the idle coordinator takes peers itself.
    newcomer.close();
    member.close();
    leader.close();
    let _alone =
        Control::connect_first(&addrs, &secret(), 10, &p2p(10), PATIENCE).expect("admitted");
    wait_for(&idle, "peer 10 at the idle coordinator", |s| {
        s.pending == vec![10]
    });
}
