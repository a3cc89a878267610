//! The collectives over the caller's buffers: all_reduce (ring or quantized), broadcast,
//! all_gather, pair_average, and the ones that move no data (barrier, all_gather_scalars),
//! whose vote alone carries the payload.

use thrifty_core::{CoreError, CoreResult};

use super::commit::{check_len, Idle};
use super::{Communicator, OpStats, PairInfo};
use crate::block_quant::Quantization;
use crate::dtype::{DType, ReduceOp};
use crate::frame::MAX_DATA_FRAME;
use crate::group::Group;
use crate::layout::Layout;
use crate::pairing;
use crate::quantized_all_reduce::QuantizedAllReduce;
use crate::ring;
use crate::step_schedule::{Reduction, StepSchedule};

impl Communicator {
    pub fn all_reduce(
        &mut self,
        data: &mut [u8],
        dtype: DType,
        op: ReduceOp,
        quantize: Option<Quantization>,
        block: usize,
    ) -> CoreResult<OpStats> {
        let elem = dtype.size();
        check_len(data.len(), elem, "array")?;
        if block == 0 {
            return Err(CoreError::invalid("block", "must be at least 1, got 0"));
        }
        if let Some(format) = quantize {
            // A chunk is never smaller than one block, so one block must fit in a frame.
            let one_block = format.encoded_len(block.min(data.len() / elem).max(1), block);
            if one_block > MAX_DATA_FRAME {
                return Err(CoreError::invalid(
                    "block",
                    format!(
                        "one block of {block} values encodes to {one_block} bytes, more than \
                         a frame carries ({MAX_DATA_FRAME}); use a smaller block"
                    ),
                ));
            }
        }
        if quantize.is_some() && !dtype.is_float() {
            return Err(CoreError::invalid(
                "quantize",
                format!("needs a floating-point array, got {}", dtype.name()),
            ));
        }
        let group = self.whole_group()?;
        let ranks = group.ranks.clone();
        let elems = data.len() / elem;
        let chunk = self.chunk_elems(elems.div_ceil(group.len().max(1)), elem);
        let descriptor = match quantize {
            Some(q) => format!(
                "all_reduce {}[{elems}] {} {}/{block}",
                dtype.name(),
                op.name(),
                q.name()
            ),
            None => format!("all_reduce {}[{elems}] {}", dtype.name(), op.name()),
        };
        self.collective(
            descriptor,
            &ranks,
            |control, mesh, op_ctx, scratch| match quantize {
                Some(format) => {
                    let mut schedule = QuantizedAllReduce::new(
                        mesh,
                        &group,
                        data,
                        dtype,
                        op,
                        format,
                        block,
                        chunk,
                        &mut scratch.quantized,
                    );
                    let (result, ok) =
                        Self::finish(control, mesh, op_ctx, &mut schedule, Vec::new(), None);
                    (result.map(|(_, t)| Self::stats(op_ctx, t)), ok)
                }
                None => {
                    let layout = Layout::new(elems, group.len(), 1, chunk);
                    let steps = ring::all_reduce(mesh, &group, &layout, elem, op);
                    let reduction = Reduction {
                        dtype,
                        op,
                        group: group.len(),
                    };
                    let mut plan = StepSchedule::new(
                        data,
                        Some(reduction),
                        steps,
                        &mut scratch.steps,
                        &mut [],
                    );
                    let (result, ok) =
                        Self::finish(control, mesh, op_ctx, &mut plan, Vec::new(), None);
                    (result.map(|(_, t)| Self::stats(op_ctx, t)), ok)
                }
            },
        )
    }

    pub fn broadcast(&mut self, data: &mut [u8], dtype: DType, root: usize) -> CoreResult<OpStats> {
        let elem = dtype.size();
        check_len(data.len(), elem, "array")?;
        let world = self.world_size();
        if root >= world {
            return Err(CoreError::invalid(
                "root",
                format!("must be a rank in 0..{world}, got {root}"),
            ));
        }
        let group = self.whole_group()?;
        let ranks = group.ranks.clone();
        let elems = data.len() / elem;
        let chunk = self.chunk_elems(elems, elem);
        let descriptor = format!("broadcast {}[{elems}] root {root}", dtype.name());
        self.collective(descriptor, &ranks, |control, mesh, op_ctx, scratch| {
            let layout = Layout::new(elems, 1, 1, chunk);
            let steps = ring::broadcast(mesh, &group, root, &layout, elem);
            let mut plan = StepSchedule::new(data, None, steps, &mut scratch.steps, &mut []);
            let (result, ok) = Self::finish(control, mesh, op_ctx, &mut plan, Vec::new(), None);
            (result.map(|(_, t)| Self::stats(op_ctx, t)), ok)
        })
    }

