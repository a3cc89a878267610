//! Block quantization: exhaustive over the fp8 and fp4 codes, nearest-even rounding against a
//! brute-force search of the decoded tables, the wire layout, and the documented error bound.

use proptest::prelude::*;
use thrifty_collective::block_quant::{Quantization, FP4_VALUES};
use thrifty_collective::dtype::ReduceOp;
use thrifty_collective::reduce::reduce_f32;
use thrifty_core::{Choice, CoreError};

const FORMATS: [Quantization; 3] = Quantization::ALL;

/// The code values of a format, read back through `decode` with a scale of 1, in code order.
/// int8's table is indexed by the code byte (so `-1` is at 255).
fn table(format: Quantization) -> Vec<f32> {
    let (codes, count): (Vec<u8>, usize) = match format {
        Quantization::Int8 | Quantization::Fp8 => ((0..=255).collect(), 256),
        Quantization::Fp4 => ((0..8).map(|i| (2 * i) | ((2 * i + 1) << 4)).collect(), 16),
    };
    let mut encoded = 1f32.to_le_bytes().to_vec();
    encoded.extend(codes);
    let mut values = vec![0f32; count];
    format.decode(&encoded, count, &mut values).unwrap();
    values
}

/// The codes `encode` may produce: every one but the NaNs (fp8) and -128 (int8).
fn valid_codes(format: Quantization) -> Vec<usize> {
    let table = table(format);
    (0..table.len())
        .filter(|&c| {
            let int8_minimum = format == Quantization::Int8 && c == 0x80;
            !table[c].is_nan() && !int8_minimum
        })
        .collect()
}

/// A format's decoded table and the codes `encode` may produce.
struct Table {
    values: Vec<f32>,
    valid: Vec<usize>,
}

impl Table {
    fn new(format: Quantization) -> Self {
        Table {
            values: table(format),
            valid: valid_codes(format),
        }
    }
}

/// The nearest valid code to `t` by brute force: smallest distance, then (between two
/// different values) the even code, then (between +0 and -0) the sign of `t`.
fn nearest(table: &Table, t: f32) -> usize {
    let (table, valid) = (&table.values, &table.valid);
    let mut best: Option<usize> = None;
    for &c in valid {
        let Some(b) = best else {
            best = Some(c);
            continue;
        };
        let (dc, db) = ((table[c] - t).abs(), (table[b] - t).abs());
        let better = if dc != db {
            dc < db
        } else if table[c] != table[b] {
            // A tie between neighbours: the even one. (int8's evenness is its value's.)
            c % 2 == 0
        } else {
            table[c].is_sign_negative() == t.is_sign_negative()
        };
        if better {
            best = Some(c);
        }
    }
    best.unwrap()
}

fn code_at(format: Quantization, encoded: &[u8], len: usize, block: usize, i: usize) -> usize {
    let codes = &encoded[4 * len.div_ceil(block)..];
    match format {
        Quantization::Fp4 => usize::from((codes[i / 2] >> (4 * (i % 2))) & 0xf),
        _ => usize::from(codes[i]),
    }
}

fn scale_of(encoded: &[u8], b: usize) -> f32 {
    f32::from_le_bytes(encoded[4 * b..4 * b + 4].try_into().unwrap())
}

fn encode(format: Quantization, values: &[f32], block: usize) -> Vec<u8> {
    let mut out = vec![0u8; format.encoded_len(values.len(), block)];
    format.encode(values, block, &mut out, "values").unwrap();
    out
}

fn decode(format: Quantization, encoded: &[u8], len: usize, block: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; len];
    format.decode(encoded, block, &mut out).unwrap();
    out
}

