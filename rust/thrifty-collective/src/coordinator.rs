//! The coordinator: membership, topology votes, and the commit vote of every collective.
//!
//! It speaks the protocol described in `message`. Threads: one accept loop; per connection a
//! reader (handshake, `Hello`, then every frame the peer sends) and, once the peer is
//! registered, a writer that drains the peer's outbox and sends a heartbeat whenever the
//! link has been quiet for `heartbeat_interval`.
//!
//! All membership and vote state lives behind one mutex, and the handlers only *queue*
//! messages: no socket write happens under the lock, so a peer that stops reading cannot
//! stall the others. Its writer times out instead, and the peer is declared lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::{client_handshake, server_handshake, Purpose, Secret};
use crate::frame::{recv_control, send_control, ProtocolError, HEADER_LEN};
use crate::message::{
    AbortKind, Decision, FromCoordinator, Member, PeerId, Resume, ToCoordinator, View, Vote,
};

/// How often the accept loop looks at the closed flag; bounds how long `close` waits for it.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// The most a fellow coordinator may take to say whether it holds the world.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a resume timer checks whether the coordinator closed meanwhile.
const RESUME_POLL: Duration = Duration::from_millis(50);
/// Decided outcomes kept so that a late (or repeated) vote gets the same decision.
const DECIDED_KEPT: usize = 1024;
/// Undecided collectives at once; beyond this a peer is misbehaving, and memory is bounded.
const MAX_BALLOTS: usize = 4096;
/// Open connections at once (authenticated or not), so a flood cannot exhaust threads.
const MAX_CONNECTIONS: usize = 4096;
/// A peer-to-peer address is `host:port`; anything longer is not one.
const MAX_ADDR_LEN: usize = 512;
/// How long a refusal may take to write before the connection is dropped anyway.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

