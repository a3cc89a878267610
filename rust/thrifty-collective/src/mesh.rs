//! Peer-to-peer links: the listener every peer runs, and the mesh built for each epoch.
//!
//! For every pair of members the lower rank dials and the higher rank accepts, `connections`
//! times (the stripes). Every link is authenticated like the coordinator connection, then
//! names its epoch, its two ends and its stripe, so a stray or stale connection is dropped.
//!
//! When both ends run on one host and allow it, a link then moves its bytes through shared
//! memory (`shm_handover` sets it up, `shm_ring` carries it): the same byte stream through
//! another pipe. The link's TCP connection stays open and registered, with nothing on it, as
//! the sign that the peer lives: when the peer dies or drops the mesh, the kernel closes it,
//! and the link fails as a TCP link would.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::{client_handshake, server_handshake, Purpose, Secret};
use crate::frame::{recv_control, send_control};
use crate::message::{HostId, LinkHello, PeerId, View};
use crate::shm_handover::{local_host, offer, take};
use crate::shm_ring::ShmRing;

pub type LinkId = usize;
pub const WAKER_TOKEN: usize = usize::MAX;

/// One striped connection to another member.
pub struct Link {
    pub stream: mio::net::TcpStream,
    /// The rings that carry this link's bytes instead of `stream`, on one host.
    pub shm: Option<ShmRing>,
    /// Why the TCP connection of a shared-memory link ended, once it has.
    closed: Option<String>,
    /// The other end's rank in the mesh's view.
    pub peer: usize,
    pub stripe: usize,
    pub readable: bool,
    pub writable: bool,
}

impl Link {
    /// Write what the transport takes now, like a non-blocking socket.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.shm {
            None => self.stream.write_vectored(bufs),
            Some(_) if self.closed.is_some() => Err(self.closed_error()),
            Some(ring) => ring.write_vectored(bufs),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Read what has arrived, like a non-blocking socket. A shared-memory link whose peer
    /// is gone still yields the bytes the peer wrote before it went, as TCP does.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.shm {
            None => self.stream.read(buf),
            Some(ring) => match ring.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.closed.is_some() => {
                    Err(self.closed_error())
                }
                other => other,
            },
        }
    }

    fn closed_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            self.closed.clone().unwrap_or_default(),
        )
    }

    /// The poll saw this link's data token: for shared memory, its doorbell rang.
    pub fn on_ready(&mut self) {
        if let Some(ring) = &self.shm {
            ring.quiet_bell();
        }
        self.readable = true;
        self.writable = true;
    }

    /// The poll saw the TCP connection of a shared-memory link: nothing is ever sent on it,
    /// so anything it says (an end, an error, stray bytes) ends the link.
    pub fn on_liveness(&mut self) {
        let mut probe = [0u8; 1];
        let ended = match self.stream.read(&mut probe) {
            Ok(0) => Some("connection closed by the peer".to_owned()),
            Ok(_) => Some("unexpected bytes on a shared-memory link".to_owned()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) => Some(e.to_string()),
        };
        if self.closed.is_none() {
            self.closed = ended;
        }
        self.readable = true;
        self.writable = true;
    }
}

/// Every link of one epoch, registered with one poll.
pub struct Mesh {
    pub epoch: u64,
    pub poll: mio::Poll,
    pub waker: Arc<mio::Waker>,
    pub links: Vec<Link>,
    pub connections: usize,
    index: HashMap<(usize, usize), LinkId>,
}

/// The poll token of link `link`'s TCP connection when its data goes through shared memory:
/// past every link's own token, so the engine tells the two apart.
pub fn liveness_token(links: usize, link: LinkId) -> usize {
    links + link
}

/// The link whose liveness token `token` is, if it is one.
pub fn liveness_link(links: usize, token: usize) -> Option<LinkId> {
    token.checked_sub(links).filter(|&link| link < links)
}

impl Mesh {
    /// The link to `peer` (a rank) on `stripe`.
    pub fn link(&self, peer: usize, stripe: usize) -> LinkId {
        self.index[&(peer, stripe % self.connections)]
    }
}

type Arrivals = HashMap<(u64, PeerId, u32), (TcpStream, Option<ShmRing>)>;

struct Shared {
    arrivals: Mutex<Arrivals>,
    arrived: Condvar,
    stop: AtomicBool,
    /// Whether this peer takes shared memory for links to peers on its host.
    shared_memory: AtomicBool,
}