#[test]
fn tables_are_the_formats() {
    let fp8 = table(Quantization::Fp8);
    assert_eq!(fp8[0x7e], 448.0);
    assert_eq!(fp8[0xfe], -448.0);
    assert_eq!(fp8[0x08], 2f32.powi(-6)); // smallest normal
    assert_eq!(fp8[0x01], 2f32.powi(-9)); // smallest subnormal
    assert_eq!(fp8[0x38], 1.0);
    assert_eq!(fp8[0x80].to_bits(), (-0.0f32).to_bits());
    assert!(fp8[0x7f].is_nan() && fp8[0xff].is_nan());
    assert_eq!(fp8.iter().filter(|v| v.is_nan()).count(), 2);
    // Magnitudes strictly increase with the code (apart from the NaN).
    assert!(fp8[..0x7f].windows(2).all(|w| w[0] < w[1]));
    let fp4 = table(Quantization::Fp4);
    assert_eq!(fp4, FP4_VALUES);
    assert_eq!(&fp4[..8], &[0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
    let int8 = table(Quantization::Int8);
    assert!((0..256).all(|c| int8[c] == f32::from(c as u8 as i8)));
}

#[test]
fn every_code_round_trips_through_decode_and_encode() {
    for format in FORMATS {
        let table = table(format);
        let codes = valid_codes(format);
        // One block holding every code value; the format's largest value makes the scale 1,
        // and then a power of two (2^k times everything), under which the codes must not move.
        for k in [0, -20, 7, -100] {
            let factor = 2f32.powi(k);
            let values: Vec<f32> = codes.iter().map(|&c| table[c] * factor).collect();
            let encoded = encode(format, &values, values.len());
            assert_eq!(scale_of(&encoded, 0), factor, "{format:?}");
            for (i, &c) in codes.iter().enumerate() {
                assert_eq!(code_at(format, &encoded, values.len(), values.len(), i), c);
            }
            let decoded = decode(format, &encoded, values.len(), values.len());
            for (d, v) in decoded.iter().zip(&values) {
                assert_eq!(d.to_bits(), v.to_bits(), "{format:?} {v}");
            }
        }
    }
}

/// Every midpoint between neighbouring code values, the floats on either side of it, the code
/// values themselves and a dense grid: the places where rounding can go wrong.
fn sweep(format: Quantization) -> Vec<f32> {
    let table = table(format);
    let mut values: Vec<f32> = valid_codes(format).iter().map(|&c| table[c]).collect();
    values.sort_by(f32::total_cmp);
    values.dedup_by(|a, b| a == b);
    let mut points = Vec::new();
    for pair in values.windows(2) {
        let mid = (pair[0] + pair[1]) / 2.0; // exact: both are short binary fractions
        for p in [mid, pair[0], pair[1]] {
            points.extend([p, next_up(p), next_down(p)]);
        }
    }
    let max = format.max_code();
    let steps = 20_000;
    points.extend((0..=steps).map(|i| -max + 2.0 * max * i as f32 / steps as f32));
    points.retain(|p| p.abs() <= max);
    points
}

fn next_up(x: f32) -> f32 {
    match x.to_bits() {
        0x8000_0000 | 0 => f32::from_bits(1),
        b if x > 0.0 => f32::from_bits(b + 1),
        b => f32::from_bits(b - 1),
    }
}

fn next_down(x: f32) -> f32 {
    -next_up(-x)
}

#[test]
fn encode_picks_the_nearest_code_with_ties_to_even() {
    for format in FORMATS {
        let table = Table::new(format);
        let mut points = sweep(format);
        // The largest value pins the scale to 1, so `x / scale` is exact and the expected code
        // is the brute-force nearest to `x` itself.
        points.push(format.max_code());
        let encoded = encode(format, &points, points.len());
        assert_eq!(scale_of(&encoded, 0), 1.0);
        for (i, &x) in points.iter().enumerate() {
            let got = code_at(format, &encoded, points.len(), points.len(), i);
            let want = nearest(&table, x);
            assert_eq!(
                got, want,
                "{format:?}: {x:e} encoded to {got:#x} ({}), nearest is {want:#x} ({})",
                table.values[got], table.values[want]
            );
        }
    }
}

#[test]
fn values_beyond_the_largest_code_saturate() {
    for format in FORMATS {
        let table = Table::new(format);
        let max_code = nearest(&table, format.max_code());
        let min_code = nearest(&table, -format.max_code());
        // A scale that has to be nudged below absmax / max_code puts the largest value just
        // above max_code in code units: it must still get the largest finite code (for fp8,
        // 464 and above would otherwise round to the NaN pattern).
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut nudged = 0;
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let absmax = f32::from_bits(0x3000_0000 + (rng as u32 % 0x1800_0000));
            let values = [absmax, -absmax, absmax * 0.5];
            let encoded = encode(format, &values, 3);
            let scale = scale_of(&encoded, 0);
            assert!(scale * format.max_code() <= absmax);
            if absmax / scale > format.max_code() {
                nudged += 1;
            }
            assert_eq!(code_at(format, &encoded, 3, 3, 0), max_code, "{absmax:e}");
            assert_eq!(code_at(format, &encoded, 3, 3, 1), min_code, "{absmax:e}");
            let decoded = decode(format, &encoded, 3, 3);
            assert!(decoded[0] <= absmax && decoded[0] >= absmax * 0.999);
        }
        assert!(nudged > 0, "{format:?}: no scale needed nudging");
        // With a subnormal scale, `absmax / scale` can be far above max_code (2^-149 is the
        // only scale for absmax = k * 2^-149, max_code / 2 <= k < 1.5 * max_code).
        let mut saturated = 0;
        for k in 1..(2.0 * format.max_code()) as u32 {
            let absmax = f32::from_bits(k);
            let values = [absmax, -absmax];
            let encoded = encode(format, &values, 2);
            if scale_of(&encoded, 0) > 0.0 && absmax / scale_of(&encoded, 0) > format.max_code() {
                saturated += 1;
            }
            if scale_of(&encoded, 0) > 0.0 {
                assert_eq!(code_at(format, &encoded, 2, 2, 0), max_code, "k = {k}");
                assert_eq!(code_at(format, &encoded, 2, 2, 1), min_code, "k = {k}");
            }
            check_bound(format, &values, 2).unwrap();
        }
        assert!(saturated > 0, "{format:?}: no subnormal scale saturated");
        // Huge magnitudes neither overflow the scale nor the decoded values.
        let values = [f32::MAX, -f32::MAX, 1.0];
        let decoded = decode(format, &encode(format, &values, 3), 3, 3);
        assert!(decoded.iter().all(|d| d.is_finite()));
        assert!(decoded[0] > f32::MAX * 0.999 && decoded[1] < -f32::MAX * 0.999);
    }
}

#[test]
fn zero_blocks_have_zero_scales_and_codes() {
    for format in FORMATS {
        for block in [1, 3, 4, 64] {
            let len = 2 * block + 1;
            let mut values = vec![0.0f32; len];
            for v in values.iter_mut().skip(1).step_by(2) {
                *v = -0.0;
            }
            // One block of values so small that their scale underflows to zero.
            values[block..2 * block].fill(1e-45);
            let encoded = encode(format, &values, block);
            assert!(encoded.iter().all(|&b| b == 0), "{format:?} block {block}");
            let decoded = decode(format, &encoded, len, block);
            assert!(decoded.iter().all(|&d| d.to_bits() == 0));
        }
    }
}

#[test]
fn non_finite_values_are_rejected_naming_the_argument() {
    for format in FORMATS {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 5, 99] {
                let mut values = vec![1.0f32; 100];
                values[at] = bad;
                let mut out = vec![0u8; format.encoded_len(100, 7)];
                match format.encode(&values, 7, &mut out, "gradients") {
                    Err(CoreError::NonFinite { argument, message }) => {
                        assert_eq!(argument, "gradients");
                        assert!(message.contains(&format!("index {at}")), "{message}");
                    }
                    other => panic!("expected a non-finite error, got {other:?}"),
                }
            }
        }
    }
}

