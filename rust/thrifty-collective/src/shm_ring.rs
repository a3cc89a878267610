//! A link's byte streams through shared memory: two single-producer single-consumer rings in
//! one sealed memfd, one per direction, and an eventfd doorbell per end.
//!
//! The rings carry exactly the bytes a TCP link would (frame headers included), through the
//! same `read` / `write` calls with the same `WouldBlock` semantics, so the engine's frame
//! logic, and with it the reduction order and every bit of the result, is the same on both
//! transports. Only the copies change: one `memcpy` into the ring and one out of it, with no
//! system call while both ends keep up.
//!
//! Wake-ups: an end that finds its ring empty (or full) raises its `waiting` flag, checks the
//! ring once more, and only then reports `WouldBlock`; the other end, after moving its index,
//! rings the doorbell if and only if it finds the flag raised. Both sides order their store
//! before their load with a sequentially consistent fence, so at least one of them sees the
//! other's store: either the waiter sees the new index, or the mover sees the flag and rings.
//! The doorbell is an eventfd in the engine's poll, so a wait is the engine's one poll, which
//! also watches the link's TCP connection (a dead peer) and the coordinator's abort signal.
//!
//! A peer's memory is trusted no more than its TCP bytes: indices read from the ring are
//! checked against the ring's size before any copy, so a corrupt peer can garble data (which
//! the frame headers catch) but never make this process read or write out of bounds.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Bytes of each direction's ring: a power of two, a few frames deep, small enough that
/// a ring written by one core is still in the last-level cache when the other reads it.
pub const RING_BYTES: usize = 1 << 20;

/// The control block of one direction sits in the first page; each index and flag on its own
/// cache line, so the producer's and the consumer's stores do not contend.
const CONTROL_BYTES: usize = 4096;
const DIRECTION_STRIDE: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
const READER_WAITING: usize = 128;
const WRITER_WAITING: usize = 192;

/// Which ring an end writes: the creator writes ring 0 and reads ring 1, the opener the
/// other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Creator,
    Opener,
}

/// The region's length for rings of `ring_bytes`.
pub fn region_len(ring_bytes: usize) -> usize {
    CONTROL_BYTES + 2 * ring_bytes
}

/// What the creator hands to the opener: the region and both doorbells.
pub struct Handles {
    pub memfd: OwnedFd,
    /// Rung by the creator, waited on by the opener.
    pub opener_bell: OwnedFd,
    /// Rung by the opener, waited on by the creator.
    pub creator_bell: OwnedFd,
}

