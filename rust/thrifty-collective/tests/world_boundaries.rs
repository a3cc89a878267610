//! All-reduce and state sync between real communicators on 127.0.0.1, over buffers whose
//! lengths straddle the edges of the communicator's data layout: the per-stripe chunk size
//! (64 KiB to 256 KiB of a slice divided by the connections), the slices of a world of 2 and
//! 3, the quantization block, and the 1 MiB frames of state transfers. fp32 integer data must
//! sum exactly; quantized sums must equal the scheme computed element by element, lie within
//! the quantizer's bound, and be bit-identical on every rank.

mod support;

use std::time::Duration;

use thrifty_collective::auth::Secret;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::communicator::{Communicator, CommunicatorOptions, StateArray};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::layout::Layout;
use thrifty_core::CoreError;

/// The smallest and largest chunk the communicator gives a stripe, in f32 elements.
const CHUNK_MIN: usize = (64 << 10) / 4;
const CHUNK_MAX: usize = (256 << 10) / 4;
/// A state-transfer frame, in f32 elements.
const TRANSFER_ELEMS: usize = (1 << 20) / 4;

fn secret() -> Secret {
    Secret::new(b"boundaries".to_vec()).expect("secret")
}

/// Bring `n` peers with `connections` stripes up to a world of `n`; run `body` on each.
fn world<T, F>(n: usize, connections: usize, body: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&mut Communicator, usize) -> T + Send + Sync + 'static,
{
    let options = CommunicatorOptions {
        connections,
        timeout: Duration::from_secs(30),
        bind_host: "127.0.0.1".into(),
        ..CommunicatorOptions::default()
    };
    support::loopback_world(n, &secret(), options, body)
}

/// Lengths around every edge of the layout of a world of `n` with `connections` stripes:
/// slices at the smallest and largest chunk per stripe (where the chunk count changes), a
/// 1 MiB buffer, and buffers smaller than the world.
fn edge_lengths(n: usize, connections: usize) -> Vec<usize> {
    let mut lengths = vec![0, 1, n - 1, n + 1];
    for slice in [CHUNK_MIN * connections, CHUNK_MAX * connections] {
        lengths.extend([n * slice - 1, n * slice, n * slice + 1]);
    }
    lengths.extend([TRANSFER_ELEMS - 1, TRANSFER_ELEMS + 1]);
    // Largest and smallest in turn: the communicator keeps its buffers from one collective
    // to the next, and a small one after a large one must not see what the large one left.
    lengths.sort_unstable();
    let mut order = Vec::with_capacity(lengths.len());
    while let Some(large) = lengths.pop() {
        order.push(large);
        if !lengths.is_empty() {
            order.push(lengths.remove(0));
        }
    }
    order
}

/// Integers in [-50, 50], distinct per rank: their sums are exact in f32.
fn integers(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + rank * 13 + i / 1000) % 101) as f32 - 50.0)
        .collect()
}

/// Values whose magnitude changes from block to block, so the quantizer's scales differ.
fn spread(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = ((i * 2_654_435_761 + rank * 97) % 1999) as f32 / 1999.0 - 0.5;
            x * 2f32.powi((i / 41 % 9) as i32 - 4)
        })
        .collect()
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

fn block_absmax(values: &[f32], block: usize) -> Vec<f32> {
    values
        .chunks(block)
        .flat_map(|c| {
            let m = c.iter().fold(0f32, |m, x| m.max(x.abs()));
            std::iter::repeat_n(m, c.len())
        })
        .collect()
}

/// Checks a quantized sum against the scheme (each rank's input quantized once for every
/// slice but its own, summed in rank order by the slice's owner, the sum quantized once) and
/// against the exact sum within the quantizer's bound.
fn check_quantized_sum(
    format: Quantization,
    block: usize,
    inputs: &[Vec<f32>],
    got: &[f32],
) -> Result<(), String> {
    let n = inputs.len();
    let len = got.len();
    let decoded: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| round_trip(format, x, block))
        .collect();
    let absmax: Vec<Vec<f32>> = inputs.iter().map(|x| block_absmax(x, block)).collect();
    let layout = Layout::new(len, n, block, 1);
    let mut acc = vec![0f32; len];
    let mut input_error = vec![0f32; len];
    for owner in 0..n {
        for i in layout.slice(owner) {
            let term = |q: usize| {
                if q == owner {
                    inputs[q][i]
                } else {
                    decoded[q][i]
                }
            };
            // Started from the first term, not from 0, which would turn -0 into +0.
            let mut a = term(0);
            for q in 1..n {
                a += term(q);
            }
            for q in (0..n).filter(|&q| q != owner) {
                input_error[i] += format.error_bound(inputs[q][i], absmax[q][i]);
            }
            acc[i] = a;
        }
    }
    let want = round_trip(format, &acc, block);
    let acc_absmax = block_absmax(&acc, block);
    for i in 0..len {
        if got[i].to_bits() != want[i].to_bits() {
            return Err(format!(
                "element {i}: {:e}, the scheme gives {:e}",
                got[i], want[i]
            ));
        }
        let exact: f64 = inputs.iter().map(|x| f64::from(x[i])).sum();
        let bound = f64::from(input_error[i] + format.error_bound(acc[i], acc_absmax[i]))
            // The owner's f32 additions of n terms.
            + n as f64 * f64::from(f32::EPSILON) * inputs.iter().map(|x| f64::from(x[i].abs())).sum::<f64>();
        let error = (f64::from(got[i]) - exact).abs();
        if error > bound {
            return Err(format!(
                "element {i}: error {error:e} above the bound {bound:e}"
            ));
        }
    }
    Ok(())
}

