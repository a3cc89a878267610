//! Criterion throughput of the all-reduce hot loops: block quantization (encode, decode,
//! decode-and-add) for each format, and the f32 sum of `reduce_bytes`. Throughput is counted
//! in bytes of f32 input (16 MiB per iteration), the unit of the crate's ">= 4 GB/s per core"
//! target.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::reduce::reduce_bytes;

const LEN: usize = 4 << 20;
const BLOCK: usize = 64;

/// Deterministic pseudo-gradients spanning several orders of magnitude, so every code range
/// (including fp8 subnormals) is exercised.
fn values(seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let exponent = ((state >> 8) % 16) as i32 - 8;
            u * 2f32.powi(exponent)
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let x = values(0x5eed);
    let mut group = c.benchmark_group("codec");
    group
        .throughput(Throughput::Bytes((LEN * 4) as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for format in Quantization::ALL {
        let mut encoded = vec![0u8; format.encoded_len(LEN, BLOCK)];
        let mut out = vec![0f32; LEN];
        group.bench_function(BenchmarkId::new("encode", format.name()), |b| {
            b.iter(|| {
                format
                    .encode(black_box(&x), BLOCK, &mut encoded, "values")
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("decode", format.name()), |b| {
            b.iter(|| format.decode(black_box(&encoded), BLOCK, &mut out).unwrap())
        });
        group.bench_function(BenchmarkId::new("decode_reduce_sum", format.name()), |b| {
            b.iter(|| {
                format
                    .decode_reduce(black_box(&encoded), BLOCK, ReduceOp::Sum, &mut out)
                    .unwrap()
            })
        });
    }
    // Kept as f32 vectors so the byte views are aligned, as reduce_bytes requires.
    let mut dst = x.clone();
    let src = values(0xfeed);
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        group.bench_function(BenchmarkId::new("reduce_bytes_f32", op.name()), |b| {
            b.iter(|| {
                reduce_bytes(
                    DType::F32,
                    op,
                    bytemuck::cast_slice_mut(&mut dst),
                    black_box(bytemuck::cast_slice(&src)),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
