//! The data plane: one non-blocking event loop drives a collective's frame schedule over the
//! mesh.
//!
//! A frame schedule says, link by link, which frame goes out next (once its inputs are final)
//! and which frame comes in next (and what to do with it). The engine does all the I/O: it writes
//! and reads whatever the sockets accept, so sends, receives and reductions overlap on one
//! thread without locks, and it checks the deadline and the coordinator's abort signal on
//! every wake-up. One thread per peer is also what a 2-core machine running four peers needs.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::frame::{data_tag, FrameHeader, FrameKind, HEADER_LEN, MAX_DATA_FRAME};
use crate::mesh::{liveness_link, LinkId, Mesh, WAKER_TOKEN};
use crate::message::AbortKind;
use crate::signal::OpSignal;

/// Where the bytes of an outgoing frame live; the schedule resolves it in `bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub index: u32,
    pub region: usize,
    pub range: Range<usize>,
}

/// The next frame a link expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub index: u32,
    pub len: usize,
}

/// A collective's communication pattern as the engine sees it: per link, which frame goes out
/// next and which comes in next. Implemented by `step_schedule::StepSchedule` (steps written
/// out in full) and by `quantized_all_reduce::QuantizedAllReduce`.
pub trait FrameSchedule {
    /// The next frame for `link`, if its data is final; `None` when nothing is ready yet
    /// (or nothing is left). Called again after every completed receive.
    fn next_send(&mut self, link: LinkId) -> CoreResult<Option<Outgoing>>;
    fn bytes(&self, region: usize, range: Range<usize>) -> &[u8];
    /// The next frame `link` expects, if any.
    fn next_recv(&mut self, link: LinkId) -> Option<Incoming>;
    /// Where that frame's payload goes (exactly `incoming.len` bytes).
    fn recv_into(&mut self, link: LinkId, incoming: Incoming) -> &mut [u8];
    /// The frame has fully arrived.
    fn received(&mut self, link: LinkId, incoming: Incoming) -> CoreResult<()>;
    /// Every frame has been received and every send handed out.
    fn finished(&self) -> bool;
}

/// Bytes moved by one collective, headers included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

struct SendState {
    header: [u8; HEADER_LEN],
    frame: Outgoing,
    /// Bytes of header + payload already written.
    done: usize,
}

struct RecvState {
    header: [u8; HEADER_LEN],
    header_done: usize,
    incoming: Incoming,
    done: usize,
}

/// What a dead or desynchronised link means for the caller.
fn link_lost(mesh: &Mesh, link: LinkId, what: impl std::fmt::Display) -> CoreError {
    let peer = mesh.links[link].peer;
    CoreError::PeerLost(format!("link to rank {peer} lost: {what}"))
}

fn abort_error(signal: &OpSignal) -> CoreError {
    let (kind, reason) = signal
        .reason()
        .unwrap_or((AbortKind::PeerLost, "aborted by the coordinator".into()));
    kind.error(reason)
}

/// Run `schedule` to completion over `mesh`.
pub fn run(
    mesh: &mut Mesh,
    schedule: &mut dyn FrameSchedule,
    seq: u64,
    signal: &OpSignal,
    deadline: Instant,
) -> CoreResult<Traffic> {
    let n = mesh.links.len();
    let mut sends: Vec<Option<SendState>> = (0..n).map(|_| None).collect();
    let mut recvs: Vec<Option<RecvState>> = (0..n).map(|_| None).collect();
    let mut traffic = Traffic::default();
    let mut events = mio::Events::with_capacity(256);
    loop {
        if signal.is_raised() {
            return Err(abort_error(signal));
        }
        let mut progress = false;
        for link in 0..n {
            progress |= pump_send(mesh, schedule, link, seq, &mut sends[link], &mut traffic)?;
            progress |= pump_recv(mesh, schedule, link, seq, &mut recvs[link], &mut traffic)?;
        }
        if schedule.finished() && sends.iter().all(Option::is_none) {
            return Ok(traffic);
        }
        if progress {
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CoreError::Timeout(format!(
                "collective {seq} ran past its deadline"
            )));
        }
        // Capped so a lost wake-up costs at most this much latency.
        let wait = (deadline - now).min(Duration::from_millis(200));
        match mesh.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CoreError::PeerLost(format!("poll failed: {e}"))),
        }
        for event in events.iter() {
            let token = event.token().0;
            if token == WAKER_TOKEN {
                continue;
            }
            if token >= n {
                if let Some(link) = liveness_link(n, token) {
                    mesh.links[link].on_liveness();
                }
                continue;
            }
            let state = &mut mesh.links[token];
            if state.shm.is_some() {
                state.on_ready();
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                state.writable = true;
            }
        }
    }
}