/// Accepts authenticated links from other peers, and files them for the mesh builder.
pub struct Listener {
    addr: SocketAddr,
    me: PeerId,
    secret: Secret,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a peer waiting for links checks whether its view is already out of date.
const SUPERSEDED_POLL: Duration = Duration::from_millis(50);

impl Listener {
    pub fn bind(host: &str, port: u16, me: PeerId, secret: Secret) -> CoreResult<Self> {
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            CoreError::invalid("bind_host", format!("cannot listen on {host}:{port}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CoreError::Internal(format!("listener address: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CoreError::Internal(format!("listener: {e}")))?;
        let shared = Arc::new(Shared {
            arrivals: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            shared_memory: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let secret = secret.clone();
            std::thread::Builder::new()
                .name("thrifty-p2p-accept".into())
                .spawn(move || accept_loop(listener, me, secret, shared))
                .map_err(|e| CoreError::Internal(format!("cannot start the listener: {e}")))?
        };
        Ok(Self {
            addr,
            me,
            secret,
            shared,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Let links to peers on this host (same boot, network and pid namespaces) carry their
    /// bytes through shared memory; off until called. Applies to links formed afterwards,
    /// and only where the other end allows it too.
    pub fn set_shared_memory(&self, allow: bool) {
        self.shared.shared_memory.store(allow, Ordering::SeqCst);
    }

    /// Build the links of `view` for this peer: dial higher ranks, wait for lower ones.
    /// `superseded` is polled while waiting: when the coordinator has already moved on to
    /// another view (a member died meanwhile), the build gives up at once.
    pub fn build_mesh(
        &self,
        view: &View,
        connections: usize,
        deadline: Instant,
        superseded: &dyn Fn() -> bool,
    ) -> CoreResult<Mesh> {
        let me = view
            .rank_of(self.me)
            .ok_or_else(|| CoreError::Internal("this peer is not in the view".into()))?;
        self.forget_before(view.epoch);
        type Dialed = Vec<(usize, usize, TcpStream, Option<ShmRing>)>;
        let dialed: Vec<CoreResult<Dialed>> = std::thread::scope(|scope| {
            let handles: Vec<_> = view
                .members
                .iter()
                .enumerate()
                .filter(|(rank, _)| *rank > me)
                .map(|(rank, member)| {
                    scope.spawn(move || {
                        (0..connections)
                            .map(|stripe| {
                                let (stream, shm) = self.dial(
                                    &member.addr,
                                    LinkHello {
                                        epoch: view.epoch,
                                        from: self.me,
                                        to: member.id,
                                        stripe: stripe as u32,
                                        host: self.shm_host(),
                                    },
                                    deadline,
                                )?;
                                Ok((rank, stripe, stream, shm))
                            })
                            .collect::<CoreResult<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CoreError::Internal("a dialing thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut streams = Vec::new();
        for result in dialed {
            streams.extend(result?);
        }
        for (rank, member) in view.members.iter().enumerate().take(me) {
            for stripe in 0..connections {
                let (stream, shm) = self
                    .await_arrival(view.epoch, member.id, stripe as u32, deadline, superseded)
                    .map_err(|e| match e {
                        CoreError::Timeout(_) => CoreError::PeerLost(format!(
                            "rank {rank} ({}) did not connect in time",
                            member.addr
                        )),
                        other => other,
                    })?;
                streams.push((rank, stripe, stream, shm));
            }
        }
        assemble(view.epoch, connections, streams)
    }

    fn shm_host(&self) -> Option<HostId> {
        if self.shared.shared_memory.load(Ordering::SeqCst) {
            local_host()
        } else {
            None
        }
    }

    fn dial(
        &self,
        addr: &str,
        hello: LinkHello,
        deadline: Instant,
    ) -> CoreResult<(TcpStream, Option<ShmRing>)> {
        let lost = |what: String| CoreError::PeerLost(format!("cannot reach peer {addr}: {what}"));
        let target = addr
            .to_socket_addrs()
            .map_err(|e| lost(e.to_string()))?
            .next()
            .ok_or_else(|| lost("no address".into()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CoreError::Timeout(format!(
                "ran out of time dialing {addr}"
            )));
        }
        let mut stream =
            TcpStream::connect_timeout(&target, left).map_err(|e| lost(e.to_string()))?;
        client_handshake(&mut stream, &self.secret, Purpose::Link, deadline)?;
        send_control(&mut stream, &hello).map_err(|e| lost(e.to_string()))?;
        let shm = match hello.host {
            Some(_) => take(&mut stream, deadline)?,
            None => None,
        };
        Ok((stream, shm))
    }

    fn await_arrival(
        &self,
        epoch: u64,
        from: PeerId,
        stripe: u32,
        deadline: Instant,
        superseded: &dyn Fn() -> bool,
    ) -> CoreResult<(TcpStream, Option<ShmRing>)> {
        let mut arrivals = self
            .shared
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(arrival) = arrivals.remove(&(epoch, from, stripe)) {
                return Ok(arrival);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoreError::Timeout("waiting for a link".into()));
            }
            if superseded() {
                return Err(CoreError::PeerLost(
                    "the coordinator moved on to another view while links were forming".into(),
                ));
            }
            arrivals = self
                .shared
                .arrived
                .wait_timeout(arrivals, left.min(SUPERSEDED_POLL))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn forget_before(&self, epoch: u64) {
        self.shared
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| key.0 >= epoch);
    }

    pub fn close(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept_loop(listener: TcpListener, me: PeerId, secret: Secret, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, from)) => {
                let secret = secret.clone();
                let shared = Arc::clone(&shared);
                // A slow or hostile client must not hold up the others.
                let _ = std::thread::Builder::new()
                    .name("thrifty-p2p-handshake".into())
                    .spawn(move || {
                        if let Err(reason) = admit(stream, me, &secret, &shared) {
                            log::warn!("dropped a peer-to-peer connection from {from}: {reason}");
                        }
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn admit(mut stream: TcpStream, me: PeerId, secret: &Secret, shared: &Shared) -> CoreResult<()> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    stream
        .set_nonblocking(false)
        .map_err(|e| CoreError::PeerLost(e.to_string()))?;
    server_handshake(&mut stream, secret, Purpose::Link, deadline)?;
    let hello: LinkHello =
        recv_control(&mut stream).map_err(|e| CoreError::PeerLost(e.to_string()))?;
    if hello.to != me {
        return Err(CoreError::PeerLost(format!(
            "link meant for peer {:#x}, this is {me:#x}",
            hello.to
        )));
    }
    let shm = match &hello.host {
        Some(dialer) => offer(
            &mut stream,
            dialer,
            shared.shared_memory.load(Ordering::SeqCst),
            deadline,
        )?,
        None => None,
    };
    let mut arrivals = shared.arrivals.lock().unwrap_or_else(|e| e.into_inner());
    arrivals.insert((hello.epoch, hello.from, hello.stripe), (stream, shm));
    shared.arrived.notify_all();
    Ok(())
}

fn assemble(
    epoch: u64,
    connections: usize,
    streams: Vec<(usize, usize, TcpStream, Option<ShmRing>)>,
) -> CoreResult<Mesh> {
    let io = |e: std::io::Error| CoreError::PeerLost(format!("setting up a link: {e}"));
    let poll = mio::Poll::new().map_err(io)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(WAKER_TOKEN)).map_err(io)?);
    let mut links = Vec::with_capacity(streams.len());
    let mut index = HashMap::new();
    let n = streams.len();
    for (rank, stripe, stream, shm) in streams {
        stream.set_nodelay(true).map_err(io)?;
        stream.set_nonblocking(true).map_err(io)?;
        stream.set_read_timeout(None).map_err(io)?;
        stream.set_write_timeout(None).map_err(io)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        let id = links.len();
        match &shm {
            None => poll
                .registry()
                .register(
                    &mut stream,
                    mio::Token(id),
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                )
                .map_err(io)?,
            Some(ring) => {
                let bell = ring.bell().as_raw_fd();
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&bell),
                        mio::Token(id),
                        mio::Interest::READABLE,
                    )
                    .map_err(io)?;
                poll.registry()
                    .register(
                        &mut stream,
                        mio::Token(liveness_token(n, id)),
                        mio::Interest::READABLE,
                    )
                    .map_err(io)?;
            }
        }
        index.insert((rank, stripe), id);
        links.push(Link {
            stream,
            shm,
            closed: None,
            peer: rank,
            stripe,
            readable: true,
            writable: true,
        });
    }
    Ok(Mesh {
        epoch,
        poll,
        waker,
        links,
        connections,
        index,
    })
}