/// A reference encoder: the scale `encode` wrote (checked against its definition), the
/// brute-force nearest code of each `x / scale`, and the packing written out the slow way.
fn reference_encode(format: Quantization, values: &[f32], block: usize, scales: &[f32]) -> Vec<u8> {
    let table = Table::new(format);
    let blocks = values.len().div_ceil(block);
    let mut out: Vec<u8> = scales[..blocks]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let codes: Vec<usize> = values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = scales[i / block];
            if s == 0.0 {
                0
            } else {
                let t = (x / s).clamp(-format.max_code(), format.max_code());
                nearest(&table, t)
            }
        })
        .collect();
    match format {
        Quantization::Fp4 => {
            for pair in codes.chunks(2) {
                let high = pair.get(1).copied().unwrap_or(0);
                out.push((pair[0] | (high << 4)) as u8);
            }
        }
        _ => out.extend(codes.iter().map(|&c| c as u8)),
    }
    out
}

fn check_against_reference(format: Quantization, values: &[f32], block: usize) {
    let encoded = encode(format, values, block);
    let blocks = values.len().div_ceil(block);
    let scales: Vec<f32> = (0..blocks).map(|b| scale_of(&encoded, b)).collect();
    for (b, chunk) in values.chunks(block).enumerate() {
        let absmax = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
        let exact = absmax / format.max_code();
        let s = scales[b];
        // The definition, or one ulp below it when that was needed to stay under absmax.
        assert!(
            s == exact
                || (s.to_bits() + 1 == exact.to_bits() && exact * format.max_code() > absmax),
            "{format:?} block {b}: scale {s:e} for absmax {absmax:e}"
        );
    }
    assert_eq!(
        encoded,
        reference_encode(format, values, block, &scales),
        "{format:?} len {} block {block}",
        values.len()
    );
}

