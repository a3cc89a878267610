//! Packed binary-code search at the sizes where the code changes shape, against byte-wise
//! references, with every kernel this CPU can run and under thread pools of several sizes.
//!
//! Where the shape changes (src/binary):
//! * code width: 64-bit words per code, zero-padded when the width is not a multiple of 8
//!   bytes; kernels specialised for 4, 8 and 16 words; AVX2 sums byte counts over groups of 31
//!   words; codes wider than 4096 bytes are compared in place rather than blocked.
//! * database blocks of 256 codes (a short last block has stale columns);
//! * the task grid: query blocks of `ceil(nq / (4 x threads))` clamped to 32..=256 queries, and,
//!   when there are fewer query blocks than `4 x threads` tasks, database chunks of at least
//!   16 blocks (4096 codes) whose results are merged;
//! * top-k: k clamped to the database, candidates cut back to k once more than `k + k/4`,
//!   ties broken by index;
//! * radius: blocks skipped when their lower bound exceeds r;
//! * pack: rows of `dims` bits into `ceil(dims / 8)` bytes, the last one left-aligned.

use proptest::prelude::*;
use thrifty_hamming::binary::{self, Kernel};

mod pools;

use pools::{pool, THREADS};

/// Byte comparisons (queries x database x width) a case may spend on its references.
const COST: usize = 4_000_000;

/// Distances (queries x database) a case may sort and compare.
const ENTRIES: usize = 300_000;

/// Widths in bytes at every kernel boundary: 4, 8 and 16 words (25..=32, 57..=64, 121..=128
/// bytes) and their neighbours, multiples of 8 or not, 31 and 62 words (AVX2's byte-sum
/// groups), and the in-place cut at 4096 bytes.
const WIDTHS: [usize; 45] = [
    1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 25, 31, 32, 33, 40, 56, 57, 63, 64, 65, 120, 121, 127,
    128, 129, 240, 241, 247, 248, 249, 255, 256, 257, 496, 497, 504, 505, 511, 512, 513, 4095,
    4096, 4097,
];

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How the codes are drawn.
#[derive(Debug, Clone, Copy)]
enum Codes {
    /// Independent random bytes.
    Random,
    /// Copies of a few random codes: nearly every distance ties, so ties must go by index.
    Repeated(u64),
    /// All-zero and all-one codes with a bit or two flipped: distances 0 and 8 x width, the
    /// largest sums the kernels must carry.
    Extreme,
}

impl Codes {
    fn make(self, count: usize, width: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; count * width];
        for (i, code) in out.chunks_exact_mut(width).enumerate() {
            let z = splitmix64(seed ^ splitmix64(i as u64));
            match self {
                Codes::Random => {
                    for (j, b) in code.iter_mut().enumerate() {
                        *b = splitmix64(z ^ j as u64) as u8;
                    }
                }
                Codes::Repeated(distinct) => {
                    let which = z % distinct;
                    for (j, b) in code.iter_mut().enumerate() {
                        *b = splitmix64(which ^ ((j as u64) << 32)) as u8;
                    }
                }
                Codes::Extreme => {
                    code.fill(if z & 1 == 0 { 0 } else { 0xff });
                    if z & 2 == 0 {
                        let bit = (z >> 8) as usize % (8 * width);
                        code[bit / 8] ^= 1 << (bit % 8);
                    }
                }
            }
        }
        out
    }
}

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

/// Each query's (distance, index) pairs in (distance, index) order, from the all-pairs matrix.
fn sorted_rows(all: &[i32], nb: usize) -> Vec<Vec<(i32, i64)>> {
    if nb == 0 {
        return Vec::new();
    }
    all.chunks_exact(nb)
        .map(|row| {
            let mut row: Vec<(i32, i64)> = row
                .iter()
                .enumerate()
                .map(|(j, &d)| (d, j as i64))
                .collect();
            row.sort_unstable();
            row
        })
        .collect()
}

fn expected_topk(rows: &[Vec<(i32, i64)>], nq: usize, k: usize) -> (Vec<i32>, Vec<i64>) {
    if rows.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let kept: Vec<(i32, i64)> = rows
        .iter()
        .take(nq)
        .flat_map(|row| row.iter().copied().take(k))
        .collect();
    kept.into_iter().unzip()
}

type Csr = (Vec<i64>, Vec<i64>, Vec<i32>);

