//! thrifty-collective: a fault-tolerant, authenticated, quantizing all-reduce over TCP.
//!
//! The design follows PCCL (arXiv 2505.14065): a coordinator plus peers, a topology vote for
//! every change of membership, a commit vote for every collective, buffers restored on
//! failure, and shared-state sync by hash popularity. It closes PCCL's gaps: every connection
//! is authenticated by an HMAC-SHA256 challenge-response, quantized all-reduce quantizes each
//! slice once (so its error does not grow with the world size), and ranks' results are
//! bit-identical.
//!
//! Layers, bottom up:
//! - `frame`, `message`, `auth`: the versioned wire protocol and the handshake;
//! - `dtype`, `quant`: element types, SIMD reductions, block quantization (int8, fp8, fp4);
//! - `engine` and the schedules (`ring`, `quantized`, `chain`, `transfer`): the data plane,
//!   one non-blocking event loop per collective over striped peer-to-peer links;
//! - `coordinator`, `control`, `mesh`: membership, votes, and the peer-to-peer links;
//! - `communicator`: the public API.

pub mod auth;
pub mod communicator;
pub mod control;
pub mod coordinator;
pub mod dtype;
pub mod engine;
pub mod frame;
pub mod layout;
pub mod mesh;
pub mod message;
pub mod pairing;
pub mod plan;
pub mod quant;
pub mod quantized;
pub mod ring;
pub mod signal;
pub mod state;
pub mod worker;
