//! End-to-end collectives between real communicators on 127.0.0.1, one thread per peer.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::communicator::{Communicator, CommunicatorOptions, StateArray};
use thrifty_collective::coordinator::{Coordinator, CoordinatorOptions};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_core::CoreError;

fn secret() -> Secret {
    Secret::new(b"test secret".to_vec()).expect("secret")
}

fn options() -> CommunicatorOptions {
    CommunicatorOptions {
        connections: 2,
        timeout: Duration::from_secs(20),
        bind_host: "127.0.0.1".into(),
        ..CommunicatorOptions::default()
    }
}

/// Bring `n` peers up to a world of `n` and run `body(comm, rank)` on each.
fn world<T, F>(n: usize, body: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&mut Communicator, usize) -> T + Send + Sync + 'static,
{
    support::loopback_world(n, &secret(), options(), body)
}

fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + rank * 13) % 101) as f32 - 50.0)
        .collect()
}

fn as_bytes(values: &mut [f32]) -> &mut [u8] {
    bytemuck::cast_slice_mut(values)
}

#[test]
fn all_reduce_matches_the_sum_for_odd_worlds_and_sizes() {
    for (n, len) in [(1, 5), (2, 1), (3, 1000), (5, 100_003)] {
        let results = world(n, move |comm, rank| {
            let mut ops = Vec::new();
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Avg] {
                let mut x = input(rank, len);
                comm.all_reduce(as_bytes(&mut x), DType::F32, op, None, 64)
                    .expect("all_reduce");
                ops.push(x);
            }
            ops
        });
        for (o, op) in ["sum", "max", "min", "avg"].iter().enumerate() {
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| input(r, len)).collect();
            for i in 0..len {
                let column = inputs.iter().map(|x| x[i]);
                let expected = match *op {
                    "sum" => column.sum::<f32>(),
                    "max" => column.fold(f32::MIN, f32::max),
                    "min" => column.fold(f32::MAX, f32::min),
                    _ => column.sum::<f32>() / n as f32,
                };
                assert!(
                    (results[0][o][i] - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                    "{op} n={n} i={i}: {} vs {expected}",
                    results[0][o][i]
                );
            }
            for r in 1..n {
                assert_eq!(results[r][o], results[0][o], "ranks differ for {op}");
            }
        }
    }
}

#[test]
fn quantized_all_reduce_is_bit_identical_and_within_bound() {
    let n = 3;
    let len = 10_007;
    for format in [Quantization::Int8, Quantization::Fp8, Quantization::Fp4] {
        let results = world(n, move |comm, rank| {
            let mut x = input(rank, len);
            comm.all_reduce(
                as_bytes(&mut x),
                DType::F32,
                ReduceOp::Sum,
                Some(format),
                64,
            )
            .expect("quantized all_reduce");
            x
        });
        for r in 1..n {
            assert_eq!(results[r], results[0], "{format:?}: ranks differ");
        }
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| input(r, len)).collect();
        let exact: Vec<f32> = (0..len)
            .map(|i| inputs.iter().map(|x| x[i]).sum())
            .collect();
        let worst = exact
            .iter()
            .zip(&results[0])
            .map(|(e, g)| (e - g).abs())
            .fold(0.0f32, f32::max);
        // Inputs lie in [-50, 50]: n - 1 quantized inputs plus one quantized output.
        let scale = match format {
            Quantization::Int8 => 50.0 / 127.0 * 0.5 * n as f32 + 150.0 / 127.0 * 0.5,
            Quantization::Fp8 => 50.0 / 16.0 * n as f32 + 150.0 / 16.0,
            Quantization::Fp4 => 50.0 / 4.0 * n as f32 + 150.0 / 4.0,
        };
        assert!(worst <= scale, "{format:?}: error {worst} above {scale}");
    }
}

#[test]
fn broadcast_gather_barrier_scalars() {
    let n = 4;
    let results = world(n, |comm, rank| {
        let mut b = input(rank, 3000);
        comm.broadcast(as_bytes(&mut b), DType::F32, 2)
            .expect("broadcast");
        let mine = input(rank, 17);
        let mut gathered = vec![0f32; 17 * 4];
        comm.all_gather(
            bytemuck::cast_slice(&mine),
            DType::F32,
            as_bytes(&mut gathered),
        )
        .expect("all_gather");
        comm.barrier().expect("barrier");
        let scalars = comm
            .all_gather_scalars(&[rank as f64, 0.5])
            .expect("scalars");
        (b, gathered, scalars)
    });
    for (rank, (b, gathered, scalars)) in results.iter().enumerate() {
        assert_eq!(*b, input(2, 3000), "broadcast on rank {rank}");
        for r in 0..n {
            assert_eq!(gathered[r * 17..(r + 1) * 17], input(r, 17)[..]);
            assert_eq!(scalars[r], vec![r as f64, 0.5]);
        }
    }
}

