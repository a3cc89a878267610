//! How a buffer is cut into slices and chunks, at lengths and chunk sizes just below, at and
//! above every multiple of the alignment, the chunk and the world size: the pieces tile the
//! buffer exactly and in order, every boundary is aligned, the pieces are balanced, no piece
//! is larger than asked or empty unless the layout has no choice, and chunks aligned to the
//! quantization block encode exactly like the same elements of the whole buffer.

use proptest::prelude::*;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::layout::{bytes, Layout};

const MAX_LEN: usize = 131_075;

const ALIGNS: [usize; 14] = [1, 2, 3, 7, 8, 31, 32, 33, 64, 100, 128, 257, 1024, 4096];

/// Values within two of a multiple of `unit`: mostly the first few multiples, also any up to
/// `max`.
fn straddling(unit: usize, max: usize) -> impl Strategy<Value = usize> {
    let unit = unit.max(1);
    let top = max / unit;
    (prop_oneof![0usize..=3, 0..=top, Just(top)], -2isize..=2)
        .prop_map(move |(m, d)| (m * unit).saturating_add_signed(d))
}

#[derive(Clone, Debug)]
struct Case {
    len: usize,
    parts: usize,
    align: usize,
    chunk_elems: usize,
}

/// A world size, an alignment, a chunk size around a multiple of the alignment, and a length
/// around a multiple of one of the sizes the layout divides by.
fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=8,
        prop_oneof![3 => proptest::sample::select(ALIGNS.to_vec()), 1 => 1usize..3000],
    )
        .prop_flat_map(|(parts, align)| {
            (
                Just(parts),
                Just(align),
                prop_oneof![straddling(align, 70_000), 0usize..300],
            )
        })
        .prop_flat_map(|(parts, align, chunk_elems)| {
            let units = [
                1,
                align,
                align * parts,
                chunk_elems.max(1),
                chunk_elems.max(1) * parts,
            ];
            (
                Just(parts),
                Just(align),
                Just(chunk_elems),
                proptest::sample::select(units.to_vec())
                    .prop_flat_map(|unit| straddling(unit, MAX_LEN)),
            )
        })
        .prop_map(|(parts, align, chunk_elems, len)| Case {
            len,
            parts,
            align,
            chunk_elems,
        })
}

/// The boundary `at` in units of `align`: aligned, or the end of the buffer.
fn unit_of(at: usize, case: &Case) -> Result<usize, TestCaseError> {
    if at.is_multiple_of(case.align) {
        Ok(at / case.align)
    } else if at == case.len {
        Ok(case.len.div_ceil(case.align))
    } else {
        Err(TestCaseError::fail(format!(
            "boundary {at} is not a multiple of {} nor the end {} ({case:?})",
            case.align, case.len
        )))
    }
}

fn check_layout(case: &Case) -> Result<(), TestCaseError> {
    let layout = Layout::new(case.len, case.parts, case.align, case.chunk_elems);
    prop_assert_eq!(layout.len(), case.len);
    prop_assert_eq!(layout.is_empty(), case.len == 0);
    prop_assert_eq!(layout.parts(), case.parts);
    let chunks = layout.chunks();
    prop_assert!(chunks >= 1);
    let total_units = case.len.div_ceil(case.align);
    let chunk_units = case.chunk_elems.div_ceil(case.align).max(1);

    let mut next = 0;
    let mut slice_units = Vec::new();
    let mut largest = 0;
    for j in 0..case.parts {
        let slice = layout.slice(j);
        prop_assert_eq!(
            slice.start,
            next,
            "slice {} does not start where {} ended",
            j,
            j.wrapping_sub(1)
        );
        prop_assert!(slice.start <= slice.end && slice.end <= case.len);
        let units = unit_of(slice.end, case)? - unit_of(slice.start, case)?;
        slice_units.push(units);
        let mut inner = slice.start;
        let mut chunk_units_seen = Vec::new();
        for k in 0..chunks {
            let chunk = layout.chunk(j, k);
            prop_assert_eq!(chunk.start, inner, "chunk {} of slice {}", k, j);
            prop_assert!(chunk.start <= chunk.end);
            let units = unit_of(chunk.end, case)? - unit_of(chunk.start, case)?;
            prop_assert!(
                units <= chunk_units,
                "chunk {} of slice {} has {} units, more than the {} asked",
                k,
                j,
                units,
                chunk_units
            );
            prop_assert!(chunk.len() <= chunk_units * case.align);
            // A chunk is empty only when its slice has fewer units than there are chunks.
            prop_assert!(
                !chunk.is_empty() || slice_units[j] < chunks,
                "empty chunk {} of slice {}",
                k,
                j
            );
            chunk_units_seen.push(units);
            largest = largest.max(chunk.len());
            inner = chunk.end;
        }
        prop_assert_eq!(inner, slice.end, "the chunks of slice {} stop short", j);
        let (lo, hi) = (
            chunk_units_seen.iter().min().unwrap(),
            chunk_units_seen.iter().max().unwrap(),
        );
        prop_assert!(
            hi - lo <= 1,
            "unbalanced chunks in slice {}: {:?}",
            j,
            chunk_units_seen
        );
        next = slice.end;
    }
    prop_assert_eq!(next, case.len, "the slices do not cover the buffer");
    prop_assert_eq!(slice_units.iter().sum::<usize>(), total_units);
    let (lo, hi) = (
        *slice_units.iter().min().unwrap(),
        *slice_units.iter().max().unwrap(),
    );
    prop_assert!(hi - lo <= 1, "unbalanced slices: {:?}", slice_units);
    // A slice is empty only when there are fewer units than slices.
    prop_assert!(lo > 0 || total_units < case.parts);
    // No more chunks than the widest slice needs.
    prop_assert!(
        chunks == 1 || (chunks - 1) * chunk_units < hi,
        "{} chunks for {} units of {}",
        chunks,
        hi,
        chunk_units
    );
    prop_assert_eq!(layout.max_chunk(), largest);
    Ok(())
}

