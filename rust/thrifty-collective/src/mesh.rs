//! Peer-to-peer links: the listener every peer runs, and the mesh built for each epoch.
//!
//! For every pair of members the lower rank dials and the higher rank accepts, `connections`
//! times (the stripes). Every link is authenticated like the coordinator connection, then
//! names its epoch, its two ends and its stripe, so a stray or stale connection is dropped.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::{client_handshake, server_handshake, Purpose, Secret};
use crate::frame::{recv_control, send_control};
use crate::message::{LinkHello, PeerId, View};

pub type LinkId = usize;
pub const WAKER_TOKEN: usize = usize::MAX;

/// One striped connection to another member.
pub struct Link {
    pub stream: mio::net::TcpStream,
    /// The other end's rank in the mesh's view.
    pub peer: usize,
    pub stripe: usize,
    pub readable: bool,
    pub writable: bool,
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

impl Mesh {
    /// The link to `peer` (a rank) on `stripe`.
    pub fn link(&self, peer: usize, stripe: usize) -> LinkId {
        self.index[&(peer, stripe % self.connections)]
    }
}

type Arrivals = HashMap<(u64, PeerId, u32), TcpStream>;

struct Shared {
    arrivals: Mutex<Arrivals>,
    arrived: Condvar,
    stop: AtomicBool,
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
        let dialed: Vec<CoreResult<Vec<(usize, usize, TcpStream)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = view
                .members
                .iter()
                .enumerate()
                .filter(|(rank, _)| *rank > me)
                .map(|(rank, member)| {
                    scope.spawn(move || {
                        (0..connections)
                            .map(|stripe| {
                                let stream = self.dial(
                                    &member.addr,
                                    LinkHello {
                                        epoch: view.epoch,
                                        from: self.me,
                                        to: member.id,
                                        stripe: stripe as u32,
                                    },
                                    deadline,
                                )?;
                                Ok((rank, stripe, stream))
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
                let stream = self
                    .await_arrival(view.epoch, member.id, stripe as u32, deadline, superseded)
                    .map_err(|e| match e {
                        CoreError::Timeout(_) => CoreError::PeerLost(format!(
                            "rank {rank} ({}) did not connect in time",
                            member.addr
                        )),
                        other => other,
                    })?;
                streams.push((rank, stripe, stream));
            }
        }
        assemble(view.epoch, connections, streams)
    }

    fn dial(&self, addr: &str, hello: LinkHello, deadline: Instant) -> CoreResult<TcpStream> {
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
        Ok(stream)
    }

    fn await_arrival(
        &self,
        epoch: u64,
        from: PeerId,
        stripe: u32,
        deadline: Instant,
        superseded: &dyn Fn() -> bool,
    ) -> CoreResult<TcpStream> {
        let mut arrivals = self
            .shared
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(stream) = arrivals.remove(&(epoch, from, stripe)) {
                return Ok(stream);
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
    let mut arrivals = shared.arrivals.lock().unwrap_or_else(|e| e.into_inner());
    arrivals.insert((hello.epoch, hello.from, hello.stripe), stream);
    shared.arrived.notify_all();
    Ok(())
}

fn assemble(
    epoch: u64,
    connections: usize,
    streams: Vec<(usize, usize, TcpStream)>,
) -> CoreResult<Mesh> {
    let io = |e: std::io::Error| CoreError::PeerLost(format!("setting up a link: {e}"));
    let poll = mio::Poll::new().map_err(io)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(WAKER_TOKEN)).map_err(io)?);
    let mut links = Vec::with_capacity(streams.len());
    let mut index = HashMap::new();
    for (rank, stripe, stream) in streams {
        stream.set_nodelay(true).map_err(io)?;
        stream.set_nonblocking(true).map_err(io)?;
        stream.set_read_timeout(None).map_err(io)?;
        stream.set_write_timeout(None).map_err(io)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        let id = links.len();
        poll.registry()
            .register(
                &mut stream,
                mio::Token(id),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .map_err(io)?;
        index.insert((rank, stripe), id);
        links.push(Link {
            stream,
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
