//! Test support shared by the collective's integration tests.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::Secret;
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
    let listeners: Vec<Listener> = (0..n)
        .map(|i| Listener::bind("127.0.0.1", 0, 100 + i as u64, secret.clone()).expect("bind"))
        .collect();
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