#[test]
fn pair_average_averages_within_agreed_groups() {
    let n = 5;
    let results = world(n, |comm, rank| {
        let mut x = vec![rank as f32; 1000];
        let info = comm
            .pair_average(as_bytes(&mut x), DType::F32, 7, 2)
            .expect("pair_average");
        // Groups finish apart, and a peer that leaves breaks the epoch for collectives that
        // have not begun yet: nobody leaves before everyone is done.
        comm.barrier().expect("barrier");
        (info.group, x)
    });
    for (rank, (group, x)) in results.iter().enumerate() {
        assert!(group.contains(&rank));
        for member in group {
            assert_eq!(&results[*member].0, group, "groups disagree");
        }
        let mean = group.iter().map(|&r| r as f32).sum::<f32>() / group.len() as f32;
        assert!(x.iter().all(|&v| v == mean));
    }
}

#[test]
fn sync_state_brings_the_odd_peer_up_to_date() {
    let n = 3;
    let results = world(n, |comm, rank| {
        let mut weights: Vec<f32> = if rank == 1 {
            vec![9.0; 300_000]
        } else {
            input(0, 300_000)
        };
        let mut step = vec![5i64];
        let report = {
            let mut arrays = vec![
                StateArray {
                    name: "weights".into(),
                    dtype: DType::F32,
                    shape: vec![300_000],
                    data: bytemuck::cast_slice_mut(&mut weights),
                },
                StateArray {
                    name: "step".into(),
                    dtype: DType::I64,
                    shape: vec![1],
                    data: bytemuck::cast_slice_mut(&mut step),
                },
            ];
            comm.sync_state(&mut arrays, 3).expect("sync_state")
        };
        let again = comm.sync_state(&mut [], 3);
        (report, weights, again.err())
    });
    for (rank, (report, weights, again)) in results.iter().enumerate() {
        assert_eq!(*weights, input(0, 300_000));
        assert_eq!(report.revision, 3);
        assert_eq!(report.state_hash, results[0].0.state_hash);
        assert_eq!(report.fetched.is_empty(), rank != 1);
        assert_eq!(report.peers_out_of_date, 1);
        assert!(matches!(
            again,
            Some(CoreError::InvalidValue {
                argument: "revision",
                ..
            })
        ));
    }
}

