//! The ring step schedules (all-reduce, all-gather, broadcast) and the quantized all-reduce,
//! for every world size 1..=8 and every stripe count 1..=8, over buffers whose lengths straddle the
//! chunk, slice and block edges, run frame by frame through an in-memory engine that
//! interleaves the links at random.
//!
//! The meshes are real (their link numbering is what the schedules are built from), but the
//! frames travel through queues, so every interleaving is checked: each frame is one the
//! receiver expects, in its order and of its length; a frame's source bytes do not change
//! while it is in flight; no schedule deadlocks; every element ends up reduced exactly once
//! from every member's contribution (the results equal a reference computed element by
//! element); and an aborted collective leaves (or restores) every buffer as it was.

mod support;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use half::{bf16, f16};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::convert::{from_f32, to_f32};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::engine::{FrameSchedule, Incoming, Outgoing};
use thrifty_collective::frame::MAX_DATA_FRAME;
use thrifty_collective::group::Group;
use thrifty_collective::layout::Layout;
use thrifty_collective::mesh::{Listener, Mesh};
use thrifty_collective::quantized_all_reduce::{QuantizedAllReduce, QuantizedScratch};
use thrifty_collective::ring;
use thrifty_collective::step_schedule::{Reduction, StepSchedule, StepScratch};

/// Cases per world size and stripe count, for each kind of schedule.
const CASES: u32 = 6;
const MAX_LEN: usize = 100_003;
/// At most this many chunks per slice, so a case moves at most a few thousand frames.
const MAX_CHUNKS: usize = 24;

fn secret() -> Secret {
    Secret::new(b"schedules".to_vec()).expect("secret")
}

/// Every peer's listener and mesh for a world of `n` with `connections` stripes.
fn meshes(n: usize, connections: usize) -> (Vec<Listener>, Vec<Mesh>) {
    support::loopback_meshes(n, connections, &secret(), Duration::from_secs(20))
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The in-memory engine.

/// Which link of which peer each link of each peer reaches: `links[r][l] = (peer, stripe)`.
struct Wiring {
    links: Vec<Vec<(usize, usize)>>,
    index: Vec<HashMap<(usize, usize), usize>>,
}

impl Wiring {
    fn new(meshes: &[Mesh]) -> Self {
        let links: Vec<Vec<(usize, usize)>> = meshes
            .iter()
            .map(|m| m.links.iter().map(|l| (l.peer, l.stripe)).collect())
            .collect();
        let index = links
            .iter()
            .map(|ls| ls.iter().enumerate().map(|(id, &key)| (key, id)).collect())
            .collect();
        Self { links, index }
    }
}

/// A world's meshes, and the buffers each peer keeps from one collective to the next (as a
/// communicator does), shared by every case run on that world.
struct World {
    meshes: Vec<Mesh>,
    wiring: Wiring,
    scratch: RefCell<Vec<StepScratch>>,
    quantized: RefCell<Vec<QuantizedScratch>>,
    _listeners: Vec<Listener>,
}

impl World {
    fn new(n: usize, connections: usize) -> Self {
        let (listeners, meshes) = meshes(n, connections);
        Self {
            wiring: Wiring::new(&meshes),
            scratch: RefCell::new((0..n).map(|_| StepScratch::default()).collect()),
            quantized: RefCell::new((0..n).map(|_| QuantizedScratch::default()).collect()),
            meshes,
            _listeners: listeners,
        }
    }

    /// The kept buffers of `members` (ascending mesh ranks), in member order.
    fn members_of<'k, T>(&self, kept: &'k mut [T], members: &[usize]) -> Vec<&'k mut T> {
        kept.iter_mut()
            .enumerate()
            .filter(|(rank, _)| members.contains(rank))
            .map(|(_, t)| t)
            .collect()
    }
}

/// A written frame: its index and payload.
type Frame = (u32, Vec<u8>);

/// One of the properties checked on every case.
type Check = fn(&World, &Case) -> Result<(), String>;

/// A frame handed out by a schedule and not yet written: its bytes when it was handed out.
struct InFlight {
    frame: Outgoing,
    snapshot: Vec<u8>,
}

