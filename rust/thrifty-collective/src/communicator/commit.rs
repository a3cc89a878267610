//! What every collective shares: check that the mesh is whole, run the data phase, vote,
//! and act on the coordinator's decision (commit, or restore the caller's buffer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use super::{Communicator, OpStats, Scratch};
use crate::control::Control;
use crate::engine::{self, FrameSchedule, Traffic};
use crate::group::Group;
use crate::mesh::Mesh;
use crate::message::{AbortKind, Decision, PeerId, Vote};
use crate::quantized_all_reduce::QuantizedAllReduce;
use crate::signal::OpSignal;
use crate::step_schedule::StepSchedule;

/// How long a peer that has voted waits for the decision beyond the call's deadline, so a
/// data phase that ended at the deadline still learns the outcome.
const DECISION_GRACE: Duration = Duration::from_secs(2);

/// One collective in flight.
pub(super) struct Op {
    epoch: u64,
    seq: u64,
    participants: Vec<PeerId>,
    descriptor: String,
    signal: Arc<OpSignal>,
    deadline: Instant,
    started: Instant,
}

/// What the communicator needs of a frame schedule besides its frames: a check of the received
/// data before voting, and a way to undo its changes when the collective aborts.
pub(super) trait Outcome {
    fn verify(&mut self) -> CoreResult<()> {
        Ok(())
    }
    /// Apply what waited for the commit (the quantized result is decoded only then).
    fn commit(&mut self) -> CoreResult<()> {
        Ok(())
    }
    fn restore(&mut self);
}

impl Outcome for StepSchedule<'_> {
    fn verify(&mut self) -> CoreResult<()> {
        StepSchedule::verify(self)
    }
    fn restore(&mut self) {
        StepSchedule::restore(self);
    }
}

impl Outcome for QuantizedAllReduce<'_> {
    fn verify(&mut self) -> CoreResult<()> {
        QuantizedAllReduce::verify(self)
    }
    fn commit(&mut self) -> CoreResult<()> {
        QuantizedAllReduce::commit(self)
    }
    /// The buffer was only read: nothing to undo.
    fn restore(&mut self) {}
}

/// The data phase of a collective that moves no data (barrier, scalars, summaries).
pub(super) struct Idle;

impl FrameSchedule for Idle {
    fn next_send(&mut self, _link: usize) -> CoreResult<Option<engine::Outgoing>> {
        Ok(None)
    }
    fn bytes(&self, _region: usize, _range: std::ops::Range<usize>) -> &[u8] {
        &[]
    }
    fn next_recv(&mut self, _link: usize) -> Option<engine::Incoming> {
        None
    }
    fn recv_into(&mut self, _link: usize, _incoming: engine::Incoming) -> &mut [u8] {
        &mut []
    }
    fn received(&mut self, _link: usize, _incoming: engine::Incoming) -> CoreResult<()> {
        Ok(())
    }
    fn finished(&self) -> bool {
        true
    }
}

impl Outcome for Idle {
    fn restore(&mut self) {}
}

impl Communicator {
    /// Chunks of about 1/connections of a slice, between 64 KiB and 256 KiB: every stripe
    /// gets work, and a slice has enough chunks that reducing one overlaps receiving the
    /// next (with 1 MiB, a 16 MB all-reduce over 4 peers had one chunk per stripe, and
    /// nothing to overlap).
    pub(super) fn chunk_elems(&self, slice_elems: usize, elem: usize) -> usize {
        let per_stripe = slice_elems.div_ceil(self.options.connections);
        let lo = (64 << 10) / elem;
        let hi = (256 << 10) / elem;
        per_stripe.clamp(lo, hi)
    }

    pub(super) fn whole_group(&self) -> CoreResult<Group> {
        let rank = self
            .rank()
            .ok_or_else(|| CoreError::Internal("no rank in the view".into()))?;
        Ok(Group {
            ranks: (0..self.world_size()).collect(),
            pos: rank,
        })
    }

    fn begin(&mut self, descriptor: String, participants: Vec<PeerId>) -> CoreResult<Op> {
        if let Some(reason) = &self.stale {
            return Err(CoreError::PeerLost(format!(
                "{reason}; call update_topology() before the next collective"
            )));
        }
        let epoch = self.epoch();
        if let Some(reason) = self.control()?.broken(epoch) {
            self.stale = Some(reason.clone());
            self.mesh = None;
            return Err(CoreError::PeerLost(format!(
                "{reason}; call update_topology() and retry"
            )));
        }
        self.seq += 1;
        let signal = OpSignal::new();
        if let Some(mesh) = &self.mesh {
            signal.set_waker(Some(Arc::clone(&mesh.waker)));
        }
        self.control()?
            .watch(epoch, self.seq, participants.clone(), Arc::clone(&signal));
        let started = Instant::now();
        Ok(Op {
            epoch,
            seq: self.seq,
            participants,
            descriptor,
            signal,
            deadline: started + self.options.timeout,
            started,
        })
    }