#[test]
fn partial_blocks_and_odd_lengths_pack_like_the_reference() {
    let mut state = 7u32;
    let mut value = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1 << 24) as f32 * 8.0 - 4.0
    };
    for format in FORMATS {
        for len in 0..=21 {
            let values: Vec<f32> = (0..len).map(|_| value()).collect();
            for block in 1..=8 {
                check_against_reference(format, &values, block);
            }
            check_against_reference(format, &values, 64);
        }
    }
    // fp4 by hand: three values in blocks of two. Block 0 = [1, -6] (scale 1, codes 0x2 and
    // 0xf), block 1 = [3] (scale 0.5, code 0x7 for 6.0): bytes 0xf2 then 0x07, with a zero
    // high nibble at the end.
    let encoded = encode(Quantization::Fp4, &[1.0, -6.0, 3.0], 2);
    assert_eq!(encoded.len(), 8 + 2);
    assert_eq!(&encoded[8..], &[0xf2, 0x07]);
    assert_eq!(scale_of(&encoded, 1), 0.5);
    // Blocks of three straddle bytes: element 3 (block 1, scale 0.5, -0.5 -> -1.0 = 0xa) is
    // the high nibble of byte 1.
    let encoded = encode(Quantization::Fp4, &[6.0, 0.0, 0.0, -0.5, 0.0, 3.0], 3);
    assert_eq!(&encoded[8..], &[0x07, 0xa0, 0x70]);
}

