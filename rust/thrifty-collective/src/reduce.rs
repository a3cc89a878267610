//! The reductions of an all-reduce.
//!
//! [`reduce_bytes`] combines a received chunk into the local one, [`reduce_f32`] does the
//! same on the f32 scratch of the quantized path, and [`finalize_avg`] turns a sum into a
//! mean.
//!
//! # Semantics (chosen to match NumPy, so the Python tests can use it as the reference)
//! - Float `Sum`/`Avg` add in the element's own precision; `f16`/`bf16` are widened to f32,
//!   added, and rounded back once per addition, which is exactly `np.float16` addition (the
//!   f32 sum of two halves is exact enough that the double rounding never differs).
//! - Integer `Sum`/`Avg` wrap on overflow, like NumPy.
//! - `Max`/`Min` are `np.maximum(dst, src)` / `np.minimum(dst, src)`: a NaN in either operand
//!   gives a NaN, and otherwise the result is `np.where(dst >= src, dst, src)` (resp. `<=`),
//!   so when the operands compare equal (`+0.0` and `-0.0`) `dst` is kept. That is NumPy's
//!   documented rule and what its scalar loops do; its x86 SIMD loops for f32/f64 keep the
//!   second operand instead, so a NumPy reference may disagree on the sign of a zero.
//!
//! # Speed
//! These loops run over every byte of an all-reduce. They are written as plain element-wise
//! loops with compare-and-select (no `f32::max`, whose NaN rule costs extra instructions) so
//! LLVM vectorises them, and each one is compiled twice: for the baseline target and, chosen
//! at run time as in `thrifty-steps`' min-plus kernel, with AVX2 (twice the lanes of the
//! SSE2 baseline, and the integer max/min the baseline lacks). Half-precision elements go
//! through a 256-element stack tile in f32, converted by [`crate::convert`] (with F16C when
//! the CPU has it).

use half::{bf16, f16};
use thrifty_core::{CoreError, CoreResult};

use crate::convert::{bf16_from_f32, bf16_to_f32, convert, narrow_f16, widen_f16};
#[cfg(target_arch = "x86_64")]
use crate::convert::{f16c, has_f16c};
use crate::dtype::{typed, typed_mut, DType, ReduceOp};

/// `dst[i] = op(dst[i], src[i])` over two buffers of `dtype` elements (native endian).
///
/// Both buffers must have the same length, a whole number of elements, and be aligned to the
/// element size; otherwise this returns an `InvalidValue` error about `data`. See the module
/// documentation for the exact semantics of each op (wrapping integer sums, NaN-propagating
/// max/min, one rounding per half-precision addition). `Avg` adds; see [`finalize_avg`].
pub fn reduce_bytes(dtype: DType, op: ReduceOp, dst: &mut [u8], src: &[u8]) -> CoreResult<()> {
    if dst.len() != src.len() {
        return Err(CoreError::invalid(
            "data",
            format!(
                "the buffers to reduce must have the same length, got {} and {} bytes",
                dst.len(),
                src.len()
            ),
        ));
    }
    match dtype {
        DType::F32 => combine_dispatch(op, typed_mut::<f32>(dtype, dst)?, typed(dtype, src)?),
        DType::F64 => combine_dispatch(op, typed_mut::<f64>(dtype, dst)?, typed(dtype, src)?),
        DType::I32 => combine_dispatch(op, typed_mut::<i32>(dtype, dst)?, typed(dtype, src)?),
        DType::I64 => combine_dispatch(op, typed_mut::<i64>(dtype, dst)?, typed(dtype, src)?),
        DType::F16 => reduce_f16(op, typed_mut(dtype, dst)?, typed(dtype, src)?),
        DType::BF16 => reduce_bf16(op, typed_mut(dtype, dst)?, typed(dtype, src)?),
    }
    Ok(())
}

/// `dst[i] = op(dst[i], src[i])` in f32, with the semantics of [`reduce_bytes`] (`Avg` adds).
///
/// # Panics
/// If the slices have different lengths: both are the caller's own scratch buffers, so a
/// mismatch is a bug, not bad input.
pub fn reduce_f32(op: ReduceOp, dst: &mut [f32], src: &[f32]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "reduce_f32: dst and src must have the same length"
    );
    combine_dispatch(op, dst, src);
}

