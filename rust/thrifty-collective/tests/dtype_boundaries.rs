//! Element-type conversions and half-precision reductions at their numeric boundaries (the
//! largest finite value, the smallest subnormal, every rounding tie) and at lengths that
//! straddle the 8-lane vectors and the 256-element tiles the kernels work in, against
//! references written from the IEEE definitions.

use half::{bf16, f16};
use proptest::prelude::*;
use thrifty_collective::convert::{from_f32, to_f32};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::reduce::{finalize_avg, reduce_bytes};
use thrifty_core::CoreError;

const MAX_LEN: usize = 100_003;

/// Lengths within two of a multiple of 8 (a vector) or 256 (a tile), up to past 10^5.
fn straddling_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(8usize), Just(256)].prop_flat_map(|unit| {
        let top = MAX_LEN / unit;
        (prop_oneof![0usize..=4, 0..=top, Just(top)], -2isize..=2)
            .prop_map(move |(m, d)| (unit * m).saturating_add_signed(d))
    })
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn pow2(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
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

// ---------------------------------------------------------------------------------------------
// References.

/// A binary16-like format: `man` mantissa bits, exponent bias `bias`; the positive finite
/// magnitudes in code order, then the value the next code would have with an unbounded
/// exponent, standing for infinity (so that rounding past the largest value, ties included,
/// lands on it exactly as IEEE overflow does).
struct Half {
    magnitudes: Vec<f64>,
}

impl Half {
    fn new(man: u32, bias: i32, infinity_code: u32) -> Self {
        let magnitudes = (0..=infinity_code)
            .map(|c| {
                let (e, m) = ((c >> man) as i32, f64::from(c & ((1 << man) - 1)));
                if e == 0 {
                    m * pow2(1 - bias - man as i32)
                } else {
                    (pow2(man as i32) + m) * pow2(e - bias - man as i32)
                }
            })
            .collect();
        Self { magnitudes }
    }

    fn f16() -> Self {
        Self::new(10, 15, 0x7c00)
    }

    fn bf16() -> Self {
        Self::new(7, 127, 0x7f80)
    }

    /// The bits nearest to `x`, ties to the even code; `None` for NaN.
    fn narrow(&self, x: f32) -> Option<u16> {
        if x.is_nan() {
            return None;
        }
        let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = f64::from(x.abs());
        let table = &self.magnitudes;
        let infinity = table.len() - 1;
        if a >= table[infinity] {
            return Some(sign | infinity as u16);
        }
        let hi = table.partition_point(|&m| m <= a);
        let lo = hi - 1;
        let (dlo, dhi) = (a - table[lo], table[hi] - a);
        let code = if dlo < dhi || (dlo == dhi && lo % 2 == 0) {
            lo
        } else {
            hi
        };
        Some(sign | code as u16)
    }

    /// The exact value of `bits`, `None` for NaN.
    fn widen(&self, bits: u16) -> Option<f32> {
        let magnitude = usize::from(bits & 0x7fff);
        let infinity = self.magnitudes.len() - 1;
        let v = match magnitude.cmp(&infinity) {
            std::cmp::Ordering::Less => self.magnitudes[magnitude] as f32,
            std::cmp::Ordering::Equal => f32::INFINITY,
            std::cmp::Ordering::Greater => return None,
        };
        Some(if bits & 0x8000 != 0 { -v } else { v })
    }

    /// Every boundary of the format as an f32: each code's value, the midpoints between
    /// neighbours (exact in f32) and the floats just either side of each, both signs.
    fn boundaries(&self) -> Vec<f32> {
        let table = &self.magnitudes;
        let mut points = Vec::new();
        for c in 0..table.len() - 1 {
            let mid = ((table[c] + table[c + 1]) / 2.0) as f32;
            let value = table[c] as f32;
            for p in [value, mid] {
                points.extend([p, next_up(p), next_down(p)]);
            }
        }
        points.extend([
            f32::MAX,
            f32::INFINITY,
            f32::from_bits(1),
            f32::MIN_POSITIVE,
        ]);
        let negated: Vec<f32> = points.iter().map(|p| -p).collect();
        points.extend(negated);
        points.push(f32::NAN);
        points
    }
}

/// f64 to f32 by the definition: scale to the f32 ulp of the binade (or of the subnormals),
/// round the scaled value to an integer, ties to even, scale back, overflow to infinity.
fn f64_to_f32(x: f64) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    let sign = if x.is_sign_negative() { -1.0f32 } else { 1.0 };
    let a = x.abs();
    if a == f64::INFINITY {
        return sign * f32::INFINITY;
    }
    let exponent = if a >= f64::MIN_POSITIVE {
        ((a.to_bits() >> 52) as i32) - 1023
    } else {
        -1023
    };
    let ulp = exponent.max(-126) - 23;
    let m = (a * pow2(-ulp)).round_ties_even();
    let v = m * pow2(ulp);
    if v >= pow2(128) {
        return sign * f32::INFINITY;
    }
    // `v` is an f32 value now, so this conversion is exact.
    sign * v as f32
}

