"""Host buffers for the collectives: what the Rust core reads and writes, without copying.

A torch tensor is seen through ``.detach().numpy()``, which shares its memory; bfloat16, which
NumPy lacks, as an int16 view with the dtype name ``"bfloat16"``. How an argument becomes a
buffer is :mod:`thrifty.collective._intake`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty import _native
from thrifty._arrays import is_cupy_array, is_torch_tensor
from thrifty._extras import require
from thrifty.errors import DTypeError

#: The element types the core reduces, by their NumPy / PyTorch names.
DTYPES = _native.DTYPES
FLOAT_DTYPES = tuple(name for name in DTYPES if name.startswith(("float", "bfloat")))

_TORCH_NAMES = {f"torch.{name}": name for name in DTYPES}


@dataclass
class Buffer:
    """A host array the core may use, and how to hand the result back to the caller."""

    host: np.ndarray[Any, Any]
    dtype: str
    original: Any
    #: Called once the collective has finished; ``changed`` is False when it failed (the
    #: host buffer was then restored) or only read the array.
    finish: Callable[[bool], None] | None = None

    def done(self, changed: bool) -> None:
        if self.finish is not None:
            finish, self.finish = self.finish, None
            finish(changed)


def _expected() -> str:
    return ", ".join(DTYPES)


def torch_dtype_name(tensor: Any, argument: str) -> str:
    name = _TORCH_NAMES.get(str(tensor.dtype))
    if name is None:
        raise DTypeError(
            f"{argument} must have dtype {_expected()}, got a tensor of {tensor.dtype}", argument
        )
    return name


def numpy_dtype_name(array: np.ndarray[Any, Any], argument: str) -> str:
    name = str(array.dtype.name)
    if name not in DTYPES or not array.dtype.isnative:
        raise DTypeError(
            f"{argument} must have dtype {_expected()} (native byte order), "
            f"got an array of {array.dtype.str if name in DTYPES else name}",
            argument,
        )
    return name


def check_layout(host: np.ndarray[Any, Any], argument: str, writable: bool) -> None:
    """Refuse a host view the core cannot use in place: strided, misaligned, read-only."""
    if not host.flags.c_contiguous:
        raise DTypeError(
            f"{argument} must be C-contiguous, got a strided view (use numpy.ascontiguousarray "
            "or tensor.contiguous(), then use the copy)",
            argument,
        )
    if not host.flags.aligned:
        raise DTypeError(f"{argument} must be aligned to its element size", argument)
    if writable and not host.flags.writeable:
        raise DTypeError(
            f"{argument} must be writable (the result is written in place), got a read-only array",
            argument,
        )


def torch_host_view(tensor: Any, name: str) -> np.ndarray[Any, Any]:
    """A NumPy view sharing a CPU tensor's memory (bfloat16 as int16)."""
    torch = require("torch")
    tensor = tensor.detach()
    if name == "bfloat16":
        tensor = tensor.view(torch.int16)
    return np.asarray(tensor.numpy())


def like(original: Any, host: np.ndarray[Any, Any], dtype: str) -> Any:
    """``host`` (a new array) in the caller's framework and on the caller's device."""
    if is_torch_tensor(original):
        torch = require("torch")
        tensor = torch.from_numpy(host)
        if dtype == "bfloat16":
            tensor = tensor.view(torch.bfloat16)
        if original.is_cuda:
            tensor = tensor.to(original.device)
        return tensor
    if is_cupy_array(original):
        cupy = require("cupy")
        with original.device:
            return cupy.asarray(host)
    return host