/// Write as much of `link`'s pending frames as the socket takes. Returns whether it moved.
fn pump_send(
    mesh: &mut Mesh,
    schedule: &mut dyn FrameSchedule,
    link: LinkId,
    seq: u64,
    slot: &mut Option<SendState>,
    traffic: &mut Traffic,
) -> CoreResult<bool> {
    let mut progress = false;
    loop {
        if slot.is_none() {
            match schedule.next_send(link)? {
                Some(frame) => {
                    let len = frame.range.len();
                    if len > MAX_DATA_FRAME {
                        return Err(CoreError::Internal(format!(
                            "a frame of {len} bytes exceeds the protocol limit"
                        )));
                    }
                    let header =
                        FrameHeader::new(FrameKind::Data, len, data_tag(seq, frame.index)).encode();
                    *slot = Some(SendState {
                        header,
                        frame,
                        done: 0,
                    });
                    progress = true;
                }
                None => return Ok(progress),
            }
        }
        if !mesh.links[link].writable {
            return Ok(progress);
        }
        let state = slot.as_mut().expect("slot filled above");
        let payload = schedule.bytes(state.frame.region, state.frame.range.clone());
        let total = HEADER_LEN + payload.len();
        while state.done < total {
            let written = if state.done < HEADER_LEN {
                let bufs = [
                    IoSlice::new(&state.header[state.done..]),
                    IoSlice::new(payload),
                ];
                mesh.links[link].write_vectored(&bufs)
            } else {
                mesh.links[link].write(&payload[state.done - HEADER_LEN..])
            };
            match written {
                Ok(0) => return Err(link_lost(mesh, link, "connection closed")),
                Ok(k) => {
                    state.done += k;
                    traffic.sent += k as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    mesh.links[link].writable = false;
                    return Ok(progress);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(link_lost(mesh, link, e)),
            }
        }
        *slot = None;
    }
}

/// Read as much of `link`'s expected frames as have arrived. Returns whether it moved.
fn pump_recv(
    mesh: &mut Mesh,
    schedule: &mut dyn FrameSchedule,
    link: LinkId,
    seq: u64,
    slot: &mut Option<RecvState>,
    traffic: &mut Traffic,
) -> CoreResult<bool> {
    let mut progress = false;
    loop {
        if slot.is_none() {
            match schedule.next_recv(link) {
                Some(incoming) => {
                    *slot = Some(RecvState {
                        header: [0; HEADER_LEN],
                        header_done: 0,
                        incoming,
                        done: 0,
                    })
                }
                None => return Ok(progress),
            }
        }
        if !mesh.links[link].readable {
            return Ok(progress);
        }
        let state = slot.as_mut().expect("slot filled above");
        let result = if state.header_done < HEADER_LEN {
            mesh.links[link].read(&mut state.header[state.header_done..])
        } else {
            let incoming = state.incoming;
            let dest = schedule.recv_into(link, incoming);
            mesh.links[link].read(&mut dest[state.done..])
        };
        match result {
            Ok(0) if state.header_done < HEADER_LEN || state.done < state.incoming.len => {
                return Err(link_lost(mesh, link, "connection closed by the peer"))
            }
            Ok(k) => {
                traffic.received += k as u64;
                progress = true;
                if state.header_done < HEADER_LEN {
                    state.header_done += k;
                    if state.header_done == HEADER_LEN {
                        check_header(mesh, link, seq, state)?;
                    }
                } else {
                    state.done += k;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                mesh.links[link].readable = false;
                return Ok(progress);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(link_lost(mesh, link, e)),
        }
        if state.header_done == HEADER_LEN && state.done == state.incoming.len {
            let incoming = state.incoming;
            *slot = None;
            schedule.received(link, incoming)?;
            progress = true;
        }
    }
}

fn check_header(mesh: &Mesh, link: LinkId, seq: u64, state: &RecvState) -> CoreResult<()> {
    let header =
        FrameHeader::decode(&state.header, MAX_DATA_FRAME).map_err(|e| link_lost(mesh, link, e))?;
    let expected = data_tag(seq, state.incoming.index);
    if header.kind == FrameKind::Data
        && header.tag == expected
        && header.len as usize != state.incoming.len
    {
        // The same part of the same collective, sized differently: the peer was called with
        // another shape. Said so, not reported as a lost link, so that every rank can learn
        // the cause (this vote reaches the coordinator before any link is dropped).
        let peer = mesh.links[link].peer;
        return Err(CoreError::Mismatch(format!(
            "shapes differ: rank {peer} sent {} bytes for part {} of collective {seq}, where \
             this rank's call gives {} bytes",
            header.len, state.incoming.index, state.incoming.len
        )));
    }
    if header.kind != FrameKind::Data
        || header.tag != expected
        || header.len as usize != state.incoming.len
    {
        let message = format!(
            "unexpected frame ({:?}, tag {:#x}, {} bytes) where ({:#x}, {} bytes) was due",
            header.kind, header.tag, header.len, expected, state.incoming.len
        );
        log::warn!("dropping a link: {message}");
        return Err(link_lost(mesh, link, message));
    }
    Ok(())
}
