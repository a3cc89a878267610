//! Block quantization at every size boundary the codec has: lengths just below, at and above
//! each multiple of the block (odd ones too, for fp4's nibble packing), blocks from 1 to
//! larger than the buffer, and blocks of huge, tiny, subnormal, zero and tied values. Each
//! encoding is compared byte for byte with a plain reference quantizer written from the
//! format definitions, each decoding value for value, and each round trip with the
//! documented error bound.

use proptest::prelude::*;
use thrifty_collective::block_quant::Quantization;
use thrifty_collective::dtype::ReduceOp;
use thrifty_core::CoreError;

/// The largest buffer drawn: past 10^5 elements and past 2^17.
const MAX_LEN: usize = 131_075;

/// Block sizes around the powers of two and the odd ones that make fp4 blocks straddle bytes.
const BLOCKS: [usize; 27] = [
    1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000,
    1024, 4097, 65_536, 100_003,
];

fn block_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => proptest::sample::select(BLOCKS.to_vec()),
        1 => 1usize..5000,
    ]
}

/// Lengths within two of a multiple of `unit`: mostly the first few multiples, also any up to
/// `max`.
fn straddling(unit: usize, max: usize) -> impl Strategy<Value = usize> {
    let top = max / unit;
    (prop_oneof![0usize..=3, 0..=top, Just(top)], -2isize..=2)
        .prop_map(move |(m, d)| (m * unit).saturating_add_signed(d))
}

fn block_and_len() -> impl Strategy<Value = (usize, usize)> {
    block_size().prop_flat_map(|block| (Just(block), straddling(block, MAX_LEN)))
}

fn format() -> impl Strategy<Value = Quantization> {
    proptest::sample::select(Quantization::ALL.to_vec())
}

/// SplitMix64, for buffers too long to draw element by element.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn sign(&mut self) -> f32 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

fn pow2(e: i32) -> f32 {
    2f32.powi(e)
}

/// Values whose kind changes from block to block: ordinary, all zero (signed), subnormal,
/// near `f32::MAX`, tiny normals (subnormal scales), one huge value among tiny ones, exact
/// ties of the code grid, and constant blocks.
fn awkward_values(len: usize, block: usize, format: Quantization, seed: u64) -> Vec<f32> {
    let ties = grid_midpoints(format);
    let mut rng = Rng(seed);
    let mut values = Vec::with_capacity(len);
    while values.len() < len {
        let n = block.min(len - values.len());
        let kind = rng.below(9);
        let e = rng.below(60) as i32 - 30;
        for i in 0..n {
            let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let x = match kind {
                0 => rng.sign() * u * pow2(e),
                1 => rng.sign() * 0.0,
                2 => rng.sign() * f32::from_bits(1 + rng.below(0x007f_ffff) as u32),
                3 => rng.sign() * f32::from_bits(0x7f00_0000 + rng.below(0x007f_ffff) as u32),
                4 => rng.sign() * f32::from_bits(0x0080_0000 + rng.below(0x0180_0000) as u32),
                5 if i == 0 => rng.sign() * 1e30,
                5 => rng.sign() * u * 1e-20,
                // The largest value pins the scale to a power of two, under which half-steps of
                // the grid are exact ties.
                6 if i == 0 => format.max_code() * pow2(e),
                6 => rng.sign() * ties[rng.below(ties.len() as u64) as usize] * pow2(e),
                7 => -3.5 * pow2(e),
                _ => rng.sign() * (u - 0.5) * 100.0,
            };
            values.push(x);
        }
    }
    values
}

/// The points halfway between neighbouring code magnitudes, where rounding is a tie.
fn grid_midpoints(format: Quantization) -> Vec<f32> {
    let grid: Vec<f32> = match format {
        Quantization::Int8 => (0..=127).map(|k| k as f32).collect(),
        _ => minifloat_magnitudes(format),
    };
    grid.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
}

// ---------------------------------------------------------------------------------------------
// The reference quantizer, from the definitions in the module documentation.

/// Positive magnitudes of a minifloat, indexed by the code without its sign bit.
fn minifloat_magnitudes(format: Quantization) -> Vec<f32> {
    match format {
        // E4M3FN: bias 7, 3 mantissa bits, subnormal step 2^-9; 0x7f is NaN, so 0..=0x7e.
        Quantization::Fp8 => (0u32..=0x7e)
            .map(|c| {
                let (e, m) = ((c >> 3) as i32, (c & 7) as f32);
                if e == 0 {
                    m * pow2(-9)
                } else {
                    (1.0 + m / 8.0) * pow2(e - 7)
                }
            })
            .collect(),
        Quantization::Fp4 => vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
        Quantization::Int8 => unreachable!("int8 is not a minifloat"),
    }
}

