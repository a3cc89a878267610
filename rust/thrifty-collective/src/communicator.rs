//! The public peer API: connect, vote on the topology, run collectives.
//!
//! Every collective runs the same way: check that the mesh is whole, run the data phase on
//! the engine (the caller's buffer changes in place, each range backed up before its first
//! change), vote, and wait for the coordinator's decision. On commit the call returns; on
//! abort every changed byte is restored and the call raises, and the mesh is dropped: the
//! next collective needs `update_topology()`, which forms the next epoch from the survivors.

use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use thrifty_core::{CoreError, CoreResult};

use crate::auth::Secret;
use crate::control::{Control, ViewEvent};
use crate::dtype::{DType, ReduceOp};
use crate::engine::{self, Schedule, Traffic};
use crate::frame::MAX_DATA_FRAME;
use crate::layout::Layout;
use crate::mesh::{Listener, Mesh};
use crate::message::{AbortKind, Decision, PeerId, Resume, View, Vote};
use crate::plan::{AlignedBuf, Plan, RecvStep, Reduction, Scratch, SendStep, Sink, Source, Steps};
use crate::quant::Quantization;
use crate::quantized::QuantizedAllReduce;
use crate::ring::{self, Group};
use crate::signal::OpSignal;
use crate::state::{self, Entry, Summary};

/// Settings of a communicator; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct CommunicatorOptions {
    /// TCP connections per peer pair; chunks are striped over them (fills long-fat links).
    pub connections: usize,
    /// The deadline of every blocking call.
    pub timeout: Duration,
    /// Host the peer-to-peer listener binds (port chosen by the OS unless `bind_port`).
    pub bind_host: String,
    pub bind_port: u16,
    /// Host the other peers should dial (behind NAT, the public address); default: the
    /// address this peer uses to reach the coordinator.
    pub advertise_host: Option<String>,
}

impl Default for CommunicatorOptions {
    fn default() -> Self {
        Self {
            connections: 4,
            timeout: Duration::from_secs(60),
            bind_host: "0.0.0.0".into(),
            bind_port: 0,
            advertise_host: None,
        }
    }
}

/// Traffic and time of one collective, for bandwidth reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub seconds: f64,
}

/// One named array of the shared state.
pub struct StateArray<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: &'a mut [u8],
}

/// What `sync_state` did on this peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncReport {
    /// The revision every peer now holds.
    pub revision: u64,
    /// Names of the arrays this peer fetched (empty when it was up to date).
    pub fetched: Vec<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// For each fetched array, the rank it came from.
    pub sources: Vec<(String, usize)>,
    /// xxh3-128 of the whole winning state (hex).
    pub state_hash: String,
    /// How many peers had to fetch something.
    pub peers_out_of_date: usize,
    pub world_size: usize,
}

/// Who this peer averaged with in `pair_average`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairInfo {
    /// Ranks of the group, this peer included, in ring order.
    pub group: Vec<usize>,
    pub stats: OpStats,
}

pub struct Communicator {
    /// The coordinator first, then its standbys.
    coordinators: Vec<String>,
    /// Where the other peers dial this one (set by `connect`).
    p2p_addr: String,
    secret: Secret,
    options: CommunicatorOptions,
    id: PeerId,
    listener: Option<Listener>,
    control: Option<Control>,
    view: Option<View>,
    mesh: Option<Mesh>,
    /// Collectives run in the current epoch; every member counts alike.
    seq: u64,
    /// Why the mesh cannot be used until the next topology update.
    stale: Option<String>,
    scratch: Scratch,
    last_revision: Option<u64>,
}

/// How long a peer that has voted waits for the decision beyond the call's deadline, so a
/// data phase that ended at the deadline still learns the outcome.
const DECISION_GRACE: Duration = Duration::from_secs(2);
/// The most a mesh build waits for a member before reporting failure, so the coordinator
/// can form the next view without the member that never came.
const MESH_PATIENCE: Duration = Duration::from_secs(10);
const TRANSFER_CHUNK: usize = 1 << 20;

/// One collective in flight.
struct Op {
    epoch: u64,
    seq: u64,
    participants: Vec<PeerId>,
    descriptor: String,
    signal: std::sync::Arc<OpSignal>,
    deadline: Instant,
    started: Instant,
}