/// An integer to f32: keep the 24 leading bits, round the rest to nearest, ties to even.
fn int_to_f32(v: i128) -> f32 {
    let sign = if v < 0 { -1.0f32 } else { 1.0 };
    let a = v.unsigned_abs();
    let bits = 128 - a.leading_zeros();
    if bits <= 24 {
        return sign * a as f32;
    }
    let shift = bits - 24;
    let (mut m, rest, half) = (a >> shift, a & ((1 << shift) - 1), 1u128 << (shift - 1));
    if rest > half || (rest == half && m & 1 == 1) {
        m += 1;
    }
    sign * m as f32 * pow2(shift as i32) as f32
}

/// f32 to an integer type with Rust's `as`: toward zero, saturating, NaN to 0.
fn f32_to_int(x: f32, min: i128, max: i128) -> i128 {
    if x.is_nan() {
        return 0;
    }
    let t = f64::from(x).trunc();
    if t <= min as f64 {
        min
    } else if t >= max as f64 {
        max
    } else {
        t as i128
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn narrow_bits(dtype: DType, values: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; values.len()];
    from_f32(dtype, values, bytemuck::cast_slice_mut(&mut out)).unwrap();
    out
}

fn widen_bits(dtype: DType, bits: &[u16]) -> Vec<f32> {
    let mut out = vec![0f32; bits.len()];
    to_f32(dtype, bytemuck::cast_slice(bits), &mut out).unwrap();
    out
}

fn check_narrowing(dtype: DType, reference: &Half, values: &[f32]) -> Result<(), String> {
    let got = narrow_bits(dtype, values);
    for (i, (&x, &bits)) in values.iter().zip(&got).enumerate() {
        let ok = match reference.narrow(x) {
            None => reference.widen(bits).is_none(),
            Some(want) => bits == want,
        };
        if !ok {
            return Err(format!(
                "{dtype:?} element {i} of {}: {x:e} ({:#010x}) narrowed to {bits:#06x}, the \
                 reference gives {:?}",
                values.len(),
                x.to_bits(),
                reference.narrow(x).map(|b| format!("{b:#06x}"))
            ));
        }
    }
    Ok(())
}

#[test]
fn narrowing_to_half_rounds_like_the_reference_at_every_boundary() {
    for (dtype, reference) in [(DType::F16, Half::f16()), (DType::BF16, Half::bf16())] {
        let points = reference.boundaries();
        check_narrowing(dtype, &reference, &points).unwrap();
    }
    // The cases by name: the largest finite value, the overflow tie, the smallest subnormal
    // and the tie below it.
    let tiny = pow2(-24) as f32;
    let f16_cases = [
        (65504.0f32, 0x7bff_u16),
        (next_down(65520.0), 0x7bff),
        (65520.0, 0x7c00),
        (tiny, 0x0001),
        (tiny / 2.0, 0x0000),
        (next_up(tiny / 2.0), 0x0001),
        (-1.5 * tiny, 0x8002),
        (2.5 * tiny, 0x0002),
    ];
    for (x, bits) in f16_cases {
        assert_eq!(narrow_bits(DType::F16, &[x]), [bits], "{x:e}");
    }
    let bf16_cases = [
        (f32::MAX, 0x7f80_u16),
        (f32::from_bits(0x7f7f_7fff), 0x7f7f),
        (f32::from_bits(0x7f7f_8000), 0x7f80),
        (f32::from_bits(0x0000_8000), 0x0000),
        (f32::from_bits(0x0001_8000), 0x0002),
        (f32::from_bits(0x0000_8001), 0x0001),
    ];
    for (x, bits) in bf16_cases {
        assert_eq!(narrow_bits(DType::BF16, &[x]), [bits], "{x:e}");
    }
}

#[test]
fn widening_every_half_is_exact() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for (dtype, reference) in [(DType::F16, Half::f16()), (DType::BF16, Half::bf16())] {
        let wide = widen_bits(dtype, &all);
        for (&bits, &w) in all.iter().zip(&wide) {
            match reference.widen(bits) {
                None => assert!(w.is_nan(), "{dtype:?} {bits:#06x}"),
                Some(v) => assert_eq!(w.to_bits(), v.to_bits(), "{dtype:?} {bits:#06x}"),
            }
        }
    }
}

