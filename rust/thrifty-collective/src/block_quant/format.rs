//! The three code formats of block quantization: how one value becomes a code and back, and
//! the per-block scale that maps a block's largest magnitude onto the largest code.

/// `absmax / max_code`, one ulp lower when `max_code * scale` would round above `absmax`.
#[inline]
pub(super) fn block_scale(absmax: f32, max_code: f32) -> f32 {
    let scale = absmax / max_code;
    if scale * max_code > absmax {
        // scale > 0 here, so the bits minus one are the next smaller float.
        f32::from_bits(scale.to_bits() - 1)
    } else {
        scale
    }
}

#[inline(always)]
pub(super) fn read_scale(bytes: &[u8]) -> f32 {
    f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

pub(super) trait Format {
    /// The largest code magnitude.
    const MAX: f32;
    /// Two 4-bit codes per byte.
    const PACKED: bool;
    /// The code nearest to `t` (ties to even), saturated at `±MAX`, in the low 8 (or 4) bits.
    /// For finite `t` only; other bits may be set for NaN, which the callers mask away.
    fn code(t: f32) -> u32;
    /// The value of a code (its low 8 or 4 bits).
    fn value(code: u32) -> f32;
}

pub(super) struct Int8;
pub(super) struct Fp8;
pub(super) struct Fp4;

/// 1.5 * 2^23: adding it to |t| < 2^22 rounds t to an integer (ties to even, in the FPU), and
/// leaves that integer, offset by the magic's own bits, in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

impl Format for Int8 {
    const MAX: f32 = 127.0;
    const PACKED: bool = false;

    #[inline(always)]
    fn code(t: f32) -> u32 {
        // Compare-and-select rather than f32::clamp: one maxps/minps each, no NaN handling.
        let t = if t > Self::MAX { Self::MAX } else { t };
        let t = if t < -Self::MAX { -Self::MAX } else { t };
        // The magic's low byte is zero, so the low byte of the sum is the code in two's
        // complement, borrow or not.
        (t + ROUND_MAGIC).to_bits()
    }

    #[inline(always)]
    fn value(code: u32) -> f32 {
        f32::from(code as u8 as i8)
    }
}

/// The nearest minifloat code (sign, exponent and `MAN` mantissa bits, exponent bias `BIAS`)
/// to `t`, saturated at `max`.
///
/// Normal results round the f32 bits to `MAN` mantissa bits with integer arithmetic (a carry
/// out of the mantissa correctly bumps the exponent), and re-bias the exponent. Results below
/// `min_normal` are multiples of the subnormal step, which `sub_magic` (1.5 * 2^23 steps)
/// rounds to in one float addition, leaving the step count (0 to 2^MAN, the last being the
/// smallest normal code) in its low bits. Both are computed and one is selected, so the loop
/// stays branch-free.
#[inline(always)]
fn minifloat_code<const MAN: u32, const BIAS: u32, const SIGN: u32>(
    t: f32,
    max: f32,
    min_normal: f32,
    sub_magic: f32,
) -> u32 {
    let bits = t.to_bits();
    let a = f32::from_bits(bits & 0x7fff_ffff);
    let a = if a > max { max } else { a };
    let a_bits = a.to_bits();
    let shift = 23 - MAN;
    let round = (1 << (shift - 1)) - 1 + ((a_bits >> shift) & 1);
    let normal = (a_bits.wrapping_add(round) >> shift).wrapping_sub((127 - BIAS) << MAN);
    let subnormal = (a + sub_magic).to_bits().wrapping_sub(sub_magic.to_bits());
    let magnitude = if a < min_normal { subnormal } else { normal };
    magnitude | ((bits >> 31) << SIGN)
}

impl Format for Fp8 {
    const MAX: f32 = 448.0;
    const PACKED: bool = false;

    #[inline(always)]
    fn code(t: f32) -> u32 {
        // Smallest normal 2^-6; subnormal step 2^-9, so the magic is 1.5 * 2^(23 - 9).
        minifloat_code::<3, 7, 7>(t, Self::MAX, 1.0 / 64.0, 24_576.0)
    }

    #[inline(always)]
    fn value(code: u32) -> f32 {
        let magnitude = code & 0x7f;
        // Exponent and mantissa slot straight into an f32 and the bias moves from 7 to 127;
        // subnormals are an exact integer times 2^-9 (a multiply by a power of two).
        let normal = f32::from_bits((magnitude << 20) + ((127 - 7) << 23));
        let subnormal = magnitude as f32 * (1.0 / 512.0);
        let v = if magnitude < 8 { subnormal } else { normal };
        let v = if magnitude == 0x7f { f32::NAN } else { v };
        f32::from_bits(v.to_bits() | ((code & 0x80) << 24))
    }
}

impl Format for Fp4 {
    const MAX: f32 = 6.0;
    const PACKED: bool = true;

    #[inline(always)]
    fn code(t: f32) -> u32 {
        // Smallest normal 1; subnormal step 0.5, so the magic is 1.5 * 2^(23 - 1).
        minifloat_code::<1, 1, 3>(t, Self::MAX, 1.0, 6_291_456.0)
    }

    #[inline(always)]
    fn value(code: u32) -> f32 {
        let magnitude = code & 0x7;
        let normal = f32::from_bits((magnitude << 22) + ((127 - 1) << 23));
        let subnormal = magnitude as f32 * 0.5;
        let v = if magnitude < 2 { subnormal } else { normal };
        f32::from_bits(v.to_bits() | ((code & 0x8) << 28))
    }
}