fn all_reduce_at_every_edge(n: usize, connections: usize) {
    let lengths = edge_lengths(n, connections);
    // An odd block makes fp4 blocks straddle bytes and slices start mid-byte.
    let codecs = [(Quantization::Int8, 64usize), (Quantization::Fp4, 33)];
    let results = world(n, connections, {
        let lengths = lengths.clone();
        move |comm, rank| {
            let mut out = Vec::new();
            for &len in &lengths {
                let mut x = integers(rank, len);
                comm.all_reduce(
                    bytemuck::cast_slice_mut(&mut x),
                    DType::F32,
                    ReduceOp::Sum,
                    None,
                    64,
                )
                .unwrap_or_else(|e| panic!("fp32 all_reduce of {len}: {e}"));
                let mut quantized = Vec::new();
                for (format, block) in codecs {
                    let mut q = spread(rank, len);
                    comm.all_reduce(
                        bytemuck::cast_slice_mut(&mut q),
                        DType::F32,
                        ReduceOp::Sum,
                        Some(format),
                        block,
                    )
                    .unwrap_or_else(|e| panic!("{format:?} all_reduce of {len}: {e}"));
                    quantized.push(q);
                }
                out.push((x, quantized));
            }
            out
        }
    });
    for (l, &len) in lengths.iter().enumerate() {
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| integers(r, len)).collect();
        let exact: Vec<f32> = (0..len)
            .map(|i| inputs.iter().map(|x| x[i]).sum())
            .collect();
        for (rank, result) in results.iter().enumerate() {
            assert!(
                result[l].0 == exact,
                "world {n}, {connections} stripes, fp32 length {len}: rank {rank} is not the exact sum"
            );
        }
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| spread(r, len)).collect();
        for (c, (format, block)) in codecs.into_iter().enumerate() {
            let first = &results[0][l].1[c];
            for (rank, result) in results.iter().enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&result[l].1[c]) == bits(first),
                    "world {n}, {connections} stripes, {format:?} length {len}: rank {rank} differs"
                );
            }
            check_quantized_sum(format, block, &inputs, first).unwrap_or_else(|e| {
                panic!("world {n}, {connections} stripes, {format:?} length {len}: {e}")
            });
        }
    }
}

#[test]
fn all_reduce_at_the_layout_edges_in_a_world_of_two_on_one_stripe() {
    all_reduce_at_every_edge(2, 1);
}

#[test]
fn all_reduce_at_the_layout_edges_in_a_world_of_two_on_three_stripes() {
    all_reduce_at_every_edge(2, 3);
}

#[test]
fn all_reduce_at_the_layout_edges_in_a_world_of_three_on_one_stripe() {
    all_reduce_at_every_edge(3, 1);
}

#[test]
fn all_reduce_at_the_layout_edges_in_a_world_of_three_on_three_stripes() {
    all_reduce_at_every_edge(3, 3);
}

/// Arrays one element either side of the 1 MiB transfer frame, and of two frames, fetched
/// by the odd peer over three stripes.
#[test]
fn state_sync_at_the_transfer_frame_edges() {
    let sizes = [
        TRANSFER_ELEMS - 1,
        TRANSFER_ELEMS,
        TRANSFER_ELEMS + 1,
        2 * TRANSFER_ELEMS + 1,
        3,
    ];
    let results = world(3, 3, move |comm, rank| {
        let mut arrays: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&len| {
                if rank == 2 {
                    vec![-1.0; len]
                } else {
                    integers(len, len)
                }
            })
            .collect();
        let report = {
            let mut state: Vec<StateArray<'_>> = arrays
                .iter_mut()
                .enumerate()
                .map(|(i, a)| StateArray {
                    name: format!("array{i}"),
                    dtype: DType::F32,
                    shape: vec![a.len()],
                    data: bytemuck::cast_slice_mut(a),
                })
                .collect();
            comm.sync_state(&mut state, 1).expect("sync_state")
        };
        (report, arrays)
    });
    for (rank, (report, arrays)) in results.iter().enumerate() {
        assert_eq!(report.fetched.is_empty(), rank != 2, "rank {rank}");
        for (i, &len) in sizes.iter().enumerate() {
            assert!(
                arrays[i] == integers(len, len),
                "rank {rank}, array of {len}"
            );
        }
    }
}

