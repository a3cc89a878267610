//! Conversions between a buffer's element type and f32, the working precision of the quantized
//! all-reduce and of the half-precision reductions (which widen a tile, combine it in f32 and
//! round it back once).
//!
//! # Speed
//! Like the reductions, these loops run over every byte of a quantized all-reduce, so each is
//! compiled twice: for the baseline target and, chosen at run time, with AVX2. bf16 rounds
//! without branches so that it vectorises, and f16 goes through the F16C instructions when
//! the CPU has them.

use half::{bf16, f16};
use thrifty_core::CoreResult;

use crate::dtype::{check_count, typed, typed_mut, DType};

/// Widens (or narrows) a buffer of `dtype` elements into f32, the working precision of the
/// quantized all-reduce.
///
/// f16/bf16 widen exactly; f64 rounds to nearest (ties to even), overflowing to ±inf; i32 and
/// i64 round to the nearest f32 (Rust's `as`), so integers beyond 2^24 lose their low bits.
/// `src` must be aligned and hold exactly `dst.len()` elements.
pub fn to_f32(dtype: DType, src: &[u8], dst: &mut [f32]) -> CoreResult<()> {
    check_count(dtype, src.len(), dst.len())?;
    match dtype {
        DType::F32 => dst.copy_from_slice(typed(dtype, src)?),
        DType::F64 => convert_dispatch(typed::<f64>(dtype, src)?, dst, |x| x as f32),
        DType::I32 => convert_dispatch(typed::<i32>(dtype, src)?, dst, |x| x as f32),
        DType::I64 => convert_dispatch(typed::<i64>(dtype, src)?, dst, |x| x as f32),
        DType::F16 => widen_f16(typed(dtype, src)?, dst),
        DType::BF16 => convert_dispatch(typed::<bf16>(dtype, src)?, dst, bf16_to_f32),
    }
    Ok(())
}

/// Converts f32 values into a buffer of `dtype` elements.
///
/// f64 widens exactly; f16/bf16 round to nearest, ties to even (overflowing to ±inf, NaN
/// kept). Integers use Rust's `as`: the fraction is truncated toward zero, out-of-range
/// values saturate at the type's bounds, and NaN becomes 0. `dst` must be aligned and hold
/// exactly `src.len()` elements.
pub fn from_f32(dtype: DType, src: &[f32], dst: &mut [u8]) -> CoreResult<()> {
    check_count(dtype, dst.len(), src.len())?;
    match dtype {
        DType::F32 => typed_mut::<f32>(dtype, dst)?.copy_from_slice(src),
        DType::F64 => convert_dispatch(src, typed_mut::<f64>(dtype, dst)?, |x| x as f64),
        DType::I32 => convert_dispatch(src, typed_mut::<i32>(dtype, dst)?, |x| x as i32),
        DType::I64 => convert_dispatch(src, typed_mut::<i64>(dtype, dst)?, |x| x as i64),
        DType::F16 => narrow_f16(src, typed_mut(dtype, dst)?),
        DType::BF16 => convert_dispatch(src, typed_mut::<bf16>(dtype, dst)?, bf16_from_f32),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Element-wise conversion.

#[inline(always)]
pub(crate) fn convert<S: Copy, D>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f(*s);
    }
}

#[inline]
fn convert_dispatch<S: Copy, D>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { convert_avx2(src, dst, f) };
        }
    }
    convert(src, dst, f)
}

/// [`convert`] compiled with AVX2. `f` is a small closure that LLVM inlines here, so it is
/// vectorised with the loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_avx2<S: Copy, D>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D) {
    convert(src, dst, f)
}

// ---------------------------------------------------------------------------------------------
// Half precision.

#[inline(always)]
pub(crate) fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// Round to nearest, ties to even, without branches (so it vectorises): adding `0x7fff` plus
/// the lowest kept bit carries into the kept bits exactly when the dropped half is above one
/// half, or equal to it with an odd kept part. Finite values that round past the largest
/// bf16 carry into the exponent and become ±inf, as they should. NaNs keep their sign and
/// top payload bits and are made quiet (`half`'s rule), since rounding could clear them.
#[inline(always)]
pub(crate) fn bf16_from_f32(x: f32) -> bf16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) | 0x40) as u16;
    bf16::from_bits(if x.is_nan() { quiet_nan } else { rounded })
}