fn expected_radius(rows: &[Vec<(i32, i64)>], nq: usize, r: u32) -> Csr {
    let mut offsets = vec![0i64];
    let (mut indices, mut distances) = (Vec::new(), Vec::new());
    for q in 0..nq {
        if let Some(row) = rows.get(q) {
            for &(d, j) in row.iter().filter(|&&(d, _)| i64::from(d) <= i64::from(r)) {
                indices.push(j);
                distances.push(d);
            }
        }
        offsets.push(indices.len() as i64);
    }
    (offsets, indices, distances)
}

/// `around(points)`: a point or a neighbour up to two away, within `lo..=hi`.
fn around(points: Vec<usize>, lo: usize, hi: usize) -> impl Strategy<Value = usize> {
    (prop::sample::select(points), -2i64..=2)
        .prop_map(move |(p, d)| (p as i64 + d).clamp(lo as i64, hi as i64) as usize)
}

/// Widths whose references stay within [`COST`] for `nq` queries and `nb` codes (width 1
/// always).
fn affordable(nq: usize, nb: usize, widths: &[usize]) -> Vec<usize> {
    let mut fit: Vec<usize> = widths
        .iter()
        .copied()
        .filter(|&w| nq.max(1) * nb.max(1) * w <= COST)
        .collect();
    if fit.is_empty() {
        fit.push(1);
    }
    fit
}

/// (nq, nb, width) from `queries` x `codes` points (and neighbours) within [`ENTRIES`] and
/// [`COST`], the width drawn from `widths`.
fn shape(
    queries: Vec<usize>,
    codes: Vec<usize>,
    widths: &'static [usize],
) -> impl Strategy<Value = (usize, usize, usize)> {
    let max_nb = codes.iter().max().copied().unwrap_or(0) + 2;
    around(queries, 0, 1 << 20).prop_flat_map(move |nq| {
        let fit: Vec<usize> = codes
            .iter()
            .flat_map(|&c| c.saturating_sub(2)..=(c + 2).min(max_nb))
            .filter(|&nb| nq.max(1) * nb.max(1) <= ENTRIES)
            .collect();
        let fit = if fit.is_empty() { vec![1] } else { fit };
        prop::sample::select(fit).prop_flat_map(move |nb| {
            (
                Just(nq),
                Just(nb),
                prop::sample::select(affordable(nq, nb, widths)),
            )
        })
    })
}

/// (nq, nb, width): every width over few codes; many queries (query blocks of 32 to 256
/// against `4 x threads` tasks: 128t and 1024t queries); few queries over large databases
/// (chunks of 4096 codes, up to 10^5 codes).
fn shapes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        shape(vec![0, 1, 3, 33], vec![0, 1, 256, 300, 512], &WIDTHS),
        shape(
            vec![32, 64, 96, 128, 256, 384, 512, 1024, 2048, 3072, 8192, 16_384],
            vec![1, 16, 256, 512],
            &[1, 3, 8, 9, 32, 33],
        ),
        shape(
            vec![1, 3, 33],
            vec![
                4096,
                8192,
                12_288,
                16_384,
                32_768,
                65_536,
                4096 * 17,
                100_000
            ],
            &[1, 2, 3, 4, 5, 7, 8, 9, 16, 17],
        ),
    ]
}

fn codes() -> impl Strategy<Value = Codes> {
    prop_oneof![
        2 => Just(Codes::Random),
        1 => prop::sample::select(vec![1u64, 3, 50]).prop_map(Codes::Repeated),
        1 => Just(Codes::Extreme),
    ]
}

/// k at the top-k boundaries: 1, around a block (256) and a chunk (4096), around the
/// database size, and the largest there is.
fn k_for(nb: usize, choice: u8) -> usize {
    match choice % 10 {
        0 => 1,
        1 => 2,
        2 => 255,
        3 => 256,
        4 => 257,
        5 => 4097,
        6 => nb.saturating_sub(1).max(1),
        7 => nb.max(1),
        8 => nb + 1,
        _ => usize::MAX,
    }
}

/// r at the radius boundaries: 0, the middle of the distances, the widest distance and one
/// less, and the largest there is.
fn r_for(width: usize, choice: u8) -> u32 {
    let bits = 8 * width as u32;
    match choice % 6 {
        0 => 0,
        1 => bits / 2 - (bits / 16).min(bits / 2),
        2 => bits / 2,
        3 => bits - 1,
        4 => bits,
        _ => u32::MAX,
    }
}

