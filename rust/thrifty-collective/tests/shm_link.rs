//! Links through shared memory: the same bits as TCP, the same failures, the same refusals.

mod support;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::communicator::CommunicatorOptions;
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::engine;
use thrifty_collective::group::Group;
use thrifty_collective::layout::Layout;
use thrifty_collective::mesh::Mesh;
use thrifty_collective::message::HostId;
use thrifty_collective::ring;
use thrifty_collective::shm_handover::{local_host, offer, same_host, take};
use thrifty_collective::signal::OpSignal;
use thrifty_collective::step_schedule::{Reduction, StepSchedule, StepScratch};
use thrifty_core::CoreError;

fn secret() -> Secret {
    Secret::new(b"shm secret".to_vec()).expect("secret")
}

fn options(shared_memory: bool) -> CommunicatorOptions {
    CommunicatorOptions {
        connections: 2,
        timeout: Duration::from_secs(30),
        bind_host: "127.0.0.1".into(),
        shared_memory,
        ..CommunicatorOptions::default()
    }
}

/// Values that make the order of a sum show in its bits: mixed magnitudes and signs.
fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let k = (i * 7919 + rank * 104_729) % 1013;
            (k as f32 - 506.0) * 1.000_123f32.powi((i % 97) as i32) / (1.0 + rank as f32 * 0.37)
        })
        .collect()
}

/// Every rank's all-reduced buffer, and how many shared-memory links each rank had.
fn all_reduce(
    n: usize,
    len: usize,
    quantize: Option<Quantization>,
    shared_memory: bool,
) -> Vec<(Vec<u32>, usize)> {
    support::loopback_world(n, &secret(), options(shared_memory), move |comm, rank| {
        let mut x = input(rank, len);
        comm.all_reduce(
            bytemuck::cast_slice_mut(&mut x),
            DType::F32,
            ReduceOp::Sum,
            quantize,
            64,
        )
        .expect("all_reduce");
        let bits = x.iter().map(|v| v.to_bits()).collect();
        (bits, comm.shared_memory_links())
    })
}

#[test]
fn shared_memory_gives_the_bits_of_tcp() {
    for quantize in [None, Some(Quantization::Int8), Some(Quantization::Fp4)] {
        for (n, len) in [(2, 1), (3, 1001), (4, 262_147)] {
            let tcp = all_reduce(n, len, quantize, false);
            let shm = all_reduce(n, len, quantize, true);
            for rank in 0..n {
                assert_eq!(
                    tcp[rank].1, 0,
                    "{quantize:?} n={n}: TCP run used shared memory"
                );
                // Two stripes to each of the other n - 1 ranks.
                assert_eq!(
                    shm[rank].1,
                    2 * (n - 1),
                    "{quantize:?} n={n}: links not on shm"
                );
                assert!(
                    tcp[rank].0 == shm[rank].0,
                    "{quantize:?} n={n} len={len}: rank {rank}'s bits differ"
                );
            }
        }
    }
}

#[test]
fn a_peer_that_drops_its_mesh_mid_transfer_fails_the_others_fast_and_they_restore() {
    let n = 2;
    let (listeners, meshes) =
        support::loopback_meshes_over(n, 1, &secret(), Duration::from_secs(10), true);
    assert!(meshes
        .iter()
        .all(|m| m.links.iter().all(|l| l.shm.is_some())));
    let mut meshes = meshes.into_iter();
    let (early, mut mesh) = (
        meshes.next().expect("rank 0"),
        meshes.next().expect("rank 1"),
    );
    // Rank 0 leaves while rank 1 writes more than a ring holds and waits for data: rank 1 is
    // blocked on both directions, and only the TCP link can tell it that rank 0 is gone.
    let leaver = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        drop(early);
    });
    let len = 4 << 20;
    let mut x = input(1, len);
    let original = x.clone();
    let group = Group {
        ranks: (0..n).collect(),
        pos: 1,
    };
    let layout = Layout::new(len, n, 1, 1 << 16);
    let steps = ring::all_reduce(&mesh, &group, &layout, 4, ReduceOp::Sum);
    let mut scratch = StepScratch::default();
    let reduction = Reduction {
        dtype: DType::F32,
        op: ReduceOp::Sum,
        group: n,
    };
    let mut plan = StepSchedule::new(
        bytemuck::cast_slice_mut(&mut x),
        Some(reduction),
        steps,
        &mut scratch,
        &mut [],
    );
    let signal = OpSignal::new();
    signal.set_waker(Some(Arc::clone(&mesh.waker)));
    let started = Instant::now();
    let result = engine::run(
        &mut mesh,
        &mut plan,
        1,
        &signal,
        started + Duration::from_secs(60),
    );
    let waited = started.elapsed();
    plan.restore();
    drop(plan);
    leaver.join().expect("leaver");
    assert!(
        matches!(result, Err(CoreError::PeerLost(_))),
        "got {result:?}"
    );
    // Far below the deadline: the loss was seen, not timed out.
    assert!(waited < Duration::from_secs(20), "took {waited:?}");
    assert!(x == original, "buffer not restored");
    drop(listeners);
}