    fn ids_of(&self, ranks: &[usize]) -> Vec<PeerId> {
        let members = self.members();
        ranks.iter().map(|&r| members[r]).collect()
    }

    /// Run one collective's data phase, vote, and apply the decision.
    pub(super) fn finish<S: FrameSchedule + Outcome>(
        control: &Control,
        mesh: &mut Mesh,
        op: &Op,
        schedule: &mut S,
        payload: Vec<u8>,
        local_error: Option<CoreError>,
    ) -> (CoreResult<(Decision, Traffic)>, bool) {
        let result = match local_error {
            Some(error) => Err(error),
            None => engine::run(mesh, schedule, op.seq, &op.signal, op.deadline)
                .and_then(|traffic| schedule.verify().map(|()| traffic)),
        };
        let vote = match &result {
            Ok(_) => Vote {
                epoch: op.epoch,
                seq: op.seq,
                participants: op.participants.clone(),
                descriptor: op.descriptor.clone(),
                ok: true,
                reason: String::new(),
                kind: AbortKind::PeerLost,
                payload,
            },
            Err(error) => Vote {
                epoch: op.epoch,
                seq: op.seq,
                participants: op.participants.clone(),
                descriptor: op.descriptor.clone(),
                ok: false,
                reason: error.to_string(),
                kind: AbortKind::of(error),
                payload: Vec::new(),
            },
        };
        let decided = control.vote(vote).and_then(|()| {
            control.await_decision(
                op.epoch,
                op.seq,
                op.deadline.max(Instant::now()) + DECISION_GRACE,
            )
        });
        control.unwatch();
        match (result, decided) {
            (Ok(traffic), Ok(decision)) if decision.commit => {
                (schedule.commit().map(|()| (decision, traffic)), true)
            }
            // A rank whose link was dropped by a peer that found the shapes differ, or that
            // rejected its own input, reports that cause, which the coordinator decided on
            // first, not the dropped link: a retry would fail the same way.
            (Err(error), Ok(decision))
                if !decision.commit
                    && (decision.kind == AbortKind::Mismatch
                        || (decision.kind == AbortKind::PeerError
                            && matches!(error, CoreError::PeerLost(_)))) =>
            {
                schedule.restore();
                (Err(decision.kind.error(decision.reason.clone())), false)
            }
            (Err(error), _) => {
                schedule.restore();
                (Err(error), false)
            }
            (Ok(_), Ok(decision)) => {
                schedule.restore();
                (Err(decision.kind.error(decision.reason.clone())), false)
            }
            (Ok(_), Err(error)) => {
                schedule.restore();
                (Err(error), false)
            }
        }
    }

    /// Run a collective over `group` with `schedule` built from the mesh.
    pub(super) fn collective<T>(
        &mut self,
        descriptor: String,
        group: &[usize],
        run: impl FnOnce(&Control, &mut Mesh, &Op, &mut Scratch) -> (CoreResult<T>, bool),
    ) -> CoreResult<T> {
        let participants = self.ids_of(group);
        let op = self.begin(descriptor, participants)?;
        let control = self
            .control
            .as_ref()
            .ok_or_else(|| CoreError::Internal("connected without control".into()))?;
        let mesh = self
            .mesh
            .as_mut()
            .ok_or_else(|| CoreError::Internal("a topology without a mesh".into()))?;
        let (result, committed) = run(control, mesh, &op, &mut self.scratch);
        if !committed {
            // The links may hold frames of the aborted collective: the next epoch gets new ones.
            let reason = match &result {
                Err(e) => e.to_string(),
                Ok(_) => "collective aborted".into(),
            };
            self.mesh = None;
            self.stale = Some(format!("the last collective failed ({reason})"));
        }
        result
    }

    pub(super) fn stats(op: &Op, traffic: Traffic) -> OpStats {
        OpStats {
            bytes_sent: traffic.sent,
            bytes_received: traffic.received,
            seconds: op.started.elapsed().as_secs_f64(),
        }
    }
}

pub(super) fn check_len(len: usize, elem: usize, argument: &'static str) -> CoreResult<()> {
    if len / elem * elem != len {
        return Err(CoreError::shape(
            argument,
            format!("{len} bytes is not a whole number of {elem}-byte elements"),
        ));
    }
    Ok(())
}