/// A NaN that one rank quantizes fails the collective on every rank, leaves every buffer as
/// it was, and is named by its index in the array (not in the chunk that carried it); the
/// world then goes on.
#[test]
fn a_non_finite_input_fails_every_rank_naming_its_index() {
    let (n, connections) = (3, 3);
    let len = n * CHUNK_MIN * connections + 1;
    // In rank 1's slice, past its first chunk, so chunk and array indices differ.
    let at = CHUNK_MIN * connections + CHUNK_MIN + 5;
    let results = world(n, connections, move |comm, rank| {
        let mut x = spread(rank, len);
        if rank == 2 {
            x[at] = f32::NAN;
        }
        let before: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let result = comm.all_reduce(
            bytemuck::cast_slice_mut(&mut x),
            DType::F32,
            ReduceOp::Sum,
            Some(Quantization::Int8),
            64,
        );
        let unchanged = x.iter().map(|v| v.to_bits()).eq(before);
        comm.update_topology().expect("update_topology");
        let mut y = vec![1f32; 100];
        comm.all_reduce(
            bytemuck::cast_slice_mut(&mut y),
            DType::F32,
            ReduceOp::Sum,
            Some(Quantization::Int8),
            64,
        )
        .expect("the next all_reduce");
        (result, unchanged, y)
    });
    for (rank, (result, unchanged, y)) in results.into_iter().enumerate() {
        assert!(unchanged, "rank {rank}: the buffer changed");
        assert!(y.iter().all(|&v| v == n as f32), "rank {rank}: {y:?}");
        let error = result.expect_err("a NaN cannot be quantized");
        if rank == 2 {
            let CoreError::NonFinite { argument, message } = &error else {
                panic!("rank 2: {error:?}");
            };
            assert_eq!(*argument, "array");
            assert!(
                message.ends_with(&format!("got NaN at index {at}")),
                "{message}"
            );
        } else {
            // The others learn the cause from the coordinator, even when their link to rank 2
            // broke first: a retry would fail the same way, so it is no lost peer.
            let CoreError::Aborted(reason) = &error else {
                panic!("rank {rank}: {error:?}");
            };
            assert!(
                reason.contains(&format!("at index {at}")),
                "rank {rank}: {reason}"
            );
        }
    }
}

/// A block whose encoding outgrows a frame is refused by name before anything is sent; a
/// chunk is never smaller than one block, so such a block could never travel.
#[test]
fn a_block_larger_than_a_frame_is_refused() {
    let len = (64 << 20) + 1;
    let results = world(1, 1, move |comm, _| {
        let mut x = vec![1f32; len];
        let error = comm
            .all_reduce(
                bytemuck::cast_slice_mut(&mut x),
                DType::F32,
                ReduceOp::Sum,
                Some(Quantization::Int8),
                len,
            )
            .expect_err("one block cannot fit in a frame");
        let mut y = vec![1f32; 1000];
        comm.all_reduce(
            bytemuck::cast_slice_mut(&mut y),
            DType::F32,
            ReduceOp::Sum,
            Some(Quantization::Int8),
            len,
        )
        .expect("a block longer than the array is one block of the array");
        (error, y)
    });
    let (error, y) = &results[0];
    assert!(
        matches!(
            error,
            CoreError::InvalidValue {
                argument: "block",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(y.iter().all(|&v| v == 1.0));
}

/// A world of one sends nothing, yet refuses what a larger world's quantizer would refuse,
/// naming the same index, and leaves the buffer as it was.
#[test]
fn a_world_of_one_refuses_what_the_quantizer_cannot_carry() {
    let at = (1 << 16) + 7;
    let results = world(1, 1, move |comm, _| {
        let mut x = vec![1f32; 3 << 16];
        x[at] = f32::NAN;
        let nan = comm.all_reduce(
            bytemuck::cast_slice_mut(&mut x),
            DType::F32,
            ReduceOp::Sum,
            Some(Quantization::Fp4),
            64,
        );
        let kept = x[at].is_nan() && x[0] == 1.0;
        comm.update_topology().expect("update_topology");
        let mut wide = vec![1f64; 100];
        wide[3] = 1e300;
        let too_wide = comm.all_reduce(
            bytemuck::cast_slice_mut(&mut wide),
            DType::F64,
            ReduceOp::Sum,
            Some(Quantization::Int8),
            64,
        );
        (nan, kept, too_wide)
    });
    let (nan, kept, too_wide) = &results[0];
    assert!(kept);
    let Err(CoreError::NonFinite { message, .. }) = nan else {
        panic!("{nan:?}");
    };
    assert!(
        message.ends_with(&format!("got NaN at index {at}")),
        "{message}"
    );
    let Err(CoreError::InvalidValue { message, .. }) = too_wide else {
        panic!("{too_wide:?}");
    };
    assert!(message.contains("at index 3"), "{message}");
}