    /// `out` receives every rank's `data`, rank by rank (`out.len() == world_size * data.len()`).
    pub fn all_gather(&mut self, data: &[u8], dtype: DType, out: &mut [u8]) -> CoreResult<OpStats> {
        let elem = dtype.size();
        check_len(data.len(), elem, "array")?;
        let world = self.world_size();
        if out.len() != world * data.len() {
            return Err(CoreError::shape(
                "out",
                format!(
                    "must hold world_size * {} bytes = {}, got {}",
                    data.len(),
                    world * data.len(),
                    out.len()
                ),
            ));
        }
        let group = self.whole_group()?;
        let ranks = group.ranks.clone();
        let elems = data.len() / elem;
        out[group.pos * data.len()..(group.pos + 1) * data.len()].copy_from_slice(data);
        let chunk = self.chunk_elems(elems, elem);
        let descriptor = format!("all_gather {}[{elems}]", dtype.name());
        self.collective(descriptor, &ranks, |control, mesh, op_ctx, scratch| {
            let layout = Layout::new(elems * group.len(), group.len(), 1, chunk);
            let steps = ring::all_gather(mesh, &group, &layout, elem);
            let mut plan = StepSchedule::new(out, None, steps, &mut scratch.steps, &mut []);
            let (result, ok) = Self::finish(control, mesh, op_ctx, &mut plan, Vec::new(), None);
            (result.map(|(_, t)| Self::stats(op_ctx, t)), ok)
        })
    }

    /// A collective with no data phase: the vote alone, carrying `payload`.
    pub(super) fn exchange(
        &mut self,
        descriptor: String,
        payload: Vec<u8>,
    ) -> CoreResult<Vec<Vec<u8>>> {
        let ranks = self.whole_group()?.ranks;
        self.collective(descriptor, &ranks, |control, mesh, op_ctx, _| {
            let (result, ok) = Self::finish(control, mesh, op_ctx, &mut Idle, payload, None);
            (result.map(|(d, _)| d.payloads), ok)
        })
    }

    pub fn barrier(&mut self) -> CoreResult<()> {
        self.exchange("barrier".into(), Vec::new()).map(|_| ())
    }

    /// Every rank's `values`, rank by rank.
    pub fn all_gather_scalars(&mut self, values: &[f64]) -> CoreResult<Vec<Vec<f64>>> {
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let payloads = self.exchange(format!("all_gather_scalars[{}]", values.len()), payload)?;
        Ok(payloads
            .iter()
            .map(|p| {
                p.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect()
            })
            .collect())
    }

    pub fn pair_average(
        &mut self,
        data: &mut [u8],
        dtype: DType,
        step: u64,
        group_size: usize,
    ) -> CoreResult<PairInfo> {
        let elem = dtype.size();
        check_len(data.len(), elem, "array")?;
        if group_size < 2 {
            return Err(CoreError::invalid(
                "group_size",
                format!("must be at least 2, got {group_size}"),
            ));
        }
        let rank = self
            .rank()
            .ok_or_else(|| CoreError::PeerLost("no topology yet: call update_topology()".into()))?;
        let groups = pairing::groups(self.world_size(), step, group_size)?;
        let mine = groups
            .into_iter()
            .find(|g| g.contains(&rank))
            .ok_or_else(|| CoreError::Internal("this rank is in no group".into()))?;
        let group = Group {
            pos: mine.iter().position(|&r| r == rank).unwrap_or(0),
            ranks: mine.clone(),
        };
        let elems = data.len() / elem;
        let chunk = self.chunk_elems(elems.div_ceil(group.len()), elem);
        let descriptor = format!(
            "pair_average {}[{elems}] step {step} group {mine:?}",
            dtype.name()
        );
        self.collective(descriptor, &mine, |control, mesh, op_ctx, scratch| {
            let layout = Layout::new(elems, group.len(), 1, chunk);
            let steps = ring::all_reduce(mesh, &group, &layout, elem, ReduceOp::Avg);
            let reduction = Reduction {
                dtype,
                op: ReduceOp::Avg,
                group: group.len(),
            };
            let mut plan =
                StepSchedule::new(data, Some(reduction), steps, &mut scratch.steps, &mut []);
            let (result, ok) = Self::finish(control, mesh, op_ctx, &mut plan, Vec::new(), None);
            (
                result.map(|(_, t)| PairInfo {
                    group: mine.clone(),
                    stats: Self::stats(op_ctx, t),
                }),
                ok,
            )
        })
    }
}