/// f64 values at the f32 boundaries: the largest finite value and the overflow tie above it,
/// the smallest subnormal and the ties around it, and the midpoint between random
/// neighbouring floats with the f64 values just either side of it.
fn f64_boundaries(rng: &mut Rng, count: usize) -> Vec<f64> {
    let max = f64::from(f32::MAX);
    let half_ulp_max = pow2(103);
    let tiny = pow2(-149);
    let mut points = vec![
        max,
        max + half_ulp_max,
        f64::from_bits((max + half_ulp_max).to_bits() - 1),
        f64::MAX,
        tiny,
        tiny / 2.0,
        f64::from_bits((tiny / 2.0).to_bits() + 1),
        tiny * 1.5,
        tiny * 2.5,
        f64::from(f32::MIN_POSITIVE) - tiny / 2.0,
        f64::from_bits(1),
        0.0,
        f64::INFINITY,
        f64::NAN,
    ];
    for _ in 0..count {
        let x = f32::from_bits(rng.next() as u32 & 0x7f7f_ffff);
        let mid = (f64::from(x) + f64::from(next_up(x))) / 2.0;
        points.extend([
            mid,
            f64::from_bits(mid.to_bits() + 1),
            f64::from_bits(mid.to_bits() - 1),
            f64::from(x),
        ]);
    }
    let negated: Vec<f64> = points.iter().map(|p| -p).collect();
    points.extend(negated);
    points
}

/// Integers at the f32 boundaries: 2^24 and every tie above it, each type's extremes.
fn integer_boundaries(rng: &mut Rng, count: usize) -> Vec<i64> {
    let mut points = vec![i64::MAX, i64::MIN, i64::MIN + 1, 0, 1, -1];
    for shift in 24..63 {
        let p = 1i64 << shift;
        // The integers around 2^shift, and the tie between two floats just above it.
        let tie = p + (1i64 << (shift - 23)) / 2;
        points.extend([
            p - 1,
            p,
            p + 1,
            tie,
            tie - 1,
            tie + 1,
            tie + (1 << (shift - 23)),
        ]);
    }
    points.extend([
        i64::from(i32::MAX),
        i64::from(i32::MIN),
        i64::from(i32::MAX) - 64,
    ]);
    points.extend((0..count).map(|_| (rng.next() as i64) >> (rng.next() % 40)));
    let negated: Vec<i64> = points.iter().map(|p| p.wrapping_neg()).collect();
    points.extend(negated);
    points
}

