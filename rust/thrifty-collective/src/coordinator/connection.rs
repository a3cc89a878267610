//! One connection to the coordinator, from accept to loss: the handshake and `Hello`, the
//! refusals and redirects, then a reader that feeds the state machine and a writer that
//! drains the peer's outbox and keeps the link alive with heartbeats.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::fellows;
use super::shared::Shared;
use crate::auth::{server_handshake, Purpose};
use crate::frame::{recv_control, send_control, ProtocolError, HEADER_LEN};
use crate::message::{FromCoordinator, PeerId, ToCoordinator};

/// How often the accept loop looks at the closed flag; bounds how long `close` waits for it.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How often a resume timer checks whether the coordinator closed meanwhile.
const RESUME_POLL: Duration = Duration::from_millis(50);
/// Open connections at once (authenticated or not), so a flood cannot exhaust threads.
const MAX_CONNECTIONS: usize = 4096;
/// A peer-to-peer address is `host:port`; anything longer is not one.
const MAX_ADDR_LEN: usize = 512;
/// How long a refusal may take to write before the connection is dropped anyway.
pub(super) const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.closed.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, remote)) => open_connection(shared, stream, remote),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and the like: keep serving the peers already connected.
                log::warn!("coordinator: accept failed: {e}");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

fn open_connection(shared: &Arc<Shared>, stream: TcpStream, remote: SocketAddr) {
    if let Err(e) = stream.set_nonblocking(false) {
        log::warn!("dropping connection from {remote}: cannot configure the socket: {e}");
        return;
    }
    let serial = {
        let mut hub = shared.lock();
        if hub.closed {
            return;
        }
        if hub.sockets.len() >= MAX_CONNECTIONS {
            log::warn!(
                "dropping connection from {remote}: {MAX_CONNECTIONS} connections already open"
            );
            return;
        }
        let clone = match stream.try_clone() {
            Ok(clone) => clone,
            Err(e) => {
                log::warn!("dropping connection from {remote}: cannot clone the socket: {e}");
                return;
            }
        };
        let serial = hub.next_serial;
        hub.next_serial += 1;
        hub.sockets.insert(serial, clone);
        serial
    };
    let worker = Arc::clone(shared);
    let started = shared.spawn(format!("thrifty-coordinator-conn-{serial}"), move || {
        serve(&worker, stream, remote, serial);
    });
    if let Err(e) = started {
        log::warn!("dropping connection from {remote}: cannot start a thread: {e}");
        shared.lock().sockets.remove(&serial);
    }
}

