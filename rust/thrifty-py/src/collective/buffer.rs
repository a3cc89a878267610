//! The checks that let a job borrow a caller's NumPy array: its dtype, byte order,
//! contiguity, alignment and writability are verified here, before the array's raw bytes are
//! handed to the communicator's thread.

use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use thrifty_collective::dtype::DType;

use crate::arrays::type_name;
use crate::errors::{BindResult, ThriftyErr};

/// The caller's array as raw bytes, to be rebuilt into a slice inside a job.
#[derive(Clone, Copy)]
pub(super) struct RawBytes {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

// SAFETY: the pointer is only dereferenced inside one job, while the binding holds a strong
// reference to the array it points into (so it is neither freed nor resized).
unsafe impl Send for RawBytes {}

impl RawBytes {
    /// # Safety
    /// The array must stay alive and unresized until the returned slice is dropped, and no
    /// mutable slice of it may be live at the same time.
    pub(super) unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller's contract above; `buffer` checked contiguity and alignment.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// The array must stay alive and unresized until the returned slice is dropped, and no
    /// other slice of it may be live at the same time.
    pub(super) unsafe fn bytes_mut<'a>(self) -> &'a mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: the caller's contract above; `buffer` checked contiguity and alignment.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Whether an array of NumPy kind `kind` can hold elements of `dtype`: bfloat16 arrives as
/// an int16 view (NumPy has no bfloat16) or as ml_dtypes' bfloat16, never as float16.
fn kind_fits(dtype: DType, kind: u8) -> bool {
    match dtype {
        DType::F32 | DType::F64 | DType::F16 => kind == b'f',
        DType::I32 | DType::I64 => kind == b'i',
        DType::BF16 => kind != b'f' && kind != b'O',
    }
}

/// Check `array` (a C-contiguous, aligned NumPy array of `dtype`, writable when `writable`)
/// and return its bytes, with its shape.
pub(super) fn buffer(
    array: &Bound<'_, PyAny>,
    argument: &'static str,
    dtype: DType,
    writable: bool,
) -> BindResult<(RawBytes, Vec<usize>)> {
    let untyped = array.cast::<PyUntypedArray>().map_err(|_| {
        ThriftyErr::dtype(
            argument,
            format!("expected a numpy array, got {}", type_name(array)),
        )
    })?;
    let descr = untyped.dtype();
    if descr.itemsize() != dtype.size()
        || !kind_fits(dtype, descr.kind())
        || descr.is_native_byteorder() == Some(false)
    {
        return Err(ThriftyErr::dtype(
            argument,
            format!(
                "expected {} elements in native byte order, got an array of dtype {}",
                dtype.name(),
                descr.str().map(|s| s.to_string()).unwrap_or_default()
            ),
        ));
    }
    if !untyped.is_c_contiguous() {
        return Err(ThriftyErr::dtype(
            argument,
            "expected a C-contiguous array, got a strided view (use numpy.ascontiguousarray)",
        ));
    }
    if !untyped.is_aligned() {
        return Err(ThriftyErr::dtype(
            argument,
            format!("expected an array aligned to {} bytes", dtype.size()),
        ));
    }
    // SAFETY: `as_array_ptr` points to the live array object `untyped` borrows.
    let (ptr, flags) = unsafe {
        let fields = &*numpy::npyffi::_PyArray_GET_ITEM_DATA(untyped.as_array_ptr().cast_const());
        (fields.data.cast::<u8>(), fields.flags)
    };
    if writable && flags & numpy::npyffi::NPY_ARRAY_WRITEABLE == 0 {
        return Err(ThriftyErr::dtype(
            argument,
            "expected a writable array (the result is written in place), got a read-only one",
        ));
    }
    let shape = untyped.shape().to_vec();
    let len = shape.iter().product::<usize>() * dtype.size();
    Ok((RawBytes { ptr, len }, shape))
}
