//! Packed binary-code search against plain references: `pack` against a bit loop, `cdist`
//! against a byte-wise popcount, `topk` and `radius` against sorted and filtered `cdist`.

use proptest::prelude::*;
use thrifty_hamming::binary::{self, Kernel};

fn distance(a: &[u8], b: &[u8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x ^ y).count_ones() as i32)
        .sum()
}

fn reference_cdist(a: &[u8], b: &[u8], width: usize) -> Vec<i32> {
    a.chunks_exact(width)
        .flat_map(|x| b.chunks_exact(width).map(move |y| distance(x, y)))
        .collect()
}

/// Each query's (distance, index) pairs, sorted.
fn reference_sorted(queries: &[u8], db: &[u8], width: usize) -> Vec<Vec<(i32, i64)>> {
    queries
        .chunks_exact(width)
        .map(|q| {
            let mut row: Vec<(i32, i64)> = db
                .chunks_exact(width)
                .enumerate()
                .map(|(j, c)| (distance(q, c), j as i64))
                .collect();
            row.sort();
            row
        })
        .collect()
}

fn check_topk(queries: &[u8], db: &[u8], width: usize, k: usize) {
    let (distances, indices) = binary::topk(queries, db, width, k).unwrap();
    let nb = db.len() / width;
    let kk = k.min(nb);
    let expected = reference_sorted(queries, db, width);
    assert_eq!(distances.len(), expected.len() * kk);
    assert_eq!(indices.len(), expected.len() * kk);
    for (i, row) in expected.iter().enumerate() {
        let got: Vec<(i32, i64)> = (0..kk)
            .map(|t| (distances[i * kk + t], indices[i * kk + t]))
            .collect();
        assert_eq!(got, row[..kk], "query {i}, width {width}, k {k}");
    }
}

fn check_radius(queries: &[u8], db: &[u8], width: usize, r: u32) {
    let (offsets, indices, distances) = binary::radius(queries, db, width, r).unwrap();
    let expected = reference_sorted(queries, db, width);
    assert_eq!(offsets.len(), expected.len() + 1);
    assert_eq!(offsets[0], 0);
    for (i, row) in expected.iter().enumerate() {
        let (lo, hi) = (offsets[i] as usize, offsets[i + 1] as usize);
        let got: Vec<(i32, i64)> = (lo..hi).map(|t| (distances[t], indices[t])).collect();
        let want: Vec<(i32, i64)> = row
            .iter()
            .copied()
            .filter(|&(d, _)| d <= r as i32)
            .collect();
        assert_eq!(got, want, "query {i}, width {width}, r {r}");
    }
    assert_eq!(*offsets.last().unwrap() as usize, indices.len());
}

/// Deterministic bytes without a `rand` dependency (splitmix64).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[test]
fn pack_follows_numpy_packbits() {
    // numpy.packbits([[1,0,1,1,0,0,0,0,1],[0,0,0,0,0,0,0,1,7]], axis=1)
    let bits = [1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 7];
    assert_eq!(
        binary::pack(&bits, 2, 9).unwrap(),
        vec![0xb0, 0x80, 0x01, 0x80]
    );
    assert_eq!(binary::pack(&[], 3, 0).unwrap(), Vec::<u8>::new());
    assert_eq!(binary::pack(&[], 0, 5).unwrap(), Vec::<u8>::new());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pack_matches_a_bit_loop(rows in 0usize..5, dims in 0usize..40, seed in any::<u64>()) {
        let bits: Vec<u8> = bytes(rows * dims, seed).iter().map(|b| b % 3).collect();
        let width = dims.div_ceil(8);
        let mut expected = vec![0u8; rows * width];
        for r in 0..rows {
            for d in 0..dims {
                if bits[r * dims + d] != 0 {
                    expected[r * width + d / 8] |= 0x80 >> (d % 8);
                }
            }
        }
        prop_assert_eq!(binary::pack(&bits, rows, dims).unwrap(), expected);
    }

    #[test]
    fn cdist_matches_reference(
        width in prop::sample::select(vec![1usize, 3, 8, 16, 32, 33, 64, 128, 130]),
        na in 0usize..6,
        nb in 0usize..600,
        seed in any::<u64>(),
    ) {
        let a = bytes(na * width, seed);
        let b = bytes(nb * width, seed ^ 1);
        let mut out = vec![-1; na * nb];
        binary::cdist(&a, &b, width, &mut out).unwrap();
        prop_assert_eq!(out, reference_cdist(&a, &b, width));
    }

    #[test]
    fn topk_is_sorted_cdist(
        width in prop::sample::select(vec![1usize, 2, 3, 8, 32, 33, 128]),
        nq in 0usize..5,
        nb in 1usize..700,
        k in 1usize..40,
        seed in any::<u64>(),
    ) {
        check_topk(&bytes(nq * width, seed), &bytes(nb * width, seed ^ 1), width, k);
    }

    #[test]
    fn radius_is_filtered_cdist(
        width in prop::sample::select(vec![1usize, 3, 8, 32, 33, 128]),
        nq in 0usize..5,
        nb in 0usize..700,
        fraction in 0.0f64..0.6,
        seed in any::<u64>(),
    ) {
        let r = (fraction * 8.0 * width as f64) as u32;
        check_radius(&bytes(nq * width, seed), &bytes(nb * width, seed ^ 1), width, r);
    }
}

#[test]
fn ties_are_broken_by_index() {
    // One-byte codes over a database of repeats: almost every distance ties.
    let db: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
    let queries = [0u8, 3, 255];
    check_topk(&queries, &db, 1, 25);
    check_radius(&queries, &db, 1, 2);
}

