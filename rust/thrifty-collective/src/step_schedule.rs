//! A frame schedule written out in full, as steps: per link, the frames to send (each
//! waiting, if need be, for a number of frames to have arrived on another link) and the
//! frames to receive (each with what to do with it). The ring all-reduce, the ring
//! all-gather, the chain broadcast and the shared-state transfers are all step schedules;
//! only their builders differ (`ring`, and `communicator::sync_state` for the transfers).
//!
//! Every byte range of the caller's buffer that a step schedule overwrites is copied to a
//! backup just before its first change, so a failed collective restores the buffer exactly.

use std::collections::VecDeque;
use std::ops::Range;

use thrifty_core::{CoreError, CoreResult};

use crate::aligned_buf::AlignedBuf;
use crate::dtype::{DType, ReduceOp};
use crate::engine::{FrameSchedule, Incoming, Outgoing};
use crate::mesh::LinkId;
use crate::reduce::{finalize_avg, reduce_bytes};

/// The buffers of a step schedule, kept by the communicator from one collective to the next,
/// so a collective neither allocates nor zeroes (and page-faults) megabytes of staging every
/// time.
#[derive(Default)]
pub struct StepScratch {
    /// The caller's bytes that the current collective has overwritten.
    pub backup: AlignedBuf,
    /// One staging buffer per link for frames that are reduced into the caller's buffer.
    pub link_stage: Vec<AlignedBuf>,
}

/// Where an outgoing frame's bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Bytes of the caller's buffer number `.0` (all-reduce and broadcast use buffer 0;
    /// shared-state transfers send from each array).
    Data(usize, Range<usize>),
}

/// What happens to an incoming frame.
#[derive(Clone, Debug)]
pub enum Sink {
    /// Straight into the caller's buffer (backed up first when `slot` is set).
    Data {
        range: Range<usize>,
        slot: Option<usize>,
    },
    /// Into the link's staging buffer, then reduced into the caller's buffer; `finalize`
    /// divides by the group size afterwards (op = avg, last reduction of the range).
    Reduce {
        range: Range<usize>,
        slot: usize,
        finalize: bool,
    },
    /// Into staging buffer `stage` (fetched shared state, verified before it is used).
    Stage { stage: usize, range: Range<usize> },
}

#[derive(Clone, Debug)]
pub struct SendStep {
    pub index: u32,
    pub source: Source,
    /// Ready once this many frames have arrived on that link.
    pub after: Option<(LinkId, usize)>,
}

#[derive(Clone, Debug)]
pub struct RecvStep {
    pub index: u32,
    pub sink: Sink,
}

impl RecvStep {
    fn len(&self) -> usize {
        match &self.sink {
            Sink::Data { range, .. } | Sink::Reduce { range, .. } | Sink::Stage { range, .. } => {
                range.len()
            }
        }
    }
}

/// The per-link frame lists a builder produces.
#[derive(Default, Debug)]
pub struct Steps {
    pub sends: Vec<VecDeque<SendStep>>,
    pub recvs: Vec<VecDeque<RecvStep>>,
    /// Byte range of each backup slot.
    pub slots: Vec<Range<usize>>,
}

impl Steps {
    pub fn new(links: usize) -> Self {
        Self {
            sends: (0..links).map(|_| VecDeque::new()).collect(),
            recvs: (0..links).map(|_| VecDeque::new()).collect(),
            slots: Vec::new(),
        }
    }

    pub fn slot(&mut self, range: Range<usize>) -> usize {
        self.slots.push(range);
        self.slots.len() - 1
    }
}

/// How received data combines with the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Reduction {
    pub dtype: DType,
    pub op: ReduceOp,
    /// The divisor of op = avg.
    pub group: usize,
}

/// Runs [`Steps`] over the caller's buffer: what the engine sends and receives, reductions,
/// backups, and the restore of an aborted collective.
pub struct StepSchedule<'a> {
    /// The buffer every sink writes to; sends may also read `extra` buffers.
    data: &'a mut [u8],
    extra: Vec<&'a [u8]>,
    reduction: Option<Reduction>,
    steps: Steps,
    arrived: Vec<usize>,
    backup: &'a mut AlignedBuf,
    backed: Vec<bool>,
    link_stage: &'a mut [AlignedBuf],
    stages: &'a mut [AlignedBuf],
    verifier: Option<Verifier<'a>>,
}

/// Checks the staged data once every frame has arrived (fetched state against its hash).
pub type Verifier<'a> = Box<dyn Fn(&[AlignedBuf]) -> CoreResult<()> + 'a>;