/// Runs the `schedules` of the mesh ranks `members` the way the engine does (one frame in
/// flight per link, sends in each link's order, receives in each link's order) under a
/// random interleaving. Stops after `stop_after` received frames, as an abort would.
/// Returns the number of frames received.
fn simulate(
    wiring: &Wiring,
    members: &[usize],
    schedules: &mut [&mut dyn FrameSchedule],
    seed: u64,
    stop_after: Option<usize>,
) -> Result<usize, String> {
    let mut rng = Rng(seed);
    let position: HashMap<usize, usize> =
        members.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let mut pending: Vec<Vec<Option<InFlight>>> = members
        .iter()
        .map(|&r| wiring.links[r].iter().map(|_| None).collect())
        .collect();
    // wire[i][l]: frames written towards member i's link l, oldest first.
    let mut wire: Vec<Vec<VecDeque<Frame>>> = members
        .iter()
        .map(|&r| wiring.links[r].iter().map(|_| VecDeque::new()).collect())
        .collect();
    let mut order: Vec<(usize, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(i, &r)| (0..wiring.links[r].len()).map(move |l| (i, l)))
        .collect();
    let mut received = 0usize;
    let mut thorough = false;
    loop {
        let mut progress = false;
        rng.shuffle(&mut order);
        for &(i, l) in &order {
            let r = members[i];
            // Outside a thorough sweep, each step is skipped now and then, so that sends,
            // writes and receives interleave differently from case to case.
            let go = |rng: &mut Rng| thorough || rng.below(4) != 0;
            if pending[i][l].is_none() && go(&mut rng) {
                if let Some(frame) = schedules[i].next_send(l).map_err(|e| e.to_string())? {
                    if frame.range.len() > MAX_DATA_FRAME {
                        return Err(format!("a frame of {} bytes", frame.range.len()));
                    }
                    let snapshot = schedules[i]
                        .bytes(frame.region, frame.range.clone())
                        .to_vec();
                    pending[i][l] = Some(InFlight { frame, snapshot });
                    progress = true;
                }
            }
            if pending[i][l].is_some() && go(&mut rng) {
                let InFlight { frame, snapshot } = pending[i][l].take().expect("checked");
                let now = schedules[i].bytes(frame.region, frame.range.clone());
                if now != snapshot.as_slice() {
                    return Err(format!(
                        "rank {r} link {l}: the source of frame {} changed while it was in flight",
                        frame.index
                    ));
                }
                let (peer, stripe) = wiring.links[r][l];
                let Some(&p) = position.get(&peer) else {
                    return Err(format!(
                        "rank {r} sent frame {} to non-member {peer}",
                        frame.index
                    ));
                };
                let back = wiring.index[peer][&(r, stripe)];
                wire[p][back].push_back((frame.index, snapshot));
                progress = true;
            }
            while !wire[i][l].is_empty() && go(&mut rng) {
                if stop_after == Some(received) {
                    return Ok(received);
                }
                let (index, payload) = wire[i][l].pop_front().expect("checked");
                let Some(expected) = schedules[i].next_recv(l) else {
                    return Err(format!(
                        "rank {r} link {l}: frame {index} arrived unexpected"
                    ));
                };
                if expected.index != index || expected.len != payload.len() {
                    return Err(format!(
                        "rank {r} link {l}: frame {index} of {} bytes arrived where frame {} of {} \
                         bytes was due",
                        payload.len(),
                        expected.index,
                        expected.len
                    ));
                }
                let incoming = Incoming {
                    index,
                    len: payload.len(),
                };
                // Like the engine, which asks for a buffer only to read payload bytes into.
                if !payload.is_empty() {
                    let into = schedules[i].recv_into(l, incoming);
                    if into.len() != payload.len() {
                        return Err(format!(
                            "rank {r} link {l}: a receive buffer of {} bytes",
                            into.len()
                        ));
                    }
                    into.copy_from_slice(&payload);
                }
                schedules[i]
                    .received(l, incoming)
                    .map_err(|e| e.to_string())?;
                received += 1;
                progress = true;
            }
        }
        if progress {
            thorough = false;
        } else if thorough {
            break;
        } else {
            thorough = true;
        }
    }
    for (i, &r) in members.iter().enumerate() {
        if !schedules[i].finished() || pending[i].iter().any(Option::is_some) {
            return Err(format!("deadlock: rank {r} has not finished"));
        }
        if let Some(l) = (0..wire[i].len()).find(|&l| !wire[i][l].is_empty()) {
            return Err(format!("rank {r} link {l}: frames left unread"));
        }
    }
    Ok(received)
}