/// Divides every element by `n`, turning the sum that `ReduceOp::Avg` accumulated into a mean.
///
/// Floats compute `x / n` with `n` converted to the element's type (exact below 2^24 for
/// f32 and 2^53 for f64); `f16`/`bf16` divide in f32 and round once. Integers use floor
/// division, like NumPy's `//`: `-7 / 2` gives `-4`. `n` must be at least 1; `data` must
/// satisfy the same layout rules as in [`reduce_bytes`].
pub fn finalize_avg(dtype: DType, data: &mut [u8], n: usize) -> CoreResult<()> {
    if n == 0 {
        return Err(CoreError::invalid("n", "must be at least 1, got 0"));
    }
    match dtype {
        DType::F32 => {
            let n = n as f32;
            typed_mut::<f32>(dtype, data)?
                .iter_mut()
                .for_each(|x| *x /= n);
        }
        DType::F64 => {
            let n = n as f64;
            typed_mut::<f64>(dtype, data)?
                .iter_mut()
                .for_each(|x| *x /= n);
        }
        DType::F16 => {
            let n = n as f32;
            let mut tile = [0f32; TILE];
            for chunk in typed_mut::<f16>(dtype, data)?.chunks_mut(TILE) {
                let tile = &mut tile[..chunk.len()];
                widen_f16(chunk, tile);
                tile.iter_mut().for_each(|x| *x /= n);
                narrow_f16(tile, chunk);
            }
        }
        DType::BF16 => {
            let n = n as f32;
            typed_mut::<bf16>(dtype, data)?
                .iter_mut()
                .for_each(|x| *x = bf16::from_f32(x.to_f32() / n));
        }
        DType::I32 => {
            let data = typed_mut::<i32>(dtype, data)?;
            match i32::try_from(n) {
                Ok(n) => data.iter_mut().for_each(|x| *x = x.div_euclid(n)),
                // |x| < n: the floor is 0 or -1.
                Err(_) => data
                    .iter_mut()
                    .for_each(|x| *x = if *x < 0 { -1 } else { 0 }),
            }
        }
        DType::I64 => {
            let data = typed_mut::<i64>(dtype, data)?;
            match i64::try_from(n) {
                // For a positive divisor the Euclidean quotient is the floor.
                Ok(n) => data.iter_mut().for_each(|x| *x = x.div_euclid(n)),
                Err(_) => data
                    .iter_mut()
                    .for_each(|x| *x = if *x < 0 { -1 } else { 0 }),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels.

/// The element types the generic kernels handle. `is_nan` is `x != x` so that it compiles to
/// one unordered compare (and to nothing for integers).
pub(crate) trait Element: Copy + PartialOrd {
    fn add(self, other: Self) -> Self;
    #[allow(clippy::eq_op)]
    #[inline(always)]
    fn is_nan(self) -> bool {
        self != self
    }
}

impl Element for f32 {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Element for f64 {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Element for i32 {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
}

impl Element for i64 {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
}

/// `np.maximum(d, s)`: `s` when it is larger or NaN, else `d` (which keeps a NaN `d`, and
/// keeps `d` on ties such as `+0.0` vs `-0.0`).
#[inline(always)]
pub(crate) fn maximum<T: Element>(d: T, s: T) -> T {
    if s > d || s.is_nan() {
        s
    } else {
        d
    }
}

/// `np.minimum(d, s)`, mirroring [`maximum`].
#[inline(always)]
pub(crate) fn minimum<T: Element>(d: T, s: T) -> T {
    if s < d || s.is_nan() {
        s
    } else {
        d
    }
}

/// The op is matched once, outside the loops, so each loop body is a single select or add.
#[inline(always)]
fn combine<T: Element>(op: ReduceOp, dst: &mut [T], src: &[T]) {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = d.add(*s);
            }
        }
        ReduceOp::Max => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = maximum(*d, *s);
            }
        }
        ReduceOp::Min => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = minimum(*d, *s);
            }
        }
    }
}

#[inline]
fn combine_dispatch<T: Element>(op: ReduceOp, dst: &mut [T], src: &[T]) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    {
        // std caches the detection, so this is one load and a branch per call.
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { combine_avx2(op, dst, src) };
        }
    }
    combine(op, dst, src)
}

/// [`combine`] compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn combine_avx2<T: Element>(op: ReduceOp, dst: &mut [T], src: &[T]) {
    combine(op, dst, src)
}

// ---------------------------------------------------------------------------------------------
// Half precision: widen a tile to f32, combine, round back once.

/// Elements per stack tile: two f32 tiles take 2 KiB, well inside L1.
const TILE: usize = 256;