/// What the communicator needs of a schedule besides its frames: a check of the received
/// data before voting, and a way to undo its changes when the collective aborts.
trait Outcome {
    fn verify(&mut self) -> CoreResult<()> {
        Ok(())
    }
    /// Apply what waited for the commit (the quantized result is decoded only then).
    fn commit(&mut self) -> CoreResult<()> {
        Ok(())
    }
    fn restore(&mut self);
}

impl Outcome for Plan<'_> {
    fn verify(&mut self) -> CoreResult<()> {
        Plan::verify(self)
    }
    fn restore(&mut self) {
        Plan::restore(self);
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
struct Idle;

impl Schedule for Idle {
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

fn kind_of(error: &CoreError) -> AbortKind {
    match error {
        CoreError::PeerLost(_) | CoreError::Authentication(_) => AbortKind::PeerLost,
        CoreError::Timeout(_) => AbortKind::Timeout,
        CoreError::Mismatch(_) => AbortKind::Mismatch,
        _ => AbortKind::PeerError,
    }
}

fn decision_error(decision: &Decision) -> CoreError {
    let reason = decision.reason.clone();
    match decision.kind {
        AbortKind::PeerLost => CoreError::PeerLost(reason),
        AbortKind::Timeout => CoreError::Timeout(reason),
        AbortKind::Mismatch => CoreError::Mismatch(reason),
        AbortKind::PeerError => CoreError::Aborted(reason),
    }
}

fn random_id() -> CoreResult<PeerId> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| CoreError::Internal(format!("no randomness: {e}")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The address other peers should dial: as configured, else the bind host when it is a
/// real address, else the local address the OS routes towards the coordinator (learned
/// from a connected UDP socket, which sends nothing).
fn advertised_host(options: &CommunicatorOptions, coordinator: &str) -> CoreResult<String> {
    if let Some(host) = &options.advertise_host {
        return Ok(host.clone());
    }
    if options.bind_host != "0.0.0.0" && options.bind_host != "::" {
        return Ok(options.bind_host.clone());
    }
    let target = coordinator
        .to_socket_addrs()
        .map_err(|e| {
            CoreError::invalid(
                "coordinator",
                format!("cannot resolve {coordinator:?}: {e}"),
            )
        })?
        .next()
        .ok_or_else(|| {
            CoreError::invalid("coordinator", format!("{coordinator:?} has no address"))
        })?;
    let probe = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| s.connect(target).map(|()| s))
    .and_then(|s| s.local_addr())
    .map_err(|e| {
        CoreError::invalid(
            "advertise_host",
            format!("cannot find a local address: {e}"),
        )
    })?;
    Ok(probe.ip().to_string())
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Communicator {
    /// `coordinator` is `host:port`, or several separated by commas: the standbys a peer
    /// falls back on, in order, when it loses its coordinator. Nothing connects until
    /// [`Communicator::connect`].
    pub fn new(
        coordinator: &str,
        secret: Secret,
        options: CommunicatorOptions,
    ) -> CoreResult<Self> {
        let coordinators: Vec<String> = coordinator
            .split(',')
            .map(|a| a.trim().to_owned())
            .collect();
        if coordinators.iter().any(String::is_empty) {
            return Err(CoreError::invalid(
                "coordinator",
                format!("must be host:port (or several, comma-separated), got {coordinator:?}"),
            ));
        }
        if options.connections == 0 || options.connections > 64 {
            return Err(CoreError::invalid(
                "connections",
                format!("must be in 1..=64, got {}", options.connections),
            ));
        }
        if options.timeout.is_zero() {
            return Err(CoreError::invalid("timeout_s", "must be positive"));
        }
        Ok(Self {
            coordinators,
            p2p_addr: String::new(),
            secret,
            options,
            id: random_id()?,
            listener: None,
            control: None,
            view: None,
            mesh: None,
            seq: 0,
            stale: Some("not connected: call connect() and update_topology()".into()),
            scratch: Scratch::default(),
            last_revision: None,
        })
    }

    /// Start the peer-to-peer listener and register with the coordinator (as pending).
    pub fn connect(&mut self) -> CoreResult<()> {
        if self.control.is_some() {
            return Ok(());
        }
        let listener = Listener::bind(
            &self.options.bind_host,
            self.options.bind_port,
            self.id,
            self.secret.clone(),
        )?;
        let host = advertised_host(&self.options, &self.coordinators[0])?;
        let p2p = host_port(&host, listener.port());
        let control = Control::connect_first(
            &self.coordinators,
            &self.secret,
            self.id,
            &p2p,
            self.options.timeout,
        )?;
        self.listener = Some(listener);
        self.control = Some(control);
        self.p2p_addr = p2p;
        self.stale = Some("no topology yet: call update_topology()".into());
        Ok(())
    }

    fn control(&self) -> CoreResult<&Control> {
        self.control.as_ref().ok_or_else(|| {
            CoreError::invalid("communicator", "is not connected: call connect() first")
        })
    }

    /// Vote on the topology: blocks until every member has asked, admits every pending peer,
    /// and rebuilds the mesh when the membership changed.
    pub fn update_topology(&mut self) -> CoreResult<()> {
        let deadline = Instant::now() + self.options.timeout;
        let connections = self.options.connections;
        if self.control()?.coordinator_lost() {
            self.resume()?;
        }
        self.control()?.request_update()?;
        let mut pending: Option<(View, Mesh)> = None;
        loop {
            let event = self.control()?.next_view_event(deadline)?;
            match event {
                ViewEvent::Build(view) => {
                    self.mesh = None;
                    pending = None;
                    let listener = self.listener.as_ref().ok_or_else(|| {
                        CoreError::Internal("connected without a listener".into())
                    })?;
                    let patience = deadline.min(Instant::now() + MESH_PATIENCE);
                    let control = self.control()?;
                    let superseded = || control.view_event_pending();
                    match listener.build_mesh(&view, connections, patience, &superseded) {
                        Ok(mesh) => {
                            self.control()?.mesh_ready(view.epoch, true, "")?;
                            pending = Some((view, mesh));
                        }
                        Err(error) => {
                            log::warn!("mesh for epoch {} failed: {error}", view.epoch);
                            self.control()?
                                .mesh_ready(view.epoch, false, &error.to_string())?;
                        }
                    }
                }
                ViewEvent::Committed(epoch) => {
                    if let Some((view, mesh)) = pending.take() {
                        if view.epoch == epoch {
                            self.view = Some(view);
                            self.mesh = Some(mesh);
                            self.seq = 0;
                            self.stale = None;
                            return Ok(());
                        }
                    }
                    let current = self.view.as_ref().map(|v| v.epoch);
                    if current == Some(epoch) && self.mesh.is_some() {
                        self.stale = None;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The coordinator is gone: find it again (or a standby) and say what we knew, so the
    /// members of the lost view come together again in the first view there.
    fn resume(&mut self) -> CoreResult<()> {
        let resume = Resume {
            epoch: self.epoch(),
            members: self.members(),
        };
        self.mesh = None;
        self.stale = Some("the coordinator was lost: call update_topology()".into());
        if let Some(old) = self.control.take() {
            old.close();
        }
        let control = Control::reconnect(
            &self.coordinators,
            &self.secret,
            self.id,
            &self.p2p_addr,
            self.options.timeout,
            &resume,
        )?;
        self.control = Some(control);
        Ok(())
    }

    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn rank(&self) -> Option<usize> {
        self.view.as_ref().and_then(|v| v.rank_of(self.id))
    }

    pub fn world_size(&self) -> usize {
        self.view.as_ref().map_or(0, |v| v.members.len())
    }

    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.epoch)
    }

    /// The members' ids in ring (rank) order.
    pub fn members(&self) -> Vec<PeerId> {
        self.view
            .as_ref()
            .map(|v| v.members.iter().map(|m| m.id).collect())
            .unwrap_or_default()
    }

    /// Chunks of about 1/connections of a slice, between 64 KiB and 256 KiB: every stripe
    /// gets work, and a slice has enough chunks that reducing one overlaps receiving the
    /// next (with 1 MiB, a 16 MB all-reduce over 4 peers had one chunk per stripe, and
    /// nothing to overlap).
    fn chunk_elems(&self, slice_elems: usize, elem: usize) -> usize {
        let per_stripe = slice_elems.div_ceil(self.options.connections);
        let lo = (64 << 10) / elem;
        let hi = (256 << 10) / elem;
        per_stripe.clamp(lo, hi)
    }

    fn whole_group(&self) -> CoreResult<Group> {
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
            signal.set_waker(Some(std::sync::Arc::clone(&mesh.waker)));
        }
        self.control()?.watch(
            epoch,
            self.seq,
            participants.clone(),
            std::sync::Arc::clone(&signal),
        );
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
    fn finish<S: Schedule + Outcome>(
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
                kind: kind_of(error),
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
                (Err(decision_error(&decision)), false)
            }
            (Err(error), _) => {
                schedule.restore();
                (Err(error), false)
            }
            (Ok(_), Ok(decision)) => {
                schedule.restore();
                (Err(decision_error(&decision)), false)
            }
            (Ok(_), Err(error)) => {
                schedule.restore();
                (Err(error), false)
            }
        }
    }

    /// Run a collective over `group` with `schedule` built from the mesh.
    fn collective<T>(
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

    fn stats(op: &Op, traffic: Traffic) -> OpStats {
        OpStats {
            bytes_sent: traffic.sent,
            bytes_received: traffic.received,
            seconds: op.started.elapsed().as_secs_f64(),
        }
    }

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
                    let mut plan = Plan::new(data, Some(reduction), steps, scratch, &mut []);
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
            let mut plan = Plan::new(data, None, steps, scratch, &mut []);
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
            let mut plan = Plan::new(out, None, steps, scratch, &mut []);
            let (result, ok) = Self::finish(control, mesh, op_ctx, &mut plan, Vec::new(), None);
            (result.map(|(_, t)| Self::stats(op_ctx, t)), ok)
        })
    }

    /// A collective with no data phase: the vote alone, carrying `payload`.
    fn exchange(&mut self, descriptor: String, payload: Vec<u8>) -> CoreResult<Vec<Vec<u8>>> {
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
        let groups = crate::pairing::groups(self.world_size(), step, group_size)?;
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
            let mut plan = Plan::new(data, Some(reduction), steps, scratch, &mut []);
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

    /// Make every peer's named arrays equal to the most popular state (see `state`).
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
        let mut seen = std::collections::HashSet::new();
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
                    hash: state::hash_array(a.dtype, &a.shape, a.data),
                })
                .collect(),
        };
        let payloads = self.exchange(
            "sync_state summaries".into(),
            crate::frame::encode_message(&summary),
        )?;
        let summaries: Vec<Summary> = payloads
            .iter()
            .map(|p| crate::frame::decode_message(p))
            .collect::<Result<_, _>>()
            .map_err(|e| CoreError::PeerLost(format!("a peer sent a bad state summary: {e}")))?;
        let plan = state::plan(&summaries);
        let me = self.whole_group()?.pos;
        let winner = &summaries[plan.winner];
        let fetches: Vec<&state::Transfer> = plan.transfers.iter().filter(|t| t.to == me).collect();
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
                let mut schedule = Plan::new(&mut nothing, None, steps, scratch, &mut stages)
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

    pub fn close(&mut self) {
        self.mesh = None;
        if let Some(control) = self.control.take() {
            control.close();
        }
        if let Some(mut listener) = self.listener.take() {
            listener.close();
        }
        self.stale = Some("closed".into());
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        self.close();
    }
}

fn check_len(len: usize, elem: usize, argument: &'static str) -> CoreResult<()> {
    if len / elem * elem != len {
        return Err(CoreError::shape(
            argument,
            format!("{len} bytes is not a whole number of {elem}-byte elements"),
        ));
    }
    Ok(())
}

/// Every peer lists the same transfers in the same order; each array goes in frames of
/// `TRANSFER_CHUNK` striped over the pair's connections.
fn transfer_steps(
    mesh: &Mesh,
    plan: &state::SyncPlan,
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
    fetches: &[&state::Transfer],
    winner: &Summary,
    stages: &[AlignedBuf],
) -> CoreResult<()> {
    for (transfer, stage) in fetches.iter().zip(stages) {
        let entry = &winner.entries[transfer.entry];
        let shape: Vec<usize> = entry.shape.iter().map(|&d| d as usize).collect();
        if state::hash_array(entry.dtype, &shape, stage.as_bytes()) != entry.hash {
            return Err(CoreError::PeerLost(format!(
                "array {:?} fetched from rank {} does not match the winning hash",
                entry.name, transfer.from
            )));
        }
    }
    Ok(())
}
