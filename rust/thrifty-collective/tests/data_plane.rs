//! The data plane alone: meshes built by hand for a fixed view, schedules run by the engine,
//! no coordinator. Checks the ring, the chain and the quantized schedule frame by frame.

mod support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::engine;
use thrifty_collective::group::Group;
use thrifty_collective::layout::Layout;
use thrifty_collective::mesh::{Listener, Mesh};
use thrifty_collective::message::AbortKind;
use thrifty_collective::quantized_all_reduce::{QuantizedAllReduce, QuantizedScratch};
use thrifty_collective::ring;
use thrifty_collective::signal::OpSignal;
use thrifty_collective::step_schedule::{Reduction, StepSchedule, StepScratch};
use thrifty_core::CoreError;

fn secret() -> Secret {
    Secret::new(b"mesh".to_vec()).expect("secret")
}

/// Listeners and meshes for `n` peers with `connections` stripes.
fn meshes(n: usize, connections: usize) -> Vec<(Listener, Mesh, usize)> {
    let (listeners, built) =
        support::loopback_meshes(n, connections, &secret(), Duration::from_secs(10));
    listeners
        .into_iter()
        .zip(built)
        .enumerate()
        .map(|(i, (l, m))| (l, m, i))
        .collect()
}

fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 5 + rank * 11) % 97) as f32 - 40.0)
        .collect()
}

fn run_all<T: Send + 'static>(
    peers: Vec<(Listener, Mesh, usize)>,
    body: impl Fn(&mut Mesh, usize, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let n = peers.len();
    let body = Arc::new(body);
    let handles: Vec<_> = peers
        .into_iter()
        .map(|(listener, mut mesh, rank)| {
            let body = Arc::clone(&body);
            thread::spawn(move || {
                let out = body(&mut mesh, rank, n);
                drop(listener);
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("peer"))
        .collect()
}

#[test]
fn ring_all_reduce_sums_over_striped_links() {
    for (n, len, c) in [(2, 1, 1), (3, 1001, 2), (4, 300_000, 4), (6, 77, 3)] {
        let results = run_all(meshes(n, c), move |mesh, rank, n| {
            let mut x = input(rank, len);
            support::ring_sum(mesh, &mut x, rank, n, 4096, Duration::from_secs(20));
            x
        });
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| input(r, len)).collect();
        for i in 0..len {
            let exact: f32 = inputs.iter().map(|x| x[i]).sum();
            assert!((results[0][i] - exact).abs() < 1e-3, "n={n} i={i}");
        }
        for r in 1..n {
            assert_eq!(results[r], results[0], "ranks differ (n={n})");
        }
    }
}

#[test]
fn chain_broadcast_and_quantized_schedule() {
    let n = 3;
    let len = 50_000;
    let results = run_all(meshes(n, 2), move |mesh, rank, n| {
        let group = Group {
            ranks: (0..n).collect(),
            pos: rank,
        };
        let mut b = input(rank, len);
        let layout = Layout::new(len, 1, 1, 3000);
        let steps = ring::broadcast(mesh, &group, 1, &layout, 4);
        let mut scratch = StepScratch::default();
        let mut plan = StepSchedule::new(
            bytemuck::cast_slice_mut(&mut b),
            None,
            steps,
            &mut scratch,
            &mut [],
        );
        let signal = OpSignal::new();
        engine::run(
            mesh,
            &mut plan,
            1,
            &signal,
            Instant::now() + Duration::from_secs(20),
        )
        .expect("broadcast");
        drop(plan);
        let mut q = input(rank, len);
        let mut quantized = QuantizedScratch::default();
        let mut schedule = QuantizedAllReduce::new(
            mesh,
            &group,
            bytemuck::cast_slice_mut(&mut q),
            DType::F32,
            ReduceOp::Sum,
            Quantization::Int8,
            64,
            2000,
            &mut quantized,
        );
        engine::run(
            mesh,
            &mut schedule,
            2,
            &signal,
            Instant::now() + Duration::from_secs(20),
        )
        .expect("quantized");
        schedule.commit().expect("commit");
        drop(schedule);
        (b, q)
    });
    for (b, q) in &results {
        assert_eq!(*b, input(1, len));
        assert_eq!(*q, results[0].1, "quantized results must be bit-identical");
    }
}

#[test]
fn an_abort_signal_stops_the_engine_and_restore_puts_the_buffer_back() {
    let n = 2;
    let results = run_all(meshes(n, 1), move |mesh, rank, n| {
        let len = 1 << 20;
        let mut x = input(rank, len);
        let original = x.clone();
        let group = Group {
            ranks: (0..n).collect(),
            pos: rank,
        };
        let layout = Layout::new(len, n, 1, 1 << 14);
        let steps = ring::all_reduce(mesh, &group, &layout, 4, ReduceOp::Sum);
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
        let result = if rank == 0 {
            // Rank 0 never runs its half: rank 1 must stop on the signal, not on its deadline.
            let raiser = Arc::clone(&signal);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                raiser.raise(AbortKind::PeerLost, "test abort");
            });
            thread::sleep(Duration::from_millis(300));
            Err(CoreError::PeerLost("skipped".into()))
        } else {
            let other = OpSignal::new();
            other.set_waker(Some(Arc::clone(&mesh.waker)));
            let raiser = Arc::clone(&other);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                raiser.raise(AbortKind::PeerLost, "test abort");
            });
            let started = Instant::now();
            let r = engine::run(
                mesh,
                &mut plan,
                1,
                &other,
                Instant::now() + Duration::from_secs(30),
            );
            assert!(started.elapsed() < Duration::from_secs(5));
            r
        };
        plan.restore();
        drop(plan);
        (result.is_err(), x == original)
    });
    assert!(results
        .iter()
        .all(|(failed, restored)| *failed && *restored));
}