// ---------------------------------------------------------------------------------------------
// Cases.

#[derive(Clone, Debug)]
struct Case {
    /// Mesh ranks taking part, in ring order.
    members: Vec<usize>,
    len: usize,
    chunk_elems: usize,
    dtype: DType,
    op: ReduceOp,
    format: Quantization,
    block: usize,
    seed: u64,
    /// Abort after this fraction (per mille) of the frames, if set.
    abort: Option<usize>,
}

fn straddling(unit: usize, max: usize) -> impl Strategy<Value = usize> {
    let unit = unit.max(1);
    let top = (max / unit).max(1);
    (prop_oneof![0usize..=3, 0..=top, Just(top)], -2isize..=2)
        .prop_map(move |(m, d)| (m * unit).saturating_add_signed(d))
}

/// A group of the world (usually all of it, in rank order), a chunk size, and a length around
/// a multiple of the chunk times the group, of the block times the group, of the group or of
/// the chunk; bounded so each slice has at most `MAX_CHUNKS` chunks (the communicator's
/// chunks are 64 to 256 KiB, so its slices have few).
fn case(n: usize) -> impl Strategy<Value = Case> {
    let members = prop_oneof![
        3 => Just((0..n).collect::<Vec<usize>>()),
        1 => proptest::sample::subsequence((0..n).collect::<Vec<usize>>(), 1..=n),
    ];
    let chunk_elems = prop_oneof![
        1usize..=70,
        straddling(256, 20_000),
        straddling(16_384, 65_536)
    ];
    let block = prop_oneof![
        proptest::sample::select(vec![1usize, 2, 3, 7, 32, 33, 64, 65, 128, 1000]),
        1usize..5000,
    ];
    (members, chunk_elems, block).prop_flat_map(|(members, chunk_elems, block)| {
        let g = members.len();
        // Chunks of `chunk_elems` (or of whole blocks, which are no smaller) bound the count.
        let max = (chunk_elems.max(1) * g * MAX_CHUNKS).min(MAX_LEN);
        let units = vec![chunk_elems * g, block * g, chunk_elems, g, 1];
        (
            Just(members),
            proptest::sample::select(units).prop_flat_map(move |u| straddling(u, max)),
            Just(chunk_elems),
            proptest::sample::select(DType::ALL.to_vec()),
            proptest::sample::select(ReduceOp::ALL.to_vec()),
            proptest::sample::select(Quantization::ALL.to_vec()),
            Just(block),
            any::<u64>(),
            prop_oneof![3 => Just(None), 1 => (0usize..1000).prop_map(Some)],
        )
            .prop_map(
                |(members, len, chunk_elems, dtype, op, format, block, seed, abort)| Case {
                    members,
                    len: len.min(MAX_LEN),
                    chunk_elems,
                    dtype,
                    op,
                    format,
                    block,
                    seed,
                    abort,
                },
            )
    })
}

/// A buffer of `len` elements of `dtype` in 8-byte-aligned storage (the reductions need
/// element alignment).
#[derive(Debug)]
struct Buffer {
    words: Vec<u64>,
    bytes: usize,
}

impl Buffer {
    fn zeroed(dtype: DType, len: usize) -> Self {
        let bytes = len * dtype.size();
        Self {
            words: vec![0; bytes.div_ceil(8)],
            bytes,
        }
    }