/// Encoding every chunk on its own gives the blocks the whole buffer would have, so the
/// quantized all-reduce can ship and decode chunks independently.
fn check_chunks_encode_like_the_whole(
    case: &Case,
    format: Quantization,
    seed: u64,
) -> Result<(), TestCaseError> {
    let block = case.align;
    let mut state = seed;
    let values: Vec<f32> = (0..case.len)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * 2f32.powi((i / block % 13) as i32 - 6)
        })
        .collect();
    let mut whole = vec![0u8; format.encoded_len(case.len, block)];
    format.encode(&values, block, &mut whole, "values").unwrap();
    let mut expected = vec![0f32; case.len];
    format.decode(&whole, block, &mut expected).unwrap();

    let layout = Layout::new(case.len, case.parts, block, case.chunk_elems);
    let mut pieced = vec![f32::NAN; case.len];
    for j in 0..layout.parts() {
        for k in 0..layout.chunks() {
            let range = layout.chunk(j, k);
            let mut encoded = vec![0u8; format.encoded_len(range.len(), block)];
            format
                .encode(&values[range.clone()], block, &mut encoded, "values")
                .unwrap();
            format.decode(&encoded, block, &mut pieced[range]).unwrap();
        }
    }
    for i in 0..case.len {
        prop_assert_eq!(
            pieced[i].to_bits(),
            expected[i].to_bits(),
            "{:?} element {}: chunked {:e}, whole {:e} ({:?})",
            format,
            i,
            pieced[i],
            expected[i],
            case
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn slices_and_chunks_tile_the_buffer_aligned_and_balanced(case in case()) {
        check_layout(&case)?;
    }

    #[test]
    fn block_aligned_chunks_encode_like_the_whole_buffer(
        case in case(),
        format in proptest::sample::select(Quantization::ALL.to_vec()),
        seed in any::<u64>(),
    ) {
        check_chunks_encode_like_the_whole(&case, format, seed)?;
    }

    /// Arguments no real buffer has (lengths near `usize::MAX`, huge alignments and world
    /// sizes) still give a consistent layout, without overflowing.
    #[test]
    fn extreme_arguments_do_not_overflow(
        len in prop_oneof![any::<usize>(), (usize::MAX - 4)..=usize::MAX, 0usize..10],
        parts in prop_oneof![1usize..=8, 0usize..100_000],
        align in prop_oneof![Just(0usize), 1usize..5, any::<usize>(), Just(usize::MAX)],
        chunk_elems in prop_oneof![Just(0usize), any::<usize>(), Just(usize::MAX)],
    ) {
        let layout = Layout::new(len, parts, align, chunk_elems);
        prop_assert_eq!(layout.parts(), parts.max(1));
        let parts = layout.parts();
        prop_assert_eq!(layout.slice(0).start, 0);
        prop_assert_eq!(layout.slice(parts - 1).end, len);
        let last = layout.chunks() - 1;
        for j in [0, parts / 2, parts - 1] {
            let slice = layout.slice(j);
            prop_assert!(slice.start <= slice.end);
            prop_assert_eq!(layout.chunk(j, 0).start, slice.start);
            prop_assert_eq!(layout.chunk(j, last).end, slice.end);
            if last > 0 {
                prop_assert_eq!(layout.chunk(j, last / 2).end, layout.chunk(j, last / 2 + 1).start);
            }
            if j + 1 < parts {
                prop_assert_eq!(slice.end, layout.slice(j + 1).start);
            }
        }
    }
}

#[test]
fn small_cases_exhaustively() {
    // Every length up to a few units of every small world, alignment and chunk size: where
    // empty slices, empty chunks and partial last units are densest.
    for parts in 1..=8 {
        for align in 1..=5 {
            for chunk_elems in 0..=3 * align + 1 {
                for len in 0..=(parts + 2) * align * 2 + 1 {
                    let case = Case {
                        len,
                        parts,
                        align,
                        chunk_elems,
                    };
                    check_layout(&case).unwrap();
                }
            }
        }
    }
}

#[test]
fn byte_ranges_scale_element_ranges() {
    for elem in [1, 2, 4, 8] {
        assert_eq!(bytes(3..7, elem), 3 * elem..7 * elem);
        assert_eq!(bytes(0..0, elem), 0..0);
    }
}

#[test]
fn layouts_near_the_top_of_usize_regression() {
    // These overflowed (a panic under overflow checks, wrapped slices without) before the
    // slice and chunk arithmetic was widened.
    let layout = Layout::new(usize::MAX, 8, 1, 1 << 16);
    assert_eq!(layout.slice(7).end, usize::MAX);
    assert_eq!(layout.slice(3).end, layout.slice(4).start);
    let layout = Layout::new(usize::MAX, 3, 2, 1);
    assert_eq!(layout.slice(2).end, usize::MAX);
    assert_eq!(layout.chunk(2, layout.chunks() - 1).end, usize::MAX);
}
