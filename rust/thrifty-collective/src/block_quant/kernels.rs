//! The block codecs' loops over whole arrays, each compiled for the baseline target, with AVX2
//! and with AVX-512, and chosen at run time: LLVM vectorises the same scalar code for each, so
//! every choice writes the same bytes.

use super::format::{block_scale, read_scale, Format};
use crate::reduce::{maximum, minimum};

/// Encodes every block; on a non-finite value, returns the index of its block.
#[inline(always)]
pub(super) fn encode_blocks<F: Format>(
    values: &[f32],
    block: usize,
    scales: &mut [u8],
    codes: &mut [u8],
) -> Result<(), usize> {
    for (b, (chunk, scale_bytes)) in values
        .chunks(block)
        .zip(scales.chunks_exact_mut(4))
        .enumerate()
    {
        // Bits of non-negative floats order like the floats, and every NaN or infinity has
        // larger bits than any finite value: one integer max finds both.
        let absmax_bits = chunk
            .iter()
            .fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
        if absmax_bits >= 0x7f80_0000 {
            return Err(b);
        }
        let scale = block_scale(f32::from_bits(absmax_bits), F::MAX);
        scale_bytes.copy_from_slice(&scale.to_le_bytes());
        // A zero scale makes `x / scale` NaN or infinite; the mask turns those codes into 0.
        let mask = if scale > 0.0 { u32::MAX } else { 0 };
        let start = b * block;
        if F::PACKED {
            pack_nibbles(chunk, start, codes, |x| F::code(x / scale) & mask & 0xf);
        } else {
            let out = &mut codes[start..start + chunk.len()];
            for (c, &x) in out.iter_mut().zip(chunk) {
                *c = (F::code(x / scale) & mask) as u8;
            }
        }
    }
    Ok(())
}

/// Writes the nibbles of `chunk`, whose first value is element `start` of the whole array.
/// Elements are written in order, so a low nibble is always stored (as the whole byte)
/// before its high nibble is or-ed in, and `codes` needs no clearing.
#[inline(always)]
fn pack_nibbles(chunk: &[f32], start: usize, codes: &mut [u8], nibble: impl Fn(f32) -> u32) {
    let mut chunk = chunk;
    let mut byte = start / 2;
    if start % 2 == 1 {
        if let Some((&first, rest)) = chunk.split_first() {
            codes[byte] |= (nibble(first) << 4) as u8;
            chunk = rest;
            byte += 1;
        }
    }
    let pairs = chunk.chunks_exact(2);
    let tail = pairs.remainder();
    let full = chunk.len() / 2;
    for (c, pair) in codes[byte..byte + full].iter_mut().zip(pairs) {
        *c = (nibble(pair[0]) | (nibble(pair[1]) << 4)) as u8;
    }
    if let [last] = tail {
        codes[byte + full] = nibble(*last) as u8;
    }
}

#[inline]
pub(super) fn encode_dispatch<F: Format>(
    values: &[f32],
    block: usize,
    scales: &mut [u8],
    codes: &mut [u8],
) -> Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports these AVX-512 subsets, checked just above.
            return unsafe { encode_avx512::<F>(values, block, scales, codes) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { encode_avx2::<F>(values, block, scales, codes) };
        }
    }
    encode_blocks::<F>(values, block, scales, codes)
}

