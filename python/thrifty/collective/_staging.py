"""CUDA tensors and CuPy arrays: staged through a cached pinned host buffer.

The collectives move bytes over TCP from host memory, so a GPU array is copied into
page-locked (pinned) host memory, which the GPU reads and writes by DMA at full speed, the
collective runs there, and the result is copied back once it has committed. A failed
collective leaves the GPU array untouched. Pinned memory is slow to allocate, and training
loops reduce the same sizes again and again, so each communicator keeps a few buffers and
reuses them.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from thrifty._arrays import is_torch_tensor
from thrifty._extras import require
from thrifty.collective._buffers import Buffer, numpy_dtype_name, torch_dtype_name, torch_host_view
from thrifty.errors import DTypeError

#: Pinned buffers are allocated in multiples of this, so that nearby sizes share one.
_GRANULE = 1 << 16


class PinnedPool:
    """Free pinned host buffers, by framework; ``keep`` of them at most are cached."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._free: list[tuple[str, int, Any]] = []
        self._lock = threading.Lock()

    def acquire(self, kind: str, nbytes: int) -> Any:
        """A pinned uint8 buffer of at least ``nbytes`` (a torch tensor or a NumPy array)."""
        with self._lock:
            fits = [i for i, (k, size, _) in enumerate(self._free) if k == kind and size >= nbytes]
            if fits:
                best = min(fits, key=lambda i: self._free[i][1])
                return self._free.pop(best)[2]
        size = max(_GRANULE, -(-nbytes // _GRANULE) * _GRANULE)
        if kind == "torch":
            torch = require("torch")
            return torch.empty(size, dtype=torch.uint8, pin_memory=True)
        cupy = require("cupy")
        memory = cupy.cuda.alloc_pinned_memory(size)
        return np.frombuffer(memory, dtype=np.uint8, count=size)

    def release(self, kind: str, buffer: Any) -> None:
        size = int(buffer.numel() if kind == "torch" else buffer.size)
        with self._lock:
            self._free.append((kind, size, buffer))
            if len(self._free) > self._keep:
                self._free.remove(min(self._free, key=lambda entry: entry[1]))

    def __len__(self) -> int:
        return len(self._free)


def stage(array: Any, argument: str, pool: PinnedPool, *, writable: bool) -> Buffer:
    """Copy a CUDA tensor or CuPy array into a pinned buffer from ``pool``.

    The returned buffer's ``finish(changed)`` copies the result back (when the collective
    wrote it and committed) and returns the pinned buffer to the pool.
    """
    if is_torch_tensor(array):
        return _stage_torch(array, argument, pool, writable)
    return _stage_cupy(array, argument, pool, writable)


def _not_contiguous(argument: str) -> DTypeError:
    return DTypeError(
        f"{argument} must be contiguous, got a strided GPU array (make a contiguous copy)",
        argument,
    )


def _stage_torch(tensor: Any, argument: str, pool: PinnedPool, writable: bool) -> Buffer:
    name = torch_dtype_name(tensor, argument)
    if not tensor.is_contiguous():
        raise _not_contiguous(argument)
    source = tensor.detach()
    nbytes = source.numel() * source.element_size()
    raw = pool.acquire("torch", nbytes)
    pinned = raw[:nbytes].view(source.dtype).view(source.shape)
    pinned.copy_(source)  # device to pinned host; synchronous, so the bytes are there

    def finish(changed: bool) -> None:
        try:
            if changed and writable:
                source.copy_(pinned)
        finally:
            pool.release("torch", raw)

    return Buffer(host=torch_host_view(pinned, name), dtype=name, original=tensor, finish=finish)


def _stage_cupy(array: Any, argument: str, pool: PinnedPool, writable: bool) -> Buffer:
    name = numpy_dtype_name(np.empty(0, dtype=array.dtype), argument)
    if not array.flags.c_contiguous:
        raise _not_contiguous(argument)
    nbytes = int(array.nbytes)
    raw = pool.acquire("cupy", nbytes)
    host = raw[:nbytes].view(array.dtype).reshape(array.shape)
    array.get(out=host)

    def finish(changed: bool) -> None:
        try:
            if changed and writable:
                array.set(host)
        finally:
            pool.release("cupy", raw)

    return Buffer(host=host, dtype=name, original=array, finish=finish)