#[test]
fn a_lost_peer_aborts_restores_and_the_survivors_go_on() {
    let n = 3;
    let gate = Arc::new(Barrier::new(n));
    let results = world(n, move |comm, rank| {
        gate.wait();
        if rank == 2 {
            // Leave in the middle: the others are already in their all-reduce.
            thread::sleep(Duration::from_millis(200));
            comm.close();
            return None;
        }
        let mut x = input(rank, 4_000_000);
        let original = x.clone();
        let mut failures = 0;
        loop {
            match comm.all_reduce(as_bytes(&mut x), DType::F32, ReduceOp::Sum, None, 64) {
                Ok(_) if comm.world_size() == n => {
                    x = original.clone();
                }
                Ok(_) => return Some((failures, x, comm.world_size())),
                Err(CoreError::PeerLost(_)) => {
                    assert_eq!(x, original, "buffer not restored");
                    failures += 1;
                    comm.update_topology().expect("update_topology");
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    });
    for result in results.iter().take(2) {
        let (failures, x, world) = result.clone().expect("survivor");
        assert!(failures >= 1);
        assert_eq!(world, 2);
        let (a, b) = (input(0, 4_000_000), input(1, 4_000_000));
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(x, expected);
    }
}

/// Every rank's error when the last rank calls `all_reduce` or `all_gather` with a
/// different length (large enough that the ring sends several frames per peer).
fn mismatched_collective(n: usize, gather: bool) -> Vec<CoreError> {
    world(n, move |comm, rank| {
        let len = if rank == n - 1 { 90_001 } else { 90_000 };
        let mut x = input(rank, len);
        let original = x.clone();
        let result = if gather {
            let mut out = vec![0f32; len * n];
            comm.all_gather(bytemuck::cast_slice(&x), DType::F32, as_bytes(&mut out))
        } else {
            comm.all_reduce(as_bytes(&mut x), DType::F32, ReduceOp::Sum, None, 64)
        };
        assert_eq!(x, original, "rank {rank}: buffer not restored");
        let error = result.expect_err("a mismatch cannot succeed");
        // The world goes on after the abort.
        comm.update_topology().expect("update_topology");
        let mut y = vec![1f32; 10];
        comm.all_reduce(as_bytes(&mut y), DType::F32, ReduceOp::Sum, None, 64)
            .expect("all_reduce after the mismatch");
        assert_eq!(y, vec![n as f32; 10]);
        error
    })
}

#[test]
fn a_shape_mismatch_is_reported_as_such_on_every_rank() {
    for (n, gather) in [(2, false), (4, false), (2, true), (3, true)] {
        for (rank, error) in mismatched_collective(n, gather).into_iter().enumerate() {
            // Not a lost link: the data phase sees frames of the wrong length, and every
            // rank learns that cause from the coordinator.
            let CoreError::Mismatch(message) = &error else {
                panic!("world {n}, gather {gather}, rank {rank}: {error:?}");
            };
            assert!(
                message.contains("differ"),
                "world {n}, gather {gather}, rank {rank}: {message}"
            );
        }
    }
}

#[test]
fn a_wrong_secret_is_refused() {
    let coordinator =
        Coordinator::start("127.0.0.1:0", secret(), CoordinatorOptions::default()).expect("start");
    let mut comm = Communicator::new(
        &coordinator.address(),
        Secret::new(b"wrong".to_vec()).expect("secret"),
        options(),
    )
    .expect("new");
    assert!(matches!(comm.connect(), Err(CoreError::Authentication(_))));
}

#[test]
fn peers_resume_on_a_standby_coordinator_when_theirs_is_lost() {
    let n = 3;
    let primary =
        Coordinator::start("127.0.0.1:0", secret(), CoordinatorOptions::default()).expect("start");
    let standby =
        Coordinator::start("127.0.0.1:0", secret(), CoordinatorOptions::default()).expect("start");
    let addresses = format!("{},{}", primary.address(), standby.address());
    let primary = Arc::new(primary);
    let before = Arc::new(Barrier::new(n + 1));
    let after = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (addresses, before, after) =
                (addresses.clone(), Arc::clone(&before), Arc::clone(&after));
            thread::spawn(move || {
                let mut comm = Communicator::new(&addresses, secret(), options()).expect("new");
                comm.connect().expect("connect");
                while comm.world_size() < n {
                    comm.update_topology().expect("update_topology");
                }
                let old_epoch = comm.epoch();
                let mut x = vec![1.0f32; 10_000];
                comm.all_reduce(as_bytes(&mut x), DType::F32, ReduceOp::Sum, None, 64)
                    .expect("all_reduce on the primary");
                before.wait();
                after.wait(); // the primary is gone now
                let mut y = input(comm.rank().expect("rank"), 10_000);
                let original = y.clone();
                let lost = comm.all_reduce(as_bytes(&mut y), DType::F32, ReduceOp::Sum, None, 64);
                assert!(matches!(lost, Err(CoreError::PeerLost(_))), "{lost:?}");
                assert_eq!(y, original, "a failed collective restores its buffer");
                // One update: the standby waits for every member of the old view.
                comm.update_topology().expect("resume on the standby");
                assert_eq!(comm.world_size(), n);
                assert!(
                    comm.epoch() > old_epoch,
                    "epochs only grow across coordinators"
                );
                let rank = comm.rank().expect("rank");
                let mut z = input(rank, 10_000);
                comm.all_reduce(as_bytes(&mut z), DType::F32, ReduceOp::Sum, None, 64)
                    .expect("all_reduce on the standby");
                (x, z)
            })
        })
        .collect();
    before.wait();
    primary.close();
    after.wait();
    let inputs: Vec<Vec<f32>> = (0..n).map(|r| input(r, 10_000)).collect();
    let expected: Vec<f32> = (0..10_000)
        .map(|i| inputs.iter().map(|x| x[i]).sum())
        .collect();
    for handle in handles {
        let (x, z) = handle.join().expect("peer");
        assert!(x.iter().all(|&v| v == n as f32));
        assert_eq!(z, expected);
    }
    assert_eq!(standby.snapshot().members.len(), n);
}
