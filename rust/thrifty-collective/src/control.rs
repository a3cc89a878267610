//! The peer side of the control connection to the coordinator.
//!
//! A reader thread files everything the coordinator sends (views, decisions, broken epochs)
//! under one mutex and wakes the waiters; a heartbeat thread keeps the connection alive.
//! Callers send from their own thread through a writer mutex, never holding the state lock
//! while they do, so a waiter is never stuck behind a slow write.
//!
//! Aborts must reach a running data phase without waiting for its sockets: the collective
//! registers its [`OpSignal`] with [`Control::watch`], and the reader raises it the moment an
//! abort decision, a `Broken` for its epoch, or the loss of the coordinator arrives.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::{client_handshake, Purpose, Secret};
use crate::frame::{recv_control, send_control, ProtocolError, HEADER_LEN};
use crate::message::{
    AbortKind, Decision, FromCoordinator, PeerId, Resume, ToCoordinator, View, Vote,
};
use crate::signal::OpSignal;

/// Decisions nobody has collected yet; older ones are dropped beyond this.
const DECISIONS_KEPT: usize = 1024;
/// Broken epochs remembered; a peer only ever asks about its current one.
const BROKEN_KEPT: usize = 64;
/// `Leave` is a courtesy: a coordinator that does not take it quickly is not waited for.
const LEAVE_TIMEOUT: Duration = Duration::from_millis(500);
/// Floors on what the coordinator announces, so a bad `Welcome` cannot make us spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// A coordinator that redirects may be out of date itself; two hops are enough for any
/// honest chain and stop a loop.
const MAX_REDIRECTS: u32 = 2;
/// Between rounds of dialing every coordinator address while resuming.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// A step of the topology vote, in the order the coordinator sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent {
    /// Build the mesh of this view, then answer with [`Control::mesh_ready`].
    Build(View),
    /// Every member of this epoch is ready (or the topology did not change).
    Committed(u64),
}

pub struct Control {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Inner {
    addr: String,
    heartbeat_interval: Duration,
    writer: Mutex<TcpStream>,
    /// A clone used only to shut the connection down, which must not wait for the writer.
    socket: TcpStream,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    events: VecDeque<ViewEvent>,
    decisions: HashMap<(u64, u64), Decision>,
    decision_order: VecDeque<(u64, u64)>,
    broken: HashMap<u64, String>,
    broken_order: VecDeque<u64>,
    /// Why the coordinator is gone, once it is.
    lost: Option<String>,
    closed: bool,
    watch: Option<Watch>,
}

impl Control {
    /// Connect to the coordinator at `addr`, authenticate, send `Hello`, and wait for
    /// `Welcome`; then start the reader and heartbeat threads.
    pub fn connect(
        addr: &str,
        secret: &Secret,
        id: PeerId,
        p2p_addr: &str,
        timeout: Duration,
    ) -> CoreResult<Self> {
        Self::open(
            addr,
            secret,
            id,
            p2p_addr,
            Instant::now() + timeout,
            timeout,
            None,
            0,
        )
    }

    /// Connect to the first coordinator of `addrs` that answers, in order.
    pub fn connect_first(
        addrs: &[String],
        secret: &Secret,
        id: PeerId,
        p2p_addr: &str,
        timeout: Duration,
    ) -> CoreResult<Self> {
        let deadline = Instant::now() + timeout;
        Self::first_answering(addrs, secret, id, p2p_addr, deadline, timeout, None)
    }