/// A shared mapping; unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// The mapping is plain memory; all shared access goes through atomics or the ring protocol.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what `mmap` returned and nothing borrows the
        // mapping past the life of its `ShmRing`.
        unsafe {
            let _ = rustix::mm::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One end of a link's two rings.
pub struct ShmRing {
    map: Mapping,
    ring_bytes: usize,
    /// The control block and data of the ring this end writes, and of the one it reads.
    out_ctl: usize,
    out_data: usize,
    in_ctl: usize,
    in_data: usize,
    /// This end's doorbell (registered in the poll) and the other end's (rung).
    bell: OwnedFd,
    peer_bell: OwnedFd,
}

fn io_err(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// A fresh sealed region and two doorbells, for rings of `ring_bytes`.
pub fn create_handles(ring_bytes: usize) -> io::Result<Handles> {
    let memfd = rustix::fs::memfd_create(
        "thrifty-link",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(io_err)?;
    rustix::fs::ftruncate(&memfd, region_len(ring_bytes) as u64).map_err(io_err)?;
    // Sealed at its size: neither end can shrink it under the other's mapping (a SIGBUS).
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .map_err(io_err)?;
    let bell = || eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(io_err);
    Ok(Handles {
        memfd,
        opener_bell: bell()?,
        creator_bell: bell()?,
    })
}

impl ShmRing {
    /// Map `handles` as `end`. The opener checks that the region is sealed at the expected
    /// size before mapping it, so the creator cannot later truncate it under this process.
    pub fn open(handles: Handles, end: End, ring_bytes: usize) -> io::Result<Self> {
        if !ring_bytes.is_power_of_two() {
            return Err(io::Error::other("ring size must be a power of two"));
        }
        let len = region_len(ring_bytes);
        let seals = rustix::fs::fcntl_get_seals(&handles.memfd).map_err(io_err)?;
        let stat = rustix::fs::fstat(&handles.memfd).map_err(io_err)?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) || stat.st_size as u64 != len as u64
        {
            return Err(io::Error::other(
                "the shared region is not sealed at the agreed size",
            ));
        }
        // SAFETY: a fresh shared mapping of a file at least `len` long (checked above, and
        // sealed so it stays so); no Rust reference to it exists yet.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &handles.memfd,
                0,
            )
        }
        .map_err(io_err)?;
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        let map = Mapping { base, len };
        let ring = |i: usize| (i * DIRECTION_STRIDE, CONTROL_BYTES + i * ring_bytes);
        let (mine, theirs) = match end {
            End::Creator => (0, 1),
            End::Opener => (1, 0),
        };
        let (bell, peer_bell) = match end {
            End::Creator => (handles.creator_bell, handles.opener_bell),
            End::Opener => (handles.opener_bell, handles.creator_bell),
        };
        Ok(Self {
            map,
            ring_bytes,
            out_ctl: ring(mine).0,
            out_data: ring(mine).1,
            in_ctl: ring(theirs).0,
            in_data: ring(theirs).1,
            bell,
            peer_bell,
        })
    }

    /// The doorbell to register for readiness: it rings when the other end has moved an
    /// index this end waits on.
    pub fn bell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Clear the doorbell after its poll event. A ring that arrives after this makes a new
    /// event; one that arrived before has its index move visible to the retry that follows.
    pub fn quiet_bell(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.bell, &mut count);
    }

    fn atomic64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offsets are fixed, aligned and inside the control page of the live mapping;
        // the other process touches these words only atomically.
        unsafe { &*self.map.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn atomic32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `atomic64`.
        unsafe { &*self.map.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    fn ring(&self) {
        let _ = rustix::io::write(&self.peer_bell, &1u64.to_ne_bytes());
    }

    /// Tell the other end about a moved index if it said it waits for one.
    fn notify(&self, waiting: usize) {
        fence(Ordering::SeqCst);
        let flag = self.atomic32(waiting);
        if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::AcqRel) != 0 {
            self.ring();
        }
    }

    /// Bytes in use of a ring, from its indices; a count beyond the ring is a corrupt peer.
    fn used(&self, head: u64, tail: u64) -> io::Result<usize> {
        let used = head.wrapping_sub(tail);
        if used > self.ring_bytes as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared ring's indices are corrupt",
            ));
        }
        Ok(used as usize)
    }

    /// Free bytes of the outgoing ring, raising the waiting flag (and checking once more)
    /// when there are none.
    fn space(&self) -> io::Result<(u64, usize)> {
        let head = self.atomic64(self.out_ctl + HEAD).load(Ordering::Relaxed);
        let tail = self.atomic64(self.out_ctl + TAIL);
        let free = self.ring_bytes - self.used(head, tail.load(Ordering::Acquire))?;
        if free > 0 {
            return Ok((head, free));
        }
        let waiting = self.atomic32(self.out_ctl + WRITER_WAITING);
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let free = self.ring_bytes - self.used(head, tail.load(Ordering::Acquire))?;
        if free == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        waiting.store(0, Ordering::Relaxed);
        Ok((head, free))
    }

    /// Copy as much of `bufs` as fits into the outgoing ring; `WouldBlock` when it is full.
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let (head, free) = self.space()?;
        let mut at = head;
        let mut left = free.min(total);
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = buf.len().min(left);
            self.copy_in(at, &buf[..take]);
            at += take as u64;
            left -= take;
        }
        self.atomic64(self.out_ctl + HEAD)
            .store(at, Ordering::Release);
        self.notify(self.out_ctl + READER_WAITING);
        Ok((at - head) as usize)
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Copy what has arrived (up to `buf.len()` bytes) out of the incoming ring;
    /// `WouldBlock` when it is empty.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let tail = self.atomic64(self.in_ctl + TAIL).load(Ordering::Relaxed);
        let head = self.atomic64(self.in_ctl + HEAD);
        let mut avail = self.used(head.load(Ordering::Acquire), tail)?;
        if avail == 0 {
            let waiting = self.atomic32(self.in_ctl + READER_WAITING);
            waiting.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            avail = self.used(head.load(Ordering::Acquire), tail)?;
            if avail == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            waiting.store(0, Ordering::Relaxed);
        }
        let n = avail.min(buf.len());
        self.copy_out(tail, &mut buf[..n]);
        self.atomic64(self.in_ctl + TAIL)
            .store(tail + n as u64, Ordering::Release);
        self.notify(self.in_ctl + WRITER_WAITING);
        Ok(n)
    }

    /// The two pieces of the ring at stream position `at` for `len` bytes (the second is empty
    /// unless the span wraps).
    fn spans(&self, at: u64, len: usize) -> ((usize, usize), (usize, usize)) {
        let start = (at % self.ring_bytes as u64) as usize;
        let first = len.min(self.ring_bytes - start);
        ((start, first), (0, len - first))
    }

    fn copy_in(&self, at: u64, src: &[u8]) {
        let ((a, an), (b, bn)) = self.spans(at, src.len());
        let data = self.out_data;
        // SAFETY: both spans lie inside this end's outgoing ring (`spans` keeps them below
        // `ring_bytes`), which the consumer does not read until `head` is published, and
        // `src` is a caller's buffer, so it cannot overlap the mapping's ring.
        unsafe {
            let base = self.map.base.as_ptr().add(data);
            std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(a), an);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(an), base.add(b), bn);
        }
    }

    fn copy_out(&self, at: u64, dst: &mut [u8]) {
        let ((a, an), (b, bn)) = self.spans(at, dst.len());
        let data = self.in_data;
        // SAFETY: both spans lie inside the incoming ring and hold bytes the producer has
        // published (`used` bounded them); it does not overwrite them before `tail` moves.
        unsafe {
            let base = self.map.base.as_ptr().add(data);
            std::ptr::copy_nonoverlapping(base.add(a), dst.as_mut_ptr(), an);
            std::ptr::copy_nonoverlapping(base.add(b), dst.as_mut_ptr().add(an), bn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ring_bytes: usize) -> (ShmRing, ShmRing) {
        let handles = create_handles(ring_bytes).expect("create");
        let copy = Handles {
            memfd: handles.memfd.try_clone().expect("dup"),
            opener_bell: handles.opener_bell.try_clone().expect("dup"),
            creator_bell: handles.creator_bell.try_clone().expect("dup"),
        };
        (
            ShmRing::open(handles, End::Creator, ring_bytes).expect("creator"),
            ShmRing::open(copy, End::Opener, ring_bytes).expect("opener"),
        )
    }

    #[test]
    fn bytes_cross_in_order_through_wrap_arounds() {
        let (a, b) = pair(4096);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut got = Vec::new();
        let mut sent = 0;
        let mut buf = vec![0u8; 3001];
        while got.len() < data.len() {
            if sent < data.len() {
                let end = (sent + 2500).min(data.len());
                let (x, y) = data[sent..end].split_at((end - sent) / 3);
                match a.write_vectored(&[IoSlice::new(x), IoSlice::new(y)]) {
                    Ok(k) => sent += k,
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
            }
            match b.read(&mut buf) {
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        }
        assert_eq!(got, data);
    }

    #[test]
    fn a_blocked_end_is_woken_by_the_other() {
        let (a, b) = pair(4096);
        let mut buf = [0u8; 16];
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        a.write(b"hello").expect("write");
        let mut count = [0u8; 8];
        assert_eq!(
            rustix::io::read(b.bell(), &mut count),
            Ok(8),
            "b's bell rang"
        );
        assert_eq!(b.read(&mut buf).expect("read"), 5);

        assert_eq!(a.write(&[1u8; 4096]).expect("fill"), 4096);
        assert_eq!(
            a.write(&[1u8; 1]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(b.read(&mut buf).expect("read"), 16);
        assert_eq!(
            rustix::io::read(a.bell(), &mut count),
            Ok(8),
            "a's bell rang"
        );
    }

    #[test]
    fn corrupt_indices_are_refused_not_followed() {
        let (a, b) = pair(4096);
        a.atomic64(a.out_ctl + HEAD)
            .store(1 << 40, Ordering::SeqCst);
        let mut buf = [0u8; 16];
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn an_unsealed_region_is_refused() {
        let memfd = rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC).expect("memfd");
        rustix::fs::ftruncate(&memfd, region_len(4096) as u64).expect("size");
        let bell = || eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let handles = Handles {
            memfd,
            opener_bell: bell(),
            creator_bell: bell(),
        };
        assert!(ShmRing::open(handles, End::Opener, 4096).is_err());
    }
}