#[test]
fn decode_reduce_equals_decode_then_reduce() {
    let mut state = 99u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for format in FORMATS {
        for (len, block) in [(1, 1), (7, 3), (1000, 64), (4099, 100), (33, 7)] {
            let values: Vec<f32> = (0..len)
                .map(|_| ((next() >> 40) as f32 / (1 << 24) as f32 - 0.5) * 10.0)
                .collect();
            let encoded = encode(format, &values, block);
            let decoded = decode(format, &encoded, len, block);
            for op in ReduceOp::ALL {
                // An accumulator with NaNs, signed zeros, and exact ties with the decoded values.
                let acc: Vec<f32> = (0..len)
                    .map(|i| match next() % 6 {
                        0 => f32::NAN,
                        1 => 0.0,
                        2 => -0.0,
                        3 => decoded[i],
                        _ => ((next() >> 40) as f32 / (1 << 24) as f32 - 0.5) * 10.0,
                    })
                    .collect();
                let mut fused = acc.clone();
                format
                    .decode_reduce(&encoded, block, op, &mut fused)
                    .unwrap();
                let mut separate = acc.clone();
                reduce_f32(op, &mut separate, &decoded);
                for i in 0..len {
                    assert!(
                        fused[i].to_bits() == separate[i].to_bits()
                            || (fused[i].is_nan() && separate[i].is_nan()),
                        "{format:?} {op:?} index {i}: {} vs {}",
                        fused[i],
                        separate[i]
                    );
                }
            }
        }
    }
}

#[test]
fn encoded_lengths_and_wire_ratios() {
    assert_eq!(Quantization::Int8.encoded_len(100, 64), 8 + 100);
    assert_eq!(Quantization::Fp8.encoded_len(128, 64), 8 + 128);
    assert_eq!(Quantization::Fp4.encoded_len(101, 64), 8 + 51);
    assert_eq!(Quantization::Fp4.encoded_len(1, 1), 4 + 1);
    assert_eq!(Quantization::Fp4.encoded_len(0, 64), 0);
    // block 0 is counted as 1 rather than panicking; encode and decode reject it.
    assert_eq!(Quantization::Int8.encoded_len(3, 0), 12 + 3);
    let len = 1 << 20;
    assert!((Quantization::Int8.wire_ratio(len, 64) - 256.0 / 68.0).abs() < 1e-12);
    assert!((Quantization::Fp8.wire_ratio(len, 64) - 256.0 / 68.0).abs() < 1e-12);
    let fp4 = Quantization::Fp4.wire_ratio(len, 64);
    assert!((fp4 - 256.0 / 36.0).abs() < 1e-12);
    assert!(
        fp4 >= 6.0,
        "fp4 with blocks of 64 must be at least 6x smaller, got {fp4}"
    );
    assert_eq!(Quantization::Fp4.wire_ratio(0, 64), 1.0);
}

#[test]
fn bad_arguments_are_errors() {
    for format in FORMATS {
        let mut out = vec![0u8; 64];
        let err = format.encode(&[1.0; 4], 0, &mut out, "values").unwrap_err();
        assert_eq!(
            err,
            CoreError::invalid("block", "must be at least 1, got 0"),
            "{format:?}"
        );
        let err = format.decode(&out, 0, &mut [0.0; 4]).unwrap_err();
        assert_eq!(err.argument(), Some("block"));
        match format.encode(&[1.0; 4], 2, &mut out, "values") {
            Err(CoreError::Shape {
                argument: "out",
                message,
            }) => {
                assert!(message.contains("64 bytes"), "{message}")
            }
            other => panic!("expected a shape error, got {other:?}"),
        }
        match format.decode(&out, 2, &mut [0.0; 4]) {
            Err(CoreError::Shape {
                argument: "encoded",
                ..
            }) => {}
            other => panic!("expected a shape error, got {other:?}"),
        }
        // Corrupt scales are refused rather than decoded into garbage.
        for bad in [f32::NAN, f32::INFINITY, -1.0] {
            let mut encoded = encode(format, &[1.0, 2.0, 3.0, 4.0], 2);
            encoded[4..8].copy_from_slice(&bad.to_le_bytes());
            let err = format.decode(&encoded, 2, &mut [0.0; 4]).unwrap_err();
            assert_eq!(err.argument(), Some("encoded"), "{err}");
            let err = format
                .decode_reduce(&encoded, 2, ReduceOp::Sum, &mut [0.0; 4])
                .unwrap_err();
            assert_eq!(err.argument(), Some("encoded"));
        }
    }
    for format in FORMATS {
        assert_eq!(Quantization::parse(format.name()).unwrap(), format);
    }
    assert_eq!(
        Quantization::parse("int4").unwrap_err().argument(),
        Some("quantize")
    );
}