    /// After the coordinator was lost: dial `addrs` in order, round after round until
    /// `timeout`, and resume with what this peer knew (see `message`, failover). The lost
    /// coordinator may also come back at its old address, or take a moment to notice that
    /// our old connection is gone (it refuses the id meanwhile), so every failure but a
    /// wrong secret is worth another round.
    pub fn reconnect(
        addrs: &[String],
        secret: &Secret,
        id: PeerId,
        p2p_addr: &str,
        timeout: Duration,
        resume: &Resume,
    ) -> CoreResult<Self> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match Self::first_answering(
                addrs,
                secret,
                id,
                p2p_addr,
                deadline,
                timeout,
                Some(resume),
            ) {
                Ok(control) => return Ok(control),
                Err(error @ CoreError::Authentication(_)) => return Err(error),
                Err(error) => error,
            };
            if Instant::now() + RECONNECT_PAUSE >= deadline {
                return Err(CoreError::PeerLost(format!(
                    "no coordinator of {addrs:?} took us back within {:.1} s: {why}",
                    timeout.as_secs_f64()
                )));
            }
            thread::sleep(RECONNECT_PAUSE);
        }
    }

    /// One round over `addrs`: the first coordinator that takes us in. A wrong secret ends
    /// the round (a configuration error), and so does a coordinator that answers but refuses
    /// our id: it still holds our old connection (we lost it, it did not lose us), and going on
    /// to a standby would split the world.
    fn first_answering(
        addrs: &[String],
        secret: &Secret,
        id: PeerId,
        p2p_addr: &str,
        deadline: Instant,
        timeout: Duration,
        resume: Option<&Resume>,
    ) -> CoreResult<Self> {
        let mut last = None;
        for addr in addrs {
            match Self::open(addr, secret, id, p2p_addr, deadline, timeout, resume, 0) {
                Ok(control) => {
                    log::info!("connected to the coordinator at {addr}");
                    return Ok(control);
                }
                Err(
                    error @ (CoreError::Authentication(_)
                    | CoreError::InvalidValue { argument: "id", .. }),
                ) => return Err(error),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| CoreError::invalid("coordinator", "no address given")))
    }

    // Every argument is a part of one greeting; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn open(
        addr: &str,
        secret: &Secret,
        id: PeerId,
        p2p_addr: &str,
        deadline: Instant,
        timeout: Duration,
        resume: Option<&Resume>,
        redirects: u32,
    ) -> CoreResult<Self> {
        let mut stream = dial(addr, deadline, timeout)?;
        client_handshake(&mut stream, secret, Purpose::Control, deadline).map_err(|e| match e {
            CoreError::Authentication(m) => {
                CoreError::Authentication(format!("coordinator {addr}: {m}"))
            }
            CoreError::Timeout(m) => CoreError::Timeout(format!(
                "coordinator {addr}: {m} (waited {:.1} s)",
                timeout.as_secs_f64()
            )),
            CoreError::PeerLost(m) => CoreError::PeerLost(format!("coordinator {addr} lost: {m}")),
            other => other,
        })?;
        let welcome = hello(&mut stream, addr, id, p2p_addr, resume, deadline, timeout)?;
        let (interval_ms, timeout_ms) = match welcome {
            FromCoordinator::Welcome {
                heartbeat_interval_ms,
                heartbeat_timeout_ms,
            } => (heartbeat_interval_ms, heartbeat_timeout_ms),
            FromCoordinator::Refused { reason } => {
                return Err(CoreError::invalid(
                    "id",
                    format!("coordinator {addr} refused peer {id}: {reason}"),
                ))
            }
            FromCoordinator::Redirect { addr: to } if redirects < MAX_REDIRECTS => {
                log::info!("coordinator {addr} sends us to {to}, which holds the world");
                return Self::open(
                    &to,
                    secret,
                    id,
                    p2p_addr,
                    deadline,
                    timeout,
                    resume,
                    redirects + 1,
                );
            }
            other => {
                return Err(CoreError::PeerLost(format!(
                    "coordinator {addr} lost: expected Welcome, got {other:?}"
                )))
            }
        };
        let heartbeat_interval = Duration::from_millis(interval_ms).max(MIN_HEARTBEAT);
        let heartbeat_timeout = Duration::from_millis(timeout_ms).max(heartbeat_interval * 2);
        let lost = |e: std::io::Error| {
            CoreError::PeerLost(format!(
                "coordinator {addr} lost: cannot configure the socket: {e}"
            ))
        };
        stream
            .set_read_timeout(Some(heartbeat_timeout))
            .map_err(lost)?;
        // The coordinator is as good as silent if it cannot take a frame for that long.
        stream
            .set_write_timeout(Some(heartbeat_timeout))
            .map_err(lost)?;
        let reader = stream.try_clone().map_err(lost)?;
        let socket = stream.try_clone().map_err(lost)?;
        let inner = Arc::new(Inner {
            addr: addr.to_owned(),
            heartbeat_interval,
            writer: Mutex::new(stream),
            socket,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let control = Self {
            inner: Arc::clone(&inner),
            threads: Mutex::new(Vec::new()),
        };
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.to_owned())
                .spawn(body)
                .map_err(|e| CoreError::Internal(format!("cannot start a thread: {e}")))
        };
        let reading = {
            let inner = Arc::clone(&inner);
            spawn(
                "thrifty-control-read",
                Box::new(move || read_loop(&inner, reader, heartbeat_timeout)),
            )?
        };
        control.push_thread(reading);
        let beating = {
            let inner = Arc::clone(&inner);
            spawn(
                "thrifty-control-heartbeat",
                Box::new(move || heartbeat_loop(&inner)),
            )?
        };
        control.push_thread(beating);
        Ok(control)
    }

    fn push_thread(&self, handle: JoinHandle<()>) {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Whether the coordinator connection is gone (not by our own `close`).
    pub fn coordinator_lost(&self) -> bool {
        self.inner.lock().lost.is_some()
    }

    /// Ask for a topology update (`UpdateTopology`).
    pub fn request_update(&self) -> CoreResult<()> {
        self.inner.send(&ToCoordinator::UpdateTopology)
    }

    /// The next `View` or `ViewCommitted`, in arrival order.
    pub fn next_view_event(&self, deadline: Instant) -> CoreResult<ViewEvent> {
        let started = Instant::now();
        let mut state = self.inner.lock();
        loop {
            // A lost coordinator voids the vote: no MeshReady could reach it anyway.
            self.inner.usable(&state)?;
            if let Some(event) = state.events.pop_front() {
                return Ok(event);
            }
            state = self.inner.wait(state, deadline).ok_or_else(|| {
                CoreError::Timeout(format!(
                    "waited {:.1} s for the coordinator {} to decide the topology \
                     (every member must call update_topology())",
                    deadline.saturating_duration_since(started).as_secs_f64(),
                    self.inner.addr
                ))
            })?;
        }
    }

    /// Whether a view event is waiting (or none can come any more): a mesh build for an
    /// older view can give up.
    pub fn view_event_pending(&self) -> bool {
        let state = self.inner.lock();
        !state.events.is_empty() || state.lost.is_some() || state.closed
    }

    pub fn mesh_ready(&self, epoch: u64, ok: bool, reason: &str) -> CoreResult<()> {
        self.inner.send(&ToCoordinator::MeshReady {
            epoch,
            ok,
            reason: reason.to_owned(),
        })
    }

    pub fn vote(&self, vote: Vote) -> CoreResult<()> {
        self.inner.send(&ToCoordinator::Vote(vote))
    }

    /// The coordinator's decision on collective `seq` of `epoch`.
    pub fn await_decision(&self, epoch: u64, seq: u64, deadline: Instant) -> CoreResult<Decision> {
        let started = Instant::now();
        let mut state = self.inner.lock();
        loop {
            // A decision that arrived before the loss still holds: every participant got it.
            if let Some(decision) = state.decisions.remove(&(epoch, seq)) {
                return Ok(decision);
            }
            self.inner.usable(&state)?;
            state = self.inner.wait(state, deadline).ok_or_else(|| {
                CoreError::Timeout(format!(
                    "waited {:.1} s for the coordinator {} to decide collective {seq} of epoch \
                     {epoch}",
                    deadline.saturating_duration_since(started).as_secs_f64(),
                    self.inner.addr
                ))
            })?;
        }
    }

    /// Raise `signal` when an abort decision for (`epoch`, `seq`) arrives, or `Broken` for
    /// `epoch`, or the coordinator is lost. Replaces the previous watch.
    pub fn watch(&self, epoch: u64, seq: u64, participants: Vec<PeerId>, signal: Arc<OpSignal>) {
        let mut state = self.inner.lock();
        // What already arrived counts too: the op may have started after its abort.
        if let Some(decision) = state.decisions.get(&(epoch, seq)) {
            if !decision.commit {
                signal.raise(decision.kind, decision.reason.clone());
            }
        }
        if let Some(reason) = state.broken.get(&epoch) {
            signal.raise(AbortKind::PeerLost, reason.clone());
        }
        if let Some(reason) = &state.lost {
            signal.raise(AbortKind::PeerLost, reason.clone());
        } else if state.closed {
            signal.raise(AbortKind::PeerLost, self.inner.closed_reason());
        }
        state.watch = Some(Watch {
            epoch,
            seq,
            participants,
            signal,
        });
    }

    pub fn unwatch(&self) {
        self.inner.lock().watch = None;
    }

    /// Why `epoch` can run no collective: `Broken` was received for it, or the coordinator
    /// is gone.
    pub fn broken(&self, epoch: u64) -> Option<String> {
        let state = self.inner.lock();
        if let Some(reason) = state.broken.get(&epoch) {
            return Some(reason.clone());
        }
        if let Some(reason) = &state.lost {
            return Some(reason.clone());
        }
        state.closed.then(|| self.inner.closed_reason())
    }

    /// Say `Leave` (best effort) and stop the threads. Idempotent.
    pub fn close(&self) {
        let first = {
            let mut state = self.inner.lock();
            let first = !state.closed;
            state.closed = true;
            if first {
                if let Some(Watch { signal, .. }) = &state.watch {
                    signal.raise(AbortKind::PeerLost, self.inner.closed_reason());
                }
            }
            first.then(|| state.lost.is_none())
        };
        if let Some(connected) = first {
            if connected {
                let mut writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writer.set_write_timeout(Some(LEAVE_TIMEOUT));
                let _ = send_control(&mut *writer, &ToCoordinator::Leave);
            }
            // Unblocks the reader; the heartbeat thread sees `closed` when woken.
            let _ = self.inner.socket.shutdown(Shutdown::Both);
            self.inner.changed.notify_all();
        }
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a change until `deadline`; `None` once it has passed.
    fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> Option<MutexGuard<'a, State>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let (state, _) = self
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner());
        Some(state)
    }

    fn closed_reason(&self) -> String {
        format!(
            "the control connection to coordinator {} is closed",
            self.addr
        )
    }

    fn usable(&self, state: &State) -> CoreResult<()> {
        if let Some(reason) = &state.lost {
            return Err(CoreError::PeerLost(reason.clone()));
        }
        if state.closed {
            return Err(CoreError::PeerLost(self.closed_reason()));
        }
        Ok(())
    }

    fn send(&self, message: &ToCoordinator) -> CoreResult<()> {
        self.usable(&self.lock())?;
        let sent = {
            let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            send_control(&mut *writer, message)
        };
        sent.map_err(|e| {
            self.lose(&format!("cannot send: {e}"));
            let state = self.lock();
            match self.usable(&state) {
                Err(error) => error,
                Ok(()) => CoreError::PeerLost(format!("coordinator {} lost: {e}", self.addr)),
            }
        })
    }

    /// The coordinator is gone: wake every waiter and abort the watched collective.
    fn lose(&self, why: &str) {
        {
            let mut state = self.lock();
            if state.closed || state.lost.is_some() {
                return;
            }
            let reason = format!("coordinator {} lost: {why}", self.addr);
            log::warn!("{reason}");
            if let Some(Watch { signal, .. }) = &state.watch {
                signal.raise(AbortKind::PeerLost, reason.clone());
            }
            state.lost = Some(reason);
        }
        self.changed.notify_all();
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// File one message from the coordinator; `Err` for one it must never send.
    fn deliver(&self, message: FromCoordinator) -> Result<(), String> {
        let mut state = self.lock();
        match message {
            // Reading it already restarted the silence clock.
            FromCoordinator::Heartbeat => return Ok(()),
            FromCoordinator::View(view) => state.events.push_back(ViewEvent::Build(view)),
            FromCoordinator::ViewCommitted { epoch } => {
                state.events.push_back(ViewEvent::Committed(epoch));
            }
            FromCoordinator::Decision(decision) => {
                if !decision.commit {
                    if let Some(Watch {
                        epoch, seq, signal, ..
                    }) = &state.watch
                    {
                        if (*epoch, *seq) == (decision.epoch, decision.seq) {
                            signal.raise(decision.kind, decision.reason.clone());
                        }
                    }
                }
                let key = (decision.epoch, decision.seq);
                if state.decisions.insert(key, decision).is_none() {
                    state.decision_order.push_back(key);
                }
                while state.decision_order.len() > DECISIONS_KEPT {
                    if let Some(old) = state.decision_order.pop_front() {
                        state.decisions.remove(&old);
                    }
                }
            }
            FromCoordinator::Broken {
                epoch,
                lost,
                reason,
            } => {
                // The coordinator already warned if the loss was not a clean goodbye.
                log::info!("epoch {epoch} broken: {reason}");
                if let Some(watch) = &state.watch {
                    if watch.epoch == epoch && watch.participants.contains(&lost) {
                        let signal = &watch.signal;
                        signal.raise(AbortKind::PeerLost, reason.clone());
                    }
                }
                // The first loss is the cause; later ones follow from it.
                if let Entry::Vacant(slot) = state.broken.entry(epoch) {
                    slot.insert(reason);
                    state.broken_order.push_back(epoch);
                }
                while state.broken_order.len() > BROKEN_KEPT {
                    if let Some(old) = state.broken_order.pop_front() {
                        state.broken.remove(&old);
                    }
                }
            }
            FromCoordinator::Welcome { .. } => return Err("sent Welcome twice".into()),
            FromCoordinator::Leader { .. } | FromCoordinator::Redirect { .. } => {
                return Err("answered a greeting it was never sent".into())
            }
            FromCoordinator::Refused { reason } => {
                return Err(format!("refused an admitted peer: {reason}"))
            }
        }
        drop(state);
        self.changed.notify_all();
        Ok(())
    }
}