struct Reference {
    format: Quantization,
    magnitudes: Vec<f32>,
}

impl Reference {
    fn new(format: Quantization) -> Self {
        let magnitudes = match format {
            Quantization::Int8 => Vec::new(),
            _ => minifloat_magnitudes(format),
        };
        Self { format, magnitudes }
    }

    /// The largest scale `s` with `s * max_code <= absmax` that does not exceed
    /// `absmax / max_code`.
    fn scale(&self, absmax: f32) -> f32 {
        let max = self.format.max_code();
        let mut s = absmax / max;
        while s > 0.0 && s * max > absmax {
            s = f32::from_bits(s.to_bits() - 1);
        }
        s
    }

    /// The code nearest to `t`, ties to the even code, saturated.
    fn code(&self, t: f32) -> u8 {
        let max = self.format.max_code();
        match self.format {
            Quantization::Int8 => t.clamp(-max, max).round_ties_even() as i8 as u8,
            _ => {
                let a = t.abs().min(max);
                let table = &self.magnitudes;
                // The first magnitude above `a`; its predecessor is at or below it.
                let hi = table.partition_point(|&m| m <= a).min(table.len() - 1);
                let lo = hi.saturating_sub(1);
                let (dlo, dhi) = (a - table[lo], table[hi] - a);
                let c = if table[lo] == a || dlo < dhi || (dlo == dhi && lo % 2 == 0) {
                    lo
                } else {
                    hi
                };
                let sign_bit = if self.format == Quantization::Fp8 {
                    0x80
                } else {
                    0x8
                };
                c as u8 | if t.is_sign_negative() { sign_bit } else { 0 }
            }
        }
    }

    /// The value of a code, NaN for fp8's NaN codes.
    fn value(&self, code: u8) -> f32 {
        match self.format {
            Quantization::Int8 => f32::from(code as i8),
            Quantization::Fp8 => {
                let m = code & 0x7f;
                let v = if m == 0x7f {
                    f32::NAN
                } else {
                    self.magnitudes[usize::from(m)]
                };
                if code & 0x80 != 0 {
                    -v
                } else {
                    v
                }
            }
            Quantization::Fp4 => {
                let v = self.magnitudes[usize::from(code & 7)];
                if code & 8 != 0 {
                    -v
                } else {
                    v
                }
            }
        }
    }

    fn encode(&self, values: &[f32], block: usize) -> Vec<u8> {
        let mut scales = Vec::new();
        let mut codes = Vec::with_capacity(values.len());
        for chunk in values.chunks(block) {
            let absmax = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
            let s = self.scale(absmax);
            scales.extend_from_slice(&s.to_le_bytes());
            codes.extend(
                chunk
                    .iter()
                    .map(|&x| if s > 0.0 { self.code(x / s) } else { 0 }),
            );
        }
        if self.format == Quantization::Fp4 {
            // Element i is nibble i % 2 of byte i / 2, counted over the whole buffer.
            codes = codes
                .chunks(2)
                .map(|pair| pair[0] | (pair.get(1).copied().unwrap_or(0) << 4))
                .collect();
        }
        scales.extend(codes);
        scales
    }

    /// `None` when a scale is not finite and non-negative.
    fn decode(&self, encoded: &[u8], len: usize, block: usize) -> Option<Vec<f32>> {
        let blocks = len.div_ceil(block);
        let (scales, codes) = encoded.split_at(4 * blocks);
        let scales: Vec<f32> = scales
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        if scales.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
            return None;
        }
        Some(
            (0..len)
                .map(|i| {
                    let code = match self.format {
                        Quantization::Fp4 => (codes[i / 2] >> (4 * (i % 2))) & 0xf,
                        _ => codes[i],
                    };
                    self.value(code) * scales[i / block]
                })
                .collect(),
        )
    }
}

