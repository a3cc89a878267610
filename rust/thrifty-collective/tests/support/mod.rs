//! Test support shared by the collective's integration tests.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::Secret;
use thrifty_collective::communicator::{Communicator, CommunicatorOptions};
use thrifty_collective::coordinator::{Coordinator, CoordinatorOptions};
use thrifty_collective::mesh::{Listener, Mesh};
use thrifty_collective::message::{Member, View};

/// Every peer's listener and mesh for a loopback world of `n` with `connections` stripes,
/// built concurrently (as real peers do) within `timeout`.
pub fn loopback_meshes(
    n: usize,
    connections: usize,
    secret: &Secret,
    timeout: Duration,
) -> (Vec<Listener>, Vec<Mesh>) {
    loopback_meshes_over(n, connections, secret, timeout, false)
}

/// `loopback_meshes`, with links through shared memory where `shared_memory`.
pub fn loopback_meshes_over(
    n: usize,
    connections: usize,
    secret: &Secret,
    timeout: Duration,
    shared_memory: bool,
) -> (Vec<Listener>, Vec<Mesh>) {
    let listeners: Vec<Listener> = (0..n)
        .map(|i| Listener::bind("127.0.0.1", 0, 100 + i as u64, secret.clone()).expect("bind"))
        .collect();
    for listener in &listeners {
        listener.set_shared_memory(shared_memory);
    }
    let view = View {
        epoch: 1,
        members: listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Member {
                id: 100 + i as u64,
                addr: format!("127.0.0.1:{}", l.port()),
            })
            .collect(),
    };
    let deadline = Instant::now() + timeout;
    let listeners = Arc::new(listeners);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let listeners = Arc::clone(&listeners);
            let view = view.clone();
            thread::spawn(move || listeners[i].build_mesh(&view, connections, deadline, &|| false))
        })
        .collect();
    let built = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("mesh"))
        .collect();
    let listeners = Arc::try_unwrap(listeners).unwrap_or_else(|_| panic!("listeners shared"));
    (listeners, built)
}

/// Bring `n` peers with `options` up to a world of `n` around a fresh coordinator, run
/// `body(comm, rank)` on each, and return the results in rank order.
pub fn loopback_world<T, F>(
    n: usize,
    secret: &Secret,
    options: CommunicatorOptions,
    body: F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&mut Communicator, usize) -> T + Send + Sync + 'static,
{
    let coordinator =
        Coordinator::start("127.0.0.1:0", secret.clone(), CoordinatorOptions::default())
            .expect("start");
    let address = coordinator.address();
    let body = Arc::new(body);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let address = address.clone();
            let body = Arc::clone(&body);
            let secret = secret.clone();
            let options = options.clone();
            thread::spawn(move || {
                let mut comm = Communicator::new(&address, secret, options).expect("new");
                comm.connect().expect("connect");
                let deadline = Instant::now() + Duration::from_secs(30);
                while comm.world_size() < n {
                    assert!(Instant::now() < deadline, "world never reached {n}");
                    comm.update_topology().expect("update_topology");
                }
                let rank = comm.rank().expect("rank");
                (rank, body(&mut comm, rank))
            })
        })
        .collect();
    let mut results: Vec<(usize, T)> = handles
        .into_iter()
        .map(|h| h.join().expect("peer thread"))
        .collect();
    results.sort_by_key(|(rank, _)| *rank);
    coordinator.close();
    results.into_iter().map(|(_, t)| t).collect()
}

/// A plain f32 sum all-reduce of `x` over `mesh` (rank `rank` of `0..n`), through the ring
/// and the engine, as the communicator runs one; `chunk` bytes per step, at most `within`.
pub fn ring_sum(
    mesh: &mut Mesh,
    x: &mut [f32],
    rank: usize,
    n: usize,
    chunk: usize,
    within: Duration,
) {
    use thrifty_collective::dtype::{DType, ReduceOp};
    use thrifty_collective::group::Group;
    use thrifty_collective::layout::Layout;
    use thrifty_collective::signal::OpSignal;
    use thrifty_collective::step_schedule::{Reduction, StepSchedule, StepScratch};
    use thrifty_collective::{engine, ring};

    let group = Group {
        ranks: (0..n).collect(),
        pos: rank,
    };
    let layout = Layout::new(x.len(), n, 1, chunk);
    let steps = ring::all_reduce(mesh, &group, &layout, 4, ReduceOp::Sum);
    let mut scratch = StepScratch::default();
    let reduction = Reduction {
        dtype: DType::F32,
        op: ReduceOp::Sum,
        group: n,
    };
    let mut plan = StepSchedule::new(
        bytemuck::cast_slice_mut(x),
        Some(reduction),
        steps,
        &mut scratch,
        &mut [],
    );
    engine::run(
        mesh,
        &mut plan,
        1,
        &OpSignal::new(),
        Instant::now() + within,
    )
    .expect("engine");
}
