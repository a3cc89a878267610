//! thrifty-collective: a fault-tolerant, authenticated, quantizing all-reduce over TCP.
//!
//! The design follows PCCL (arXiv 2505.14065): a coordinator plus peers, a topology vote for
//! every change of membership, a commit vote for every collective, buffers restored on
//! failure, and shared-state sync by hash popularity. It closes PCCL's gaps: every connection
//! is authenticated by an HMAC-SHA256 challenge-response, quantized all-reduce quantizes each
//! slice once (so its error does not grow with the world size), and ranks' results are
//! bit-identical.
//!
//! Layers, bottom up (a module uses only modules of its own layer or below):
//! - the wire: `frame` (versioned frames), `message` (the control protocol, described there
//!   step by step), `auth` (the handshake);
//! - numbers: `dtype` (element types and reduce ops), `convert` (to and from the f32 working
//!   precision), `reduce` (the SIMD reductions), `block_quant` (the int8, fp8 and fp4 block
//!   quantization formats);
//! - the data plane: `engine` runs a [`FrameSchedule`](engine::FrameSchedule) (which frame
//!   each link sends and receives next) over a `mesh` of striped peer-to-peer links, and stops
//!   when its `signal` is raised. A link between two peers on one host carries its bytes
//!   through shared memory instead of TCP: `shm_ring` (the rings and their doorbells),
//!   `shm_handover` (handing the region over on the authenticated link). The frame schedules: `step_schedule` (steps written out in
//!   full over the caller's buffer, built by `ring` for the ring all-reduce, all-gather and
//!   chain broadcast) and `quantized_all_reduce`. Helpers: `layout` (slices and chunks),
//!   `group` (who takes part, in ring order), `aligned_buf`;
//! - shared state and pairing: `shared_state` (summaries, hashes, and the transfer plan of
//!   `sync_state`), `pairing` (NoLoCo's seeded groups);
//! - the control plane: `coordinator` (connections; its vote state machine is
//!   `coordinator::votes`), and `control`, the peer's side of it;
//! - the API: `communicator` (one peer: topology votes and collectives), and `worker`, which
//!   runs a communicator's collectives in order on its own thread.

pub mod aligned_buf;
pub mod auth;
pub mod block_quant;
pub mod communicator;
pub mod control;
pub mod convert;
pub mod coordinator;
pub mod dtype;
pub mod engine;
pub mod frame;
pub mod group;
pub mod layout;
pub mod mesh;
pub mod message;
pub mod pairing;
pub mod quantized_all_reduce;
pub mod reduce;
pub mod ring;
pub mod shared_state;
pub mod shm_handover;
pub mod shm_ring;
pub mod signal;
pub mod step_schedule;
pub mod worker;
