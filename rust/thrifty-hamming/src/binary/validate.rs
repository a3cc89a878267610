//! Argument checks shared by the searches, so that every entry point words its errors alike.

use thrifty_core::{CoreError, CoreResult};

/// Distances are reported as `i32`, so a code may hold at most `i32::MAX` bits.
const MAX_BYTES_PER_CODE: usize = (i32::MAX as usize) / 8;

pub(crate) fn bytes_per_code(bytes_per_code: usize) -> CoreResult<()> {
    if bytes_per_code == 0 {
        return Err(CoreError::invalid(
            "bytes_per_code",
            "must be positive, got 0",
        ));
    }
    if bytes_per_code > MAX_BYTES_PER_CODE {
        return Err(CoreError::invalid(
            "bytes_per_code",
            format!(
                "must be at most {MAX_BYTES_PER_CODE} (distances are int32), got {bytes_per_code}"
            ),
        ));
    }
    Ok(())
}

/// The number of codes in `codes`, which must be whole codes of `bytes_per_code` bytes.
pub(crate) fn rows(
    argument: &'static str,
    codes: &[u8],
    bytes_per_code: usize,
) -> CoreResult<usize> {
    if !codes.len().is_multiple_of(bytes_per_code) {
        return Err(CoreError::shape(
            argument,
            format!(
                "length {} is not a multiple of bytes_per_code {bytes_per_code} \
                 (codes of different widths?)",
                codes.len()
            ),
        ));
    }
    Ok(codes.len() / bytes_per_code)
}

/// `rows * columns`, or an error naming `argument` when the product overflows.
pub(crate) fn product(argument: &'static str, rows: usize, columns: usize) -> CoreResult<usize> {
    rows.checked_mul(columns).ok_or_else(|| {
        CoreError::shape(
            argument,
            format!("{rows} x {columns} elements do not fit in memory"),
        )
    })
}

/// An empty vector with room for `len` items, or an error naming `argument` when the memory
/// is not there: a failed allocation would abort the process rather than return.
pub(crate) fn reserve<T>(argument: &'static str, len: usize, what: &str) -> CoreResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        CoreError::invalid(
            argument,
            format!(
                "{what}: {len} items of {} bytes, more memory than can be allocated",
                std::mem::size_of::<T>()
            ),
        )
    })?;
    Ok(v)
}