/// `true` when the F16C conversions (and AVX2 for the arithmetic between them) are there.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_f16c() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
}

pub(crate) fn widen_f16(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_f16c() {
            // SAFETY: the CPU supports AVX2 and F16C, checked just above.
            return unsafe { f16c::widen(src, dst) };
        }
    }
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst)
}

pub(crate) fn narrow_f16(src: &[f32], dst: &mut [f16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_f16c() {
            // SAFETY: the CPU supports AVX2 and F16C, checked just above.
            return unsafe { f16c::narrow(src, dst) };
        }
    }
    use half::slice::HalfFloatSliceExt;
    dst.convert_from_f32_slice(src)
}

/// f16 <-> f32 with the F16C instructions, eight lanes at a time. (`half` uses them too, but
/// through a call per eight elements that cannot be inlined into our loops.)
#[cfg(target_arch = "x86_64")]
pub(crate) mod f16c {
    use half::f16;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(crate) unsafe fn widen(src: &[f16], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), dst.len());
        let whole = src.len() - src.len() % 8;
        for (s, d) in src[..whole].chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            // SAFETY: both chunks hold exactly eight elements; unaligned loads and stores.
            let v = _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast()));
            _mm256_storeu_ps(d.as_mut_ptr(), v);
        }
        if whole < src.len() {
            // The tail goes through a zero-padded vector, so it rounds exactly like the rest.
            let mut pad = [f16::ZERO; 8];
            let mut out = [0f32; 8];
            let rest = src.len() - whole;
            pad[..rest].copy_from_slice(&src[whole..]);
            _mm256_storeu_ps(
                out.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(pad.as_ptr().cast())),
            );
            dst[whole..].copy_from_slice(&out[..rest]);
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(crate) unsafe fn narrow(src: &[f32], dst: &mut [f16]) {
        debug_assert_eq!(src.len(), dst.len());
        let whole = src.len() - src.len() % 8;
        for (s, d) in src[..whole].chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            let v = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.as_ptr()));
            _mm_storeu_si128(d.as_mut_ptr().cast(), v);
        }
        if whole < src.len() {
            let mut pad = [0f32; 8];
            let mut out = [f16::ZERO; 8];
            let rest = src.len() - whole;
            pad[..rest].copy_from_slice(&src[whole..]);
            let v = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(pad.as_ptr()));
            _mm_storeu_si128(out.as_mut_ptr().cast(), v);
            dst[whole..].copy_from_slice(&out[..rest]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_half() {
        let mut state = 0x9E37_79B9u32;
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x3f80_8000), // a tie that rounds to even (down)
            f32::from_bits(0x3f81_8000), // a tie that rounds to even (up)
            f32::from_bits(0x7f7f_ffff),
        ];
        for x in specials {
            assert_eq!(
                bf16_from_f32(x).to_bits(),
                bf16::from_f32(x).to_bits(),
                "{x}"
            );
        }
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let x = f32::from_bits(state);
            let ours = bf16_from_f32(x);
            let theirs = bf16::from_f32(x);
            if x.is_nan() {
                assert!(ours.is_nan());
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{x:e}");
            }
        }
    }
    /// The run-time dispatch picks AVX2 on most machines, so the portable code is checked
    /// here directly, against the dispatched code.
    #[test]
    fn portable_and_simd_paths_agree() {
        let a: Vec<f32> = (0..1003)
            .map(|i| match i % 11 {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                _ => (i as f32 * 0.37).sin() * 1e3,
            })
            .collect();
        fn same_bits<T: Copy + bytemuck::Pod>(x: &[T], y: &[T]) -> bool {
            bytemuck::cast_slice::<T, u8>(x) == bytemuck::cast_slice::<T, u8>(y)
        }
        let a64: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();

        let mut x = vec![0f32; a64.len()];
        let mut y = x.clone();
        convert(&a64, &mut x, |v| v as f32);
        convert_dispatch(&a64, &mut y, |v| v as f32);
        assert!(same_bits(&x, &y));
        let mut hx = vec![f16::ZERO; a.len()];
        let mut hy = hx.clone();
        half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut hx[..], &a);
        narrow_f16(&a, &mut hy);
        assert!(same_bits(&hx, &hy));
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&hx[..], &mut x);
        widen_f16(&hx, &mut y);
        assert!(same_bits(&x, &y));
    }
}