/// AVX-512 with byte and word lanes (BW), 256-bit forms (VL) and the DQ conversions: what
/// LLVM needs to vectorise the codecs' integer and float steps at 16 lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// [`encode_blocks`] at 16 lanes. Twice AVX2's lanes for everything but the division, whose
/// throughput per value stays the same: measured on an Intel Xeon (Emerald Rapids), 1 Mi
/// values in blocks of 64, encode goes from 10.7 to 14.3 GB/s for int8 and from 5.9 to
/// 9.6 GB/s for fp8 and fp4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn encode_avx512<F: Format>(
    values: &[f32],
    block: usize,
    scales: &mut [u8],
    codes: &mut [u8],
) -> Result<(), usize> {
    encode_blocks::<F>(values, block, scales, codes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn encode_avx2<F: Format>(
    values: &[f32],
    block: usize,
    scales: &mut [u8],
    codes: &mut [u8],
) -> Result<(), usize> {
    encode_blocks::<F>(values, block, scales, codes)
}

/// What a decoded value does to the output element.
pub(super) const STORE: u8 = 0;
pub(super) const ADD: u8 = 1;
pub(super) const MAX: u8 = 2;
pub(super) const MIN: u8 = 3;

#[inline(always)]
fn sink<const OP: u8>(out: &mut f32, v: f32) {
    *out = match OP {
        STORE => v,
        ADD => *out + v,
        MAX => maximum(*out, v),
        _ => minimum(*out, v),
    };
}

#[inline(always)]
pub(super) fn decode_blocks<F: Format, const OP: u8>(
    scales: &[u8],
    codes: &[u8],
    block: usize,
    out: &mut [f32],
) {
    for (b, (chunk, scale_bytes)) in out
        .chunks_mut(block)
        .zip(scales.chunks_exact(4))
        .enumerate()
    {
        let scale = read_scale(scale_bytes);
        let start = b * block;
        if F::PACKED {
            unpack_nibbles(chunk, start, codes, |o, c| {
                sink::<OP>(o, F::value(c) * scale)
            });
        } else {
            let chunk_codes = &codes[start..start + chunk.len()];
            for (o, &c) in chunk.iter_mut().zip(chunk_codes) {
                sink::<OP>(o, F::value(u32::from(c)) * scale);
            }
        }
    }
}

/// The mirror of [`pack_nibbles`]: calls `put(element, nibble)` for each element of `chunk`.
#[inline(always)]
fn unpack_nibbles(chunk: &mut [f32], start: usize, codes: &[u8], put: impl Fn(&mut f32, u32)) {
    let mut byte = start / 2;
    let odd_start = usize::from(start % 2 == 1).min(chunk.len());
    let (head, chunk) = chunk.split_at_mut(odd_start);
    if let [first] = head {
        put(first, u32::from(codes[byte] >> 4));
        byte += 1;
    }
    let full = chunk.len() / 2;
    let mut pairs = chunk.chunks_exact_mut(2);
    for (pair, &c) in (&mut pairs).zip(&codes[byte..byte + full]) {
        let c = u32::from(c);
        let (lo, hi) = pair.split_at_mut(1);
        put(&mut lo[0], c & 0xf);
        put(&mut hi[0], c >> 4);
    }
    if let [last] = pairs.into_remainder() {
        put(last, u32::from(codes[byte + full] & 0xf));
    }
}

#[inline]
pub(super) fn decode_dispatch<F: Format, const OP: u8>(
    scales: &[u8],
    codes: &[u8],
    block: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports these AVX-512 subsets, checked just above.
            return unsafe { decode_avx512::<F, OP>(scales, codes, block, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { decode_avx2::<F, OP>(scales, codes, block, out) };
        }
    }
    decode_blocks::<F, OP>(scales, codes, block, out)
}

/// [`decode_blocks`] at 16 lanes: measured as for [`encode_avx512`], decode-and-add goes from
/// 13 to 21 GB/s for fp8 and from 7.7 to 23 GB/s for fp4 (int8 stays at about 20 GB/s, bound
/// by memory).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn decode_avx512<F: Format, const OP: u8>(
    scales: &[u8],
    codes: &[u8],
    block: usize,
    out: &mut [f32],
) {
    decode_blocks::<F, OP>(scales, codes, block, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decode_avx2<F: Format, const OP: u8>(
    scales: &[u8],
    codes: &[u8],
    block: usize,
    out: &mut [f32],
) {
    decode_blocks::<F, OP>(scales, codes, block, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_quant::format::{Fp4, Fp8, Int8};

    /// The run-time dispatch picks AVX2 on most machines, so the portable kernels are checked
    /// here directly, against the dispatched ones.
    #[test]
    fn portable_and_simd_paths_agree() {
        fn check<F: Format>() {
            let values: Vec<f32> = (0..1001)
                .map(|i| match i % 13 {
                    0 => -0.0,
                    1 => 1e-41,
                    _ => (i as f32 * 0.77).sin() * 2f32.powi(i % 17 - 8),
                })
                .collect();
            for block in [1, 7, 64, 100] {
                let blocks = values.len().div_ceil(block);
                let codes_len = if F::PACKED {
                    values.len().div_ceil(2)
                } else {
                    values.len()
                };
                let mut portable = vec![0u8; 4 * blocks + codes_len];
                let mut dispatched = vec![0xaau8; 4 * blocks + codes_len];
                let (ps, pc) = portable.split_at_mut(4 * blocks);
                encode_blocks::<F>(&values, block, ps, pc).unwrap();
                let (ds, dc) = dispatched.split_at_mut(4 * blocks);
                encode_dispatch::<F>(&values, block, ds, dc).unwrap();
                assert_eq!(portable, dispatched, "block {block}");

                let (scales, codes) = portable.split_at(4 * blocks);
                let start: Vec<f32> = values.iter().map(|x| x * 0.5 - 0.01).collect();
                fn run<F: Format, const OP: u8>(
                    scales: &[u8],
                    codes: &[u8],
                    block: usize,
                    start: &[f32],
                ) {
                    let (mut x, mut y) = (start.to_vec(), start.to_vec());
                    decode_blocks::<F, OP>(scales, codes, block, &mut x);
                    decode_dispatch::<F, OP>(scales, codes, block, &mut y);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&x), bits(&y), "op {OP}");
                }
                run::<F, STORE>(scales, codes, block, &start);
                run::<F, ADD>(scales, codes, block, &start);
                run::<F, MAX>(scales, codes, block, &start);
                run::<F, MIN>(scales, codes, block, &start);
            }
        }
        check::<Int8>();
        check::<Fp8>();
        check::<Fp4>();
    }

    /// Every compiled kernel (portable, AVX2, AVX-512, whichever this CPU runs) gives the
    /// portable kernel's bytes, on every length around the block sizes and on the awkward
    /// values: zeros of both signs, subnormals (blocks whose scale underflows to zero, and
    /// blocks mixing subnormals with normals), the largest finite floats, and infinities and
    /// NaN, which every kernel must reject in the same block. Decoding (store and each
    /// reduction) is compared the same way.
    #[test]
    fn every_simd_kernel_matches_the_portable_one() {
        type Encode = unsafe fn(&[f32], usize, &mut [u8], &mut [u8]) -> Result<(), usize>;
        type Decode = unsafe fn(&[u8], &[u8], usize, &mut [f32]);
        fn kernels<F: Format, const OP: u8>() -> Vec<(&'static str, Encode, Decode)> {
            #[allow(unused_mut)]
            let mut k: Vec<(&'static str, Encode, Decode)> = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    k.push(("avx2", encode_avx2::<F>, decode_avx2::<F, OP>));
                }
                if has_avx512() {
                    k.push(("avx512", encode_avx512::<F>, decode_avx512::<F, OP>));
                }
            }
            k
        }
        fn check<F: Format, const OP: u8>() {
            let specials = [
                0.0,
                -0.0,
                1e-45,
                -1e-45,
                1e-39,
                f32::MIN_POSITIVE,
                f32::MAX,
                -f32::MAX,
                1.0,
                -3.5,
            ];
            let mut state = 0x9e37_79b9u32;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state
            };
            for block in [1, 7, 32, 64, 100, 256] {
                for len in (0..=2 * block + 40).filter(|l| l % 5 == 0 || l % block < 2) {
                    for kind in 0..5 {
                        let mut values: Vec<f32> = (0..len)
                            .map(|i| match kind {
                                0 => 0.0,
                                1 => specials[next() as usize % specials.len()],
                                // Subnormals of either sign.
                                2 => f32::from_bits(next() & 0x807f_ffff),
                                // Magnitudes below 2 with any exponent, a third of them zero.
                                3 => {
                                    f32::from_bits(next() & 0xbfff_ffff)
                                        * if i % 3 == 0 { 1.0 } else { 0.0 }
                                }
                                _ => f32::from_bits(next() & 0xbfff_ffff),
                            })
                            .collect();
                        if kind == 4 && len > 0 {
                            let at = next() as usize % len;
                            values[at] = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN][at % 3];
                        }
                        let blocks = len.div_ceil(block);
                        let codes_len = if F::PACKED { len.div_ceil(2) } else { len };
                        let mut want = vec![0x5au8; 4 * blocks + codes_len];
                        let (ws, wc) = want.split_at_mut(4 * blocks);
                        let verdict = encode_blocks::<F>(&values, block, ws, wc);
                        let start: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 3.0).collect();
                        let mut decoded = start.clone();
                        if verdict.is_ok() {
                            decode_blocks::<F, OP>(ws, wc, block, &mut decoded);
                        }
                        for (name, encode, decode) in kernels::<F, OP>() {
                            let what = format!("{name} block {block} len {len} kind {kind}");
                            let mut got = vec![0x5au8; 4 * blocks + codes_len];
                            let (gs, gc) = got.split_at_mut(4 * blocks);
                            // SAFETY: `kernels` lists only what this CPU supports.
                            assert_eq!(
                                unsafe { encode(&values, block, gs, gc) },
                                verdict,
                                "{what}"
                            );
                            if verdict.is_ok() {
                                assert_eq!(got, want, "{what}");
                                let (ws, wc) = want.split_at(4 * blocks);
                                let mut out = start.clone();
                                // SAFETY: as above.
                                unsafe { decode(ws, wc, block, &mut out) };
                                let bits =
                                    |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                                assert_eq!(bits(&out), bits(&decoded), "{what} op {OP}");
                            }
                        }
                    }
                }
            }
        }
        fn formats<const OP: u8>() {
            check::<Int8, OP>();
            check::<Fp8, OP>();
            check::<Fp4, OP>();
        }
        formats::<STORE>();
        formats::<ADD>();
        formats::<MAX>();
        formats::<MIN>();
    }
}
