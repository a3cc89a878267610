//! The ring patterns, written out as [`Steps`] for a `StepSchedule`: reduce-scatter then
//! all-gather (all-reduce), the all-gather alone, and the chain broadcast (a ring cut open at
//! the root).
//!
//! Chunk `k` of every slice travels on stripe `k % connections`, and each step of chunk `k`
//! waits only for the previous step of chunk `k`: the chunks form independent pipelines, so
//! sending, receiving and reducing overlap.

use crate::dtype::ReduceOp;
use crate::group::Group;
use crate::layout::{bytes, Layout};
use crate::mesh::Mesh;
use crate::step_schedule::{RecvStep, SendStep, Sink, Source, Steps};

/// `(a - b) mod n` for slice arithmetic.
fn wrap(value: isize, n: usize) -> usize {
    value.rem_euclid(n as isize) as usize
}

/// Frames received on stripe `k % c` up to and including chunk `k` of step `t`.
fn arrived_through(t: usize, k: usize, chunks: usize, c: usize) -> usize {
    let per_step = (chunks + c - 1 - k % c) / c;
    t * per_step + k / c + 1
}

/// Slot ids: one per (slice, chunk), in order.
fn register_slots(steps: &mut Steps, layout: &Layout, elem: usize) {
    for j in 0..layout.parts() {
        for k in 0..layout.chunks() {
            steps.slot(bytes(layout.chunk(j, k), elem));
        }
    }
}

/// Ring reduce-scatter then all-gather of `layout.parts() == group.len()` slices.
pub fn all_reduce(mesh: &Mesh, group: &Group, layout: &Layout, elem: usize, op: ReduceOp) -> Steps {
    let mut steps = Steps::new(mesh.links.len());
    let n = group.len();
    if n < 2 {
        return steps;
    }
    register_slots(&mut steps, layout, elem);
    let chunks = layout.chunks();
    let c = mesh.connections;
    let p = group.pos as isize;
    for t in 0..2 * (n - 1) {
        let reduce = t < n - 1;
        let (send_slice, recv_slice) = if reduce {
            (wrap(p - t as isize, n), wrap(p - t as isize - 1, n))
        } else {
            let s = (t - (n - 1)) as isize;
            (wrap(p + 1 - s, n), wrap(p - s, n))
        };
        for k in 0..chunks {
            let right = mesh.link(group.right(), k);
            let left = mesh.link(group.left(), k);
            let index = (t * chunks + k) as u32;
            let after = (t > 0).then(|| (left, arrived_through(t - 1, k, chunks, c)));
            steps.sends[right].push_back(SendStep {
                index,
                source: Source::Data(0, bytes(layout.chunk(send_slice, k), elem)),
                after,
            });
            let range = bytes(layout.chunk(recv_slice, k), elem);
            let slot = recv_slice * chunks + k;
            let sink = if reduce {
                Sink::Reduce {
                    range,
                    slot,
                    finalize: op == ReduceOp::Avg && t == n - 2,
                }
            } else {
                Sink::Data {
                    range,
                    slot: Some(slot),
                }
            };
            steps.recvs[left].push_back(RecvStep { index, sink });
        }
    }
    steps
}

/// Ring all-gather: slice `j` of the buffer is member `j`'s contribution, already in place
/// for this peer's own slice. The buffer is fresh output, so nothing is backed up.
pub fn all_gather(mesh: &Mesh, group: &Group, layout: &Layout, elem: usize) -> Steps {
    let mut steps = Steps::new(mesh.links.len());
    let n = group.len();
    if n < 2 {
        return steps;
    }
    let chunks = layout.chunks();
    let c = mesh.connections;
    let p = group.pos as isize;
    for s in 0..n - 1 {
        let send_slice = wrap(p - s as isize, n);
        let recv_slice = wrap(p - s as isize - 1, n);
        for k in 0..chunks {
            let right = mesh.link(group.right(), k);
            let left = mesh.link(group.left(), k);
            let index = (s * chunks + k) as u32;
            steps.sends[right].push_back(SendStep {
                index,
                source: Source::Data(0, bytes(layout.chunk(send_slice, k), elem)),
                after: (s > 0).then(|| (left, arrived_through(s - 1, k, chunks, c))),
            });
            steps.recvs[left].push_back(RecvStep {
                index,
                sink: Sink::Data {
                    range: bytes(layout.chunk(recv_slice, k), elem),
                    slot: None,
                },
            });
        }
    }
    steps
}

/// Pipelined chain from the member at position `root`: each peer forwards chunk `k` as soon
/// as it has it. `layout` has a single slice.
pub fn broadcast(mesh: &Mesh, group: &Group, root: usize, layout: &Layout, elem: usize) -> Steps {
    let mut steps = Steps::new(mesh.links.len());
    let n = group.len();
    if n < 2 {
        return steps;
    }
    register_slots(&mut steps, layout, elem);
    let chunks = layout.chunks();
    let c = mesh.connections;
    let distance = wrap(group.pos as isize - root as isize, n);
    for k in 0..chunks {
        let range = bytes(layout.chunk(0, k), elem);
        let left = mesh.link(group.left(), k);
        if distance > 0 {
            steps.recvs[left].push_back(RecvStep {
                index: k as u32,
                sink: Sink::Data {
                    range: range.clone(),
                    slot: Some(k),
                },
            });
        }
        if distance < n - 1 {
            let right = mesh.link(group.right(), k);
            steps.sends[right].push_back(SendStep {
                index: k as u32,
                source: Source::Data(0, range),
                after: (distance > 0).then(|| (left, arrived_through(0, k, chunks, c))),
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_count_per_stripe() {
        // 5 chunks over 2 stripes: stripe 0 carries chunks 0, 2, 4; stripe 1 carries 1, 3.
        assert_eq!(arrived_through(0, 0, 5, 2), 1);
        assert_eq!(arrived_through(0, 4, 5, 2), 3);
        assert_eq!(arrived_through(1, 0, 5, 2), 4);
        assert_eq!(arrived_through(0, 3, 5, 2), 2);
        assert_eq!(arrived_through(2, 3, 5, 2), 6);
    }
}