    fn from_f64(dtype: DType, values: &[f64]) -> Self {
        let mut buffer = Self::zeroed(dtype, values.len());
        let out = buffer.as_bytes_mut();
        for (i, &v) in values.iter().enumerate() {
            let at = i * dtype.size();
            match dtype {
                DType::F32 => out[at..at + 4].copy_from_slice(&(v as f32).to_ne_bytes()),
                DType::F64 => out[at..at + 8].copy_from_slice(&v.to_ne_bytes()),
                DType::F16 => out[at..at + 2].copy_from_slice(&f16::from_f64(v).to_ne_bytes()),
                DType::BF16 => out[at..at + 2].copy_from_slice(&bf16::from_f64(v).to_ne_bytes()),
                DType::I32 => out[at..at + 4].copy_from_slice(&(v as i32).to_ne_bytes()),
                DType::I64 => out[at..at + 8].copy_from_slice(&(v as i64).to_ne_bytes()),
            }
        }
        buffer
    }

    fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.bytes]
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.bytes]
    }
}

/// Small integers, so every dtype holds every partial sum exactly and the order in which the
/// ring adds cannot matter.
fn small_integers(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.below(31) as f64 - 15.0).collect()
}

/// The all-reduce of exact small integers, element by element, in `dtype`.
fn reference_all_reduce(dtype: DType, op: ReduceOp, inputs: &[Vec<f64>]) -> Buffer {
    let n = inputs.len();
    let len = inputs[0].len();
    let combined: Vec<f64> = (0..len)
        .map(|i| {
            let column = inputs.iter().map(|x| x[i]);
            match op {
                ReduceOp::Sum => column.sum(),
                ReduceOp::Max => column.fold(f64::MIN, f64::max),
                ReduceOp::Min => column.fold(f64::MAX, f64::min),
                ReduceOp::Avg => {
                    let sum: f64 = column.sum();
                    match dtype {
                        DType::I32 | DType::I64 => (sum / n as f64).floor(),
                        DType::F64 => sum / n as f64,
                        // The sum is exact in every float type here; the mean is divided in
                        // f32 and rounded once (f16 and bf16 from the f32 quotient).
                        _ => f64::from(sum as f32 / n as f32),
                    }
                }
            }
        })
        .collect();
    Buffer::from_f64(dtype, &combined)
}

fn abort_point(case: &Case, frames: usize) -> Option<usize> {
    case.abort.map(|per_mille| frames * per_mille / 1000)
}

// ---------------------------------------------------------------------------------------------
// The ring step schedules.

fn check_ring_all_reduce(world: &World, case: &Case) -> Result<(), String> {
    let g = case.members.len();
    let mut rng = Rng(case.seed);
    let inputs: Vec<Vec<f64>> = (0..g).map(|_| small_integers(&mut rng, case.len)).collect();
    let elem = case.dtype.size();
    let layout = Layout::new(case.len, g, 1, case.chunk_elems);
    if g > 1 {
        // The backup slots (what an abort restores) tile the buffer: every byte the schedule may
        // change is covered once.
        let group = Group {
            ranks: case.members.clone(),
            pos: 0,
        };
        let steps = ring::all_reduce(
            &world.meshes[case.members[0]],
            &group,
            &layout,
            elem,
            case.op,
        );
        let mut next = 0;
        for slot in &steps.slots {
            if slot.start != next {
                return Err(format!("backup slots leave a gap at byte {next}"));
            }
            next = slot.end;
        }
        if next != case.len * elem {
            return Err(format!(
                "backup slots end at byte {next} of {}",
                case.len * elem
            ));
        }
    }
    let run = |stop_after: Option<usize>, buffers: &mut Vec<Buffer>| -> Result<usize, String> {
        let mut kept = world.scratch.borrow_mut();
        let scratches = world.members_of(&mut kept, &case.members);
        let mut plans: Vec<StepSchedule<'_>> = buffers
            .iter_mut()
            .zip(scratches)
            .enumerate()
            .map(|(pos, (buffer, scratch))| {
                let group = Group {
                    ranks: case.members.clone(),
                    pos,
                };
                let mesh = &world.meshes[case.members[pos]];
                let steps = ring::all_reduce(mesh, &group, &layout, elem, case.op);
                let reduction = Reduction {
                    dtype: case.dtype,
                    op: case.op,
                    group: g,
                };
                StepSchedule::new(
                    buffer.as_bytes_mut(),
                    Some(reduction),
                    steps,
                    scratch,
                    &mut [],
                )
            })
            .collect();
        let mut schedules: Vec<&mut dyn FrameSchedule> = plans
            .iter_mut()
            .map(|p| p as &mut dyn FrameSchedule)
            .collect();
        let received = simulate(
            &world.wiring,
            &case.members,
            &mut schedules,
            case.seed,
            stop_after,
        )?;
        if stop_after.is_some() {
            plans.iter_mut().for_each(StepSchedule::restore);
        }
        Ok(received)
    };
    let fresh = || -> Vec<Buffer> {
        inputs
            .iter()
            .map(|x| Buffer::from_f64(case.dtype, x))
            .collect()
    };
    let mut buffers = fresh();
    let frames = run(None, &mut buffers)?;
    let want = reference_all_reduce(case.dtype, case.op, &inputs);
    for (pos, buffer) in buffers.iter().enumerate() {
        if buffer.as_bytes() != want.as_bytes() {
            let at = buffer
                .as_bytes()
                .iter()
                .zip(want.as_bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "member {pos}: element {} differs from the reference",
                at / elem
            ));
        }
    }
    if let Some(stop) = abort_point(case, frames) {
        let mut buffers = fresh();
        run(Some(stop), &mut buffers)?;
        for (pos, (buffer, input)) in buffers.iter().zip(fresh()).enumerate() {
            if buffer.as_bytes() != input.as_bytes() {
                return Err(format!(
                    "member {pos}: not restored after {stop} of {frames} frames"
                ));
            }
        }
    }
    Ok(())
}

