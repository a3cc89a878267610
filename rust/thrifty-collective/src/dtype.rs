//! Element types and reduce ops: what a buffer of an all-reduce holds, and how the ranks'
//! values are combined.
//!
//! Buffers travel as native-endian bytes. The reductions over them are in
//! [`reduce`](crate::reduce), and the moves to and from the fp32 working precision of the
//! quantized path in [`convert`](crate::convert); both view the bytes as typed slices through
//! the layout checks here, so a buffer that does not hold whole, aligned elements is refused
//! with the same error wherever it enters.

use bytemuck::Pod;
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
    /// Accumulates like `Sum`; [`finalize_avg`](crate::reduce::finalize_avg) divides once at the
    /// end.
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

// ---------------------------------------------------------------------------------------------
// Layout checks.

pub(crate) fn check_count(dtype: DType, bytes: usize, elements: usize) -> CoreResult<()> {
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
    if !len.is_multiple_of(size) {
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

pub(crate) fn typed<T: Pod>(dtype: DType, bytes: &[u8]) -> CoreResult<&[T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), dtype.size());
    check_layout(dtype, bytes.as_ptr(), bytes.len())?;
    if bytes.is_empty() {
        // An empty slice's dangling pointer need not be aligned for T.
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(bytes).map_err(|e| CoreError::invalid("data", e.to_string()))
}

pub(crate) fn typed_mut<T: Pod>(dtype: DType, bytes: &mut [u8]) -> CoreResult<&mut [T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), dtype.size());
    check_layout(dtype, bytes.as_ptr(), bytes.len())?;
    if bytes.is_empty() {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| CoreError::invalid("data", e.to_string()))
}