/// f32 values at the integer boundaries: ±2^31 and ±2^63 with their neighbours, fractions
/// just below one, the extremes and NaN.
fn float_to_int_boundaries(rng: &mut Rng, count: usize) -> Vec<f32> {
    let mut points = vec![
        f32::NAN,
        f32::INFINITY,
        f32::MAX,
        f32::from_bits(1),
        0.5,
        0.999_999_94,
        1.0,
    ];
    for p in [2f32.powi(31), 2f32.powi(63), 2f32.powi(24)] {
        points.extend([p, next_up(p), next_down(p)]);
    }
    points.extend((0..count).map(|_| f32::from_bits(rng.next() as u32)));
    let negated: Vec<f32> = points.iter().map(|p| -p).collect();
    points.extend(negated);
    points
}

fn check_wide_conversions(values: &[f64], ints: &[i64], floats: &[f32]) -> Result<(), String> {
    let mut out = vec![0f32; values.len()];
    to_f32(DType::F64, bytemuck::cast_slice(values), &mut out).unwrap();
    for (&x, &got) in values.iter().zip(&out) {
        if !same(got, f64_to_f32(x)) {
            return Err(format!(
                "f64 {x:e} narrowed to {got:e}, want {:e}",
                f64_to_f32(x)
            ));
        }
    }
    let mut out = vec![0f32; ints.len()];
    to_f32(DType::I64, bytemuck::cast_slice(ints), &mut out).unwrap();
    for (&v, &got) in ints.iter().zip(&out) {
        if !same(got, int_to_f32(i128::from(v))) {
            return Err(format!("i64 {v} became {got:e}"));
        }
    }
    let ints32: Vec<i32> = ints.iter().map(|&v| v as i32).collect();
    to_f32(DType::I32, bytemuck::cast_slice(&ints32), &mut out).unwrap();
    for (&v, &got) in ints32.iter().zip(&out) {
        if !same(got, int_to_f32(i128::from(v))) {
            return Err(format!("i32 {v} became {got:e}"));
        }
    }
    let mut longs = vec![0i64; floats.len()];
    from_f32(DType::I64, floats, bytemuck::cast_slice_mut(&mut longs)).unwrap();
    let mut words = vec![0i32; floats.len()];
    from_f32(DType::I32, floats, bytemuck::cast_slice_mut(&mut words)).unwrap();
    let mut doubles = vec![0f64; floats.len()];
    from_f32(DType::F64, floats, bytemuck::cast_slice_mut(&mut doubles)).unwrap();
    for (i, &x) in floats.iter().enumerate() {
        let want64 = f32_to_int(x, i128::from(i64::MIN), i128::from(i64::MAX));
        let want32 = f32_to_int(x, i128::from(i32::MIN), i128::from(i32::MAX));
        if i128::from(longs[i]) != want64 || i128::from(words[i]) != want32 {
            return Err(format!("{x:e} became {} / {}", longs[i], words[i]));
        }
        let exact = f64::from(x);
        if doubles[i].to_bits() != exact.to_bits() && !(x.is_nan() && doubles[i].is_nan()) {
            return Err(format!("{x:e} widened to {:e}", doubles[i]));
        }
    }
    Ok(())
}

#[test]
fn wide_and_integer_conversions_round_like_the_reference_at_every_boundary() {
    let mut rng = Rng(5);
    check_wide_conversions(
        &f64_boundaries(&mut rng, 20_000),
        &integer_boundaries(&mut rng, 20_000),
        &float_to_int_boundaries(&mut rng, 20_000),
    )
    .unwrap();
    // By name: the overflow tie of f64 -> f32, and the ties of i64 -> f32.
    let mut out = [0f32; 3];
    let doubles = [
        f64::from(f32::MAX) + pow2(103),
        pow2(-150),
        3.0 * pow2(-150),
    ];
    to_f32(DType::F64, bytemuck::cast_slice(&doubles), &mut out).unwrap();
    assert_eq!(out, [f32::INFINITY, 0.0, 2.0 * pow2(-149) as f32]);
    let longs = [(1i64 << 24) + 1, (1i64 << 24) + 3, i64::MAX];
    to_f32(DType::I64, bytemuck::cast_slice(&longs), &mut out).unwrap();
    assert_eq!(out, [16_777_216.0, 16_777_220.0, 9.223_372e18]);
}