fn check_ring_all_gather(world: &World, case: &Case) -> Result<(), String> {
    let g = case.members.len();
    let elem = case.dtype.size();
    // Each member contributes `len / g` elements, as the communicator lays it out.
    let each = case.len / g;
    let mut rng = Rng(case.seed ^ 1);
    let inputs: Vec<Vec<f64>> = (0..g).map(|_| small_integers(&mut rng, each)).collect();
    let layout = Layout::new(each * g, g, 1, case.chunk_elems);
    let mut buffers: Vec<Buffer> = (0..g)
        .map(|pos| {
            // Garbage everywhere but the member's own slice.
            let mut values: Vec<f64> = (0..each * g).map(|i| (i % 7) as f64 + 100.0).collect();
            values[pos * each..(pos + 1) * each].copy_from_slice(&inputs[pos]);
            Buffer::from_f64(case.dtype, &values)
        })
        .collect();
    let mut kept = world.scratch.borrow_mut();
    let scratches = world.members_of(&mut kept, &case.members);
    let mut plans: Vec<StepSchedule<'_>> = buffers
        .iter_mut()
        .zip(scratches)
        .enumerate()
        .map(|(pos, (buffer, scratch))| {
            let group = Group {
                ranks: case.members.clone(),
                pos,
            };
            let steps = ring::all_gather(&world.meshes[case.members[pos]], &group, &layout, elem);
            StepSchedule::new(buffer.as_bytes_mut(), None, steps, scratch, &mut [])
        })
        .collect();
    let mut schedules: Vec<&mut dyn FrameSchedule> = plans
        .iter_mut()
        .map(|p| p as &mut dyn FrameSchedule)
        .collect();
    simulate(
        &world.wiring,
        &case.members,
        &mut schedules,
        case.seed,
        None,
    )?;
    drop(plans);
    let all: Vec<f64> = inputs.concat();
    let want = Buffer::from_f64(case.dtype, &all);
    for (pos, buffer) in buffers.iter().enumerate() {
        if buffer.as_bytes() != want.as_bytes() {
            return Err(format!("member {pos} did not gather every slice"));
        }
    }
    Ok(())
}