#[test]
fn few_queries_over_a_large_database_merge_chunks() {
    // Few queries make the search split the database across tasks and merge their results.
    let width = 4;
    let queries = bytes(3 * width, 7);
    let db = bytes(20_000 * width, 8);
    check_topk(&queries, &db, width, 10);
    check_topk(&queries, &db, width, 300);
    check_radius(&queries, &db, width, 9);
    let mut out = vec![0; 3 * 20_000];
    binary::cdist(&queries, &db, width, &mut out).unwrap();
    assert_eq!(out, reference_cdist(&queries, &db, width));
}

#[test]
fn many_queries_use_query_blocks() {
    let width = 32;
    let queries = bytes(100 * width, 9);
    let db = bytes(300 * width, 10);
    check_topk(&queries, &db, width, 5);
    check_radius(&queries, &db, width, 110);
    let mut out = vec![0; 100 * 300];
    binary::cdist(&queries, &db, width, &mut out).unwrap();
    assert_eq!(out, reference_cdist(&queries, &db, width));
}

#[test]
fn a_radius_beyond_the_widest_distance_returns_everything() {
    let queries = bytes(2 * 3, 3);
    let db = bytes(300 * 3, 4);
    check_radius(&queries, &db, 3, 24);
    let (offsets, _, _) = binary::radius(&queries, &db, 3, u32::MAX).unwrap();
    assert_eq!(offsets, vec![0, 300, 600]);
}

#[test]
fn codes_too_wide_to_block_are_compared_in_place() {
    // Past 4096 bytes per code the search stops copying codes into blocks.
    for width in [4096, 4097, 5003] {
        let queries = bytes(3 * width, 5);
        let db = bytes(300 * width, 6);
        let mut out = vec![0; 3 * 300];
        binary::cdist(&queries, &db, width, &mut out).unwrap();
        assert_eq!(out, reference_cdist(&queries, &db, width));
        check_topk(&queries, &db, width, 4);
        check_radius(&queries, &db, width, (4 * width - 60) as u32);
    }
}

#[test]
fn k_beyond_the_database_is_clamped() {
    let db = bytes(5 * 8, 1);
    let queries = bytes(2 * 8, 2);
    let (distances, indices) = binary::topk(&queries, &db, 8, 100).unwrap();
    assert_eq!((distances.len(), indices.len()), (10, 10));
    check_topk(&queries, &db, 8, 100);
    let (distances, indices) = binary::topk(&queries, &[], 8, 3).unwrap();
    assert!(distances.is_empty() && indices.is_empty());
}

#[test]
fn empty_inputs_give_empty_results() {
    let mut out: [i32; 0] = [];
    binary::cdist(&[], &[1, 2], 2, &mut out).unwrap();
    let (offsets, indices, distances) = binary::radius(&[], &[1, 2], 2, 3).unwrap();
    assert_eq!((offsets, indices, distances), (vec![0], vec![], vec![]));
    let (offsets, indices, _) = binary::radius(&[1, 2, 3, 4], &[], 2, 3).unwrap();
    assert_eq!((offsets, indices), (vec![0, 0, 0], vec![]));
}

#[test]
fn bad_inputs_name_the_argument() {
    let argument = |e: thrifty_core::CoreError| e.argument().unwrap();
    let mut out = vec![0; 4];
    assert_eq!(
        argument(binary::cdist(&[0; 4], &[0; 4], 0, &mut out).unwrap_err()),
        "bytes_per_code"
    );
    assert_eq!(
        argument(binary::cdist(&[0; 5], &[0; 4], 2, &mut out).unwrap_err()),
        "a"
    );
    assert_eq!(
        argument(binary::cdist(&[0; 4], &[0; 3], 2, &mut out).unwrap_err()),
        "b"
    );
    assert_eq!(
        argument(binary::cdist(&[0; 4], &[0; 2], 2, &mut out).unwrap_err()),
        "out"
    );
    assert_eq!(
        argument(binary::topk(&[0; 3], &[0; 4], 2, 1).unwrap_err()),
        "queries"
    );
    assert_eq!(
        argument(binary::topk(&[0; 4], &[0; 5], 2, 1).unwrap_err()),
        "db"
    );
    assert_eq!(
        argument(binary::topk(&[0; 4], &[0; 4], 2, 0).unwrap_err()),
        "k"
    );
    assert_eq!(
        argument(binary::topk(&[0; 4], &[0; 4], 0, 1).unwrap_err()),
        "bytes_per_code"
    );
    assert_eq!(
        argument(binary::radius(&[0; 3], &[0; 4], 2, 1).unwrap_err()),
        "queries"
    );
    assert_eq!(
        argument(binary::radius(&[0; 4], &[0; 5], 2, 1).unwrap_err()),
        "db"
    );
    assert_eq!(argument(binary::pack(&[0; 5], 2, 3).unwrap_err()), "bits");
    assert_eq!(
        argument(binary::pack(&[], usize::MAX, 2).unwrap_err()),
        "bits"
    );
    let message = binary::topk(&[0; 4], &[0; 5], 2, 1)
        .unwrap_err()
        .to_string();
    assert!(message.contains("bytes_per_code 2"), "{message}");
}

#[test]
fn the_detected_kernel_is_named_and_available() {
    let name = binary::kernel();
    assert!(["avx512-vpopcntdq", "avx2", "neon", "scalar"].contains(&name));
    let kernel = Kernel::parse(name).unwrap();
    assert!(kernel.is_available());
    assert_eq!(Kernel::detected(), kernel);
    assert_eq!(Kernel::available()[0], kernel);
}