const TOPOLOGY_CHANGED: &str = "the topology changed; call update_topology()";

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
    fn validate(&self) -> CoreResult<()> {
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

pub struct Coordinator {
    shared: Arc<Shared>,
    address: String,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Coordinator {
    /// Bind (e.g. `"127.0.0.1:0"`) and serve from background threads at once.
    pub fn start(bind: &str, secret: Secret, options: CoordinatorOptions) -> CoreResult<Self> {
        options.validate()?;
        let listener = TcpListener::bind(bind)
            .map_err(|e| CoreError::invalid("bind", format!("cannot bind {bind:?}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CoreError::invalid("bind", format!("{bind:?} has no address: {e}")))?;
        // Non-blocking so the accept loop can notice `close` without a connection arriving.
        listener.set_nonblocking(true).map_err(|e| {
            CoreError::invalid("bind", format!("cannot poll the listener on {local}: {e}"))
        })?;
        let shared = Arc::new(Shared {
            secret,
            options,
            closed: AtomicBool::new(false),
            state: Mutex::new(State::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("thrifty-coordinator-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(|e| CoreError::Internal(format!("cannot start a thread: {e}")))?
        };
        log::info!("coordinator listening on {local}");
        Ok(Self {
            shared,
            address: local.to_string(),
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The `host:port` actually bound.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Stop accepting, drop every connection and join every thread. Idempotent.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        {
            let mut state = self.shared.lock();
            if !state.closed {
                state.closed = true;
                for socket in state.sockets.values() {
                    // Unblocks the connection's reader at once; an error means it is gone.
                    let _ = socket.shutdown(Shutdown::Both);
                }
                // Dropping the outboxes ends the writers.
                state.peers.clear();
                log::info!("coordinator {} closed", self.address);
            }
        }
        let accept = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = accept {
            let _ = handle.join();
        }
        // A connection thread may start a writer before it ends: repeat until none is left.
        loop {
            let handles = std::mem::take(
                &mut *self
                    .shared
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }

    pub fn snapshot(&self) -> CoordinatorSnapshot {
        let state = self.shared.lock();
        let mut pending: Vec<&Peer> = state
            .peers
            .values()
            .filter(|p| state.view.rank_of(p.id).is_none())
            .collect();
        pending.sort_by_key(|p| p.admitted);
        CoordinatorSnapshot {
            epoch: state.view.epoch,
            members: state.view.members.iter().map(|m| m.id).collect(),
            pending: pending.iter().map(|p| p.id).collect(),
            broken: state.broken.clone(),
            forming: state.forming.as_ref().map(|f| f.view.epoch),
            asked: {
                let mut asked: Vec<PeerId> = state.asked.iter().copied().collect();
                asked.sort_unstable();
                asked
            },
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.close();
    }
}

struct Shared {
    secret: Secret,
    options: CoordinatorOptions,
    closed: AtomicBool,
    state: Mutex<State>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a thread that `close` will join.
    fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = thread::Builder::new().name(name).spawn(body)?;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        // Finished threads need no join; pruning keeps a long-lived coordinator's list short.
        threads.retain(|h| !h.is_finished());
        threads.push(handle);
        Ok(())
    }

    fn lose(&self, id: PeerId, serial: u64, why: &str) {
        self.lock().lose(id, serial, why, false);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
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
        let mut state = shared.lock();
        if state.closed {
            return;
        }
        if state.sockets.len() >= MAX_CONNECTIONS {
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
        let serial = state.next_serial;
        state.next_serial += 1;
        state.sockets.insert(serial, clone);
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
    let mut state = shared.lock();
    if let Some(socket) = state.sockets.remove(&serial) {
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
            let answer = shared.lock().leadership();
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
    if let Some(leader) = leader_elsewhere(shared) {
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
    let mut state = shared.lock();
    if state.closed {
        return Ok(None);
    }
    if state.peers.contains_key(&id) {
        drop(state);
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
    let admitted = state.next_admission;
    state.next_admission += 1;
    // Spawned under the lock so that `close` (which takes it first) cannot miss the thread.
    let worker = Arc::clone(shared);
    shared
        .spawn(format!("thrifty-coordinator-write-{id}"), move || {
            write_loop(&worker, writer, &queue, id, serial);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    log::info!("peer {id} connected from {remote} (p2p {p2p_addr}); pending");
    if let Some(resume) = resume {
        if state.resume(&resume, options.heartbeat_timeout) {
            // Decide again once the grace is over, whoever is still missing.
            let timer = Arc::clone(shared);
            let grace = options.heartbeat_timeout;
            shared
                .spawn("thrifty-coordinator-resume".into(), move || {
                    let until = Instant::now() + grace;
                    while Instant::now() < until {
                        if timer.closed.load(Ordering::SeqCst) {
                            return;
                        }
                        thread::sleep(RESUME_POLL);
                    }
                    let mut state = timer.lock();
                    if !state.closed {
                        state.decide_topology();
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
    }
    state.peers.insert(
        id,
        Peer {
            id,
            serial,
            remote,
            p2p_addr,
            admitted,
            outbox,
            socket,
        },
    );
    Ok(Some(id))
}

/// The fellow coordinator that holds a live world, while this one has none: the one with
/// the newest epoch. Unreachable fellows count as none.
fn leader_elsewhere(shared: &Shared) -> Option<String> {
    let fellows = &shared.options.fellows;
    if fellows.is_empty() || shared.lock().view.epoch != 0 {
        return None;
    }
    fellows
        .iter()
        .filter_map(|fellow| {
            probe(fellow, &shared.secret)
                .map_err(|why| log::info!("fellow coordinator {fellow} did not answer: {why}"))
                .ok()
                .filter(|&(epoch, live)| epoch > 0 && live > 0)
                .map(|(epoch, _)| (epoch, fellow))
        })
        .max_by_key(|&(epoch, _)| epoch)
        .map(|(_, fellow)| fellow.clone())
}

/// Ask the coordinator at `addr` for its committed epoch and live member count.
fn probe(addr: &str, secret: &Secret) -> Result<(u64, u32), String> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let target = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&target, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    client_handshake(&mut stream, secret, Purpose::Control, deadline).map_err(|e| e.to_string())?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    send_control(&mut stream, &ToCoordinator::WhoLeads).map_err(|e| e.to_string())?;
    match recv_control::<FromCoordinator>(&mut stream).map_err(|e| e.to_string())? {
        FromCoordinator::Leader { epoch, live } => Ok((epoch, live)),
        other => Err(format!("answered {other:?}")),
    }
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
                if !shared.lock().handle(id, serial, message) {
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

/// The host part of `host:port` (`[v6]:port` too), which ring order groups by.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &rest[..end];
        }
    }
    match addr.rfind(':') {
        Some(colon) => &addr[..colon],
        None => addr,
    }
}

struct Peer {
    id: PeerId,
    /// Which connection this is: a lost peer may come back under the same id.
    serial: u64,
    remote: SocketAddr,
    p2p_addr: String,
    /// Order of registration; older peers come first among peers on one host.
    admitted: u64,
    outbox: Sender<FromCoordinator>,
    socket: TcpStream,
}

/// A view sent out and not yet committed.
struct Forming {
    view: View,
    ready: HashSet<PeerId>,
}

/// The votes so far on one collective.
struct Ballot {
    participants: Vec<PeerId>,
    descriptor: String,
    /// Who set `participants` and `descriptor`, to name in a mismatch.
    first: PeerId,
    payloads: HashMap<PeerId, Vec<u8>>,
}

struct State {
    closed: bool,
    /// Every open connection, authenticated or not, so `close` can cut them all.
    sockets: HashMap<u64, TcpStream>,
    next_serial: u64,
    next_admission: u64,
    /// Live peers: members of the committed view and pending ones.
    peers: HashMap<PeerId, Peer>,
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
    ballots: HashMap<BallotKey, Ballot>,
    decided: HashMap<BallotKey, Decision>,
    decided_order: VecDeque<BallotKey>,
}

impl State {
    fn new() -> Self {
        Self {
            closed: false,
            sockets: HashMap::new(),
            next_serial: 0,
            next_admission: 0,
            peers: HashMap::new(),
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
            ballots: HashMap::new(),
            decided: HashMap::new(),
            decided_order: VecDeque::new(),
        }
    }

    fn send(&self, id: PeerId, message: FromCoordinator) {
        if let Some(peer) = self.peers.get(&id) {
            // A closed outbox means the peer is being dropped; nothing is left to tell it.
            let _ = peer.outbox.send(message);
        }
    }

    fn is_current(&self, id: PeerId, serial: u64) -> bool {
        self.peers.get(&id).is_some_and(|p| p.serial == serial)
    }

    /// What `WhoLeads` is answered.
    fn leadership(&self) -> FromCoordinator {
        let live = self
            .view
            .members
            .iter()
            .filter(|m| self.peers.contains_key(&m.id))
            .count();
        FromCoordinator::Leader {
            epoch: self.view.epoch,
            live: u32::try_from(live).unwrap_or(u32::MAX),
        }
    }

    /// Act on one message; false once the peer is gone and its reader should stop.
    fn handle(&mut self, id: PeerId, serial: u64, message: ToCoordinator) -> bool {
        if !self.is_current(id, serial) {
            return false;
        }
        match message {
            ToCoordinator::Heartbeat => {}
            ToCoordinator::Hello { .. } | ToCoordinator::WhoLeads => {
                self.lose(id, serial, "sent a greeting twice", false);
                return false;
            }
            ToCoordinator::Leave => {
                self.lose(id, serial, "left", true);
                return false;
            }
            ToCoordinator::UpdateTopology => self.on_update_topology(id),
            ToCoordinator::MeshReady { epoch, ok, reason } => {
                self.on_mesh_ready(id, epoch, ok, &reason);
            }
            ToCoordinator::Vote(vote) => self.on_vote(id, vote),
        }
        true
    }

    /// Remove a peer and apply what its loss means; `left` marks a clean goodbye.
    fn lose(&mut self, id: PeerId, serial: u64, why: &str, left: bool) -> bool {
        if !self.is_current(id, serial) {
            return false;
        }
        let Some(peer) = self.peers.remove(&id) else {
            return false;
        };
        // Unblocks its reader; its writer ends when it finds the outbox gone.
        let _ = peer.socket.shutdown(Shutdown::Both);
        if left {
            log::info!("peer {id} ({}) left", peer.remote);
        } else {
            log::warn!("dropping peer {id} ({}): {why}", peer.remote);
        }
        self.asked.remove(&id);
        if let Some(rank) = self.view.rank_of(id) {
            let epoch = self.view.epoch;
            let reason = format!("peer {id} (rank {rank}, {}) lost: {why}", peer.p2p_addr);
            log::info!("epoch {epoch} broken: {reason}");
            if self.broken.is_none() {
                self.broken = Some(reason.clone());
            }
            self.unusable.insert(id);
            for member in &self.view.members {
                self.send(
                    member.id,
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
        self.decide_topology();
        true
    }

    fn on_update_topology(&mut self, id: PeerId) {
        let building = self
            .forming
            .as_ref()
            .is_some_and(|f| f.view.rank_of(id).is_some());
        if building {
            // Its view is on the way; asking again changes nothing.
            return;
        }
        self.asked.insert(id);
        self.decide_topology();
    }

    /// A peer resumes from another coordinator: number past its epoch, and, before this
    /// coordinator's first view, wait for its old members. Returns whether a grace period
    /// started (the caller arms a timer to decide when it ends).
    fn resume(&mut self, resume: &Resume, grace: Duration) -> bool {
        self.next_epoch = self.next_epoch.max(resume.epoch.saturating_add(1));
        if self.view.epoch != 0 {
            return false;
        }
        self.resuming.extend(resume.members.iter().copied());
        if self.resume_until.is_some() {
            return false;
        }
        log::info!(
            "peers are resuming from another coordinator (epoch {}): waiting up to {:.1} s for \
             {} member(s)",
            resume.epoch,
            grace.as_secs_f64(),
            resume.members.len()
        );
        self.resume_until = Some(Instant::now() + grace);
        true
    }

    /// Whether the first view should still wait for members of a previous coordinator.
    fn awaiting_resumers(&self) -> bool {
        let Some(until) = self.resume_until else {
            return false;
        };
        self.view.epoch == 0
            && Instant::now() < until
            && self.resuming.iter().any(|id| !self.asked.contains(id))
    }

    /// Decide the topology vote once every live member has asked.
    fn decide_topology(&mut self) {
        if self.forming.is_some() || self.asked.is_empty() || self.awaiting_resumers() {
            return;
        }
        let live: Vec<PeerId> = self
            .view
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| self.peers.contains_key(id))
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
        candidates.retain(|id| self.peers.contains_key(id));
        if candidates.is_empty() {
            self.forming = None;
            return;
        }
        candidates.sort_by(|a, b| {
            let (a, b) = (&self.peers[a], &self.peers[b]);
            // Peers on one host end up adjacent, so the ring crosses each host boundary once.
            (host_of(&a.p2p_addr), a.admitted).cmp(&(host_of(&b.p2p_addr), b.admitted))
        });
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let view = View {
            epoch,
            members: candidates
                .iter()
                .map(|id| Member {
                    id: *id,
                    addr: self.peers[id].p2p_addr.clone(),
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

    fn on_mesh_ready(&mut self, id: PeerId, epoch: u64, ok: bool, reason: &str) {
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
        self.decide_topology();
    }

    fn on_vote(&mut self, from: PeerId, vote: Vote) {
        let key = BallotKey::of(&vote, from);
        if let Some(decision) = self.decided.get(&key) {
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
        if let Some(other) = self.overlapping(key, &vote.participants) {
            // Two groups of one collective that share a peer but differ: the peers disagree
            // on the grouping (a different `step`, say), and neither group could finish.
            let reason = format!(
                "participant lists differ: rank {rank} (peer {from}) sent {:?}, another peer \
                 sent {:?}",
                vote.participants, self.ballots[&other].participants
            );
            let theirs = self.ballots[&other].participants.clone();
            self.conclude(other, &theirs, abort(other, AbortKind::Mismatch, &reason));
            let to = with_voter(&vote.participants, from);
            self.conclude(key, &to, abort(key, AbortKind::Mismatch, &reason));
            return;
        }
        let Some(ballot) = self.ballots.get_mut(&key) else {
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

    /// An open ballot of the same collective, other than `key`, that shares a participant.
    fn overlapping(&self, key: BallotKey, participants: &[PeerId]) -> Option<BallotKey> {
        self.ballots
            .iter()
            .find(|(k, ballot)| {
                (k.epoch, k.seq) == (key.epoch, key.seq)
                    && **k != key
                    && ballot
                        .participants
                        .iter()
                        .any(|id| participants.contains(id))
            })
            .map(|(k, _)| *k)
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
        if self.ballots.len() >= MAX_BALLOTS {
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
        self.ballots.insert(
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
        let Some(mut ballot) = self.ballots.remove(&key) else {
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
        let keys: Vec<BallotKey> = self
            .ballots
            .iter()
            .filter(|(k, ballot)| matches(k, ballot))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(ballot) = self.ballots.get(&key) {
                let participants = ballot.participants.clone();
                self.conclude(key, &participants, abort(key, kind, reason));
            }
        }
    }

    /// Record `decision` and send it to every participant still here.
    fn conclude(&mut self, key: BallotKey, participants: &[PeerId], decision: Decision) {
        self.ballots.remove(&key);
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

/// A collective of one epoch is the `seq`-th of every peer taking part; subgroup collectives
/// (`pair_average`) run side by side under one `seq`, told apart by their lowest member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BallotKey {
    epoch: u64,
    seq: u64,
    group: PeerId,
}

impl BallotKey {
    fn of(vote: &Vote, from: PeerId) -> Self {
        Self {
            epoch: vote.epoch,
            seq: vote.seq,
            group: vote.participants.iter().copied().min().unwrap_or(from),
        }
    }
}

/// `participants` and the voter, who must hear the decision even if it left itself out.
fn with_voter(participants: &[PeerId], from: PeerId) -> Vec<PeerId> {
    let mut to = participants.to_vec();
    if !to.contains(&from) {
        to.push(from);
    }
    to
}

fn abort(key: BallotKey, kind: AbortKind, reason: &str) -> Decision {
    Decision {
        epoch: key.epoch,
        seq: key.seq,
        commit: false,
        kind,
        reason: reason.to_owned(),
        payloads: Vec::new(),
    }
}

fn abort_message(key: BallotKey, kind: AbortKind, reason: &str) -> FromCoordinator {
    FromCoordinator::Decision(abort(key, kind, reason))
}