/// Reductions of two half-precision buffers: widen exactly, combine in f32, round once.
fn half_reference(reference: &Half, op: ReduceOp, d: u16, s: u16) -> Option<u16> {
    let (a, b) = (reference.widen(d), reference.widen(s));
    let (a, b) = (a.unwrap_or(f32::NAN), b.unwrap_or(f32::NAN));
    let r = match op {
        ReduceOp::Sum | ReduceOp::Avg => a + b,
        ReduceOp::Max => {
            if b > a || b.is_nan() {
                b
            } else {
                a
            }
        }
        ReduceOp::Min => {
            if b < a || b.is_nan() {
                b
            } else {
                a
            }
        }
    };
    reference.narrow(r)
}

fn check_half_reduction(
    dtype: DType,
    op: ReduceOp,
    dst: &[u16],
    src: &[u16],
) -> Result<(), TestCaseError> {
    let reference = if dtype == DType::F16 {
        Half::f16()
    } else {
        Half::bf16()
    };
    let mut got = dst.to_vec();
    reduce_bytes(
        dtype,
        op,
        bytemuck::cast_slice_mut(&mut got),
        bytemuck::cast_slice(src),
    )
    .unwrap();
    for i in 0..dst.len() {
        let ok = match half_reference(&reference, op, dst[i], src[i]) {
            None => reference.widen(got[i]).is_none(),
            Some(want) => got[i] == want,
        };
        prop_assert!(
            ok,
            "{:?} {:?} element {} of {}: {:#06x} with {:#06x} gave {:#06x}",
            dtype,
            op,
            i,
            dst.len(),
            dst[i],
            src[i],
            got[i]
        );
    }
    Ok(())
}