#[derive(Debug, Clone)]
struct Case {
    nq: usize,
    nb: usize,
    width: usize,
    codes: Codes,
    k_choices: [u8; 2],
    r_choice: u8,
    threads: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        shapes(),
        codes(),
        any::<[u8; 2]>(),
        any::<u8>(),
        prop::sample::select(THREADS.to_vec()),
        any::<u64>(),
    )
        .prop_map(
            |((nq, nb, width), codes, k_choices, r_choice, threads, seed)| Case {
                nq,
                nb,
                width,
                codes,
                k_choices,
                r_choice,
                threads,
                seed,
            },
        )
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let (nq, nb, width) = (case.nq, case.nb, case.width);
    let queries = case.codes.make(nq, width, case.seed);
    let db = case.codes.make(nb, width, !case.seed);
    let all = reference_cdist(&queries, &db, width);
    let rows = sorted_rows(&all, nb);
    let r = r_for(width, case.r_choice);
    let want_radius = expected_radius(&rows, nq, r);
    pool(case.threads).install(|| {
        for kernel in Kernel::available() {
            let name = kernel.name();
            let mut out = vec![-1; nq * nb];
            kernel.cdist(&queries, &db, width, &mut out).unwrap();
            prop_assert_eq!(&out, &all, "{} cdist", name);
            for choice in case.k_choices {
                let k = k_for(nb, choice);
                let got = kernel.topk(&queries, &db, width, k).unwrap();
                prop_assert_eq!(got, expected_topk(&rows, nq, k), "{} top-{}", name, k);
            }
            let got = kernel.radius(&queries, &db, width, r).unwrap();
            prop_assert_eq!(&got, &want_radius, "{} radius {}", name, r);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(240))]

    #[test]
    fn every_kernel_equals_the_reference_at_boundaries(case in case()) {
        check_case(&case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The task grid (query block, database chunks) follows the thread count, and chunks are
    /// merged afterwards: no result may depend on the pool.
    #[test]
    fn results_do_not_depend_on_the_thread_count(
        (nq, nb, width) in prop_oneof![
            shape(vec![1, 2, 3, 5, 33], vec![4096, 8192, 12_288, 20_000, 65_536], &[1, 3, 8, 32]),
            shape(vec![32, 64, 96, 128, 256, 384, 1024, 2048], vec![1, 100, 256], &[1, 3, 8, 32]),
        ],
        codes in codes(),
        k in prop_oneof![Just(1usize), Just(10), Just(300), Just(5000)],
        seed in any::<u64>(),
    ) {
        let queries = codes.make(nq, width, seed);
        let db = codes.make(nb, width, !seed);
        let r = (4 * width) as u32;
        let on = |threads: usize| {
            pool(threads).install(|| {
                let mut out = vec![0; nq * nb];
                binary::cdist(&queries, &db, width, &mut out).unwrap();
                let topk = binary::topk(&queries, &db, width, k).unwrap();
                let radius = binary::radius(&queries, &db, width, r).unwrap();
                (out, topk, radius)
            })
        };
        let single = on(1);
        let rows = sorted_rows(&single.0, nb);
        prop_assert_eq!(&single.1, &expected_topk(&rows, nq, k));
        for threads in &THREADS[1..] {
            prop_assert!(on(*threads) == single, "{} threads", threads);
        }
    }
}

/// k = nb over 2^24 one-byte codes asks for 2^48 results (a petabyte, more than any address
/// space holds): an error naming k before any scanning, where the allocation used to abort
/// the process after the scan.
#[test]
fn a_top_k_too_large_to_hold_is_an_error() {
    let codes = vec![0u8; 1 << 24];
    let e = binary::topk(&codes, &codes, 1, usize::MAX).unwrap_err();
    assert_eq!(e.argument(), Some("k"));
    assert!(e.to_string().contains("16777216 queries x 16777216"), "{e}");
}

/// All-zero against all-one codes at every width: the largest sums each kernel carries (a
/// byte lane of AVX2 holds 31 words' counts, 248, and would wrap at 32), over more than one
/// database block.
#[test]
fn extreme_codes_at_every_width() {
    for width in WIDTHS {
        let db: Vec<u8> = (0..300)
            .flat_map(|i| {
                let mut code = vec![if i % 3 == 0 { 0 } else { 0xff }; width];
                if i % 5 == 0 {
                    code[i % width] ^= 0x10;
                }
                code
            })
            .collect();
        let queries = [vec![0u8; width], vec![0xff; width]].concat();
        let all = reference_cdist(&queries, &db, width);
        let rows = sorted_rows(&all, 300);
        let r = 8 * width as u32 - 1;
        for kernel in Kernel::available() {
            let mut out = vec![-1; 2 * 300];
            kernel.cdist(&queries, &db, width, &mut out).unwrap();
            assert_eq!(out, all, "{} width {width}", kernel.name());
            assert_eq!(
                kernel.topk(&queries, &db, width, 257).unwrap(),
                expected_topk(&rows, 2, 257)
            );
            assert_eq!(
                kernel.radius(&queries, &db, width, r).unwrap(),
                expected_radius(&rows, 2, r)
            );
        }
    }
}

/// `bits` (any non-zero byte is a 1) packed bit by bit, numpy.packbits' order.
fn reference_pack(bits: &[u8], rows: usize, dims: usize) -> Vec<u8> {
    let width = dims.div_ceil(8);
    let mut packed = vec![0u8; rows * width];
    for r in 0..rows {
        for d in 0..dims {
            if bits[r * dims + d] != 0 {
                packed[r * width + d / 8] |= 0x80 >> (d % 8);
            }
        }
    }
    packed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Packing around whole bytes and words, and the Hamming distance of packed rows equal to
    /// the number of positions where their bits differ.
    #[test]
    fn packed_rows_keep_their_distances(
        rows in around(vec![0, 1, 2, 5], 0, 8),
        dims in around(vec![0, 8, 64, 256, 2048, 32_768], 0, 33_000),
        seed in any::<u64>(),
    ) {
        let bits: Vec<u8> = (0..rows * dims)
            .map(|i| [0u8, 1, 2, 255, 0, 1][(splitmix64(seed ^ i as u64) % 6) as usize])
            .collect();
        let packed = binary::pack(&bits, rows, dims).unwrap();
        prop_assert_eq!(&packed, &reference_pack(&bits, rows, dims));
        if dims > 0 {
            let mut out = vec![0; rows * rows];
            binary::cdist(&packed, &packed, dims.div_ceil(8), &mut out).unwrap();
            for a in 0..rows {
                for b in 0..rows {
                    let differ = (0..dims)
                        .filter(|&d| (bits[a * dims + d] != 0) != (bits[b * dims + d] != 0))
                        .count() as i32;
                    prop_assert_eq!(out[a * rows + b], differ);
                }
            }
        }
    }
}

/// Arguments at the ends of their ranges give results or errors naming them, never panics.
#[test]
fn extreme_arguments_are_answered() {
    let db = Codes::Random.make(300, 3, 1);
    let queries = Codes::Random.make(2, 3, 2);
    let rows = sorted_rows(&reference_cdist(&queries, &db, 3), 300);
    for k in [299, 300, 301, usize::MAX] {
        assert_eq!(
            binary::topk(&queries, &db, 3, k).unwrap(),
            expected_topk(&rows, 2, k)
        );
    }
    for r in [0, 23, 24, 25, u32::MAX] {
        assert_eq!(
            binary::radius(&queries, &db, 3, r).unwrap(),
            expected_radius(&rows, 2, r)
        );
    }
    // The widest code whose distances fit in int32, and one byte more.
    let widest = i32::MAX as usize / 8;
    let (distances, indices) = binary::topk(&[], &[], widest, 1).unwrap();
    assert!(distances.is_empty() && indices.is_empty());
    let e = binary::topk(&[], &[], widest + 1, 1).unwrap_err();
    assert_eq!(e.argument(), Some("bytes_per_code"));
    let e = binary::radius(&[0; 4], &[0; 4], usize::MAX, 1).unwrap_err();
    assert_eq!(e.argument(), Some("bytes_per_code"));
    let mut out = [0; 1];
    let e = binary::cdist(&[0], &[0], 0, &mut out).unwrap_err();
    assert_eq!(e.argument(), Some("bytes_per_code"));
    let e = binary::pack(&[0; 2], usize::MAX, usize::MAX).unwrap_err();
    assert_eq!(e.argument(), Some("bits"));
    assert!(binary::pack(&[], usize::MAX, 0).unwrap().is_empty());
}
