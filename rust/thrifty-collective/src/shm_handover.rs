//! Upgrading an authenticated TCP link to shared memory when both peers run on one host.
//!
//! ```text
//! dialer -> acceptor   LinkHello { .., host: Some(HostId) }   (over the authenticated link)
//! acceptor -> dialer   ShmOffer::Decline                       (other host, off, or failed)
//!                   or ShmOffer::Offer { socket, pid, ring_bytes }
//! dialer connects to the abstract unix socket `socket`
//! acceptor -> dialer   [memfd, dialer's doorbell, acceptor's doorbell] by SCM_RIGHTS
//! dialer -> acceptor   ShmAck { mapped }                       (over the TCP link)
//! ```
//!
//! Why this is as safe as the TCP link it replaces: everything that decides the hand-over
//! (the hosts' identities, the socket's name, both pids) travels on the TCP link after the
//! HMAC handshake, so it comes from a holder of the secret. The unix socket itself is not
//! trusted: its name is random but visible to local processes (`/proc/net/unix`), so each
//! end asks the kernel who is at the other end (`SO_PEERCRED`) and proceeds only when that is
//! the pid the authenticated peer named: the acceptor sends the region only to the dialing
//! process, and the dialer takes a region only from the accepting one. A local process
//! without the secret can connect, but gets nothing and changes nothing. The region is a
//! sealed memfd that never has a name in any file system, so no other process can open it.
//!
//! Both ends fall back to TCP, never fail, when anything here does not work out (another
//! host, another namespace, no `/proc`, a refused socket); only a broken TCP link fails the
//! link. Every wait ends at the link's deadline.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use thrifty_core::{CoreError, CoreResult};

use crate::frame::{recv_control, send_control};
use crate::message::{HostId, ShmAck, ShmOffer};
use crate::shm_ring::{create_handles, End, Handles, ShmRing, RING_BYTES};

/// The largest ring a dialer maps, whatever an offer says.
const MAX_RING_BYTES: u64 = 1 << 30;
/// How often the acceptor, waiting for the dialer on the unix socket, checks whether the
/// dialer has given up and answered on the TCP link instead.
const ACCEPT_POLL: Duration = Duration::from_millis(1);

/// This process's host identity; `None` where `/proc` does not tell it (shared memory is
/// then never used).
pub fn local_host() -> Option<HostId> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = |name: &str| {
        std::fs::read_link(format!("/proc/self/ns/{name}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    Some(HostId {
        boot_id: boot_id.trim().to_owned(),
        net_ns: ns("net")?,
        pid_ns: ns("pid")?,
        pid: std::process::id(),
    })
}

/// Whether two peers share the kernel and the namespaces the hand-over needs.
pub fn same_host(a: &HostId, b: &HostId) -> bool {
    a.boot_id == b.boot_id && a.net_ns == b.net_ns && a.pid_ns == b.pid_ns
}

fn lost(what: impl std::fmt::Display) -> CoreError {
    CoreError::PeerLost(format!("setting up shared memory on a link: {what}"))
}

fn until(deadline: Instant) -> CoreResult<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CoreError::Timeout(
            "ran out of time setting up shared memory".into(),
        ));
    }
    Ok(left)
}

fn set_timeouts(stream: &TcpStream, deadline: Instant) -> CoreResult<()> {
    let left = until(deadline)?;
    stream.set_read_timeout(Some(left)).map_err(lost)?;
    stream.set_write_timeout(Some(left)).map_err(lost)
}

fn peer_pid(socket: &impl AsFd) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(socket)
        .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
    Ok(cred.pid.as_raw_nonzero().get() as u32)
}

/// The accepting side: answer the dialer's hello (which named `dialer`), and return the
/// link's rings when both ends mapped them. `enabled` is this peer's own choice.
pub fn offer(
    stream: &mut TcpStream,
    dialer: &HostId,
    enabled: bool,
    deadline: Instant,
) -> CoreResult<Option<ShmRing>> {
    set_timeouts(stream, deadline)?;
    let local = local_host().filter(|me| enabled && same_host(me, dialer));
    let prepared = match local {
        Some(me) => match prepare() {
            Ok(prepared) => Some((me, prepared)),
            Err(e) => {
                log::info!("shared memory unavailable, staying on TCP: {e}");
                None
            }
        },
        None => None,
    };
    let Some((me, (listener, name, handles, ring))) = prepared else {
        send_control(stream, &ShmOffer::Decline).map_err(lost)?;
        return Ok(None);
    };
    let offer = ShmOffer::Offer {
        socket: name,
        pid: me.pid,
        ring_bytes: RING_BYTES as u64,
    };
    send_control(stream, &offer).map_err(lost)?;
    let handed = hand_over(&listener, stream, dialer.pid, handles, deadline);
    set_timeouts(stream, deadline)?;
    let ack: ShmAck = recv_control(stream).map_err(lost)?;
    match (ack.mapped, handed) {
        (true, Ok(())) => Ok(Some(ring)),
        (false, handed) => {
            if let Err(e) = handed {
                log::info!("shared memory not handed over, staying on TCP: {e}");
            }
            Ok(None)
        }
        (true, Err(e)) => Err(lost(format!(
            "the peer mapped a region this side did not hand over ({e})"
        ))),
    }
}

