"""Array intake shared by every core: NumPy, CPU torch tensors (zero-copy), and GPU arrays.

A GPU array (a CUDA torch tensor or a CuPy array) is recognised without importing torch or
CuPy, so that the optional extras stay optional.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from thrifty.errors import DeviceError, DTypeError, ShapeError


def is_torch_tensor(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def is_cupy_array(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def is_gpu_array(x: object) -> bool:
    """A CUDA torch tensor or a CuPy array."""
    if is_cupy_array(x):
        return True
    return is_torch_tensor(x) and bool(getattr(x, "is_cuda", False))


def _kind_name(kinds: str) -> str:
    names = {"f": "floating", "i": "signed integer", "u": "unsigned integer", "b": "boolean"}
    return " or ".join(names[k] for k in kinds)


def host_array(
    x: Any,
    argument: str,
    *,
    kinds: str = "f",
    dtype: npt.DTypeLike | None = None,
    ndim: int | None = None,
    gpu_hint: str | None = None,
) -> np.ndarray[Any, Any]:
    """Return ``x`` as a C-contiguous NumPy array, without copying where it can.

    NumPy arrays and CPU torch tensors share memory with the result when they are already
    C-contiguous and of ``dtype``. ``kinds`` lists the accepted dtype kinds (``"f"`` for
    floating point). A GPU array raises :class:`DeviceError` (``gpu_hint`` says what to do).
    """
    if is_gpu_array(x):
        hint = gpu_hint or "this function has no CUDA path; move the data to the CPU first"
        raise DeviceError(f"{argument} is on a GPU: {hint}", argument)
    if is_torch_tensor(x):
        x = x.detach().numpy()
    if isinstance(x, (list, tuple, float, int)):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError, OverflowError) as error:
            # A ragged or mixed nested list is not an array of any dtype.
            raise DTypeError(
                f"{argument} must be a rectangular array of numbers, got a "
                f"{type(x).__name__} NumPy cannot convert ({error})",
                argument,
            ) from None
    if not isinstance(x, np.ndarray):
        raise DTypeError(
            f"{argument} must be a numpy array or a torch tensor, got {type(x).__name__}",
            argument,
        )
    if x.dtype.kind not in kinds:
        raise DTypeError(
            f"{argument} must have a {_kind_name(kinds)} dtype, got {x.dtype}", argument
        )
    if ndim is not None and x.ndim != ndim:
        raise ShapeError(f"{argument} must be {ndim}-D, got shape {x.shape}", argument)
    return np.ascontiguousarray(x, dtype=dtype)
