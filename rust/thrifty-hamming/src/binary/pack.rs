//! Packing 0/1 bytes into codes, bit for bit like `numpy.packbits(bits, axis=1)`.

use thrifty_core::{CoreError, CoreResult};

use super::validate;

/// 0/1 bytes (any non-zero counts as 1), `rows x dims`, -> `rows x ceil(dims / 8)` packed
/// bytes.
///
/// Bit order follows `numpy.packbits`' default (`bitorder="big"`): the first bit of a group
/// of eight becomes `0x80`. Each row is zero-padded to a whole byte on its own, so rows stay
/// independent codes of `ceil(dims / 8)` bytes.
pub fn pack(bits: &[u8], rows: usize, dims: usize) -> CoreResult<Vec<u8>> {
    let expected = validate::product("bits", rows, dims)?;
    if bits.len() != expected {
        return Err(CoreError::shape(
            "bits",
            format!(
                "expected rows x dims = {rows} x {dims} = {expected} elements, got {}",
                bits.len()
            ),
        ));
    }
    let bytes_per_code = dims.div_ceil(8);
    let mut packed = vec![0u8; rows * bytes_per_code];
    if dims == 0 {
        return Ok(packed);
    }
    for (row, code) in bits
        .chunks_exact(dims)
        .zip(packed.chunks_exact_mut(bytes_per_code))
    {
        for (group, byte) in row.chunks(8).zip(code.iter_mut()) {
            // A short last group is left-aligned: its missing low bits are the padding.
            let value = group
                .iter()
                .fold(0u8, |acc, &bit| (acc << 1) | u8::from(bit != 0));
            *byte = value << (8 - group.len());
        }
    }
    Ok(packed)
}