/// A fresh region with this end's rings mapped, and the socket it is handed over on.
fn prepare() -> io::Result<(UnixListener, String, Handles, ShmRing)> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let name: String = std::iter::once("thrifty-link-".to_owned())
        .chain(nonce.iter().map(|b| format!("{b:02x}")))
        .collect();
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    listener.set_nonblocking(true)?;
    let handles = create_handles(RING_BYTES)?;
    let mine = Handles {
        memfd: handles.memfd.try_clone()?,
        opener_bell: handles.opener_bell.try_clone()?,
        creator_bell: handles.creator_bell.try_clone()?,
    };
    let ring = ShmRing::open(mine, End::Creator, RING_BYTES)?;
    Ok((listener, name, handles, ring))
}

/// Send `handles` to the first connection on `listener` that comes from process `pid`.
/// Gives up when the dialer answers on the TCP link instead (it could not connect).
fn hand_over(
    listener: &UnixListener,
    tcp: &TcpStream,
    pid: u32,
    handles: Handles,
    deadline: Instant,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((socket, _)) => {
                if peer_pid(&socket)? != pid {
                    log::warn!(
                        "refused a shared-memory hand-over to a process that is not the peer"
                    );
                    continue;
                }
                socket.set_nonblocking(false)?;
                let fds = [
                    handles.memfd.as_fd(),
                    handles.opener_bell.as_fd(),
                    handles.creator_bell.as_fd(),
                ];
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                    return Err(io::Error::other("no room for the descriptors"));
                }
                rustix::net::sendmsg(
                    &socket,
                    &[IoSlice::new(b"r")],
                    &mut control,
                    SendFlags::empty(),
                )
                .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer never came",
            ));
        }
        tcp.set_read_timeout(Some(left.min(ACCEPT_POLL)))?;
        match tcp.peek(&mut [0u8; 1]) {
            Ok(_) => return Err(io::Error::other("the peer answered without connecting")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The dialing side, after a hello that named this host: read the acceptor's answer and, on
/// an offer, take the region; returns the link's rings when both ends mapped them.
pub fn take(stream: &mut TcpStream, deadline: Instant) -> CoreResult<Option<ShmRing>> {
    set_timeouts(stream, deadline)?;
    let offer: ShmOffer = recv_control(stream).map_err(lost)?;
    let ShmOffer::Offer {
        socket,
        pid,
        ring_bytes,
    } = offer
    else {
        return Ok(None);
    };
    let ring = receive(&socket, pid, ring_bytes, deadline);
    set_timeouts(stream, deadline)?;
    send_control(
        stream,
        &ShmAck {
            mapped: ring.is_ok(),
        },
    )
    .map_err(lost)?;
    match ring {
        Ok(ring) => Ok(Some(ring)),
        Err(e) => {
            log::info!("shared memory not taken, staying on TCP: {e}");
            Ok(None)
        }
    }
}

fn receive(name: &str, pid: u32, ring_bytes: u64, deadline: Instant) -> io::Result<ShmRing> {
    if !ring_bytes.is_power_of_two() || ring_bytes > MAX_RING_BYTES {
        return Err(io::Error::other(format!(
            "offered rings of {ring_bytes} bytes"
        )));
    }
    let socket = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    if peer_pid(&socket)? != pid {
        return Err(io::Error::other(
            "the offered socket is not held by the peer",
        ));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        &socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let [memfd, opener_bell, creator_bell]: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|_| io::Error::other("the hand-over did not carry three descriptors"))?;
    ShmRing::open(
        Handles {
            memfd,
            opener_bell,
            creator_bell,
        },
        End::Opener,
        ring_bytes as usize,
    )
}
