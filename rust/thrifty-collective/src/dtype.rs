//! Element types and the reductions of an all-reduce.
//!
//! Buffers travel as native-endian bytes; [`reduce_bytes`] combines a received chunk into the
//! local one, [`finalize_avg`] turns a sum into a mean, and [`to_f32`] / [`from_f32`] move
//! between a buffer and the fp32 working precision of the quantized path.
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
//! through a 256-element stack tile in f32, converted with F16C when the CPU has it.

use bytemuck::Pod;
use half::{bf16, f16};
use thrifty_core::{Choice, CoreError, CoreResult};

/// The element type of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I32,
    I64,
}

impl DType {
    /// Every dtype, in declaration order: the one list `parse` accepts, and the one a binding
    /// exports as the allowed values.
    pub const ALL: [DType; 6] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::I64,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// The NumPy / PyTorch name: `"float32"`, `"bfloat16"`, `"int64"`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I32 => "int32",
            DType::I64 => "int64",
        }
    }

    /// The short name: `"f32"`, `"bf16"`, `"i64"`, ...
    pub fn short_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32 | DType::I64)
    }
}

impl Choice for DType {
    const ARGUMENT: &'static str = "dtype";
    const ALL: &'static [DType] = &DType::ALL;

    fn name(self) -> &'static str {
        DType::name(self)
    }

    /// A full name (`"float32"`) or a short one (`"f32"`).
    fn parse(name: &str) -> CoreResult<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == name || d.short_name() == name)
            .ok_or_else(|| {
                let short = DType::ALL.map(DType::short_name).join(", ");
                CoreError::invalid(
                    "dtype",
                    format!(
                        "must be one of {} (or {short}), got {name:?}",
                        Self::listed()
                    ),
                )
            })
    }
}

/// How an all-reduce combines the ranks' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReduceOp {
    Sum,
    /// Accumulates like `Sum`; [`finalize_avg`] divides once at the end.
    Avg,
    Max,
    Min,
}

impl ReduceOp {
    /// Every op, in declaration order: the one list `parse` accepts, and the one a binding
    /// exports as the allowed values.
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Min];

    /// `"sum"`, `"avg"`, `"max"`, `"min"`.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Avg => "avg",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

impl Choice for ReduceOp {
    const ARGUMENT: &'static str = "op";
    const ALL: &'static [ReduceOp] = &ReduceOp::ALL;

    fn name(self) -> &'static str {
        ReduceOp::name(self)
    }
}

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
// Layout checks.

fn check_count(dtype: DType, bytes: usize, elements: usize) -> CoreResult<()> {
    if bytes != elements * dtype.size() {
        return Err(CoreError::shape(
            "data",
            format!(
                "must hold {elements} {} elements ({} bytes), got {bytes} bytes",
                dtype.name(),
                elements * dtype.size()
            ),
        ));
    }
    Ok(())
}

fn check_layout(dtype: DType, ptr: *const u8, len: usize) -> CoreResult<()> {
    let size = dtype.size();
    if len % size != 0 {
        return Err(CoreError::invalid(
            "data",
            format!(
                "must hold whole {} elements (a multiple of {size} bytes), got {len} bytes",
                dtype.name()
            ),
        ));
    }
    let offset = ptr as usize % size;
    if len > 0 && offset != 0 {
        return Err(CoreError::invalid(
            "data",
            format!(
                "must be aligned to {size} bytes for {}, got an address {offset} bytes past \
                 a multiple of {size}",
                dtype.name()
            ),
        ));
    }
    Ok(())
}

fn typed<T: Pod>(dtype: DType, bytes: &[u8]) -> CoreResult<&[T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), dtype.size());
    check_layout(dtype, bytes.as_ptr(), bytes.len())?;
    if bytes.is_empty() {
        // An empty slice's dangling pointer need not be aligned for T.
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(bytes).map_err(|e| CoreError::invalid("data", e.to_string()))
}

fn typed_mut<T: Pod>(dtype: DType, bytes: &mut [u8]) -> CoreResult<&mut [T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), dtype.size());
    check_layout(dtype, bytes.as_ptr(), bytes.len())?;
    if bytes.is_empty() {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| CoreError::invalid("data", e.to_string()))
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

#[inline(always)]
fn convert<S: Copy, D>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D) {
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
// Half precision: widen a tile to f32, combine, round back once.

/// Elements per stack tile: two f32 tiles take 2 KiB, well inside L1.
const TILE: usize = 256;

#[inline(always)]
fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// Round to nearest, ties to even, without branches (so it vectorises): adding `0x7fff` plus
/// the lowest kept bit carries into the kept bits exactly when the dropped half is above one
/// half, or equal to it with an odd kept part. Finite values that round past the largest
/// bf16 carry into the exponent and become ±inf, as they should. NaNs keep their sign and
/// top payload bits and are made quiet (`half`'s rule), since rounding could clear them.
#[inline(always)]
fn bf16_from_f32(x: f32) -> bf16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) | 0x40) as u16;
    bf16::from_bits(if x.is_nan() { quiet_nan } else { rounded })
}

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

/// `true` when the F16C conversions (and AVX2 for the arithmetic between them) are there.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_f16c() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
}

fn reduce_f16(op: ReduceOp, dst: &mut [f16], src: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_f16c() {
            // SAFETY: the CPU supports AVX2 and F16C, checked just above.
            return unsafe { f16c::reduce(op, dst, src) };
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

fn widen_f16(src: &[f16], dst: &mut [f32]) {
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

fn narrow_f16(src: &[f32], dst: &mut [f16]) {
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
mod f16c {
    use super::{combine, ReduceOp, TILE};
    use half::f16;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn reduce(op: ReduceOp, dst: &mut [f16], src: &[f16]) {
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

    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(super) unsafe fn widen(src: &[f16], dst: &mut [f32]) {
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
    pub(super) unsafe fn narrow(src: &[f32], dst: &mut [f16]) {
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
