"""The CUDA path of the jump errors (``cuda/steps.cu``), for CUDA tensors and CuPy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty import _cuda
from thrifty._arrays import is_torch_tensor
from thrifty._extras import require
from thrifty.errors import DTypeError
from thrifty.steps._grid import Float64Array

_WARPS = 8  # kWarps in cuda/steps.cu
_METRICS = {"l2": 0, "l1": 1}


def _as_cupy(x: Any) -> Any:
    cupy = require("cupy")
    if is_torch_tensor(x):
        x = x.detach().contiguous()
        return cupy.from_dlpack(x)
    return cupy.ascontiguousarray(x)


def jump_error_sums_gpu(
    starts: Any, velocities: Any, targets: Any, times: Float64Array, metric: str
) -> Float64Array:
    """GPU twin of ``thrifty._native.jump_errors``; arguments are (rows, batch, dim)."""
    cupy = require("cupy")
    starts, velocities, targets = (_as_cupy(a) for a in (starts, velocities, targets))
    if starts.dtype == cupy.float32:
        kernel = _cuda.function("steps", "jump_errors_f32")
    elif starts.dtype == cupy.float64:
        kernel = _cuda.function("steps", "jump_errors_f64")
    else:
        raise DTypeError(f"states must be float32 or float64, got {starts.dtype}", "noise")
    n_nodes, batch, dim = (int(s) for s in targets.shape)
    out = cupy.zeros((n_nodes, n_nodes), dtype=cupy.float64)
    device_times = cupy.asarray(times, dtype=cupy.float64)
    kernel(
        (n_nodes, n_nodes - 1),
        (32 * _WARPS,),
        (
            starts,
            velocities.astype(starts.dtype, copy=False),
            targets.astype(starts.dtype, copy=False),
            device_times,
            np.int32(n_nodes),
            np.int32(batch),
            np.int32(dim),
            np.int32(_METRICS[metric]),
            out,
        ),
    )
    return np.asarray(out.get())