/// Half-precision bits: mostly ordinary values, with the format's extremes, ties, NaNs and
/// infinities mixed in.
fn half_bits(rng: &mut Rng, dtype: DType) -> u16 {
    let specials: &[u16] = if dtype == DType::F16 {
        &[
            0x7bff, 0xfbff, 0x0001, 0x8001, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x0000, 0x8000, 0x3c00,
        ]
    } else {
        &[
            0x7f7f, 0xff7f, 0x0001, 0x8001, 0x0080, 0x7f80, 0xff80, 0x7fc0, 0x0000, 0x8000, 0x3f80,
        ]
    };
    let r = rng.next();
    if r.is_multiple_of(8) {
        rng.pick(specials)
    } else {
        (r >> 16) as u16
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Boundary values at random places (the last element included) of buffers whose length
    /// leaves a vector tail or a partial tile: every element rounds like the reference.
    #[test]
    fn conversions_round_like_the_reference_at_every_length(
        len in straddling_len(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        for (dtype, reference) in [(DType::F16, Half::f16()), (DType::BF16, Half::bf16())] {
            let boundaries = reference.boundaries();
            let mut values: Vec<f32> = (0..len)
                .map(|_| if rng.next().is_multiple_of(4) { rng.pick(&boundaries) } else { f32::from_bits(rng.next() as u32) })
                .collect();
            if let Some(last) = values.last_mut() {
                *last = rng.pick(&boundaries);
            }
            check_narrowing(dtype, &reference, &values).map_err(TestCaseError::fail)?;
            let bits: Vec<u16> = (0..len).map(|_| rng.next() as u16).collect();
            let wide = widen_bits(dtype, &bits);
            for (&b, &w) in bits.iter().zip(&wide) {
                match reference.widen(b) {
                    None => prop_assert!(w.is_nan()),
                    Some(v) => prop_assert_eq!(w.to_bits(), v.to_bits()),
                }
            }
        }
        let doubles = f64_boundaries(&mut rng, len / 8);
        let ints = integer_boundaries(&mut rng, len / 8);
        let floats = float_to_int_boundaries(&mut rng, len / 8);
        let cut = |n: usize| n.min(len);
        check_wide_conversions(
            &doubles[..cut(doubles.len())],
            &ints[..cut(ints.len())],
            &floats[..cut(floats.len())],
        )
        .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn half_reductions_round_once_at_every_length(
        len in straddling_len(),
        dtype in prop_oneof![Just(DType::F16), Just(DType::BF16)],
        op in proptest::sample::select(ReduceOp::ALL.to_vec()),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let dst: Vec<u16> = (0..len).map(|_| half_bits(&mut rng, dtype)).collect();
        let src: Vec<u16> = (0..len).map(|_| half_bits(&mut rng, dtype)).collect();
        check_half_reduction(dtype, op, &dst, &src)?;
    }

    /// The mean divides each element once in f32 and rounds once, tile tails included.
    #[test]
    fn half_means_round_once_at_every_length(
        len in straddling_len(),
        dtype in prop_oneof![Just(DType::F16), Just(DType::BF16)],
        n in 1usize..9,
        seed in any::<u64>(),
    ) {
        let reference = if dtype == DType::F16 { Half::f16() } else { Half::bf16() };
        let mut rng = Rng(seed);
        let bits: Vec<u16> = (0..len).map(|_| half_bits(&mut rng, dtype)).collect();
        let mut got = bits.clone();
        finalize_avg(dtype, bytemuck::cast_slice_mut(&mut got), n).unwrap();
        for i in 0..len {
            let want = reference.narrow(reference.widen(bits[i]).unwrap_or(f32::NAN) / n as f32);
            match want {
                None => prop_assert!(reference.widen(got[i]).is_none()),
                Some(w) => prop_assert_eq!(got[i], w, "element {} of {}", i, len),
            }
        }
    }

    /// Wrong lengths and misaligned buffers are errors naming the data, never panics.
    #[test]
    fn conversions_refuse_bad_layouts(
        dtype in proptest::sample::select(DType::ALL.to_vec()),
        bytes in 0usize..80,
        offset in 0usize..8,
        elements in 0usize..20,
    ) {
        let mut words = vec![0u64; 12];
        let buffer: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let raw = &mut buffer[offset..offset + bytes];
        let mut values = vec![0f32; elements];
        let fits = bytes == elements * dtype.size() && (bytes == 0 || offset % dtype.size() == 0);
        let widened = to_f32(dtype, raw, &mut values);
        prop_assert_eq!(widened.is_ok(), fits, "{:?}", widened);
        if let Err(e) = widened {
            let kind_ok = matches!(e, CoreError::Shape { .. } | CoreError::InvalidValue { .. });
            prop_assert!(kind_ok, "{:?}", e);
            prop_assert_eq!(e.argument(), Some("data"));
        }
        let narrowed = from_f32(dtype, &values, raw);
        prop_assert_eq!(narrowed.is_ok(), fits, "{:?}", narrowed);
    }
}

#[test]
fn half_types_agree_with_the_half_crate_on_the_boundaries() {
    // A cross-check of the reference itself against an independent implementation.
    let f = Half::f16();
    let b = Half::bf16();
    for x in f.boundaries() {
        match f.narrow(x) {
            None => assert!(f16::from_f32(x).is_nan()),
            Some(bits) => assert_eq!(bits, f16::from_f32(x).to_bits(), "{x:e}"),
        }
    }
    for x in b.boundaries() {
        match b.narrow(x) {
            None => assert!(bf16::from_f32(x).is_nan()),
            Some(bits) => assert_eq!(bits, bf16::from_f32(x).to_bits(), "{x:e}"),
        }
    }
}
