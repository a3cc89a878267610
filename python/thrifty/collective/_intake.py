"""Array intake for the collectives: every argument the core reads or writes becomes a host
:class:`~thrifty.collective._buffers.Buffer`.

NumPy arrays and CPU torch tensors are handed to the core as they are, without copying. CUDA
tensors and CuPy arrays go through a pinned host buffer (:mod:`thrifty.collective._staging`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty._arrays import is_cupy_array, is_gpu_array, is_torch_tensor
from thrifty.collective._buffers import (
    Buffer,
    check_layout,
    numpy_dtype_name,
    torch_dtype_name,
    torch_host_view,
)
from thrifty.collective._staging import PinnedPool, stage
from thrifty.errors import DTypeError


def intake(
    array: Any,
    argument: str,
    *,
    writable: bool,
    staging: Any = None,
) -> Buffer:
    """Check ``array`` and return the host buffer the core works on.

    ``staging`` is the communicator's pinned-buffer pool, used for CUDA tensors and CuPy
    arrays; ``writable`` says whether the collective writes the result in place.
    """
    if is_gpu_array(array):
        pool = staging if staging is not None else PinnedPool()
        return stage(array, argument, pool, writable=writable)
    if is_torch_tensor(array):
        name = torch_dtype_name(array, argument)
        if not array.is_contiguous():
            raise DTypeError(
                f"{argument} must be contiguous, got a strided tensor (use .contiguous() and "
                "use the copy)",
                argument,
            )
        host = torch_host_view(array, name)
        check_layout(host, argument, writable)
        return Buffer(host=host, dtype=name, original=array)
    if isinstance(array, np.ndarray):
        name = numpy_dtype_name(array, argument)
        check_layout(array, argument, writable)
        return Buffer(host=array, dtype=name, original=array)
    kind = "a CuPy array" if is_cupy_array(array) else type(array).__name__
    raise DTypeError(f"{argument} must be a numpy array or a torch tensor, got {kind}", argument)
