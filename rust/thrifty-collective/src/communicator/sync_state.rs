//! `sync_state`: make every peer's named arrays equal to the most popular state. The
//! summaries travel in a vote; the [`TransferPlan`] every peer derives from them becomes a
//! step schedule of transfers, and each fetched array is checked against the winning hash
//! before it replaces the caller's.

use std::collections::HashSet;

use thrifty_core::{CoreError, CoreResult};

use super::{Communicator, StateArray, SyncReport};
use crate::aligned_buf::AlignedBuf;
use crate::frame::{decode_message, encode_message};
use crate::mesh::Mesh;
use crate::shared_state::{self, Entry, Summary, Transfer, TransferPlan};
use crate::step_schedule::{RecvStep, SendStep, Sink, Source, StepSchedule, Steps};

/// The frame size shared-state transfers are cut into.
const TRANSFER_CHUNK: usize = 1 << 20;

impl Communicator {
    /// Make every peer's named arrays equal to the most popular state (see `shared_state`).
    ///
    /// `revision` must be exactly one more than this communicator's last synced revision (any
    /// value on its first sync: a newly joined peer adopts the winning revision).
    pub fn sync_state(
        &mut self,
        arrays: &mut [StateArray<'_>],
        revision: u64,
    ) -> CoreResult<SyncReport> {
        if let Some(last) = self.last_revision {
            if revision != last + 1 {
                return Err(CoreError::invalid(
                    "revision",
                    format!(
                        "must advance by exactly one: the last sync was at {last}, got {revision}"
                    ),
                ));
            }
        }
        let mut seen = HashSet::new();
        for array in arrays.iter() {
            if !seen.insert(array.name.as_str()) {
                return Err(CoreError::invalid(
                    "named_arrays",
                    format!("duplicate name {:?}", array.name),
                ));
            }
            let elems: usize = array.shape.iter().product();
            if elems * array.dtype.size() != array.data.len() {
                return Err(CoreError::shape(
                    "named_arrays",
                    format!(
                        "array {:?}: shape {:?} does not match its {} bytes",
                        array.name,
                        array.shape,
                        array.data.len()
                    ),
                ));
            }
        }
        // Sorted by name, the order every peer uses.
        arrays.sort_by(|a, b| a.name.cmp(&b.name));
        let summary = Summary {
            revision,
            entries: arrays
                .iter()
                .map(|a| Entry {
                    name: a.name.clone(),
                    dtype: a.dtype,
                    shape: a.shape.iter().map(|&d| d as u64).collect(),
                    hash: shared_state::hash_array(a.dtype, &a.shape, a.data),
                })
                .collect(),
        };
        let payloads = self.exchange("sync_state summaries".into(), encode_message(&summary))?;
        let summaries: Vec<Summary> = payloads
            .iter()
            .map(|p| decode_message(p))
            .collect::<Result<_, _>>()
            .map_err(|e| CoreError::PeerLost(format!("a peer sent a bad state summary: {e}")))?;
        let plan = shared_state::transfer_plan(&summaries);
        let me = self.whole_group()?.pos;
        let winner = &summaries[plan.winner];
        let fetches: Vec<&Transfer> = plan.transfers.iter().filter(|t| t.to == me).collect();
        let mut stages: Vec<AlignedBuf> = fetches
            .iter()
            .map(|t| {
                let e = &winner.entries[t.entry];
                AlignedBuf::with_len(e.shape.iter().product::<u64>() as usize * e.dtype.size())
            })
            .collect();
        let local_error = plan.mismatch[me]
            .as_ref()
            .map(|why| CoreError::shape("named_arrays", why.clone()));
        let group = self.whole_group()?;
        let ranks = group.ranks.clone();
        let connections = self.options.connections;
        let sources: Vec<&[u8]> = arrays.iter().map(|a| &*a.data).collect();
        let traffic = self.collective(
            format!("sync_state transfer to revision {}", plan.revision),
            &ranks,
            |control, mesh, op_ctx, scratch| {
                let steps = transfer_steps(mesh, &plan, winner, me, connections);
                let mut nothing: [u8; 0] = [];
                let mut schedule =
                    StepSchedule::new(&mut nothing, None, steps, &mut scratch.steps, &mut stages)
                        .with_sources(sources)
                        .with_verifier(Box::new(|stages| verify_fetches(&fetches, winner, stages)));
                let (result, ok) = Self::finish(
                    control,
                    mesh,
                    op_ctx,
                    &mut schedule,
                    Vec::new(),
                    local_error,
                );
                (result.map(|(_, t)| t), ok)
            },
        )?;
        for (transfer, stage) in fetches.iter().zip(&stages) {
            let entry = &winner.entries[transfer.entry];
            let array = arrays
                .iter_mut()
                .find(|a| a.name == entry.name)
                .ok_or_else(|| CoreError::Internal("a fetched array vanished".into()))?;
            array.data.copy_from_slice(stage.as_bytes());
        }
        self.last_revision = Some(plan.revision);
        Ok(SyncReport {
            revision: plan.revision,
            fetched: fetches
                .iter()
                .map(|t| winner.entries[t.entry].name.clone())
                .collect(),
            bytes_received: traffic.received,
            bytes_sent: traffic.sent,
            sources: fetches
                .iter()
                .map(|t| (winner.entries[t.entry].name.clone(), t.from))
                .collect(),
            state_hash: format!("{:032x}", winner.state_hash()),
            peers_out_of_date: plan.up_to_date.iter().filter(|u| !**u).count(),
            world_size: summaries.len(),
        })
    }
}

/// Every peer lists the same transfers in the same order; each array goes in frames of
/// `TRANSFER_CHUNK` striped over the pair's connections.
fn transfer_steps(
    mesh: &Mesh,
    plan: &TransferPlan,
    winner: &Summary,
    me: usize,
    connections: usize,
) -> Steps {
    let mut steps = Steps::new(mesh.links.len());
    let mut index = 0u32;
    let mut stage = 0usize;
    for transfer in &plan.transfers {
        let entry = &winner.entries[transfer.entry];
        let len = entry.shape.iter().product::<u64>() as usize * entry.dtype.size();
        let frames = len.div_ceil(TRANSFER_CHUNK).max(1);
        for f in 0..frames {
            let range = f * TRANSFER_CHUNK..((f + 1) * TRANSFER_CHUNK).min(len);
            let stripe = f % connections;
            if transfer.from == me {
                steps.sends[mesh.link(transfer.to, stripe)].push_back(SendStep {
                    index,
                    source: Source::Data(1 + transfer.entry, range.clone()),
                    after: None,
                });
            }
            if transfer.to == me {
                steps.recvs[mesh.link(transfer.from, stripe)].push_back(RecvStep {
                    index,
                    sink: Sink::Stage { stage, range },
                });
            }
            index += 1;
        }
        if transfer.to == me {
            stage += 1;
        }
    }
    steps
}

fn verify_fetches(
    fetches: &[&Transfer],
    winner: &Summary,
    stages: &[AlignedBuf],
) -> CoreResult<()> {
    for (transfer, stage) in fetches.iter().zip(stages) {
        let entry = &winner.entries[transfer.entry];
        let shape: Vec<usize> = entry.shape.iter().map(|&d| d as usize).collect();
        if shared_state::hash_array(entry.dtype, &shape, stage.as_bytes()) != entry.hash {
            return Err(CoreError::PeerLost(format!(
                "array {:?} fetched from rank {} does not match the winning hash",
                entry.name, transfer.from
            )));
        }
    }
    Ok(())
}