/// One connection, from handshake to loss.
fn serve(shared: &Arc<Shared>, mut stream: TcpStream, remote: SocketAddr, serial: u64) {
    match greet(shared, &mut stream, remote, serial) {
        Ok(Some(id)) => read_loop(shared, &mut stream, id, serial),
        Ok(None) => {}
        // While closing, every connection fails; that is no news.
        Err(reason) if !shared.closed.load(Ordering::SeqCst) => {
            log::warn!("dropping connection from {remote}: {reason}");
        }
        Err(_) => {}
    }
    let mut hub = shared.lock();
    if let Some(socket) = hub.sockets.remove(&serial) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Authenticate, read `Hello`, and register the peer; `Ok(None)` when it was refused.
fn greet(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    remote: SocketAddr,
    serial: u64,
) -> Result<Option<PeerId>, String> {
    let options = &shared.options;
    let deadline = Instant::now() + options.handshake_timeout;
    server_handshake(stream, &shared.secret, Purpose::Control, deadline)
        .map_err(|e| e.to_string())?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("authenticated, but no time left for Hello".into());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| format!("cannot configure the socket: {e}"))?;
    let hello = recv_control::<ToCoordinator>(stream).map_err(|e| {
        if e.is_timeout() {
            format!(
                "no Hello within the handshake timeout of {:.1} s",
                options.handshake_timeout.as_secs_f64()
            )
        } else {
            format!("while waiting for Hello: {e}")
        }
    })?;
    let (id, p2p_addr, resume) = match hello {
        ToCoordinator::Hello {
            id,
            p2p_addr,
            resume,
        } => (id, p2p_addr, resume),
        ToCoordinator::WhoLeads => {
            let answer = shared.lock().votes.leadership();
            let _ = send_control(stream, &answer);
            return Ok(None);
        }
        other => return Err(format!("expected Hello, got {}", name_of(&other))),
    };
    if p2p_addr.is_empty() || p2p_addr.len() > MAX_ADDR_LEN {
        let reason = format!(
            "p2p_addr must be host:port of at most {MAX_ADDR_LEN} bytes, got {} bytes",
            p2p_addr.len()
        );
        refuse(stream, remote, &reason);
        return Ok(None);
    }
    if let Some(leader) = fellows::leader_elsewhere(shared) {
        log::info!("peer {id} from {remote}: the world lives at the coordinator {leader}");
        let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
        let _ = send_control(stream, &FromCoordinator::Redirect { addr: leader });
        return Ok(None);
    }
    let configure = || -> io::Result<TcpStream> {
        stream.set_read_timeout(Some(options.heartbeat_timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        // A peer that cannot take a frame for a whole heartbeat timeout is as good as silent.
        writer.set_write_timeout(Some(options.heartbeat_timeout))?;
        Ok(writer)
    };
    let writer = configure().map_err(|e| format!("cannot configure the socket: {e}"))?;
    let mut hub = shared.lock();
    if hub.closed {
        return Ok(None);
    }
    if hub.votes.is_connected(id) {
        drop(hub);
        refuse(
            stream,
            remote,
            &format!("peer id {id} is already connected"),
        );
        return Ok(None);
    }
    let socket = writer
        .try_clone()
        .map_err(|e| format!("cannot clone the socket: {e}"))?;
    let (outbox, queue) = mpsc::channel();
    // Queued before anything else can be, so Welcome is the first message the peer reads.
    let _ = outbox.send(FromCoordinator::Welcome {
        heartbeat_interval_ms: millis(options.heartbeat_interval),
        heartbeat_timeout_ms: millis(options.heartbeat_timeout),
    });
    // Spawned under the lock so that `close` (which takes it first) cannot miss the thread.
    let worker = Arc::clone(shared);
    shared
        .spawn(format!("thrifty-coordinator-write-{id}"), move || {
            write_loop(&worker, writer, &queue, id, serial);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    log::info!("peer {id} connected from {remote} (p2p {p2p_addr}); pending");
    let grace_ends = hub
        .votes
        .admit(id, serial, p2p_addr, resume.as_ref(), Instant::now());
    hub.outboxes.insert(id, (outbox, socket));
    hub.apply();
    if let Some(until) = grace_ends {
        // Decide again once the grace is over, whoever is still missing.
        let timer = Arc::clone(shared);
        let started = shared.spawn("thrifty-coordinator-resume".into(), move || {
            while Instant::now() < until {
                if timer.closed.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(RESUME_POLL);
            }
            let mut hub = timer.lock();
            if !hub.closed {
                hub.votes.tick(Instant::now());
                hub.apply();
            }
        });
        if let Err(e) = started {
            let why = format!("cannot start a thread: {e}");
            hub.votes.lose(id, serial, &why, Instant::now());
            hub.apply();
            return Err(why);
        }
    }
    Ok(Some(id))
}

fn refuse(stream: &mut TcpStream, remote: SocketAddr, reason: &str) {
    log::warn!("refusing {remote}: {reason}");
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let _ = send_control(
        stream,
        &FromCoordinator::Refused {
            reason: reason.to_owned(),
        },
    );
}

fn read_loop(shared: &Arc<Shared>, stream: &mut TcpStream, id: PeerId, serial: u64) {
    loop {
        match recv_control::<ToCoordinator>(stream) {
            Ok(message) => {
                let mut hub = shared.lock();
                let current = hub.votes.handle(id, serial, message, Instant::now());
                hub.apply();
                if !current {
                    return;
                }
            }
            Err(e) => {
                let why = describe_read_error(&e, shared.options.heartbeat_timeout);
                shared.lose(id, serial, &why);
                return;
            }
        }
    }
}

fn write_loop(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    queue: &Receiver<FromCoordinator>,
    id: PeerId,
    serial: u64,
) {
    let interval = shared.options.heartbeat_interval;
    let mut next_beat = Instant::now() + interval;
    loop {
        let message = match queue.recv_timeout(next_beat.saturating_duration_since(Instant::now()))
        {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => FromCoordinator::Heartbeat,
            // The peer was removed: its outbox is gone and so is the connection.
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if let Err(e) = send_control(&mut stream, &message) {
            shared.lose(id, serial, &format!("cannot send to it: {e}"));
            return;
        }
        // Any frame tells the peer we are alive, so the heartbeat clock restarts.
        next_beat = Instant::now() + interval;
    }
}

fn describe_read_error(error: &ProtocolError, timeout: Duration) -> String {
    match error {
        e if e.is_timeout() => format!(
            "silent for {:.1} s (heartbeat timeout)",
            timeout.as_secs_f64()
        ),
        ProtocolError::Truncated { expected, got: 0 } if *expected == HEADER_LEN => {
            "connection closed".into()
        }
        other => other.to_string(),
    }
}

fn name_of(message: &ToCoordinator) -> &'static str {
    match message {
        ToCoordinator::Hello { .. } => "Hello",
        ToCoordinator::Heartbeat => "Heartbeat",
        ToCoordinator::UpdateTopology => "UpdateTopology",
        ToCoordinator::MeshReady { .. } => "MeshReady",
        ToCoordinator::Vote(_) => "Vote",
        ToCoordinator::Leave => "Leave",
        ToCoordinator::WhoLeads => "WhoLeads",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