fn check_broadcast(world: &World, case: &Case) -> Result<(), String> {
    let g = case.members.len();
    let elem = case.dtype.size();
    let root = (case.seed % g as u64) as usize;
    let mut rng = Rng(case.seed ^ 2);
    let inputs: Vec<Vec<f64>> = (0..g).map(|_| small_integers(&mut rng, case.len)).collect();
    let layout = Layout::new(case.len, 1, 1, case.chunk_elems);
    let run = |stop_after: Option<usize>| -> Result<(Vec<Buffer>, usize), String> {
        let mut buffers: Vec<Buffer> = inputs
            .iter()
            .map(|x| Buffer::from_f64(case.dtype, x))
            .collect();
        let mut kept = world.scratch.borrow_mut();
        let scratches = world.members_of(&mut kept, &case.members);
        let mut plans: Vec<StepSchedule<'_>> = buffers
            .iter_mut()
            .zip(scratches)
            .enumerate()
            .map(|(pos, (buffer, scratch))| {
                let group = Group {
                    ranks: case.members.clone(),
                    pos,
                };
                let mesh = &world.meshes[case.members[pos]];
                let steps = ring::broadcast(mesh, &group, root, &layout, elem);
                StepSchedule::new(buffer.as_bytes_mut(), None, steps, scratch, &mut [])
            })
            .collect();
        let mut schedules: Vec<&mut dyn FrameSchedule> = plans
            .iter_mut()
            .map(|p| p as &mut dyn FrameSchedule)
            .collect();
        let received = simulate(
            &world.wiring,
            &case.members,
            &mut schedules,
            case.seed,
            stop_after,
        )?;
        if stop_after.is_some() {
            plans.iter_mut().for_each(StepSchedule::restore);
        }
        drop(plans);
        Ok((buffers, received))
    };
    let (buffers, frames) = run(None)?;
    let want = Buffer::from_f64(case.dtype, &inputs[root]);
    for (pos, buffer) in buffers.iter().enumerate() {
        if buffer.as_bytes() != want.as_bytes() {
            return Err(format!("member {pos} did not receive the root's buffer"));
        }
    }
    if let Some(stop) = abort_point(case, frames) {
        let (buffers, _) = run(Some(stop))?;
        for (pos, buffer) in buffers.iter().enumerate() {
            if buffer.as_bytes() != Buffer::from_f64(case.dtype, &inputs[pos]).as_bytes() {
                return Err(format!(
                    "member {pos}: not restored after {stop} of {frames} frames"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The quantized all-reduce.

/// Values of mixed magnitudes (the exponent changes every few elements, so blocks differ),
/// exact in every float dtype.
fn spread_values(rng: &mut Rng, dtype: DType, len: usize) -> Vec<f32> {
    let values: Vec<f32> = (0..len)
        .map(|i| {
            let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * 2f32.powi((i / 5 % 11) as i32 - 5)
        })
        .collect();
    // Round through the dtype so the f32 working values are exactly the inputs.
    let mut stored = Buffer::zeroed(dtype, len);
    from_f32(dtype, &values, stored.as_bytes_mut()).expect("narrow");
    let mut exact = vec![0f32; len];
    to_f32(dtype, stored.as_bytes(), &mut exact).expect("widen");
    exact
}

fn round_trip(format: Quantization, values: &[f32], block: usize) -> Vec<f32> {
    let mut encoded = vec![0u8; format.encoded_len(values.len(), block)];
    format
        .encode(values, block, &mut encoded, "values")
        .expect("encode");
    let mut decoded = vec![0f32; values.len()];
    format
        .decode(&encoded, block, &mut decoded)
        .expect("decode");
    decoded
}

fn combine(op: ReduceOp, acc: f32, v: f32) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => acc + v,
        ReduceOp::Max => {
            if v > acc {
                v
            } else {
                acc
            }
        }
        ReduceOp::Min => {
            if v < acc {
                v
            } else {
                acc
            }
        }
    }
}

/// The quantized all-reduce by its definition: every member's contribution to slice `j` is
/// quantized once (block by block, from element 0), except the owner's own; the owner
/// combines them in member order in f32, and its result is quantized once.
fn reference_quantized(case: &Case, inputs: &[Vec<f32>]) -> Vec<f32> {
    let g = inputs.len();
    if g == 1 {
        return inputs[0].clone();
    }
    let decoded: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| round_trip(case.format, x, case.block))
        .collect();
    let layout = Layout::new(case.len, g, case.block, case.chunk_elems);
    let mut acc = vec![0f32; case.len];
    for owner in 0..g {
        for i in layout.slice(owner) {
            let term = |q: usize| {
                if q == owner {
                    inputs[q][i]
                } else {
                    decoded[q][i]
                }
            };
            let mut a = term(0);
            for q in 1..g {
                a = combine(case.op, a, term(q));
            }
            if case.op == ReduceOp::Avg {
                a /= g as f32;
            }
            acc[i] = a;
        }
    }
    round_trip(case.format, &acc, case.block)
}

/// Runs the quantized all-reduce of `case` over `buffers` (one per member, of `dtype`),
/// committing unless stopped early. Returns the buffers and the frames received.
fn run_quantized(
    world: &World,
    case: &Case,
    dtype: DType,
    mut buffers: Vec<Buffer>,
    stop_after: Option<usize>,
) -> Result<(Vec<Buffer>, usize), String> {
    let mut kept = world.quantized.borrow_mut();
    let scratches = world.members_of(&mut kept, &case.members);
    let mut schedules: Vec<QuantizedAllReduce<'_>> = buffers
        .iter_mut()
        .zip(scratches)
        .enumerate()
        .map(|(pos, (buffer, scratch))| {
            let group = Group {
                ranks: case.members.clone(),
                pos,
            };
            QuantizedAllReduce::new(
                &world.meshes[case.members[pos]],
                &group,
                buffer.as_bytes_mut(),
                dtype,
                case.op,
                case.format,
                case.block,
                case.chunk_elems,
                scratch,
            )
        })
        .collect();
    let mut dyns: Vec<&mut dyn FrameSchedule> = schedules
        .iter_mut()
        .map(|s| s as &mut dyn FrameSchedule)
        .collect();
    let received = simulate(
        &world.wiring,
        &case.members,
        &mut dyns,
        case.seed,
        stop_after,
    )?;
    if stop_after.is_none() {
        for s in &mut schedules {
            s.commit().map_err(|e| e.to_string())?;
        }
    }
    drop(schedules);
    Ok((buffers, received))
}

fn check_quantized(world: &World, case: &Case) -> Result<(), String> {
    let g = case.members.len();
    // The quantized path takes float arrays only.
    let dtype = match case.dtype {
        DType::I32 => DType::F32,
        DType::I64 => DType::F64,
        other => other,
    };
    let mut rng = Rng(case.seed ^ 3);
    let inputs: Vec<Vec<f32>> = (0..g)
        .map(|_| spread_values(&mut rng, dtype, case.len))
        .collect();
    let stored = |x: &[f32]| {
        let mut buffer = Buffer::zeroed(dtype, x.len());
        from_f32(dtype, x, buffer.as_bytes_mut()).expect("narrow");
        buffer
    };
    let run = |stop_after: Option<usize>| {
        run_quantized(
            world,
            case,
            dtype,
            inputs.iter().map(|x| stored(x)).collect(),
            stop_after,
        )
    };
    let (buffers, frames) = run(None)?;
    let want = stored(&reference_quantized(case, &inputs));
    for (pos, buffer) in buffers.iter().enumerate() {
        if buffer.as_bytes() != want.as_bytes() {
            let at = buffer
                .as_bytes()
                .iter()
                .zip(want.as_bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "member {pos}: element {} differs from the reference",
                at / dtype.size()
            ));
        }
    }
    // The quantized all-reduce only reads the caller's buffer until it commits.
    if let Some(stop) = abort_point(case, frames) {
        let (buffers, _) = run(Some(stop))?;
        for (pos, buffer) in buffers.iter().enumerate() {
            if buffer.as_bytes() != stored(&inputs[pos]).as_bytes() {
                return Err(format!(
                    "member {pos}: buffer changed by an aborted collective"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn check_worlds(worlds: impl IntoIterator<Item = usize>) {
    for n in worlds {
        for connections in 1..=8 {
            let world = World::new(n, connections);
            let mut runner = TestRunner::new(Config {
                cases: CASES,
                failure_persistence: None,
                ..Config::default()
            });
            let result = runner.run(&case(n), |case| {
                let checks: [(&str, Check); 4] = [
                    ("ring all-reduce", check_ring_all_reduce),
                    ("ring all-gather", check_ring_all_gather),
                    ("chain broadcast", check_broadcast),
                    ("quantized all-reduce", check_quantized),
                ];
                for (name, check) in checks {
                    check(&world, &case)
                        .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                }
                Ok(())
            });
            if let Err(e) = result {
                panic!("world {n} with {connections} stripes: {e}");
            }
        }
    }
}

#[test]
fn schedules_of_worlds_up_to_five() {
    check_worlds(1..=5);
}

#[test]
fn schedules_of_worlds_of_six_to_eight() {
    check_worlds(6..=8);
}

// ---------------------------------------------------------------------------------------------
// Regressions.

fn quantized_case(members: usize, len: usize) -> Case {
    Case {
        members: (0..members).collect(),
        len,
        chunk_elems: 1000,
        dtype: DType::F32,
        op: ReduceOp::Sum,
        format: Quantization::Int8,
        block: 64,
        seed: 11,
        abort: None,
    }
}

/// A quantized all-reduce with an empty slice after a larger one, on the same peers: the
/// empty frames' buffers held the larger collective's bytes, which were decoded as the empty
/// chunk and failed ("encoded: must hold 0 bytes ..."). Two all-reduces of different sizes
/// in a row were enough.
#[test]
fn a_small_quantized_all_reduce_after_a_large_one_regression() {
    let world = World::new(3, 2);
    // 100 elements in blocks of 64 make two blocks for three slices: slice 0 is empty.
    for len in [10_000, 100, 9_999, 1, 0, 65] {
        check_quantized(&world, &quantized_case(3, len))
            .unwrap_or_else(|e| panic!("length {len}: {e}"));
    }
}

/// The error for a value that cannot be quantized names its index in the caller's array,
/// whichever chunk carried it and whichever side quantized it. It used to name the index in
/// the chunk (so a NaN at index 5,005 was reported "at index 5").
#[test]
fn unquantizable_values_are_named_by_their_index_in_the_array_regression() {
    let world = World::new(3, 2);
    let case = quantized_case(3, 9_001);
    let layout = Layout::new(case.len, 3, case.block, case.chunk_elems);
    // (member, index): in another member's slice past its first chunk (the contribution is
    // quantized by the sender), and in the member's own slice (the owner quantizes the sum).
    let inside = |slice: usize| layout.chunk(slice, 1).start + 7;
    for (member, at) in [
        (1, inside(2)),
        (1, inside(1)),
        (0, inside(2)),
        (2, inside(0)),
    ] {
        for bad in [f32::NAN, f32::NEG_INFINITY] {
            let buffers: Vec<Buffer> = (0..3)
                .map(|m| {
                    let mut x = vec![0.5f64; case.len];
                    if m == member {
                        x[at] = f64::from(bad);
                    }
                    Buffer::from_f64(DType::F32, &x)
                })
                .collect();
            let error = run_quantized(&world, &case, DType::F32, buffers, None)
                .expect_err("a non-finite value cannot be quantized");
            assert!(
                error.ends_with(&format!("got {bad} at index {at}")),
                "member {member}, index {at}: {error}"
            );
        }
    }
    // A finite float64 beyond the float32 range says so, on the sending and the owning side.
    for (member, at) in [(2, inside(0)), (0, inside(0))] {
        let buffers: Vec<Buffer> = (0..3)
            .map(|m| {
                let mut x = vec![0.5f64; case.len];
                if m == member {
                    x[at] = -1e300;
                }
                Buffer::from_f64(DType::F64, &x)
            })
            .collect();
        let error = run_quantized(&world, &case, DType::F64, buffers, None).unwrap_err();
        assert!(
            error.contains("float32 range") && error.ends_with(&format!("at index {at}")),
            "member {member}: {error}"
        );
    }
    // Finite inputs whose sum overflows: the sum is named, not the inputs.
    let at = inside(1);
    let buffers: Vec<Buffer> = (0..3)
        .map(|_| {
            let mut x = vec![0.5f64; case.len];
            x[at] = 3e38;
            Buffer::from_f64(DType::F32, &x)
        })
        .collect();
    let error = run_quantized(&world, &case, DType::F32, buffers, None).unwrap_err();
    assert!(
        error.contains(&format!(
            "the sum over the ranks is inf in float32 at index {at},"
        )),
        "{error}"
    );
}