#[test]
fn a_rejected_format_is_answered_with_every_allowed_one() {
    let message = Quantization::parse("int4").unwrap_err().to_string();
    for format in FORMATS {
        assert!(message.contains(format.name()), "{message}");
    }
}

fn check_bound(format: Quantization, values: &[f32], block: usize) -> Result<(), String> {
    let decoded = decode(format, &encode(format, values, block), values.len(), block);
    for (b, chunk) in values.chunks(block).enumerate() {
        let absmax = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (i, &x) in chunk.iter().enumerate() {
            let d = decoded[b * block + i];
            let (err, bound) = ((d - x).abs(), format.error_bound(x, absmax));
            if err > bound {
                return Err(format!(
                    "{format:?} block {block}: {x:e} decoded to {d:e}, error {err:e} > bound {bound:e} \
                     (block absmax {absmax:e})"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn error_bound_holds_at_every_tie_for_awkward_scales() {
    // The bound is tightest at ties (where the error is exactly its `abs` term) and the f32
    // rounding of `x / scale` and `code * scale` can push past it: check every midpoint and
    // its neighbours under scales that are not powers of two.
    for format in FORMATS {
        let points = sweep(format);
        // The last two make the scale an f32 subnormal.
        for absmax_factor in [1.0f32, 1.1, 0.3, 3.7e-3, 1e30, 7e-36, 1e-40, 3e-44] {
            let mut values: Vec<f32> = points.iter().map(|p| p * absmax_factor).collect();
            values.push(format.max_code() * absmax_factor);
            check_bound(format, &values, values.len()).unwrap();
        }
    }
}

fn spread_values() -> impl Strategy<Value = Vec<f32>> {
    // Mantissa, exponent and sign drawn separately so that blocks mix magnitudes (up to 2^60
    // apart), with zeros and the occasional subnormal.
    proptest::collection::vec(
        prop_oneof![
            8 => (-1.0f32..1.0, -30i32..30).prop_map(|(m, e)| m * 2f32.powi(e)),
            1 => Just(0.0f32),
            1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn error_bound_holds_for_random_data(
        values in spread_values(),
        block in prop_oneof![Just(1usize), Just(7), Just(64), Just(100)],
    ) {
        for format in FORMATS {
            check_bound(format, &values, block).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn error_bound_holds_for_any_finite_values(
        values in proptest::collection::vec(
            any::<f32>().prop_filter("finite", |x| x.is_finite()), 1..200),
        block in prop_oneof![Just(1usize), Just(7), Just(64), Just(100)],
    ) {
        for format in FORMATS {
            check_bound(format, &values, block).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn encode_is_nearest_even_of_x_over_scale(
        values in spread_values(),
        block in prop_oneof![Just(1usize), Just(7), Just(64), Just(100)],
    ) {
        for format in FORMATS {
            check_against_reference(format, &values, block);
        }
    }

    #[test]
    fn random_points_under_unit_scale_get_the_nearest_code(
        points in proptest::collection::vec(-1.0f32..1.0, 1..100),
    ) {
        for format in FORMATS {
            let table = Table::new(format);
            let mut values: Vec<f32> = points.iter().map(|p| p * format.max_code()).collect();
            values.push(format.max_code());
            let encoded = encode(format, &values, values.len());
            for (i, &x) in values.iter().enumerate() {
                prop_assert_eq!(
                    code_at(format, &encoded, values.len(), values.len(), i),
                    nearest(&table, x)
                );
            }
        }
    }
}