/// Resolve and connect, trying every address until the deadline.
fn dial(addr: &str, deadline: Instant, timeout: Duration) -> CoreResult<TcpStream> {
    let targets: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| CoreError::invalid("coordinator", format!("cannot resolve {addr:?}: {e}")))?
        .collect();
    if targets.is_empty() {
        return Err(CoreError::invalid(
            "coordinator",
            format!("{addr:?} has no address"),
        ));
    }
    let mut last = None;
    for target in targets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&target, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() != std::io::ErrorKind::TimedOut => Err(CoreError::PeerLost(format!(
            "coordinator {addr} unreachable: {e}"
        ))),
        _ => Err(CoreError::Timeout(format!(
            "waited {:.1} s to connect to the coordinator {addr}",
            timeout.as_secs_f64()
        ))),
    }
}

/// Send `Hello` and read the coordinator's answer.
fn hello(
    stream: &mut TcpStream,
    addr: &str,
    id: PeerId,
    p2p_addr: &str,
    resume: Option<&Resume>,
    deadline: Instant,
    timeout: Duration,
) -> CoreResult<FromCoordinator> {
    let timed_out = || {
        CoreError::Timeout(format!(
            "waited {:.1} s for the coordinator {addr} to welcome us",
            timeout.as_secs_f64()
        ))
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    let lost = |e: std::io::Error| {
        CoreError::PeerLost(format!(
            "coordinator {addr} lost: cannot configure the socket: {e}"
        ))
    };
    stream.set_read_timeout(Some(left)).map_err(lost)?;
    stream.set_write_timeout(Some(left)).map_err(lost)?;
    let wire = |e: ProtocolError| {
        if e.is_timeout() {
            timed_out()
        } else {
            CoreError::PeerLost(format!("coordinator {addr} lost: {e}"))
        }
    };
    send_control(
        stream,
        &ToCoordinator::Hello {
            id,
            p2p_addr: p2p_addr.to_owned(),
            resume: resume.cloned(),
        },
    )
    .map_err(wire)?;
    recv_control(stream).map_err(wire)
}

fn read_loop(inner: &Arc<Inner>, mut stream: TcpStream, heartbeat_timeout: Duration) {
    loop {
        let why = match recv_control::<FromCoordinator>(&mut stream) {
            Ok(message) => match inner.deliver(message) {
                Ok(()) => continue,
                Err(why) => why,
            },
            Err(e) if e.is_timeout() => format!(
                "silent for {:.1} s (heartbeat timeout)",
                heartbeat_timeout.as_secs_f64()
            ),
            Err(ProtocolError::Truncated { expected, got: 0 }) if expected == HEADER_LEN => {
                "connection closed".into()
            }
            Err(e) => e.to_string(),
        };
        inner.lose(&why);
        return;
    }
}

fn heartbeat_loop(inner: &Arc<Inner>) {
    let mut next = Instant::now() + inner.heartbeat_interval;
    let mut state = inner.lock();
    loop {
        if state.closed || state.lost.is_some() {
            return;
        }
        let now = Instant::now();
        if now < next {
            state = inner
                .changed
                .wait_timeout(state, next - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        drop(state);
        // A failed send marks the coordinator lost, and the loop ends on the next check.
        let _ = inner.send(&ToCoordinator::Heartbeat);
        next = Instant::now() + inner.heartbeat_interval;
        state = inner.lock();
    }
}

/// The collective in flight, and what would abort it.
struct Watch {
    epoch: u64,
    seq: u64,
    participants: Vec<PeerId>,
    signal: Arc<OpSignal>,
}