fn run_mesh_all_reduce(mesh: &mut Mesh, rank: usize, n: usize, len: usize) -> Vec<f32> {
    let mut x = input(rank, len);
    support::ring_sum(mesh, &mut x, rank, n, 4096, Duration::from_secs(30));
    x
}

#[test]
fn a_mesh_runs_many_collectives_over_the_same_rings() {
    let n = 3;
    let (listeners, meshes) =
        support::loopback_meshes_over(n, 2, &secret(), Duration::from_secs(10), true);
    let handles: Vec<_> = meshes
        .into_iter()
        .enumerate()
        .map(|(rank, mut mesh)| {
            thread::spawn(move || {
                (0..5)
                    .map(|round| run_mesh_all_reduce(&mut mesh, rank, n, 100_003 + round * 999))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("peer"))
        .collect();
    for rank in 1..n {
        assert!(results[rank] == results[0], "rank {rank} differs");
    }
    drop(listeners);
}

/// The two ends of one TCP connection.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dialer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (acceptor, _) = listener.accept().expect("accept");
    (dialer, acceptor)
}

/// What the hand-over gives each end when the dialer says it runs on `dialer_host` and the
/// acceptor `allows` shared memory: whether the dialer's and the acceptor's links took it.
fn hand_over(dialer_host: HostId, allows: bool) -> (bool, bool) {
    let (mut dialer, mut acceptor) = tcp_pair();
    let deadline = Instant::now() + Duration::from_secs(10);
    let acceptor_side =
        thread::spawn(move || offer(&mut acceptor, &dialer_host, allows, deadline).expect("offer"));
    let taken = take(&mut dialer, deadline).expect("take");
    let offered = acceptor_side.join().expect("acceptor");
    if let (Some(a), Some(b)) = (&taken, &offered) {
        assert_eq!(a.write(b"ping").expect("write"), 4);
        let mut got = [0u8; 4];
        assert_eq!(b.read(&mut got).expect("read"), 4);
        assert_eq!(&got, b"ping");
    }
    (taken.is_some(), offered.is_some())
}

#[test]
fn the_hand_over_needs_one_host_and_both_ends_willing() {
    let here = local_host().expect("this test runs on Linux with /proc");
    assert!(same_host(&here, &here));
    assert_eq!(hand_over(here.clone(), true), (true, true));
    assert_eq!(hand_over(here.clone(), false), (false, false));
    for other in [
        HostId {
            boot_id: "another boot".into(),
            ..here.clone()
        },
        HostId {
            net_ns: "net:[1]".into(),
            ..here.clone()
        },
        HostId {
            pid_ns: "pid:[1]".into(),
            ..here.clone()
        },
    ] {
        assert!(!same_host(&here, &other));
        assert_eq!(hand_over(other, true), (false, false));
    }
    // The region goes only to the process the dialer named: a pid that is not the
    // connecting one (the socket's credentials say otherwise) gets nothing, and both ends
    // stay on TCP.
    let impostor = HostId {
        pid: here.pid.wrapping_add(1),
        ..here
    };
    assert_eq!(hand_over(impostor, true), (false, false));
}

#[test]
fn a_wrong_secret_is_refused_before_any_shared_memory() {
    let right = secret();
    let wrong = Secret::new(b"not the secret".to_vec()).expect("secret");
    let listeners: Vec<_> = [right, wrong]
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let l = thrifty_collective::mesh::Listener::bind("127.0.0.1", 0, 200 + i as u64, s)
                .expect("bind");
            l.set_shared_memory(true);
            l
        })
        .collect();
    let view = thrifty_collective::message::View {
        epoch: 1,
        members: listeners
            .iter()
            .enumerate()
            .map(|(i, l)| thrifty_collective::message::Member {
                id: 200 + i as u64,
                addr: format!("127.0.0.1:{}", l.port()),
            })
            .collect(),
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let listeners = Arc::new(listeners);
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let listeners = Arc::clone(&listeners);
            let view = view.clone();
            thread::spawn(move || {
                listeners[i]
                    .build_mesh(&view, 1, deadline, &|| false)
                    .map(|_| ())
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().expect("peer").is_err());
    }
}