/// The tiled half-precision reduction: `widen` and `narrow` convert whole tiles.
#[inline(always)]
fn combine_tiled<H: Copy>(
    op: ReduceOp,
    dst: &mut [H],
    src: &[H],
    widen: impl Fn(&[H], &mut [f32]),
    narrow: impl Fn(&[f32], &mut [H]),
) {
    let mut a = [0f32; TILE];
    let mut b = [0f32; TILE];
    for (d, s) in dst.chunks_mut(TILE).zip(src.chunks(TILE)) {
        let (a, b) = (&mut a[..d.len()], &mut b[..d.len()]);
        widen(d, a);
        widen(s, b);
        combine(op, a, b);
        narrow(a, d);
    }
}

fn reduce_bf16(op: ReduceOp, dst: &mut [bf16], src: &[bf16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { reduce_bf16_avx2(op, dst, src) };
        }
    }
    combine_tiled(
        op,
        dst,
        src,
        |h, f| convert(h, f, bf16_to_f32),
        |f, h| convert(f, h, bf16_from_f32),
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn reduce_bf16_avx2(op: ReduceOp, dst: &mut [bf16], src: &[bf16]) {
    combine_tiled(
        op,
        dst,
        src,
        |h, f| convert(h, f, bf16_to_f32),
        |f, h| convert(f, h, bf16_from_f32),
    )
}

fn reduce_f16(op: ReduceOp, dst: &mut [f16], src: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_f16c() {
            // SAFETY: the CPU supports AVX2 and F16C, checked just above.
            return unsafe { reduce_f16_f16c(op, dst, src) };
        }
    }
    use half::slice::HalfFloatSliceExt;
    combine_tiled(
        op,
        dst,
        src,
        |h, f| h.convert_to_f32_slice(f),
        |f, h| h.convert_from_f32_slice(f),
    )
}

/// The tiled f16 reduction with [`f16c`]'s conversions, compiled with the features they need
/// so that they inline into the loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn reduce_f16_f16c(op: ReduceOp, dst: &mut [f16], src: &[f16]) {
    let mut a = [0f32; TILE];
    let mut b = [0f32; TILE];
    for (d, s) in dst.chunks_mut(TILE).zip(src.chunks(TILE)) {
        let (a, b) = (&mut a[..d.len()], &mut b[..d.len()]);
        f16c::widen(d, a);
        f16c::widen(s, b);
        combine(op, a, b);
        f16c::narrow(a, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-time dispatch picks AVX2 on most machines, so the portable code is checked
    /// here directly, against the dispatched code.
    #[test]
    fn portable_and_simd_paths_agree() {
        let wave = |k: f32| -> Vec<f32> {
            (0..1003)
                .map(|i| match i % 11 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 0.0,
                    _ => (i as f32 * k).sin() * 1e3,
                })
                .collect()
        };
        let (a, b) = (wave(0.37), wave(0.91));
        fn same_bits<T: Copy + bytemuck::Pod>(x: &[T], y: &[T]) -> bool {
            bytemuck::cast_slice::<T, u8>(x) == bytemuck::cast_slice::<T, u8>(y)
        }
        let a64: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
        let b64: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
        let ai: Vec<i32> = a.iter().map(|&x| (x * 1e6) as i32).collect();
        let bi: Vec<i32> = b.iter().map(|&x| (x * 1e6) as i32).collect();
        let al: Vec<i64> = ai.iter().map(|&x| i64::from(x) << 32).collect();
        let bl: Vec<i64> = bi.iter().map(|&x| i64::from(x) << 32).collect();
        let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
        let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
        let ab: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
        let bb: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
        for op in ReduceOp::ALL {
            macro_rules! check {
                ($a:expr, $b:expr) => {{
                    let (mut x, mut y) = ($a.clone(), $a.clone());
                    combine(op, &mut x, &$b);
                    combine_dispatch(op, &mut y, &$b);
                    assert!(same_bits(&x, &y), "{op:?}");
                }};
            }
            check!(a, b);
            check!(a64, b64);
            check!(ai, bi);
            check!(al, bl);

            use half::slice::HalfFloatSliceExt;
            let (mut x, mut y) = (ah.clone(), ah.clone());
            combine_tiled(
                op,
                &mut x,
                &bh,
                |h, f| h.convert_to_f32_slice(f),
                |f, h| h.convert_from_f32_slice(f),
            );
            reduce_f16(op, &mut y, &bh);
            assert!(same_bits(&x, &y), "f16 {op:?}");
            let (mut x, mut y) = (ab.clone(), ab.clone());
            combine_tiled(
                op,
                &mut x,
                &bb,
                |h, f| convert(h, f, bf16_to_f32),
                |f, h| convert(f, h, bf16_from_f32),
            );
            reduce_bf16(op, &mut y, &bb);
            assert!(same_bits(&x, &y), "bf16 {op:?}");
        }
    }
}
