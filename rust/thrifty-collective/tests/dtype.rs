//! Element types and reductions against straightforward scalar references, at lengths that
//! leave SIMD tails, with the NumPy semantics pinned by values NumPy itself produced.

use half::{bf16, f16};
use proptest::prelude::*;
use thrifty_collective::convert::{from_f32, to_f32};
use thrifty_collective::dtype::{DType, ReduceOp};
use thrifty_collective::reduce::{finalize_avg, reduce_bytes, reduce_f32};
use thrifty_core::{Choice, CoreError};

const LENGTHS: [usize; 6] = [0, 1, 7, 33, 1000, 4099];

/// A small deterministic generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Floats mixing the awkward cases (NaN, ±0, ±inf, subnormals, equal pairs) with ordinary
/// values of several magnitudes.
fn awkward_f64(rng: &mut XorShift) -> f64 {
    const SPECIAL: [f64; 9] = [
        f64::NAN,
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1.0,
        -1.0,
        1e-310,
        f64::MAX,
    ];
    let r = rng.next();
    if r.is_multiple_of(8) {
        SPECIAL[(r >> 8) as usize % SPECIAL.len()]
    } else {
        let u = (r >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        u * 2f64.powi(((r >> 3) % 40) as i32 - 20)
    }
}

/// One element as its f64 value (for floats) or i64 value (for integers), read and written
/// as native-endian bytes.
trait Scalar: Copy + bytemuck::Pod + std::fmt::Debug {
    const DTYPE: DType;
    fn random(rng: &mut XorShift) -> Self;
    /// The reference op, written the obvious way.
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self;
    /// Equal bits, or both NaN.
    fn same(a: Self, b: Self) -> bool;
}

fn float_max<T: PartialOrd + Copy>(a: T, b: T, nan: impl Fn(T) -> bool) -> T {
    if nan(a) {
        a
    } else if nan(b) {
        b
    } else if a >= b {
        a
    } else {
        b
    }
}

fn float_min<T: PartialOrd + Copy>(a: T, b: T, nan: impl Fn(T) -> bool) -> T {
    if nan(a) {
        a
    } else if nan(b) {
        b
    } else if a <= b {
        a
    } else {
        b
    }
}

impl Scalar for f32 {
    const DTYPE: DType = DType::F32;
    fn random(rng: &mut XorShift) -> Self {
        awkward_f64(rng) as f32
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg => a + b,
            ReduceOp::Max => float_max(a, b, f32::is_nan),
            ReduceOp::Min => float_min(a, b, f32::is_nan),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

impl Scalar for f64 {
    const DTYPE: DType = DType::F64;
    fn random(rng: &mut XorShift) -> Self {
        awkward_f64(rng)
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg => a + b,
            ReduceOp::Max => float_max(a, b, f64::is_nan),
            ReduceOp::Min => float_min(a, b, f64::is_nan),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

impl Scalar for f16 {
    const DTYPE: DType = DType::F16;
    fn random(rng: &mut XorShift) -> Self {
        f16::from_f64(awkward_f64(rng) * 1e3)
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            // NumPy's float16 add: in f32, rounded once.
            ReduceOp::Sum | ReduceOp::Avg => f16::from_f32(a.to_f32() + b.to_f32()),
            ReduceOp::Max => float_max(a, b, f16::is_nan),
            ReduceOp::Min => float_min(a, b, f16::is_nan),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

impl Scalar for bf16 {
    const DTYPE: DType = DType::BF16;
    fn random(rng: &mut XorShift) -> Self {
        bf16::from_f64(awkward_f64(rng))
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg => bf16::from_f32(a.to_f32() + b.to_f32()),
            ReduceOp::Max => float_max(a, b, bf16::is_nan),
            ReduceOp::Min => float_min(a, b, bf16::is_nan),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

impl Scalar for i32 {
    const DTYPE: DType = DType::I32;
    fn random(rng: &mut XorShift) -> Self {
        let r = rng.next();
        match r % 6 {
            0 => [i32::MAX, i32::MIN, 0, -1][(r >> 8) as usize % 4],
            1 => (r >> 32) as i32,
            _ => (r >> 40) as i32 % 1000,
        }
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg => a.wrapping_add(b),
            ReduceOp::Max => a.max(b),
            ReduceOp::Min => a.min(b),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        a == b
    }
}

impl Scalar for i64 {
    const DTYPE: DType = DType::I64;
    fn random(rng: &mut XorShift) -> Self {
        let r = rng.next();
        match r % 6 {
            0 => [i64::MAX, i64::MIN, 0, -1][(r >> 8) as usize % 4],
            1 => r as i64,
            _ => (r >> 40) as i64 % 1000 - 500,
        }
    }
    fn reference(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg => a.wrapping_add(b),
            ReduceOp::Max => a.max(b),
            ReduceOp::Min => a.min(b),
        }
    }
    fn same(a: Self, b: Self) -> bool {
        a == b
    }
}

fn random_vec<T: Scalar>(rng: &mut XorShift, len: usize) -> Vec<T> {
    (0..len).map(|_| T::random(rng)).collect()
}

fn check_against_reference<T: Scalar>(seed: u64) {
    let mut rng = XorShift(seed);
    for len in LENGTHS {
        for op in ReduceOp::ALL {
            let mut dst: Vec<T> = random_vec(&mut rng, len);
            let mut src: Vec<T> = random_vec(&mut rng, len);
            // Some equal pairs, so ties (and ±0 against ∓0) are exercised in every position.
            for i in (0..len).step_by(5) {
                src[i] = dst[i];
            }
            let expected: Vec<T> = dst
                .iter()
                .zip(&src)
                .map(|(&a, &b)| T::reference(op, a, b))
                .collect();
            reduce_bytes(
                T::DTYPE,
                op,
                bytemuck::cast_slice_mut(&mut dst),
                bytemuck::cast_slice(&src),
            )
            .unwrap();
            for (i, (got, want)) in dst.iter().zip(&expected).enumerate() {
                assert!(
                    T::same(*got, *want),
                    "{:?} {op:?} len {len} index {i}: got {got:?}, want {want:?}",
                    T::DTYPE
                );
            }
        }
    }
}

#[test]
fn every_dtype_and_op_matches_the_scalar_reference() {
    check_against_reference::<f32>(1);
    check_against_reference::<f64>(2);
    check_against_reference::<f16>(3);
    check_against_reference::<bf16>(4);
    check_against_reference::<i32>(5);
    check_against_reference::<i64>(6);
}

fn reduce<T: Scalar>(op: ReduceOp, dst: &[T], src: &[T]) -> Vec<T> {
    let mut out = dst.to_vec();
    reduce_bytes(
        T::DTYPE,
        op,
        bytemuck::cast_slice_mut(&mut out),
        bytemuck::cast_slice(src),
    )
    .unwrap();
    out
}

#[test]
fn float16_sums_round_once_like_numpy() {
    // (a, b, bits of np.float16(a) + np.float16(b)), produced by NumPy 2.4.
    let cases: [(f32, f32, u16); 9] = [
        (1.0, 2f32.powi(-11), 0x3c00), // a tie, to even: stays 1
        (1.0, 3.0 * 2f32.powi(-11), 0x3c02),
        (2048.0, 1.0, 0x6800), // below half an ulp
        (2048.0, 3.0, 0x6802),
        (65504.0, 16.0, 0x7c00), // a tie above the largest finite: to even, which is inf
        (0.1, 0.2, 0x34cc),
        (-0.0, 0.0, 0x0000),
        (-0.0, -0.0, 0x8000),
        (6e-8, 6e-8, 0x0002), // subnormals
    ];
    for (a, b, bits) in cases {
        let dst = [f16::from_f32(a); 9];
        let src = [f16::from_f32(b); 9];
        for got in reduce(ReduceOp::Sum, &dst, &src) {
            assert_eq!(got.to_bits(), bits, "{a} + {b}");
        }
    }
}

#[test]
fn bfloat16_sums_round_once() {
    let one = bf16::ONE;
    let cases: [(bf16, bf16, f32); 4] = [
        (one, bf16::from_f32(2f32.powi(-8)), 1.0), // a tie, to even
        (
            one,
            bf16::from_f32(3.0 * 2f32.powi(-8)),
            1.0 + 2f32.powi(-6),
        ),
        (bf16::from_f32(256.0), one, 256.0),
        (bf16::MAX, bf16::MAX, f32::INFINITY),
    ];
    for (a, b, want) in cases {
        for got in reduce(ReduceOp::Sum, &[a; 17], &[b; 17]) {
            assert_eq!(got.to_f32(), want, "{a} + {b}");
        }
    }
}

#[test]
fn max_and_min_follow_numpy_on_nan_and_signed_zero() {
    let nan = f32::NAN;
    let dst = [
        0.0f32,
        -0.0,
        nan,
        1.0,
        nan,
        f32::NEG_INFINITY,
        2.0,
        -3.0,
        0.0,
    ];
    let src = [-0.0f32, 0.0, 1.0, nan, nan, -1.0, 2.0, f32::INFINITY, 1e-45];
    let max = reduce(ReduceOp::Max, &dst, &src);
    let min = reduce(ReduceOp::Min, &dst, &src);
    // np.maximum(dst, src) keeps dst on ties, so +0 vs -0 keeps the first operand's sign.
    assert_eq!(max[0].to_bits(), 0.0f32.to_bits());
    assert_eq!(max[1].to_bits(), (-0.0f32).to_bits());
    assert_eq!(min[0].to_bits(), 0.0f32.to_bits());
    assert_eq!(min[1].to_bits(), (-0.0f32).to_bits());
    for i in 2..5 {
        assert!(max[i].is_nan() && min[i].is_nan(), "index {i}");
    }
    assert_eq!(&max[5..], &[-1.0, 2.0, f32::INFINITY, 1e-45]);
    assert_eq!(&min[5..], &[f32::NEG_INFINITY, 2.0, -3.0, 0.0]);
    // The same rules in every precision.
    let h = |x: f32| f16::from_f32(x);
    let hmax = reduce(
        ReduceOp::Max,
        &[h(0.0), h(-0.0), h(nan)],
        &[h(-0.0), h(0.0), h(1.0)],
    );
    assert_eq!(hmax[0].to_bits(), 0x0000);
    assert_eq!(hmax[1].to_bits(), 0x8000);
    assert!(hmax[2].is_nan());
    let dmin = reduce(ReduceOp::Min, &[1.0f64, -0.0], &[f64::NAN, 0.0]);
    assert!(dmin[0].is_nan());
    assert_eq!(dmin[1].to_bits(), (-0.0f64).to_bits());
}

#[test]
fn integer_sums_wrap() {
    let got = reduce(ReduceOp::Sum, &[i32::MAX, i32::MIN, -5], &[1, -1, 3]);
    assert_eq!(got, [i32::MIN, i32::MAX, -2]);
    let got = reduce(ReduceOp::Avg, &[i64::MAX; 9], &[2; 9]);
    assert_eq!(got, [i64::MIN + 1; 9]);
    assert_eq!(reduce(ReduceOp::Max, &[-3i64, 7], &[5, -9]), [5, 7]);
    assert_eq!(reduce(ReduceOp::Min, &[-3i32, 7], &[5, -9]), [-3, -9]);
}

#[test]
fn reduce_f32_matches_reduce_bytes() {
    let mut rng = XorShift(11);
    for len in LENGTHS {
        for op in ReduceOp::ALL {
            let dst: Vec<f32> = random_vec(&mut rng, len);
            let src: Vec<f32> = random_vec(&mut rng, len);
            let mut ours = dst.clone();
            reduce_f32(op, &mut ours, &src);
            let theirs = reduce(op, &dst, &src);
            assert!(ours.iter().zip(&theirs).all(|(a, b)| f32::same(*a, *b)));
        }
    }
}

fn invalid_data(result: Result<(), CoreError>) -> String {
    match result {
        Err(CoreError::InvalidValue { argument, message }) => {
            assert_eq!(argument, "data");
            message
        }
        other => panic!("expected an invalid `data` error, got {other:?}"),
    }
}

#[test]
fn layout_errors_name_the_data() {
    let mut words = vec![0u64; 8];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let other = [0u8; 64];
    for dtype in DType::ALL {
        let size = dtype.size();
        // Misaligned by one byte: every dtype here is wider than a byte.
        let message = invalid_data(reduce_bytes(
            dtype,
            ReduceOp::Sum,
            &mut bytes[1..1 + 4 * size],
            &other[..4 * size],
        ));
        assert!(message.contains("aligned"), "{message}");
        let message = invalid_data(reduce_bytes(
            dtype,
            ReduceOp::Max,
            &mut bytes[..4 * size],
            &other[..3 * size],
        ));
        assert!(message.contains("same length"), "{message}");
        let message = invalid_data(reduce_bytes(
            dtype,
            ReduceOp::Min,
            &mut bytes[..size + 1],
            &other[..size + 1],
        ));
        assert!(message.contains("multiple"), "{message}");
        invalid_data(finalize_avg(dtype, &mut bytes[1..1 + size], 2));
        // Empty buffers are fine, wherever they point.
        reduce_bytes(dtype, ReduceOp::Sum, &mut bytes[1..1], &other[3..3]).unwrap();
    }
}

#[test]
fn finalize_avg_floors_integers_and_divides_floats() {
    let mut ints = [-7i32, 7, -8, 0, i32::MIN, i32::MAX, -1];
    finalize_avg(DType::I32, bytemuck::cast_slice_mut(&mut ints), 2).unwrap();
    // np.array([...], np.int32) // 2
    assert_eq!(ints, [-4, 3, -4, 0, -1073741824, 1073741823, -1]);
    let mut ints = [-7i32, 7, -8, 0, i32::MIN, i32::MAX, -1];
    finalize_avg(DType::I32, bytemuck::cast_slice_mut(&mut ints), 3).unwrap();
    assert_eq!(ints, [-3, 2, -3, 0, -715827883, 715827882, -1]);
    let mut longs = [-7i64, 7, i64::MIN, -1, 1];
    finalize_avg(DType::I64, bytemuck::cast_slice_mut(&mut longs), 4).unwrap();
    assert_eq!(longs, [-2, 1, i64::MIN / 4, -1, 0]);
    // A divisor too large for the element type: every quotient is 0 or -1.
    #[cfg(target_pointer_width = "64")]
    {
        let mut ints = [-5i32, 5, 0, i32::MIN];
        finalize_avg(DType::I32, bytemuck::cast_slice_mut(&mut ints), 1 << 40).unwrap();
        assert_eq!(ints, [-1, 0, 0, -1]);
    }

    let mut floats = [1.0f32, -3.0, 0.1, f32::NAN, -0.0];
    finalize_avg(DType::F32, bytemuck::cast_slice_mut(&mut floats), 3).unwrap();
    assert_eq!(&floats[..3], &[1.0 / 3.0, -1.0, 0.1 / 3.0]);
    assert!(floats[3].is_nan());
    assert_eq!(floats[4].to_bits(), (-0.0f32).to_bits());
    let mut doubles = [1.0f64, 0.1];
    finalize_avg(DType::F64, bytemuck::cast_slice_mut(&mut doubles), 3).unwrap();
    assert_eq!(doubles, [1.0 / 3.0, 0.1 / 3.0]);
    let halves: Vec<f16> = [1.0f32, 2.0, 3.0, 65504.0, 1e-7]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let mut got = halves.clone();
    finalize_avg(DType::F16, bytemuck::cast_slice_mut(&mut got), 3).unwrap();
    for (g, h) in got.iter().zip(&halves) {
        assert_eq!(*g, f16::from_f32(h.to_f32() / 3.0));
    }
    // np.array([1, 2, 3], np.float16) / np.float16(3)
    assert_eq!(got[0].to_bits(), 0x3555);
    let mut brains = [bf16::from_f32(1.0), bf16::from_f32(-5.0)];
    finalize_avg(DType::BF16, bytemuck::cast_slice_mut(&mut brains), 3).unwrap();
    assert_eq!(brains[0], bf16::from_f32(1.0 / 3.0));
    assert_eq!(brains[1], bf16::from_f32(-5.0 / 3.0));

    match finalize_avg(DType::F32, bytemuck::cast_slice_mut(&mut floats), 0) {
        Err(CoreError::InvalidValue { argument: "n", .. }) => {}
        other => panic!("expected an invalid `n`, got {other:?}"),
    }
}

fn widen(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / dtype.size()];
    to_f32(dtype, bytes, &mut out).unwrap();
    out
}

fn narrow<T: bytemuck::Pod + Default>(dtype: DType, values: &[f32]) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    from_f32(dtype, values, bytemuck::cast_slice_mut(&mut out)).unwrap();
    out
}

#[test]
fn every_half_round_trips_through_f32() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for dtype in [DType::F16, DType::BF16] {
        let wide = widen(dtype, bytemuck::cast_slice(&all));
        let back: Vec<u16> = narrow(dtype, &wide);
        for (i, (&bits, &round)) in all.iter().zip(&back).enumerate() {
            let expected = match dtype {
                DType::F16 => f16::from_bits(bits).to_f32(),
                _ => bf16::from_bits(bits).to_f32(),
            };
            if expected.is_nan() {
                let round_is_nan = match dtype {
                    DType::F16 => f16::from_bits(round).is_nan(),
                    _ => bf16::from_bits(round).is_nan(),
                };
                assert!(wide[i].is_nan() && round_is_nan, "{dtype:?} {bits:#x}");
            } else {
                assert_eq!(wide[i].to_bits(), expected.to_bits(), "{dtype:?} {bits:#x}");
                assert_eq!(round, bits, "{dtype:?} {bits:#x}");
            }
        }
    }
}

#[test]
fn narrowing_rounds_to_nearest_even_at_every_length() {
    let mut rng = XorShift(21);
    for len in LENGTHS {
        let values: Vec<f32> = (0..len)
            .map(|_| f32::from_bits(rng.next() as u32))
            .collect();
        let halves: Vec<f16> = narrow(DType::F16, &values);
        let brains: Vec<bf16> = narrow(DType::BF16, &values);
        for (i, &x) in values.iter().enumerate() {
            if x.is_nan() {
                assert!(halves[i].is_nan() && brains[i].is_nan());
            } else {
                assert_eq!(halves[i].to_bits(), f16::from_f32(x).to_bits(), "{x:e}");
                assert_eq!(brains[i].to_bits(), bf16::from_f32(x).to_bits(), "{x:e}");
            }
        }
        let wide = widen(DType::F16, bytemuck::cast_slice(&halves));
        assert!(wide
            .iter()
            .zip(&halves)
            .all(|(w, h)| f32::same(*w, h.to_f32())));
    }
}

#[test]
fn conversions_follow_as_semantics() {
    let floats = [2.7f32, -2.7, f32::NAN, 1e20, -1e20, 16_777_217.0, -0.0];
    let ints: Vec<i32> = narrow(DType::I32, &floats);
    assert_eq!(ints, [2, -2, 0, i32::MAX, i32::MIN, 16_777_216, 0]);
    let longs: Vec<i64> = narrow(DType::I64, &floats);
    assert_eq!(longs, [2, -2, 0, i64::MAX, i64::MIN, 16_777_216, 0]);
    let doubles: Vec<f64> = narrow(DType::F64, &floats);
    assert_eq!(doubles[0], 2.7f32 as f64);
    assert_eq!(
        widen(DType::F64, bytemuck::cast_slice(&doubles))[..2],
        floats[..2]
    );

    let doubles = [0.1f64, 1e300, -1e-300, 1.0 + f64::EPSILON];
    assert_eq!(
        widen(DType::F64, bytemuck::cast_slice(&doubles)),
        [0.1f32, f32::INFINITY, -0.0, 1.0]
    );
    // Integers round to the nearest f32: 2^24 + 1 is a tie, to even.
    let ints = [16_777_217i32, -3, i32::MAX];
    assert_eq!(
        widen(DType::I32, bytemuck::cast_slice(&ints)),
        [16_777_216.0, -3.0, 2147483648.0]
    );
    let longs = [i64::MIN, 1 << 40, 3];
    assert_eq!(
        widen(DType::I64, bytemuck::cast_slice(&longs)),
        [-9.223372e18, 1099511627776.0, 3.0]
    );
    // f32 itself is copied bit for bit, NaN payloads included.
    let odd = [f32::from_bits(0x7fc0_1234), -0.0];
    let back: Vec<f32> = narrow(DType::F32, &widen(DType::F32, bytemuck::cast_slice(&odd)));
    assert_eq!(back[0].to_bits(), 0x7fc0_1234);
    assert_eq!(back[1].to_bits(), 0x8000_0000);
}

#[test]
fn conversions_check_the_layout() {
    let mut words = vec![0u64; 4];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let mut out = [0f32; 3];
    match to_f32(DType::F32, &bytes[..8], &mut out) {
        Err(CoreError::Shape {
            argument: "data",
            message,
        }) => {
            assert!(message.contains("12 bytes"), "{message}")
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    invalid_data(to_f32(DType::F64, &bytes[4..28], &mut out));
    invalid_data(from_f32(DType::I32, &out, &mut bytes[2..14]));
    match from_f32(DType::F16, &out, &mut bytes[..8]) {
        Err(CoreError::Shape {
            argument: "data", ..
        }) => {}
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn names_parse_and_round_trip() {
    for dtype in DType::ALL {
        assert_eq!(DType::parse(dtype.name()).unwrap(), dtype);
    }
    let short = ["f32", "f64", "f16", "bf16", "i32", "i64"];
    for (name, dtype) in short.iter().zip(DType::ALL) {
        assert_eq!(DType::parse(name).unwrap(), dtype);
    }
    assert_eq!(
        DType::ALL.map(DType::size),
        [4, 8, 2, 2, 4, 8],
        "sizes in declaration order"
    );
    assert_eq!(
        DType::ALL.map(DType::is_float),
        [true, true, true, true, false, false]
    );
    let err = DType::parse("float8").unwrap_err();
    assert_eq!(err.argument(), Some("dtype"));
    assert!(err.to_string().contains("float8"), "{err}");
    for op in ReduceOp::ALL {
        assert_eq!(ReduceOp::parse(op.name()).unwrap(), op);
    }
    assert_eq!(ReduceOp::parse("prod").unwrap_err().argument(), Some("op"));
}

#[test]
fn a_rejected_name_is_answered_with_every_allowed_one() {
    let dtype = DType::parse("float8").unwrap_err().to_string();
    for allowed in DType::ALL {
        assert!(dtype.contains(allowed.name()), "{dtype}");
        assert!(dtype.contains(allowed.short_name()), "{dtype}");
        assert_eq!(DType::parse(allowed.short_name()).unwrap(), allowed);
    }
    let op = ReduceOp::parse("prod").unwrap_err().to_string();
    for allowed in ReduceOp::ALL {
        assert!(op.contains(allowed.name()), "{op}");
    }
}

proptest! {
    #[test]
    fn f32_reductions_match_the_reference(
        pairs in proptest::collection::vec((any::<f32>(), any::<f32>()), 0..300),
        op in prop_oneof![
            Just(ReduceOp::Sum), Just(ReduceOp::Avg), Just(ReduceOp::Max), Just(ReduceOp::Min)
        ],
    ) {
        let (dst, src): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
        let got = reduce(op, &dst, &src);
        for i in 0..dst.len() {
            prop_assert!(f32::same(got[i], f32::reference(op, dst[i], src[i])));
        }
    }

    #[test]
    fn half_reductions_match_the_reference(
        bits in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..600),
        op in prop_oneof![Just(ReduceOp::Sum), Just(ReduceOp::Max), Just(ReduceOp::Min)],
    ) {
        let dst: Vec<f16> = bits.iter().map(|b| f16::from_bits(b.0)).collect();
        let src: Vec<f16> = bits.iter().map(|b| f16::from_bits(b.1)).collect();
        let got = reduce(op, &dst, &src);
        for i in 0..dst.len() {
            prop_assert!(f16::same(got[i], f16::reference(op, dst[i], src[i])));
        }
        let dst: Vec<bf16> = bits.iter().map(|b| bf16::from_bits(b.0)).collect();
        let src: Vec<bf16> = bits.iter().map(|b| bf16::from_bits(b.1)).collect();
        let got = reduce(op, &dst, &src);
        for i in 0..dst.len() {
            prop_assert!(bf16::same(got[i], bf16::reference(op, dst[i], src[i])));
        }
    }
}
