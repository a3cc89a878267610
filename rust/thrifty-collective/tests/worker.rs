//! The worker thread that owns a communicator: the membership it publishes, panics in jobs,
//! and waits that can be cut into slices.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use thrifty_collective::auth::Secret;
use thrifty_collective::communicator::{Communicator, CommunicatorOptions};
use thrifty_collective::coordinator::{Coordinator, CoordinatorOptions};
use thrifty_collective::worker::{Membership, Worker};
use thrifty_core::CoreError;

const LONG: Duration = Duration::from_secs(20);

fn secret() -> Secret {
    Secret::new(b"worker secret".to_vec()).expect("secret")
}

fn start() -> Coordinator {
    Coordinator::start("127.0.0.1:0", secret(), CoordinatorOptions::default()).expect("start")
}

fn worker(coordinator: &Coordinator) -> Worker {
    let options = CommunicatorOptions {
        connections: 1,
        timeout: LONG,
        bind_host: "127.0.0.1".into(),
        ..CommunicatorOptions::default()
    };
    let comm = Communicator::new(&coordinator.address(), secret(), options).expect("new");
    let worker = Worker::spawn(comm).expect("spawn");
    worker
        .submit(|comm| comm.connect())
        .wait()
        .expect("connect");
    worker
}

/// A job result that records, when it is dropped, the membership the worker publishes.
struct Witness {
    worker: Arc<Worker>,
    seen: mpsc::Sender<Membership>,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.seen.send(self.worker.membership());
    }
}

#[test]
fn the_membership_is_published_before_the_result_is_handed_over() {
    let coordinator = start();
    let first = Arc::new(worker(&coordinator));
    assert_eq!(first.membership().rank, None);
    // Hold the queue, so the next job's handle is gone before the job runs: its result is
    // then dropped on the worker thread, right where it would be handed over.
    let (open, gate) = mpsc::channel::<()>();
    let held = first.submit(move |_| {
        let _ = gate.recv();
        Ok(())
    });
    let (seen, witnessed) = mpsc::channel();
    let own = Arc::clone(&first);
    drop(first.submit(move |comm| {
        comm.update_topology()?;
        Ok(Witness { worker: own, seen })
    }));
    open.send(()).expect("open the gate");
    held.wait().expect("held job");
    let published = witnessed
        .recv_timeout(LONG)
        .expect("the result was handed over");
    assert_eq!(
        (published.rank, published.world_size, published.epoch),
        (Some(0), 1, 1),
        "the result was handed over before the membership was published"
    );

    // The way a caller meets it: reading the rank right after `update_topology()` returns.
    // The newcomer asks first, so that the member's vote admits it.
    let second = worker(&coordinator);
    let grow = |worker: &Worker| worker.submit(|comm| comm.update_topology());
    let a = grow(&second);
    let id = second.membership().id;
    let deadline = Instant::now() + LONG;
    while !coordinator.snapshot().asked.contains(&id) {
        assert!(Instant::now() < deadline, "the newcomer never asked");
        thread::sleep(Duration::from_millis(2));
    }
    let b = grow(&first);
    a.wait().expect("update_topology");
    assert_eq!(second.membership().world_size, 2);
    b.wait().expect("update_topology");
    assert_eq!(first.membership().world_size, 2);
    assert_eq!(first.membership().epoch, second.membership().epoch);
    second.close();
    first.close();
}

#[test]
fn a_panicking_job_fails_with_an_internal_error_and_the_worker_goes_on() {
    let coordinator = start();
    let worker = worker(&coordinator);
    let id = worker.membership().id;
    let panicked = worker
        .submit(|_| -> Result<(), CoreError> { panic!("a bug in a collective") })
        .wait();
    match panicked {
        Err(CoreError::Internal(message)) => {
            assert!(message.contains("a bug in a collective"), "{message}");
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    assert_eq!(
        worker
            .submit(|comm| Ok(comm.id()))
            .wait()
            .expect("next job"),
        id
    );
}

#[test]
fn a_wait_in_slices_gets_the_result_once_the_job_has_run() {
    let coordinator = start();
    let worker = worker(&coordinator);
    let (open, gate) = mpsc::channel::<()>();
    let mut pending = worker.submit(move |_| {
        let _ = gate.recv();
        Ok(7)
    });
    // The gate is shut: the job cannot have run.
    assert!(pending.wait_timeout(Duration::from_millis(10)).is_none());
    assert!(!pending.is_done());
    let opener = thread::spawn(move || open.send(()).expect("open the gate"));
    let result = loop {
        if let Some(result) = pending.wait_timeout(Duration::from_millis(5)) {
            break result;
        }
    };
    opener.join().expect("opener");
    assert_eq!(result.expect("job"), 7);
    // Handed out once.
    assert!(matches!(
        pending.wait_timeout(Duration::ZERO),
        Some(Err(CoreError::Internal(_)))
    ));

    worker.close();
    let mut refused = worker.submit(|_| Ok(()));
    assert!(refused.is_done());
    match refused.wait_timeout(Duration::ZERO) {
        Some(Err(error)) => assert_eq!(error.argument(), Some("communicator")),
        other => panic!("expected the closed worker to refuse, got {other:?}"),
    }
}