/// A shape or value error about `argument`.
fn is_error(result: &Result<(), CoreError>, argument: &str) -> bool {
    matches!(
        result,
        Err(e @ (CoreError::Shape { .. } | CoreError::InvalidValue { .. })) if e.argument() == Some(argument)
    )
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn expected_len(format: Quantization, len: usize, block: usize) -> usize {
    let codes = match format {
        Quantization::Fp4 => len.div_ceil(2),
        _ => len,
    };
    4 * len.div_ceil(block) + codes
}

/// Encode, compare with the reference byte for byte, decode, compare value for value, and
/// check the documented bound on every element.
fn check_round_trip(
    format: Quantization,
    values: &[f32],
    block: usize,
) -> Result<(), TestCaseError> {
    let reference = Reference::new(format);
    let len = values.len();
    let encoded_len = format.encoded_len(len, block);
    prop_assert_eq!(encoded_len, expected_len(format, len, block));
    let mut encoded = vec![0xa5u8; encoded_len];
    format
        .encode(values, block, &mut encoded, "values")
        .unwrap();
    let want = reference.encode(values, block);
    if encoded != want {
        let at = encoded.iter().zip(&want).position(|(a, b)| a != b).unwrap();
        return Err(TestCaseError::fail(format!(
            "{format:?} len {len} block {block}: byte {at} is {:#x}, the reference has {:#x}",
            encoded[at], want[at]
        )));
    }
    let mut decoded = vec![f32::NAN; len];
    format.decode(&encoded, block, &mut decoded).unwrap();
    let want = reference.decode(&encoded, len, block).unwrap();
    for i in 0..len {
        prop_assert!(
            same(decoded[i], want[i]),
            "{:?} len {} block {}: element {} decoded to {:e}, the reference to {:e}",
            format,
            len,
            block,
            i,
            decoded[i],
            want[i]
        );
    }
    for (b, chunk) in values.chunks(block).enumerate() {
        let absmax = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (i, &x) in chunk.iter().enumerate() {
            let d = decoded[b * block + i];
            prop_assert!(d.is_finite() && d.abs() <= absmax);
            let (err, bound) = ((d - x).abs(), format.error_bound(x, absmax));
            prop_assert!(
                err <= bound,
                "{:?} block {} element {}: {:e} decoded to {:e}, error {:e} above the bound {:e}",
                format,
                block,
                b * block + i,
                x,
                d,
                err,
                bound
            );
        }
    }
    // One byte more or less is a shape error on either side, never a panic.
    for wrong in [encoded_len.wrapping_sub(1), encoded_len + 1] {
        if wrong == usize::MAX {
            continue;
        }
        let mut out = vec![0u8; wrong];
        let refused = format.encode(values, block, &mut out, "values");
        prop_assert!(is_error(&refused, "out"), "{:?}", refused);
        let mut back = vec![0f32; len];
        let refused = format.decode(&out, block, &mut back);
        prop_assert!(is_error(&refused, "encoded"), "{:?}", refused);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn encoding_matches_the_reference_across_block_edges(
        (block, len) in block_and_len(),
        format in format(),
        seed in any::<u64>(),
    ) {
        let values = awkward_values(len, block, format, seed);
        check_round_trip(format, &values, block)?;
    }

    /// The first NaN or infinity is reported by its index in the whole buffer, wherever it
    /// falls relative to the blocks, and nothing panics.
    #[test]
    fn non_finite_values_are_rejected_with_their_index(
        (block, len) in block_and_len().prop_filter("not empty", |(_, len)| *len > 0),
        format in format(),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
        more in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut values = awkward_values(len, block, format, seed);
        let at = at.index(len);
        values[at] = bad;
        if more {
            // Further non-finite values after the first do not change what is reported.
            for v in values[at..].iter_mut().step_by(3) {
                *v = -bad;
            }
            values[at] = bad;
        }
        let mut out = vec![0u8; format.encoded_len(len, block)];
        match format.encode(&values, block, &mut out, "gradients") {
            Err(CoreError::NonFinite { argument, message }) => {
                prop_assert_eq!(argument, "gradients");
                prop_assert!(message.ends_with(&format!("got {bad} at index {at}")), "{}", message);
            }
            other => return Err(TestCaseError::fail(format!("expected NonFinite, got {other:?}"))),
        }
    }

    /// Any bytes of the right length decode exactly like the reference reads them (NaN codes
    /// and int8's -128 included) or are refused for their scales; none panic.
    #[test]
    fn any_bytes_decode_like_the_reference_or_are_refused(
        (block, len) in block_and_len(),
        format in format(),
        seed in any::<u64>(),
        corrupt_scale in any::<bool>(),
        op in proptest::sample::select(ReduceOp::ALL.to_vec()),
    ) {
        let mut rng = Rng(seed);
        let mut encoded: Vec<u8> = (0..format.encoded_len(len, block)).map(|_| rng.next() as u8).collect();
        let blocks = len.div_ceil(block);
        // Random scale bytes are mostly NaN, huge or negative; make them valid unless asked.
        for b in 0..blocks {
            let s = if corrupt_scale && rng.below(blocks as u64) == 0 {
                [f32::NAN, f32::INFINITY, -1.0, -0.0][rng.below(4) as usize]
            } else {
                f32::from_bits(rng.next() as u32 & 0x7f7f_ffff)
            };
            encoded[4 * b..4 * b + 4].copy_from_slice(&s.to_le_bytes());
        }
        let reference = Reference::new(format).decode(&encoded, len, block);
        let mut decoded = vec![0f32; len];
        let result = format.decode(&encoded, block, &mut decoded);
        let mut reduced = vec![1f32; len];
        let fused = format.decode_reduce(&encoded, block, op, &mut reduced);
        match reference {
            None => {
                prop_assert!(is_error(&result, "encoded"), "{:?}", result);
                prop_assert!(is_error(&fused, "encoded"), "{:?}", fused);
            }
            Some(want) => {
                prop_assert!(result.is_ok() && fused.is_ok());
                for i in 0..len {
                    prop_assert!(same(decoded[i], want[i]), "element {}: {:e} vs {:e}", i, decoded[i], want[i]);
                    let combined = match op {
                        ReduceOp::Sum | ReduceOp::Avg => 1.0 + want[i],
                        ReduceOp::Max => if want[i] > 1.0 || want[i].is_nan() { want[i] } else { 1.0 },
                        ReduceOp::Min => if want[i] < 1.0 || want[i].is_nan() { want[i] } else { 1.0 },
                    };
                    prop_assert!(same(reduced[i], combined), "{:?} element {}", op, i);
                }
            }
        }
    }

    /// The length formula for any arguments, including ones no buffer can have: it must not
    /// overflow (it did, under overflow checks, for lengths near `usize::MAX`).
    #[test]
    fn encoded_len_follows_the_formula_for_any_arguments(
        len in prop_oneof![0usize..1_000_000, any::<usize>(), (usize::MAX - 8)..=usize::MAX],
        block in prop_oneof![0usize..300, any::<usize>()],
        format in format(),
    ) {
        let blocks = len.div_ceil(block.max(1)) as u128;
        let codes = match format {
            Quantization::Fp4 => len.div_ceil(2) as u128,
            _ => len as u128,
        };
        let exact = 4 * blocks + codes;
        let got = format.encoded_len(len, block);
        prop_assert_eq!(got as u128, exact.min(usize::MAX as u128));
        let ratio = format.wire_ratio(len, block);
        prop_assert!(ratio.is_finite() && ratio > 0.0);
    }
}

#[test]
fn encoded_len_saturates_instead_of_overflowing() {
    for format in Quantization::ALL {
        assert_eq!(format.encoded_len(usize::MAX, 1), usize::MAX);
        assert_eq!(format.encoded_len(usize::MAX / 4 + 1, 0), usize::MAX);
        // A saturated length matches no real buffer, so encoding is refused, not attempted.
        let mut out = [0u8; 8];
        assert!(format.encode(&[1.0], 1, &mut out, "values").is_err());
    }
}

/// Every length from 0 to three blocks and a bit, for every block up to 9 and every format:
/// the small cases exhaustively, where partial blocks and odd fp4 starts are densest.
#[test]
fn every_small_length_and_block_matches_the_reference() {
    for format in Quantization::ALL {
        for block in 1..=9 {
            for len in 0..=3 * block + 3 {
                for seed in 0..3 {
                    let values = awkward_values(len, block, format, seed * 1000 + len as u64);
                    check_round_trip(format, &values, block).unwrap();
                }
            }
        }
    }
}

/// Blocks of one magnitude each, from the smallest subnormal to the largest finite value:
/// the scale underflows to zero, is itself subnormal, or sits next to `f32::MAX`, and the
/// round trip stays within the bound and never overflows.
#[test]
fn every_binade_round_trips_within_the_bound() {
    let mut values = Vec::new();
    for bits_exponent in 0u32..=254 {
        for mantissa in [0u32, 1, 0x40_0000, 0x7f_ffff] {
            let x = f32::from_bits((bits_exponent << 23) | mantissa);
            values.extend([x, -x * 0.75, x * 0.5, -x * 0.25]);
        }
    }
    for format in Quantization::ALL {
        for block in [1, 2, 3, 4, 16, 17] {
            check_round_trip(format, &values, block).unwrap();
        }
    }
}