impl<'a> StepSchedule<'a> {
    pub fn new(
        data: &'a mut [u8],
        reduction: Option<Reduction>,
        steps: Steps,
        scratch: &'a mut StepScratch,
        stages: &'a mut [AlignedBuf],
    ) -> Self {
        let links = steps.sends.len();
        let StepScratch { backup, link_stage } = scratch;
        if link_stage.len() < links {
            link_stage.resize_with(links, AlignedBuf::default);
        }
        for (link, recvs) in steps.recvs.iter().enumerate() {
            let widest = recvs
                .iter()
                .filter(|r| matches!(r.sink, Sink::Reduce { .. }))
                .map(RecvStep::len)
                .max()
                .unwrap_or(0);
            link_stage[link].resize(widest);
        }
        backup.resize(data.len());
        let backed = vec![false; steps.slots.len()];
        Self {
            data,
            extra: Vec::new(),
            reduction,
            arrived: vec![0; links],
            steps,
            backup,
            backed,
            link_stage,
            stages,
            verifier: None,
        }
    }

    pub fn with_verifier(mut self, verifier: Verifier<'a>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Run the verifier, if any, over the staged data.
    pub fn verify(&self) -> CoreResult<()> {
        match &self.verifier {
            Some(verify) => verify(self.stages),
            None => Ok(()),
        }
    }

    /// Read-only buffers that sends name as `Source::Data(1 + i, ..)`.
    pub fn with_sources(mut self, extra: Vec<&'a [u8]>) -> Self {
        self.extra = extra;
        self
    }

    fn back_up(&mut self, slot: usize) {
        if !self.backed[slot] {
            let range = self.steps.slots[slot].clone();
            self.backup.as_bytes_mut()[range.clone()].copy_from_slice(&self.data[range]);
            self.backed[slot] = true;
        }
    }

    /// Put back every byte range this schedule changed.
    pub fn restore(&mut self) {
        for (slot, backed) in self.backed.iter_mut().enumerate() {
            if *backed {
                let range = self.steps.slots[slot].clone();
                self.data[range.clone()].copy_from_slice(&self.backup.as_bytes()[range]);
                *backed = false;
            }
        }
    }
}

impl FrameSchedule for StepSchedule<'_> {
    fn next_send(&mut self, link: LinkId) -> CoreResult<Option<Outgoing>> {
        let Some(step) = self.steps.sends[link].front() else {
            return Ok(None);
        };
        if let Some((other, count)) = step.after {
            if self.arrived[other] < count {
                return Ok(None);
            }
        }
        let step = self.steps.sends[link].pop_front().expect("front exists");
        let Source::Data(region, range) = step.source;
        Ok(Some(Outgoing {
            index: step.index,
            region,
            range,
        }))
    }

    fn bytes(&self, region: usize, range: Range<usize>) -> &[u8] {
        match region {
            0 => &self.data[range],
            other => &self.extra[other - 1][range],
        }
    }

    fn next_recv(&mut self, link: LinkId) -> Option<Incoming> {
        self.steps.recvs[link].front().map(|step| Incoming {
            index: step.index,
            len: step.len(),
        })
    }

    fn recv_into(&mut self, link: LinkId, incoming: Incoming) -> &mut [u8] {
        let sink = self.steps.recvs[link]
            .front()
            .map(|s| s.sink.clone())
            .expect("the engine asks only for an expected frame");
        match sink {
            Sink::Data { range, slot } => {
                if let Some(slot) = slot {
                    self.back_up(slot);
                }
                &mut self.data[range]
            }
            Sink::Reduce { .. } => &mut self.link_stage[link].as_bytes_mut()[..incoming.len],
            Sink::Stage { stage, range } => &mut self.stages[stage].as_bytes_mut()[range],
        }
    }

    fn received(&mut self, link: LinkId, _incoming: Incoming) -> CoreResult<()> {
        let step = self.steps.recvs[link]
            .pop_front()
            .ok_or_else(|| CoreError::Internal("a frame arrived that no step expects".into()))?;
        self.arrived[link] += 1;
        if let Sink::Reduce {
            range,
            slot,
            finalize,
        } = step.sink
        {
            let reduction = self
                .reduction
                .ok_or_else(|| CoreError::Internal("a reduce step without a reduction".into()))?;
            self.back_up(slot);
            let len = range.len();
            reduce_bytes(
                reduction.dtype,
                reduction.op,
                &mut self.data[range.clone()],
                &self.link_stage[link].as_bytes()[..len],
            )?;
            if finalize {
                finalize_avg(reduction.dtype, &mut self.data[range], reduction.group)?;
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.steps.sends.iter().all(VecDeque::is_empty)
            && self.steps.recvs.iter().all(VecDeque::is_empty)
    }
}
